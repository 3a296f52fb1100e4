"""Audio-caption data: the embedded offline dataset and the AudioCaps / Clotho loaders.

The embedded dataset is built here, offline, from real recordings (see `dlink.sounds` and
data/README.md): each scene is 5-10 s of mono 32 kHz audio mixing 1-3 sound events (in
sequence, overlapping, or over an ambience), with 5 AudioCaps-style captions written from
the composition. Splits are by group of source recordings (one recording session, or
recordings whose audio matches: `dlink.sessions`): a val/test scene never uses a recording of a
group that any training scene uses.

    python -m dlink.data build --size default --seed 0

Every split, from any dataset, is a DataFrame with columns `id` (str), `audio` (str, absolute
path) and `captions` (list[str]); the embedded one adds `duration`, `composition`, `labels`,
`recordings` and `events` (the mix: clip, onset s, gain dB, repeats).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths, sessions
from ._io import atomic_write_text, read_json, replace_folder, write_json
from .audio import (  # noqa: F401 (load_audio, MIN_SECONDS: public here too)
    MIN_SECONDS,
    SAMPLE_RATE,
    check_and_resample,
    load_audio,
    unreadable,
)
from .cache import code_hash
from .sounds import LABELS, Clip, scan_sources, scene_captions

SIZES = {"default": (3000, 300, 300), "smoke": (96, 24, 32)}  # train, val, test scenes
SPLITS = ("train", "val", "test")
MAX_MISSING = 0.2  # share of a split's clips whose audio may be missing or unreadable before loading stops
_MIN_CLIP = 0.03  # source clips: a single recorded footstep can be 0.1 s
_VERSION = 2  # bump when the recipe changes, so old builds are not reused
_GAINS = {"loud": (-3.0, 0.0), "normal": (-10.0, -4.0), "faint": (-22.0, -15.0)}  # dB re. clip peak frame
_MANIFEST_COLUMNS = ("id", "audio", "duration", "composition", "labels", "recordings", "captions", "events")


def _decode_clip(clip: Clip, cache: Path) -> np.ndarray:
    """A source clip as float32 mono at SAMPLE_RATE, trimmed of leading/trailing silence and
    scaled so its loudest 50 ms frame has RMS 0.25 (so gains in dB mean the same for all clips).
    Decoded once and cached as .npy (np.load with allow_pickle=False: no pickle)."""
    cached = cache / clip.source / (clip.name.replace("/", "__") + ".npy")
    if cached.is_file():
        return np.load(cached, allow_pickle=False)
    import soundfile as sf

    if "::" in clip.location:  # a member of the ufoai zip: read without extracting
        archive, member = clip.location.split("::", 1)
        with zipfile.ZipFile(archive) as z:
            data = io.BytesIO(z.read(member))
    else:
        data = clip.location
    x, sr = sf.read(data, dtype="float32", always_2d=True)
    x = check_and_resample(x.mean(axis=1), sr, SAMPLE_RATE, clip.rid, min_s=_MIN_CLIP)
    active = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (-50 / 20))
    x = x[active[0] : active[-1] + 1]
    frame = SAMPLE_RATE // 20
    n = max(1, len(x) // frame)
    rms = (
        np.sqrt(np.mean(x[: n * frame].reshape(n, -1) ** 2, axis=1)).max()
        if len(x) >= frame
        else np.abs(x).max()
    )
    x = (x * (0.25 / max(float(rms), 1e-8))).astype(np.float32)
    cached.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    from ._io import atomic_write_bytes

    atomic_write_bytes(cached, buf.getvalue())
    return x


# ------------------------------------------------------------------ splits and scenes
def source_clips() -> tuple[list[Clip], dict[str, np.ndarray]]:
    """The labelled source clips and their decoded audio (id -> waveform at SAMPLE_RATE, see
    `_decode_clip`), without byte-identical duplicates and clips too short after trimming."""
    from tqdm.auto import tqdm

    clips, seen = [c for c in scan_sources() if c.label is not None], {}
    cache = paths.SOURCES / f"clips-{SAMPLE_RATE}"
    audio = {}
    for c in tqdm(clips, desc="decoding source clips", leave=False):
        x = _decode_clip(c, cache)
        key = hashlib.sha256(x.tobytes()).hexdigest()
        if key in seen or len(x) < _MIN_CLIP * SAMPLE_RATE:
            continue  # a byte-identical duplicate recording, or too short after trimming
        seen[key] = c.rid
        audio[c.rid] = x
    return [c for c in clips if c.rid in audio], audio


def source_groups(audio: dict[str, np.ndarray]) -> tuple[dict[str, str], list[tuple[str, str, float]]]:
    """(recording id -> group, audio matches): `sessions.recording_groups` on the session keys and
    the waveform near-duplicates (`sessions.max_ncc`) of `audio`."""
    return sessions.recording_groups(list(audio), sessions.max_ncc(audio, SAMPLE_RATE))


def _assign_splits(clips: list[Clip], rng, group_of: dict[str, str]) -> dict[str, str]:
    """recording id -> split, assigned by whole GROUP (`source_groups`: one recording session, or
    recordings whose audio matches), so no session and no near-copy sits on two sides.

    For each label, n = the number of groups holding it: n >= 3 asks for test round(20 %) and val
    round(15 %) of them (at least 1 each), n == 2 for one val or test group (a coin flip), n == 1
    for none. The groups are visited in a seeded random order; a group goes to test (or else val)
    when every label it holds still asks for one there and keeps a group outside val and test, and
    to train otherwise. So every val/test label is also a train label. Raises ValueError if a split
    gets no group (too few recordings or groups)."""
    labels_of: dict[str, set[str]] = {}
    for c in clips:
        labels_of.setdefault(group_of[c.rid], set()).add(c.label)
    n_groups: dict[str, int] = {}
    for labels in labels_of.values():
        for lab in labels:
            n_groups[lab] = n_groups.get(lab, 0) + 1
    want = {}
    for lab in sorted(n_groups):
        n = n_groups[lab]
        if n >= 3:
            want[lab] = {"test": max(1, round(0.2 * n)), "val": max(1, round(0.15 * n))}
        elif n == 2:
            want[lab] = {"test": 0, "val": 0, ("val" if rng.random() < 0.5 else "test"): 1}
        else:
            want[lab] = {"test": 0, "val": 0}
    names = sorted(labels_of)
    left = dict(n_groups)  # groups of a label not (yet) in val or test
    part_of = {}
    for name in (names[i] for i in rng.permutation(len(names))):
        labels = labels_of[name]
        part = next(
            (s for s in ("test", "val") if all(want[lab][s] > 0 and left[lab] > 1 for lab in labels)), "train"
        )
        if part != "train":
            for lab in labels:
                want[lab][part] -= 1
                left[lab] -= 1
        part_of[name] = part
    empty = [s for s in SPLITS if s not in part_of.values()]
    if empty:
        raise ValueError(
            f"{len(clips)} source recordings in {len(names)} groups give split(s) {empty} no group; "
            "every split needs a whole recording session of a label that also has another group in "
            "train: add recordings (install every source package: see data/README.md)"
        )
    return {c.rid: part_of[group_of[c.rid]] for c in clips}


def _sample_item(rng, pool, labels, role, loudness=None) -> dict:
    label = labels[rng.integers(len(labels))]
    rids = pool[label]
    if loudness is None:
        loudness = ("loud", "normal", "faint")[rng.choice(3, p=[0.25, 0.55, 0.2])]
    return {"label": label, "rid": rids[rng.integers(len(rids))], "role": role, "loudness": loudness}


def _layout(item: dict, n_clip: float, rng) -> None:
    """Fill in count, gap and span (s) of a foreground item from its kind and clip length."""
    kind = LABELS[item["label"]].kind
    if kind == "steps":  # one recorded step, repeated as a walk
        item["count"], item["gap"] = (
            int(rng.integers(4, 9)),
            round(max(float(rng.uniform(0.45, 0.6)) - n_clip, 0.05), 3),
        )
    elif kind == "event" and n_clip <= 1.5:
        item["count"], item["gap"] = (
            int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2])),
            round(float(rng.uniform(0.2, 0.8)), 3),
        )
    else:
        item["count"], item["gap"] = 1, 0.0
    item["span"] = item["count"] * n_clip + (item["count"] - 1) * item["gap"]


def _compose(rng, pool: dict[str, list[str]], lengths: dict[str, float]) -> dict:
    """One scene description (no audio yet): duration, composition, items with onsets and gains."""
    fg_labels = sorted(lab for lab in pool if LABELS[lab].kind != "ambience")
    bg_labels = sorted(lab for lab in pool if LABELS[lab].kind == "ambience")
    for _ in range(100):
        dur = round(float(rng.uniform(5.0, 10.0)), 1)
        comp = ("single", "background", "sequence", "overlap")[rng.choice(4, p=[0.25, 0.35, 0.25, 0.15])]
        if comp == "background" and not bg_labels:
            continue
        n_fg = {
            "single": 1,
            "background": int(rng.integers(1, 3)),
            "sequence": int(rng.integers(2, 4)),
            "overlap": 2,
        }[comp]
        labels = fg_labels + (bg_labels if comp == "single" else [])
        items = []
        for _ in range(n_fg):  # distinct labels within a scene
            items.append(
                _sample_item(rng, pool, [x for x in labels if x not in {i["label"] for i in items}], "fg")
            )
        for it in items:
            if LABELS[it["label"]].kind == "ambience":  # a lone ambience fills the scene
                it.update(count=1, gap=0.0, span=dur)
            else:
                _layout(it, lengths[it["rid"]], rng)
        t = float(rng.uniform(0.1, 1.0))
        for k, it in enumerate(items):
            if comp == "overlap" and k == 1:
                t = items[0]["onset"] + float(rng.uniform(0.15, 0.6)) * items[0]["span"]
            it["onset"] = round(t, 3)
            t = it["onset"] + it["span"] + float(rng.uniform(0.3, 1.2))
        end = max(it["onset"] + it["span"] for it in items)
        if end > dur - 0.1 and not (comp == "single" and items[0]["span"] == dur):
            continue  # does not fit: draw again
        if comp == "background":
            bg = _sample_item(
                rng, pool, bg_labels, "bg", loudness="faint" if rng.random() < 0.3 else "normal"
            )
            bg.update(count=1, gap=0.0, span=dur, onset=0.0)
            items.insert(0, bg)
        for it in items:
            lo, hi = _GAINS[it["loudness"]]
            it["gain_db"] = round(float(rng.uniform(lo, hi)) - (6.0 if it["role"] == "bg" else 0.0), 1)
            if it["span"] == dur:  # ambience: a random excerpt of the recording (looped if short)
                it["offset"] = round(float(rng.uniform(0, max(lengths[it["rid"]] - dur, 0.0))), 3)
        quiet_tail = comp == "single" and dur - end > 2.5
        return {"duration": dur, "composition": comp, "quiet_tail": quiet_tail, "items": items}
    raise RuntimeError("could not compose a scene in 100 draws; the split's clip pool is too small")


def _render(scene: dict, audio: dict[str, np.ndarray]) -> np.ndarray:
    """Mix a scene into (n,) float32 at SAMPLE_RATE; peak-limited to 0.95 by scaling the whole mix."""
    n = int(round(scene["duration"] * SAMPLE_RATE))
    mix = np.zeros(n, np.float32)
    for it in scene["items"]:
        x = audio[it["rid"]] * np.float32(10 ** (it["gain_db"] / 20))
        if "offset" in it:  # continuous: loop to length from the offset, 0.2 s fades
            reps = int(np.ceil((n + it["offset"] * SAMPLE_RATE) / len(x))) + 1
            o = int(it["offset"] * SAMPLE_RATE)
            seg = np.tile(x, reps)[o : o + n].copy()
            f = min(int(0.2 * SAMPLE_RATE), n // 4)
            seg[:f] *= np.linspace(0, 1, f, dtype=np.float32)
            seg[-f:] *= np.linspace(1, 0, f, dtype=np.float32)
            mix += seg
            continue
        for k in range(it["count"]):
            s = int(round((it["onset"] + k * (len(x) / SAMPLE_RATE + it["gap"])) * SAMPLE_RATE))
            e = min(n, s + len(x))
            mix[s:e] += x[: e - s]
    peak = float(np.abs(mix).max())
    return mix * np.float32(0.95 / peak) if peak > 0.95 else mix


def _scene_row(sid: str, scene: dict, captions: list[str]) -> dict:
    fg_bg = sorted(scene["items"], key=lambda it: (it["onset"], it["role"]))
    events = [
        {
            k: it[k]
            for k in ("label", "rid", "role", "loudness", "onset", "count", "gap", "gain_db", "offset")
            if k in it
        }
        for it in fg_bg
    ]
    return {
        "id": sid,
        "audio": f"audio/{sid}.wav",
        "duration": f"{scene['duration']:.1f}",
        "composition": scene["composition"],
        "labels": ";".join(it["label"] for it in fg_bg),
        "recordings": ";".join(sorted({it["rid"] for it in fg_bg})),
        "captions": json.dumps(captions),
        "events": json.dumps(events, sort_keys=True),
    }


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------ build
_WORK: dict = {}  # audio + scenes for forked render workers (set before the pool starts)


def _render_write(job: tuple[str, int]) -> None:
    import soundfile as sf

    folder, i = job
    sid, scene = _WORK["scenes"][i]
    sf.write(f"{folder}/audio/{sid}.wav", _render(scene, _WORK["audio"]), SAMPLE_RATE, subtype="PCM_16")


def _dataset_dir(size: str, seed: int, root=None) -> Path:
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {sorted(SIZES)}")
    return Path(root) if root is not None else paths.DATA / "embedded" / f"{size}-seed{seed}"


def _is_complete(folder: Path) -> bool:
    """True if `folder` holds a finished build whose manifests match the recorded hashes."""
    marker = folder / "build.json"
    if not marker.is_file():
        return False
    try:
        info = read_json(marker)
    except ValueError:  # a damaged marker means an incomplete build: rebuild
        return False
    for split in SPLITS:
        f = folder / f"{split}.csv"
        if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != info["sha256"].get(split):
            return False
    n_wav = sum(1 for _ in (folder / "audio").glob("*.wav"))
    return (
        info.get("version") == _VERSION
        and info.get("code") == _code_hash()  # a build by other data/caption code is rebuilt
        and n_wav == sum(info["counts"].values())
    )


def _code_hash() -> str:
    """Hash of the code and data that decide what a build holds (this module, the grouping, the catalogue)."""
    return code_hash("data.py", "audio.py", "sessions.py", "sounds.py", "sounds.csv", "sound_rules.csv")[:16]


_MARKER = ".dlink-embedded-dataset"  # written first into every build: proof the builder made the folder
_BUILT = {_MARKER, "build.json", "audio", *(f"{s}.csv" for s in SPLITS)}


def _check_replaceable(folder: Path) -> None:
    """Raise FileExistsError unless `folder` is absent, empty, or a build of ours and nothing else."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; the dataset build will not replace it")
    names = {p.name for p in folder.iterdir()}
    if not names:
        return
    ours = _MARKER in names or _is_build_json(folder / "build.json")
    audio = folder / "audio"
    foreign = sorted(names - _BUILT)
    if audio.is_dir():
        listed = _listed_audio(folder)
        foreign += [
            f"audio/{p.name}" for p in sorted(audio.iterdir()) if p.name not in listed or not p.is_file()
        ]
    if not ours or foreign:
        why = f"it holds files the builder did not write: {foreign[:5]}" if ours else f"it has no {_MARKER}"
        raise FileExistsError(
            f"refusing to replace {folder}: {why}, so it was not made by build_embedded_dataset and "
            f"its contents would be lost. Pass an empty or new folder as root=, or move the files away."
        )


def _listed_audio(folder: Path) -> set[str]:
    """Names of the audio files that the build's own manifests list (what the builder may delete):
    a .wav a user put into audio/ is not in them, even one named like a scene."""
    listed = set()
    for split in SPLITS:
        f = folder / f"{split}.csv"
        if not f.is_file():
            continue
        try:
            rows = pd.read_csv(f, dtype=str, keep_default_na=False)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
            continue  # a damaged manifest vouches for nothing
        if "audio" in rows.columns:
            listed.update(Path(a).name for a in rows["audio"] if a.startswith("audio/") and a.count("/") == 1)
    return listed


def _is_build_json(path: Path) -> bool:
    """A build.json written by this builder (builds made before the marker file existed)."""
    try:
        info = read_json(path)
    except (FileNotFoundError, ValueError):
        return False
    return isinstance(info, dict) and {"version", "code", "counts", "sha256"} <= set(info)


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Hold an exclusive lock on <parent>/.<name>.lock (waits for another build of the same folder)."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed, also if the process dies
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _swap_into_place(tmp: Path, folder: Path) -> None:
    """Put the finished build `tmp` at `folder` (atomically where the OS can swap two folders); an
    old build there is removed, and only after checking once more that it is one."""
    _check_replaceable(folder)
    replace_folder(tmp, folder)


def build_embedded_dataset(
    size: str = "default", seed: int = 0, force: bool = False, root=None, workers: int = 2
) -> Path:
    """Build (or reuse) the embedded dataset; returns its folder.

    Folder (default data/embedded/<size>-seed<seed>/): train.csv, val.csv, test.csv (manifests:
    composition, captions), audio/<id>.wav (16-bit mono 32 kHz, 5-10 s) and build.json (the
    completion marker: manifest hashes, counts, build seconds). The same size and seed give
    byte-identical manifests and audio. A complete build is reused unless force=True; a new
    build is written to a temporary folder and renamed into place, so a crash never leaves a
    half build where a complete one is expected.

    Safety: an existing folder is replaced only if this builder made it (it holds the marker file
    .dlink-embedded-dataset, or an older build's build.json) and it holds nothing else than what
    a build writes; otherwise FileExistsError, and nothing is touched. Builds of one folder are
    serialised by a lock file beside it (.<name>.lock): a second caller waits, then reuses the
    first one's build. The folder returned is always a complete build (RuntimeError otherwise).
    """
    folder = _dataset_dir(size, seed, root)
    if not force and _is_complete(folder):
        return folder
    target = folder.resolve()  # root="." has no name to put a sibling beside
    _check_replaceable(target)  # before the minutes of work, and again before the swap
    t0 = time.perf_counter()
    planned = plan(size, seed)  # a dataset too small to split stops here, before anything is written
    with _build_lock(target):
        if not force and _is_complete(target):
            return folder  # another process finished this build while we waited for the lock
        _check_replaceable(target)
        _build(size, seed, target, workers, planned, t0)
    if not _is_complete(target):
        raise RuntimeError(f"the build in {folder} is incomplete after writing it; rerun with force=True")
    return folder


def plan(size: str = "default", seed: int = 0) -> dict:
    """What a build of `size` and `seed` holds, without rendering audio: "audio" (id -> source
    waveform), "group_of" (id -> recording group), "split_of" (id -> split), "scenes" [(id, scene)]
    and "rows" {split: manifest rows}. Raises ValueError (from `_assign_splits`) before anything
    is written if the recordings cannot give every split a group."""
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {sorted(SIZES)}")
    rng = np.random.default_rng(seed)
    clips, audio = source_clips()
    lengths = {rid: len(x) / SAMPLE_RATE for rid, x in audio.items()}
    group_of = source_groups(audio)[0]
    split_of = _assign_splits(clips, rng, group_of)
    counts = dict(zip(SPLITS, SIZES[size], strict=True))
    scenes, rows = [], {}
    for split in SPLITS:
        pool: dict[str, list[str]] = {}
        for c in clips:
            if split_of[c.rid] == split:
                pool.setdefault(c.label, []).append(c.rid)
        rows[split] = []
        for i in range(counts[split]):
            scene = _compose(rng, pool, lengths)
            sid = f"{split}_{i:05d}"
            rows[split].append(_scene_row(sid, scene, scene_captions(scene, rng)))
            scenes.append((sid, scene))
    return {"audio": audio, "group_of": group_of, "split_of": split_of, "scenes": scenes, "rows": rows}


def _build(size: str, seed: int, folder: Path, workers: int, planned: dict, t0: float) -> None:
    from tqdm.auto import tqdm

    audio, split_of, scenes = planned["audio"], planned["split_of"], planned["scenes"]
    manifests = {s: _csv_text(r) for s, r in planned["rows"].items()}
    counts = dict(zip(SPLITS, SIZES[size], strict=True))
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():  # left by a crashed build (we hold the lock, so no build is using it)
        _check_replaceable(tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / _MARKER).write_text(
        "written by dlink.data.build_embedded_dataset, which may replace this folder\n"
    )
    (tmp / "audio").mkdir()
    # the manifests go in before the audio: they list every file a later build may delete here
    for split, text in manifests.items():
        atomic_write_text(tmp / f"{split}.csv", text)
    _WORK.update(audio=audio, scenes=scenes)
    jobs = [(str(tmp), i) for i in range(len(scenes))]
    try:
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(workers) as pool_:
                for _ in tqdm(
                    pool_.imap_unordered(_render_write, jobs, chunksize=16),
                    total=len(jobs),
                    desc="rendering scenes",
                ):
                    pass
        else:
            for j in tqdm(jobs, desc="rendering scenes"):
                _render_write(j)
    finally:
        _WORK.clear()
    write_json(
        tmp / "build.json",
        {
            "version": _VERSION,
            "code": _code_hash(),
            "size": size,
            "seed": seed,
            "counts": counts,
            "sample_rate": SAMPLE_RATE,
            "recordings": {s: sum(v == s for v in split_of.values()) for s in SPLITS},
            "sha256": {s: hashlib.sha256(t.encode()).hexdigest() for s, t in manifests.items()},
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    _swap_into_place(tmp, folder)


# ------------------------------------------------------------------ loaders
def load_split(
    split: str,
    dataset: str = "embedded",
    size: str = "default",
    seed: int = 0,
    root=None,
    audiocaps_version: str | None = None,
    max_missing: float = MAX_MISSING,
) -> pd.DataFrame:
    """One split as a DataFrame: `id` (str), `audio` (absolute path), `captions` (list[str]).

    dataset="embedded": the folder built by `build_embedded_dataset(size, seed)` (or `root`);
    5 captions per scene, plus the composition columns.
    dataset="audiocaps" | "clotho": `root` holds the layout written by the aac-datasets package
    (AUDIOCAPS/... or CLOTHO_v2.1/...); split is train | val | test (Clotho: dev | val | eval).
    AudioCaps: `audiocaps_version` "v1" | "v2" picks the captions when both are there (None: v1,
    with a warning); audio may also be audio_<sr>Hz/<split>/ or audio/<split>/ with files
    <ytid>_<start>, Y<ytid> or <ytid> (.flac / .wav). Clotho: also the DCASE layout (see
    `_clotho_paths`). A file name that leaves `root` is an error. Clips whose audio is absent or does
    not decode to a usable clip (`dlink.audio.unreadable`) are skipped with a warning and listed in
    `df.attrs["skipped"]`; more than `max_missing` (a share of the split) stops with ValueError.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    check_max_missing(max_missing)
    if dataset == "embedded":
        folder = _dataset_dir(size, seed, root)
        if not _is_complete(folder):
            raise FileNotFoundError(
                f"no complete embedded dataset in {folder}; build it with "
                f"`python -m dlink.data build --size {size} --seed {seed}` or dlink.data.build_embedded_dataset()"
            )
        df = pd.read_csv(folder / f"{split}.csv", dtype=str, keep_default_na=False)
        df["audio"] = [str(folder / a) for a in df["audio"]]
        df["duration"] = df["duration"].astype(float)
        df["captions"] = df["captions"].map(json.loads)
        df["events"] = df["events"].map(json.loads)
        return df
    if dataset in ("audiocaps", "clotho"):
        return _load_aac(split, dataset, root, audiocaps_version, max_missing)
    raise ValueError(f"dataset={dataset!r}: expected 'embedded', 'audiocaps' or 'clotho'")


# The on-disk layout of aac-datasets 0.7.0 (aac_datasets/datasets/functional/{audiocaps,clotho}.py):
#   AudioCaps:    captions <root>/AUDIOCAPS/csv_files_v1/{train,val,test}.csv (AudioCaps 1, its default),
#                 <root>/AUDIOCAPS/csv_files_v2/{train,val,test}.csv (AudioCaps 2.0, `--version v2`), or
#                 <root>/AUDIOCAPS/{train,val,test}.csv (older aac-datasets, v1); columns audiocap_id,
#                 youtube_id, start_time, caption (train: 1 caption per clip; val/test: 5 rows per clip);
#                 audio <root>/AUDIOCAPS/audio_32000Hz/<split>/<youtube_id>_<start_time>.flac (both versions)
#   Clotho v2.1:  <root>/CLOTHO_v2.1/clotho_csv_files/clotho_captions_{development,validation,evaluation}.csv
#                 columns file_name, caption_1..caption_5; audio
#                 <root>/CLOTHO_v2.1/clotho_audio_files/{development,validation,evaluation}/<file_name>
_CLOTHO_DIRS = {"train": "development", "val": "validation", "test": "evaluation"}
_AUDIOCAPS_CSV_DIRS = ("csv_files_v1", "csv_files_v2", ".")  # the first that holds <split>.csv wins


def _aac_missing(what: Path, dataset: str, split: str, root: Path) -> FileNotFoundError:
    subset = {"audiocaps": split, "clotho": {"train": "dev", "val": "val", "test": "eval"}[split]}[dataset]
    expected = (
        "AUDIOCAPS/csv_files_v1/<split>.csv (or csv_files_v2/, or AUDIOCAPS/<split>.csv) and "
        "AUDIOCAPS/audio_32000Hz/<split>/<youtube_id>_<start_time>.flac"
        if dataset == "audiocaps"
        else "CLOTHO_v2.1/clotho_csv_files/clotho_captions_<subset>.csv and CLOTHO_v2.1/clotho_audio_files/<subset>/"
    )
    return FileNotFoundError(
        f"{dataset} {split}: expected {what}, which does not exist ({root} is not an aac-datasets "
        f"{dataset} folder; it should hold {expected}). Download it (needs internet) with "
        f"`pip install aac-datasets==0.7.0 && aac-datasets-download --root {root} {dataset} --subsets {subset}`"
        + (" (AudioCaps audio also needs ffmpeg and yt-dlp)" if dataset == "audiocaps" else "")
    )


def _read_caption_csv(csv_path: Path, need: list[str]) -> pd.DataFrame:
    """A caption CSV as str columns; a file that is not a CSV with `need` names the file."""
    head = csv_path.read_bytes()[:4096]
    if b"\0" in head:
        raise ValueError(f"{csv_path} is not a text CSV (binary content); expected columns {need}")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{csv_path} is not a readable caption CSV ({type(e).__name__}: {e})") from e
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{csv_path} lacks columns {missing}; expected {need}, found {list(df.columns)}")
    return df


def _aac_row_path(folder: Path, name: str, csv_path: Path, row: int, field: str, root: Path) -> Path:
    """`folder / name` for a file named in a caption CSV, refused unless it stays inside data_root:
    an absolute name or one with `..` would load a file the dataset does not hold."""
    p = Path(os.path.normpath(folder / name))
    if Path(name).is_absolute() or not p.is_relative_to(root) or ".." in Path(name).parts:
        raise ValueError(
            f"{csv_path}, data row {row + 1}: {field} {name!r} points outside data_root {root}; a caption "
            "CSV may only name files inside its dataset folder (fix or drop that row)"
        )
    return p


def _audiocaps_csv(base: Path, split: str, version: str | None) -> Path:
    """The caption CSV of `split` for AudioCaps `version` (v1 | v2 | None: v1 if present, else v2, else
    the older flat layout; a warning names the choice when both versions are there)."""
    if version not in (None, "v1", "v2"):
        raise ValueError(
            f"audiocaps_version={version!r}: expected 'v1' (AudioCaps 1), 'v2' (AudioCaps 2.0) or None"
        )
    v1, v2, flat = (
        base / "csv_files_v1" / f"{split}.csv",
        base / "csv_files_v2" / f"{split}.csv",
        base / f"{split}.csv",
    )
    if version == "v1":
        return v1 if v1.is_file() or not flat.is_file() else flat  # the flat layout holds AudioCaps 1
    if version == "v2":
        return v2
    if v1.is_file() and v2.is_file():
        warnings.warn(
            f"{base} holds AudioCaps 1 and 2.0 captions; using AudioCaps 1 (csv_files_v1). Pass "
            "audiocaps_version='v2' for AudioCaps 2.0, or 'v1' to silence this",
            stacklevel=3,
        )
    return next((c for c in (v1, v2, flat) if c.is_file()), v1)


_AUDIO_EXTS = (".flac", ".wav")


def _audiocaps_audio_dir(base: Path, split: str) -> Path:
    """AUDIOCAPS/audio_32000Hz/<split> (aac-datasets), else another audio_<sr>Hz/<split>, else
    audio/<split> (common mirrors); the first that exists."""
    other = sorted(base.glob(f"audio_*Hz/{split}"))
    cands = [base / "audio_32000Hz" / split, *other, base / "audio" / split]
    return next((c for c in cands if c.is_dir()), cands[0])


def _audiocaps_audio(audio_dir: Path, present: set[str], yid: str, start: int) -> str:
    """The file of one clip: <ytid>_<start>, Y<ytid> (AudioSet naming) or <ytid>, as .flac or .wav."""
    for stem in (f"{yid}_{start}", f"Y{yid}", yid):
        for ext in _AUDIO_EXTS:
            if stem + ext in present:
                return str(audio_dir / (stem + ext))
    return str(audio_dir / f"{yid}_{start}.flac")


def _clotho_paths(root: Path, split: str) -> tuple[Path, Path]:
    """(caption CSV, audio folder): the aac-datasets layout CLOTHO_v2.1/clotho_csv_files/... and
    CLOTHO_v2.1/clotho_audio_files/<subset>/, or the DCASE one with the same folders directly in
    data_root, or the Zenodo files clotho_captions_<subset>.csv beside an extracted <subset>/ folder."""
    subset = _CLOTHO_DIRS[split]
    name = f"clotho_captions_{subset}.csv"
    for base in (root / "CLOTHO_v2.1", root):
        for csv_path, audio in (
            (base / "clotho_csv_files" / name, base / "clotho_audio_files" / subset),
            (base / name, base / subset),
        ):
            if csv_path.is_file() and audio.is_dir():
                return csv_path, audio
    base = root / "CLOTHO_v2.1"
    return base / "clotho_csv_files" / name, base / "clotho_audio_files" / subset


def _load_aac(
    split: str, dataset: str, root, audiocaps_version: str | None = None, max_missing: float = MAX_MISSING
) -> pd.DataFrame:
    if root is None:
        raise ValueError(f"dataset={dataset!r} needs root=<folder given to aac-datasets-download>")
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.is_dir():
        raise _aac_missing(root, dataset, split, root)
    rows = []
    if dataset == "audiocaps":
        base = root / "AUDIOCAPS"
        csv_path = _audiocaps_csv(base, split, audiocaps_version)
        audio_dir = _audiocaps_audio_dir(base, split)
        for p in (csv_path, audio_dir):
            if not p.exists():
                raise _aac_missing(p, dataset, split, root)
        df = _read_caption_csv(csv_path, ["audiocap_id", "youtube_id", "start_time", "caption"])
        start = pd.to_numeric(df["start_time"].str.strip(), errors="coerce")
        if start.isna().any():
            i = int(np.flatnonzero(start.isna().to_numpy())[0])
            raise ValueError(
                f"{csv_path}, data row {i + 1}: start_time {df['start_time'].iat[i]!r} is not a number of seconds"
            )
        for i, yid in enumerate(df["youtube_id"]):
            if not yid or _aac_row_path(audio_dir, yid, csv_path, i, "youtube_id", root).parent != audio_dir:
                raise ValueError(f"{csv_path}, data row {i + 1}: youtube_id {yid!r} is not a video id")
        df["id"] = df["youtube_id"] + "_" + start.astype(int).astype(str)
        present = {p.name for p in audio_dir.iterdir()}
        for sid, g in df.groupby("id", sort=False):  # one row per caption -> one row per clip
            yid, t = g["youtube_id"].iat[0], int(sid.rsplit("_", 1)[1])
            rows.append(
                {
                    "id": sid,
                    "youtube_id": yid,
                    "start_time": t,
                    "captions": list(g["caption"]),
                    "audio": _audiocaps_audio(audio_dir, present, yid, t),
                }
            )
    else:
        csv_path, audio_dir = _clotho_paths(root, split)
        for p in (csv_path, audio_dir):
            if not p.exists():
                raise _aac_missing(p, dataset, split, root)
        keys = [f"caption_{i}" for i in range(1, 6)]
        df = _read_caption_csv(csv_path, ["file_name", *keys])
        for i, r in enumerate(df.itertuples(index=False)):
            d = r._asdict()
            audio = _aac_row_path(audio_dir, d["file_name"], csv_path, i, "file_name", root)
            rows.append({"id": d["file_name"], "audio": str(audio), "captions": [d[k] for k in keys]})
    out = pd.DataFrame(rows)
    if out.empty:
        raise ValueError(f"{csv_path} lists no clips")
    reasons = _audio_reasons(list(out["audio"]))
    if all(r == "missing" for r in reasons):
        raise _aac_missing(audio_dir / "<audio files named in the CSV>", dataset, split, root)
    skipped = [
        {"id": i, "audio": a, "reason": r}
        for i, a, r in zip(out["id"], out["audio"], reasons, strict=True)
        if r
    ]
    out = out[[r is None for r in reasons]].reset_index(drop=True)
    _check_skipped(skipped, len(reasons), max_missing, f"{dataset} {split} ({csv_path})")
    # AudioCaps 1 train has a few clips with 2+ captions among ~49k with one; embeddings are (N, C, D),
    # so every clip keeps as many captions as the clip with fewest has (its first ones, in CSV order)
    n_caps = int(out["captions"].map(len).min())
    out["captions"] = out["captions"].map(lambda c: list(c[:n_caps]))
    out = out[["id", "audio", "captions"] + [c for c in out.columns if c not in ("id", "audio", "captions")]]
    out.attrs["skipped"] = skipped  # written beside the results by dlink.experiment.splits
    return out


def _audio_reasons(files: list[str]) -> list[str | None]:
    """`dlink.audio.unreadable` of every file, kept under data/cache/audio_checks per list of (path, size,
    mtime), so each notebook that loads the split does not decode every clip again."""
    stamps = []
    for f in files:
        try:
            st = os.stat(f)
            stamps.append(f"{f}\0{st.st_size}\0{st.st_mtime_ns}")
        except OSError:
            stamps.append(f"{f}\0-")
    key = hashlib.sha256("\n".join([code_hash("audio.py"), *stamps]).encode()).hexdigest()
    path = paths.CACHE / "audio_checks" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # absent or damaged: check again
        reasons = read_json(path)["reasons"]
        if isinstance(reasons, list) and len(reasons) == len(files):
            return reasons
    reasons = [unreadable(Path(f)) for f in files]
    with contextlib.suppress(OSError):  # a read-only cache costs the check next time, nothing else
        write_json(paths.ensure(path.parent) / path.name, {"reasons": reasons})
    return reasons


def check_max_missing(value) -> None:
    """ValueError naming `max_missing` unless it is a share of a split, 0 <= value < 1."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"max_missing={value!r} must be a number with 0 <= max_missing < 1: the share of a split's "
            f"clips whose audio may be missing or unreadable before loading stops (default {MAX_MISSING})"
        )


def _check_skipped(skipped: list[dict], n: int, max_missing: float, what: str) -> None:
    """Warn with the count of clips left out; stop once more than `max_missing` of `n` are."""
    if not skipped:
        return
    share = len(skipped) / n
    example = ", ".join(s["audio"] for s in skipped[:3])
    if share > max_missing:
        raise ValueError(
            f"{what}: {len(skipped)} of {n} clips ({share:.0%}) have missing or unreadable audio (e.g. "
            f"{example}), more than max_missing={max_missing:.0%}; finish the download, or allow more "
            "with a larger max_missing"
        )
    warnings.warn(
        f"{what}: skipping {len(skipped)} of {n} clips ({share:.1%}) whose audio is missing or unreadable "
        f"(e.g. {example})",
        stacklevel=3,
    )


def split_summary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per split of the embedded dataset: scenes, distinct sound labels, mean duration and
    the share of each composition (notebook 01's table)."""
    rows = []
    for split, df in frames.items():
        labels = {label for labels in df["labels"] for label in labels.split("|")}
        row = {
            "split": split,
            "scenes": len(df),
            "labels": len(labels),
            "mean duration (s)": round(df["duration"].mean(), 2),
        }
        row.update(df["composition"].value_counts(normalize=True).round(2).to_dict())
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


# ------------------------------------------------------------------ CLI
def groups_table() -> str:
    """Markdown: every group of more than one recording (`source_groups`), its labels, and each
    audio match (max_ncc > sessions.THRESHOLD) between recordings of different session keys."""
    clips, audio = source_clips()
    group_of, matches = source_groups(audio)
    label = {c.rid: c.label for c in clips}
    members: dict[str, list[str]] = {}
    for rid, g in group_of.items():
        members.setdefault(g, []).append(rid)
    multi = {g: sorted(m) for g, m in members.items() if len(m) > 1}
    short = lambda rid: rid.split(":", 1)[1].rsplit(".", 1)[0]  # noqa: E731
    lines = [
        f"{len(audio)} recordings in {len(members)} groups; {len(multi)} groups hold more than one "
        f"({sum(map(len, multi.values()))} recordings).",
        "",
        "| group | n | labels | recordings |",
        "| --- | ---: | --- | --- |",
    ]
    for g, m in sorted(multi.items()):
        labs = ", ".join(sorted({label[r] for r in m}))
        lines.append(f"| {g} | {len(m)} | {labs} | {', '.join(short(r) for r in m)} |")
    lines += ["", f"Audio matches (max_ncc > {sessions.THRESHOLD}) across session keys:", ""]
    lines += ["| recording | recording | max_ncc |", "| --- | --- | ---: |"]
    lines += [f"| {a} | {b} | {v:.3f} |" for a, b, v in sorted(matches)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dlink.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the embedded dataset")
    b.add_argument(
        "--size", choices=sorted(SIZES), default="default", help="how many scenes (default: default)"
    )
    b.add_argument("--seed", type=int, default=0, help="seed of the scene mixing and the split (default 0)")
    b.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    b.add_argument("--workers", type=int, default=2, help="processes decoding and mixing audio (default 2)")
    sub.add_parser("groups", help="print the recording groups (the table in data/README.md)")
    args = p.parse_args(argv)
    if args.cmd == "groups":
        print(groups_table(), end="")
        return 0
    t0 = time.perf_counter()
    folder = build_embedded_dataset(args.size, args.seed, force=args.force, workers=args.workers)
    info = read_json(folder / "build.json")
    reused = " (reused a complete build)" if time.perf_counter() - t0 < 0.5 * info["seconds"] else ""
    print(f"embedded dataset {args.size} seed {args.seed}{reused}: {folder}")
    print("  scenes:     " + ", ".join(f"{s} {info['counts'][s]}" for s in SPLITS))
    print("  recordings: " + ", ".join(f"{s} {info['recordings'][s]}" for s in SPLITS))
    print(f"  built in {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
