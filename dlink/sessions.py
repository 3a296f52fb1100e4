"""Which source recordings belong together: session keys from the names, near-duplicates from the audio.

The embedded dataset is split by GROUP of recordings (`dlink.data._assign_splits`), so that no take of
one recording session and no near-copy of a recording sits on two sides of a split. A group is the
union (union-find) of

- recordings with the same `session_key` (the id with take numbers, variant letters, `5x`-style
  multipliers, action words such as open/close and size qualifiers such as soft/small removed), and
- recordings whose waveforms match: `max_ncc` above `THRESHOLD` (see data/README.md for the
  distribution the threshold was chosen from).

    python -m dlink.data groups      # the merged groups as the table in data/README.md
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from dlink import paths
from dlink.audio import resample
from dlink.cache import cached, content_key

DETECT_SR = 16000  # the waveforms are compared at 16 kHz
MAX_SECONDS = 10.0  # their first 10 s (90 % of the clips are shorter; ambiences run up to 2.5 min)
HIGHPASS_HZ = 500.0
THRESHOLD = 0.9  # max_ncc above this merges two groups: 4 pairs, then a gap (next 0.81, short impulses)
_SILENT = 0.01  # a window of the longer clip with < 1 % of the template's energy is not a match

# words that name what a take does or how big it is, not which session it is from: door1-open /
# door1-close, diesel-idle / -move / -stop, sword-fly / sword-hit, flamer-big / -small, sparks_short
_ACTIONS = {"open", "close", "in", "out", "under", "up", "down", "idle", "move", "stop", "fly", "hit", "exp"}
_QUALIFIERS = ("soft", "small", "big", "mini", "double", "short", "long", "low")


def session_key(rid: str) -> str:
    """The recording session a recording id belongs to: `source:folder/stem` with, anywhere in the
    stem, take numbers and the variant letter or `x` multiplier after them removed (carpet4, fire03,
    civfemscream01a, bullet-smg-15x, door1-close), then action words (open, close, idle, fly, ...)
    and size qualifiers (soft, small, big, short, ...; also glued on: firesoft, smallfire,
    shotgunmini) dropped, unless nothing would be left (doors/open_close stays itself)."""
    head, name = re.match(r"(.*[:/])?(.*)", rid).groups()
    head = head or ""
    stem = name.rsplit(".", 1)[0].lower()
    stem = re.sub(r"\d+[a-z]?(?![a-z])", "", stem)  # 01a, 15x, 2: a take, its variant, a multiplier
    tokens = [t for t in re.split(r"[-_ ]+", stem) if t]
    kept = [t for t in tokens if t not in _ACTIONS and t not in _QUALIFIERS]
    out = []
    for t in kept:
        for q in _QUALIFIERS:  # a qualifier glued to the word: firesoft, smallfire, taserdouble
            if t.endswith(q) and len(t) > len(q) + 2:
                t = t[: -len(q)]
            elif t.startswith(q) and len(t) > len(q) + 2:
                t = t[len(q) :]
        out.append(t)
    return head + ("-".join(out) if out else "-".join(tokens) or stem)


def _prepare(x: np.ndarray, sr: int) -> np.ndarray:
    """The first MAX_SECONDS of a waveform at DETECT_SR, high-passed at 500 Hz: below that, short
    thuds, drones and engines all look alike to a correlation (0.85-0.9 between a 0.1 s footstep,
    a thunder and a diesel engine unfiltered; < 0.1 filtered)."""
    from scipy.signal import butter, sosfilt

    x = resample(np.asarray(x, np.float32)[: int(MAX_SECONDS * sr)], sr, DETECT_SR)
    return sosfilt(butter(4, HIGHPASS_HZ, "highpass", fs=DETECT_SR, output="sos"), x.astype(np.float64))


def _max_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """max over lags of |normalised cross-correlation| of template a (the shorter) slid along b,
    each lag normalised by the energy of the part of b under a; b is padded with half a template of
    silence on both sides, so takes that overlap by half or more are found too."""
    from scipy import fft

    if len(a) > len(b):
        a, b = b, a
    m = len(a)
    b = np.concatenate([np.zeros(m // 2), b, np.zeros(m // 2)])
    n = fft.next_fast_len(len(b) + m - 1, real=True)
    xc = fft.irfft(fft.rfft(b, n) * np.conj(fft.rfft(a, n)), n)[: len(b) - m + 1]
    e = np.concatenate([[0.0], np.cumsum(b * b)])
    win = e[m:] - e[:-m]
    ea = float(a @ a)
    ok = win > _SILENT * ea
    if not ok.any() or ea <= 0:
        return 0.0
    return float(np.max(np.abs(xc[ok]) / np.sqrt(win[ok] * ea)))


def max_ncc(audio: Mapping[str, np.ndarray], sr: int, use_cache: bool = True) -> np.ndarray:
    """(n, n) matrix of `_max_ncc` between the recordings of `audio` (id -> waveform at `sr`), in
    the order of its keys; 1 on the diagonal. Content-cached under data/cache/sessions (a few minutes
    to compute for the 269 default recordings on 2 cores)."""
    rids = list(audio)
    key = content_key(
        f"max_ncc|{DETECT_SR}|{MAX_SECONDS}|{HIGHPASS_HZ}|{_SILENT}", [audio[r] for r in rids], "audio", sr
    )

    def compute() -> np.ndarray:
        xs = [_prepare(audio[r], sr) for r in rids]
        out = np.eye(len(rids))
        for i in range(len(rids)):
            for j in range(i + 1, len(rids)):
                out[i, j] = out[j, i] = _max_ncc(xs[i], xs[j])
        return out

    return cached(key, compute, enabled=use_cache, folder=paths.CACHE / "sessions")


def recording_groups(
    rids: list[str], scores: np.ndarray, threshold: float = THRESHOLD
) -> tuple[dict[str, str], list[tuple[str, str, float]]]:
    """(recording id -> group name, audio matches) where a group is the union of session keys and of
    recordings whose `scores` (the `max_ncc` matrix, rows in `rids` order) exceed `threshold`; a
    group is named by its alphabetically first session key. The matches are the pairs above the
    threshold in different session keys, as (id, id, score)."""
    parent = {k: k for k in {session_key(r) for r in rids}}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    matches = []
    keys = [session_key(r) for r in rids]
    for i, j in zip(*np.nonzero(np.triu(scores > threshold, 1)), strict=True):
        if keys[i] != keys[j]:
            matches.append((rids[i], rids[j], round(float(scores[i, j]), 3)))
        a, b = find(keys[i]), find(keys[j])
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {r: find(k) for r, k in zip(rids, keys, strict=True)}, matches
