"""The glue the notebooks share: one run's data, encoder, embeddings and bridged embeddings.

Each notebook resolves its parameters into `P` (dlink.profiles) and asks this module for what
an earlier notebook made; everything is cached under `run_dir(P)`, so notebook 05 reuses the
bridges notebook 04 fitted instead of fitting them again, and a notebook run alone still works
(it builds what is missing).

Outputs: the default profile writes to results/ and figures/; other profiles write to
results/<profile>/ and figures/<profile>/, so a smoke run (the tests) never overwrites the
numbers the README reports.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from dlink import paths
from dlink._io import atomic_write_bytes
from dlink.profiles import CAPDEC_NOISE_VARIANCE  # noqa: F401 (notebook 05 quotes it from here)

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- where


def results_dir(P) -> Path:
    return paths.ensure(paths.RESULTS if P.profile.name == "default" else paths.RESULTS / P.profile.name)


def figures_dir(P) -> Path:
    return paths.ensure(paths.FIGURES if P.profile.name == "default" else paths.FIGURES / P.profile.name)


def run_key(P) -> str:
    """Folder name of this run's cached artifacts: which data, which encoder, which profile."""
    data = P.dataset if P.dataset != "embedded" else f"embedded-{P.profile.dataset_size}"
    if P.data_root is not None:
        data += "-" + _short(str(Path(P.data_root).resolve()))
    if getattr(P, "audiocaps_version", None):  # AudioCaps 1 and 2.0 from one folder are two datasets
        data += "-" + P.audiocaps_version
    enc = P.encoder if P.encoder != "embedded" else f"embedded-e{P.profile.clap_epochs}"
    if P.clap_ckpt is not None:
        enc += "-" + _short(str(Path(P.clap_ckpt).resolve()))
    return f"{data}-{enc}-{P.profile.name}"


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _code_hash(*modules: str) -> str:
    """Short hash of dlink modules' source: a cached artifact made by older code is not reused."""
    from dlink.cache import code_hash

    return code_hash(*(f"{m}.py" for m in modules))[:8]


def run_dir(P) -> Path:
    return paths.ensure(paths.DATA / "runs" / run_key(P))


# --------------------------------------------------------------------------- data and encoder


def splits(P) -> dict:
    """{split: DataFrame(id, audio, captions, ...)}; builds the embedded dataset if needed.

    Besides train / val / test: "enc", the training scenes the encoder is trained on (the embedded
    CLAP's heads; empty for a pretrained encoder), and "fit", the training scenes it was NOT trained
    on, on which every bridge and captioner is fitted (see `fit_split_table`).
    """
    from dlink import data

    if P.dataset == "embedded":
        data.build_embedded_dataset(P.profile.dataset_size, seed=0)
        out = {s: data.load_split(s, size=P.profile.dataset_size, seed=0) for s in SPLITS}
    else:
        version = getattr(P, "audiocaps_version", None)
        out = {
            s: data.load_split(s, dataset=P.dataset, root=P.data_root, audiocaps_version=version)
            for s in SPLITS
        }
        _write_skipped(results_dir(P) / f"skipped_audio_{P.dataset}.csv", out)
    n_enc = _n_encoder_scenes(P, len(out["train"]))
    out["enc"] = out["train"].iloc[:n_enc].reset_index(drop=True)
    out["fit"] = out["train"].iloc[n_enc:].reset_index(drop=True)
    return out


def _write_skipped(path: Path, split_frames: dict) -> Path:
    """<results>/skipped_audio_<dataset>.csv: every clip left out for missing or unreadable audio, so a
    score is never read without knowing which clips it lacks (header only when none was skipped)."""
    import csv
    import io

    from dlink._io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["split", "id", "audio", "reason"])
    for split, df in split_frames.items():
        for s in df.attrs.get("skipped", []):
            w.writerow([split, s["id"], s["audio"], s["reason"]])
    return atomic_write_text(path, buf.getvalue())


def _n_encoder_scenes(P, n_train: int) -> int:
    if P.encoder != "embedded":  # a pretrained encoder: its training data is not ours to split
        return 0
    n = int(round(P.profile.encoder_share * n_train))
    if not 1 <= n < n_train:
        raise ValueError(
            f"encoder_share={P.profile.encoder_share} leaves no scenes for the encoder or the fits"
        )
    return n


def fit_split_table(P) -> str:
    """Markdown table: which scenes train what in this run."""
    f = splits(P)
    enc = f"{len(f['enc'])} train scenes (first part)" if len(f["enc"]) else "pretrained elsewhere"
    rows = [
        ("encoder heads (embedded CLAP)", enc, "val (early stopping)"),
        (
            "bridges",
            f"{len(f['fit'])} fit scenes (the rest of train) x their captions",
            "val (early stopping)",
        ),
        ("captioners", f"{len(f['fit'])} fit scenes x their captions", "val (loss curve, noise sweep)"),
        ("scores", f"all {len(f['test'])} test scenes", ""),
    ]
    lines = ["| what | trained on | held-out use |", "| --- | --- | --- |"]
    return "\n".join(lines + [f"| {a} | {b} | {c} |" for a, b, c in rows])


def encoder(P, frame: dict | None = None, seed: int = 0):
    """The run's frozen encoder. The embedded CLAP's heads are trained on the "enc" scenes, once per
    seed, so the seeds of every table vary the encoder too; a pretrained encoder is the same for all."""
    from dlink import encoders

    if P.encoder == "laion-clap" and P.clap_ckpt is not None:  # built on first use (a cached run
        from dlink.laion import LazyLaionClap  # needs only the fingerprint)

        return LazyLaionClap(P.clap_ckpt, device=P.device, **P.laion_options)  # P.device is resolved
    if P.encoder == "laion-clap":
        return encoders.load_encoder("laion-clap", checkpoint=P.clap_ckpt, device=P.device, **P.laion_options)
    frame = frame or splits(P)
    folder = run_dir(P) / "embedded-clap" / f"{_code_hash('embedded_clap')}-enc{len(frame['enc'])}-seed{seed}"
    if not (folder / "config.json").is_file():
        from dlink.embedded_clap import train_embedded_clap

        train_embedded_clap(
            frame["enc"], frame["val"], out=folder, seed=seed, max_epochs=P.profile.clap_epochs
        )
    return encoders.load_encoder("embedded", checkpoint=folder, device=P.device)


def embeddings(P, seed: int = 0) -> dict:
    """{split: {"audio": (N, D), "text": (N, C, D)}} float32, L2-normalised, from seed `seed`'s encoder.

    Splits: train, val, test, and "enc" / "fit", the two parts of train (see `splits`).
    """
    from dlink.encoders import embed_split

    frame = splits(P)
    enc = encoder(P, frame, seed=seed)
    # the embedded CLAP reuses the frozen-tower features cached while training its heads
    embed = getattr(enc, "embed_split_fast", None) or (lambda df: embed_split(enc, df))
    out = {s: embed(frame[s]) for s in SPLITS}
    n_enc = len(frame["enc"])
    out["enc"] = {k: v[:n_enc] for k, v in out["train"].items()}
    out["fit"] = {k: v[n_enc:] for k, v in out["train"].items()}
    return out


def bridge_pairs(emb: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every (audio, caption) pair of a split: audio row i repeated once per caption.

    emb: {"audio": (N, D), "text": (N, C, D)} -> (N*C, D), (N*C, D).
    """
    a, t = emb["audio"], emb["text"]
    c = t.shape[1]
    return np.repeat(a, c, axis=0), t.reshape(-1, t.shape[-1])


# --------------------------------------------------------------------------- bridges


def bridge_config(P, name: str, seed: int, **overrides) -> dict:
    """Training settings from the profile for a learned bridge (fixed ones take none)."""
    if name in ("identity", "mean_shift", "projection", "ridge"):
        return dict(overrides)
    cfg = dict(
        epochs=P.profile.bridge_epochs,
        batch_size=P.profile.bridge_batch_size,
        patience=P.profile.bridge_patience,
        seed=seed,
    )
    cfg.update(overrides)
    return cfg


def _bridge_key(P, name: str, seed: int, **overrides) -> tuple[str, dict]:
    cfg = bridge_config(P, name, seed, **overrides)
    code = _code_hash("denoiser", "diffusion", "bridge", "diffusion_link", "baselines")
    return f"{name}-{_short(json.dumps([name, cfg, code], sort_keys=True, default=str))}", cfg


def fit_bridge(P, name: str, emb: dict, seed: int = 0, cache: bool = True, split: str = "fit", **overrides):
    """Fit bridge `name` on the pairs of `split` (val pairs for early stopping), cached per config + code.

    split: "fit" (the training scenes the encoder did not see) by default.
    """
    from dlink.baselines import BRIDGES, make_bridge

    key, cfg = _bridge_key(P, name, seed, **overrides)
    key += "-" + _short(_digest(emb) + split + str(len(emb[split]["audio"])))
    folder = run_dir(P) / "bridges" / key
    if cache and (folder / "config.json").is_file():
        return BRIDGES[name].load(folder, device=P.device)
    bridge = make_bridge(name, **cfg)
    bridge.fit(*bridge_pairs(emb[split]), val=bridge_pairs(emb["val"]), device=P.device)
    if cache:
        bridge.save(folder)
    return bridge


def tuning_grid(P, name: str) -> list[dict]:
    """The inference-time settings of bridge `name` tried on validation (training settings are the
    profile's, shared by every learned bridge). [{}] for bridges with nothing to choose (ridge
    chooses its lambda on validation inside `fit`). Diffusion-Link and Diffusion Bridge get the
    same grid: start step k* x DDIM steps S x start noise."""
    sdedit = [
        {"start_step": k, "steps": s, "start_noise": n}
        for k in P.profile.start_steps
        for s in P.profile.ddim_steps
        for n in (True, False)
    ]
    grids = {
        "diffusion_link": sdedit,
        "diffusion_bridge": sdedit,
        "conditional_prior": [{"steps": s, "eta": e} for s in (1, 5, 20, 50) for e in (0.0, 1.0)],
        "projection": [{"k": k, "temperature": t} for k in (8, 32, 128) for t in (0.01, 0.05, 0.2)],
    }
    return grids.get(name, [{}])


def tune(P, name: str, bridge, emb: dict, seed: int) -> tuple[dict, list[dict]]:
    """Choose bridge `name`'s inference settings on the validation split, one rule for every bridge:
    the highest audio->text R@1 (meaning kept), ties (within 0.005) to the smaller centroid distance.
    Returns (chosen settings, [{settings..., a2t_R1, centroid_distance}] for every setting tried)."""
    from dlink.gap import gap_report

    val = emb["val"]
    scores = []
    for setting in tuning_grid(P, name):
        out = (
            bridge.configured(**setting).transform(val["audio"])
            if setting
            else bridge.transform(val["audio"])
        )
        g = gap_report(out, val["text"][:, 0], seed=seed)
        scores.append({**setting, "a2t_R1": g["a2t_R1"], "centroid_distance": g["centroid_distance"]})
    top = max(s["a2t_R1"] for s in scores)
    best = min((s for s in scores if s["a2t_R1"] >= top - 0.005), key=lambda s: s["centroid_distance"])
    return {k: best[k] for k in tuning_grid(P, name)[scores.index(best)]}, scores


def bridged(P, emb: dict, seed: int = 0, methods=None, on=("test",)) -> dict:
    """{method: {split: (N, D) bridged audio, "settings": chosen inference settings}} for every bridge
    in the registry, for the splits `on`: fitted on the fit scenes, inference settings tuned on val
    (`tune`), cached as .npz."""
    from dlink.baselines import BRIDGES

    out = {}
    for m in list(methods or BRIDGES):
        f = run_dir(P) / "bridged" / f"{_bridge_key(P, m, seed)[0]}-{_short(_digest(emb))}-tuned.npz"
        have = dict(np.load(f)) if f.is_file() else {}
        if not all(s in have for s in on) or "settings" not in have:
            b = fit_bridge(P, m, emb, seed=seed)
            settings, _ = tune(P, m, b, emb, seed)
            b = b.configured(**settings) if settings else b
            have = {s: have[s] if s in have else b.transform(emb[s]["audio"]).astype(np.float32) for s in on}
            have["settings"] = np.array(json.dumps(settings, sort_keys=True))
            _save_npz(f, have)
        out[m] = {s: have[s] for s in on} | {"settings": json.loads(str(have["settings"]))}
    return out


def _digest(emb: dict) -> str:
    """Content hash of a run's embeddings (fit and val audio): caches made from other embeddings
    (another encoder seed) are not reused."""
    h = hashlib.sha256()
    for s in ("fit", "val"):
        h.update(np.ascontiguousarray(emb[s]["audio"], dtype=np.float32).tobytes())
    return h.hexdigest()


def _save_npz(path: Path, arrays: dict) -> Path:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- captioning


def fit_captioner(
    P, name: str, X, captions: list[str], seed: int = 0, cache: bool = True, val=None, **overrides
):
    """Train (or load the cached) PrefixCaptioner `name` on X (N, D) with N captions.

    Decoder, epochs and beams come from the profile; `val` = (X_val, captions_val) logs a validation
    loss per epoch (the curves notebook 05 draws). Cached per inputs, config and code.
    """
    from dlink.aac import train_captioner
    from dlink.captioner import PrefixCaptioner

    cfg = dict(lm=P.profile.lm, epochs=P.profile.captioner_epochs, beams=P.profile.beams, seed=seed)
    cfg.update(overrides)
    digest = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    code = _code_hash("captioner", "lm")
    digest.update(json.dumps([cfg, captions, code, val is not None], sort_keys=True).encode())
    folder = run_dir(P) / "captioners" / f"{name}-{digest.hexdigest()[:10]}"
    if cache and (folder / "config.json").is_file():
        return PrefixCaptioner.load(folder, device=P.device)
    cap = train_captioner(X, captions, cfg, device=P.device, val=val)
    if cache:
        cap.save(folder)
    return cap


def caption_rows(
    P, cap, inputs: dict, references, seed: int, decoder: str = "generative"
) -> tuple[list, dict]:
    """Caption every input set {row name: (M, D)}; return (records with per-item CIDEr-D, {row: predictions})."""
    from dlink.aac import evaluate

    rows, preds = [], {}
    for name, emb in inputs.items():
        metrics, preds[name] = evaluate(cap, emb, references, beams=P.profile.beams)
        metrics.pop("notes", None)
        metrics.pop("n_items", None)
        rows.append({"decoder": decoder, "method": name, "seed": seed, **metrics})
    return rows, preds


def eval_subset(P, frame_eval) -> tuple[np.ndarray, list[list[str]]]:
    """Indices of the items scored (the profile's eval_items, seeded; all by default) and their
    references: captions 2-5 of each item, for EVERY row, because the text oracle is fed caption 1."""
    from dlink.aac import subsample

    idx = subsample(len(frame_eval), P.profile.eval_items, seed=0)
    refs = [list(frame_eval["captions"].iloc[i])[1:] for i in idx]
    if any(len(r) == 0 for r in refs):
        raise ValueError(
            "every scored item needs >= 2 captions (caption 1 feeds the oracle, 2.. are references)"
        )
    return idx, refs


def cross_fitted(P, name: str, emb: dict, seed: int, folds: int) -> np.ndarray:
    """Out-of-fold bridged audio of the fit scenes: (N_fit, D). Scene fold f is bridged by a bridge fitted
    on the other folds, so no captioner input comes from a bridge that saw its pair. Inference settings:
    those `bridged` chose on validation for this seed's bridge fitted on all fit scenes."""
    n = len(emb["fit"]["audio"])
    if not 2 <= folds <= n:
        raise ValueError(f"cross_fit_folds={folds} must be in 2..{n} (the fit scenes)")
    digest = _short(hashlib.sha256(np.ascontiguousarray(emb["fit"]["audio"]).tobytes()).hexdigest())
    path = (
        run_dir(P)
        / "bridged"
        / f"{_bridge_key(P, name, seed)[0]}-oof{folds}-{digest}-{_short(_digest(emb))}.npz"
    )
    if path.is_file():
        return np.load(path)["fit"]
    settings = bridged(P, emb, seed=seed, methods=[name], on=())[name]["settings"]
    fold = np.random.default_rng(seed).permutation(n) % folds
    out = np.zeros_like(emb["fit"]["audio"])
    for f in range(folds):
        part = {"fit": {k: v[fold != f] for k, v in emb["fit"].items()}, "val": emb["val"]}
        bridge = fit_bridge(P, name, part, seed=seed, split="fit", cache=False)
        bridge = bridge.configured(**settings) if settings else bridge
        out[fold == f] = bridge.transform(emb["fit"]["audio"][fold == f])
    _save_npz(path, {"fit": out})
    return out
