"""The glue the notebooks share: one run's data, encoder, embeddings and bridged embeddings.

Each notebook resolves its parameters into `params` (dlink.profiles) and asks this module for what
an earlier notebook made; everything is cached under `run_dir(params)`, so notebook 05 reuses the
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
from dlink.encoders.registry import encoder_entry
from dlink.profiles import CAPDEC_NOISE_VARIANCE  # noqa: F401 (notebook 05 quotes it from here)

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- where


def results_dir(params) -> Path:
    """results/ for the canonical default run, results/<params.label>/ for every other run."""
    return paths.ensure(paths.RESULTS if params.label == "default" else paths.RESULTS / params.label)


def figures_dir(params) -> Path:
    """figures/ for the canonical default run, figures/<params.label>/ for every other run."""
    return paths.ensure(paths.FIGURES if params.label == "default" else paths.FIGURES / params.label)


def run_key(params) -> str:
    """Folder name of this run's cached artifacts: which data, which encoder, which profile."""
    data = params.dataset if params.dataset != "embedded" else f"embedded-{params.profile.dataset_size}"
    if params.data_root is not None:
        data += "-" + _hash8(str(Path(params.data_root).resolve()))
    if getattr(params, "audiocaps_version", None):  # AudioCaps 1 and 2.0 from one folder are two datasets
        data += "-" + params.audiocaps_version
    enc = params.encoder
    if not encoder_entry(params.encoder).pretrained:  # trained by the run, for clap_epochs epochs
        enc += f"-e{params.profile.clap_epochs}"
    checkpoint = getattr(params.encoder_options, "checkpoint", None)
    if checkpoint is not None:
        enc += "-" + _hash8(str(Path(checkpoint).resolve()))
    return f"{data}-{enc}-{params.profile.name}"


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _code_hash(*modules: str) -> str:
    """Short hash of dlink modules' source (paths below dlink/ without .py: "arrays",
    "bridges/base"): a cached artifact made by older code is not reused."""
    from dlink.cache import code_hash

    return code_hash(*(f"{m}.py" for m in modules))[:8]


def run_dir(params) -> Path:
    return paths.ensure(paths.DATA / "runs" / run_key(params))


# --------------------------------------------------------------------------- data and encoder


def splits(params) -> dict:
    """{split: DataFrame(id, audio, captions, ...)}; builds the embedded dataset if needed.

    Besides train / val / test: "enc", the training scenes the encoder is trained on (the embedded
    CLAP's heads; empty for a pretrained encoder), and "fit", the training scenes it was NOT trained
    on, on which every bridge and captioner is fitted (see `fit_split_table`).
    """
    from dlink import data

    if params.dataset == "embedded":
        data.build_embedded_dataset(params.profile.dataset_size, seed=0)
        out = {s: data.load_split(s, size=params.profile.dataset_size, seed=0) for s in SPLITS}
    else:
        version = getattr(params, "audiocaps_version", None)
        share = getattr(params, "max_missing", None)
        bound = {} if share is None else {"max_missing": share}
        out = {
            s: data.load_split(
                s, dataset=params.dataset, root=params.data_root, audiocaps_version=version, **bound
            )
            for s in SPLITS
        }
        _write_skipped(results_dir(params) / f"skipped_audio_{params.dataset}.csv", out)
    n_enc = _n_encoder_scenes(params, len(out["train"]))
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


def _n_encoder_scenes(params, n_train: int) -> int:
    if encoder_entry(params.encoder).pretrained:  # its training data is not ours to split
        return 0
    n = int(round(params.profile.encoder_share * n_train))
    if not 1 <= n < n_train:
        raise ValueError(
            f"encoder_share={params.profile.encoder_share} leaves no scenes for the encoder or the fits"
        )
    return n


def fit_split_table(params) -> str:
    """Markdown table: which scenes train what in this run."""
    f = splits(params)
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


def encoder(params, frame: dict | None = None, *, seed: int = 0):
    """The run's frozen encoder. An encoder the run trains (the embedded CLAP's heads) is trained on
    the "enc" scenes once per seed, so the seeds of every table vary the encoder too; a pretrained
    encoder is the same for all."""
    entry = encoder_entry(params.encoder)
    if entry.pretrained:  # params.device is resolved
        if params.encoder_options is not None:
            return params.encoder_options.encoder(params.device)
        return entry.load(None, device=params.device)
    frame = frame or splits(params)
    folder = (
        run_dir(params)
        / entry.cache_dir
        / f"{_code_hash(*entry.code_modules)}-enc{len(frame['enc'])}-seed{seed}"
    )
    if not (folder / "config.json").is_file():
        entry.train(frame["enc"], frame["val"], out=folder, seed=seed, max_epochs=params.profile.clap_epochs)
    return entry.load(folder, device=params.device)


def embeddings(params, *, seed: int = 0) -> dict:
    """{split: {"audio": (N, D), "text": (N, C, D)}} float32, L2-normalised, from seed `seed`'s encoder.

    Splits: train, val, test, and "enc" / "fit", the two parts of train (see `splits`).
    """
    from dlink.encoders.registry import embed_split

    frame = splits(params)
    enc = encoder(params, frame, seed=seed)
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


def bridge_config(params, name: str, *, seed: int, **overrides) -> dict:
    """Training settings from the profile for a learned bridge (closed-form ones take none)."""
    from dlink.bridges.baselines import bridge_class

    if not bridge_class(name).learned:
        return dict(overrides)
    cfg = dict(
        epochs=params.profile.bridge_epochs,
        batch_size=params.profile.bridge_batch_size,
        patience=params.profile.bridge_patience,
        seed=seed,
    )
    cfg.update(overrides)
    return cfg


def _bridge_key(params, name: str, *, seed: int, **overrides) -> tuple[str, dict]:
    from dlink.bridges.baselines import bridge_class

    cfg = bridge_config(params, name, seed=seed, **overrides)
    code = _code_hash(*bridge_class(name).cache_modules)
    return f"{name}-{_hash8(json.dumps([name, cfg, code], sort_keys=True, default=str))}", cfg


def fit_bridge(
    params, name: str, emb: dict, *, seed: int = 0, cache: bool = True, split: str = "fit", **overrides
):
    """Fit bridge `name` on the pairs of `split` (val pairs for early stopping), cached per config + code.

    split: "fit" (the training scenes the encoder did not see) by default.
    """
    from dlink.bridges.baselines import BRIDGES, make_bridge

    key, cfg = _bridge_key(params, name, seed=seed, **overrides)
    key += "-" + _hash8(_digest(emb) + split + str(len(emb[split]["audio"])))
    folder = run_dir(params) / "bridges" / key
    if cache and (folder / "config.json").is_file():
        return BRIDGES[name].load(folder, device=params.device)
    bridge = make_bridge(name, **cfg)
    bridge.fit(*bridge_pairs(emb[split]), val=bridge_pairs(emb["val"]), device=params.device)
    if cache:
        bridge.save(folder)
    return bridge


def tuning_grid(params, name: str) -> list[dict]:
    """The inference-time settings of bridge `name` tried on validation, as its class declares them
    (`inference_grid` of the run's profile; training settings are the profile's, shared by every
    learned bridge). [{}] for bridges with nothing to choose."""
    from dlink.bridges.baselines import bridge_class

    return bridge_class(name).inference_grid(params.profile)


def tune(params, name: str, bridge, emb: dict, *, seed: int) -> tuple[dict, list[dict]]:
    """Choose bridge `name`'s inference settings on the validation split, one rule for every bridge:
    the highest audio->text R@1 (meaning kept), ties (within 0.005) to the smaller centroid distance.
    Returns (chosen settings, [{settings..., a2t_R1, centroid_distance}] for every setting tried)."""
    from dlink.evaluation.gap import gap_report

    val = emb["val"]
    scores = []
    for setting in tuning_grid(params, name):
        out = (
            bridge.configured(**setting).transform(val["audio"])
            if setting
            else bridge.transform(val["audio"])
        )
        g = gap_report(out, val["text"][:, 0], seed=seed)
        scores.append({**setting, "a2t_R1": g["a2t_R1"], "centroid_distance": g["centroid_distance"]})
    top = max(s["a2t_R1"] for s in scores)
    best = min((s for s in scores if s["a2t_R1"] >= top - 0.005), key=lambda s: s["centroid_distance"])
    return {k: best[k] for k in tuning_grid(params, name)[scores.index(best)]}, scores


def tune_for_captioning(params, name: str, bridge, emb: dict, captioner) -> tuple[dict, list[dict]]:
    """Choose bridge `name`'s inference settings for the task a captioning table scores: the highest
    validation CIDEr-D of `captioner` (the zero-shot captioner, trained on text) fed the bridged
    validation audio; the first best in grid order. Same grid as `tune`.
    Returns (chosen settings, [{settings..., "val_CIDEr-D"}] for every setting tried)."""
    from dlink.evaluation.metrics import cider_d_items

    grid = tuning_grid(params, name)
    vidx, vrefs = eval_subset(params, splits(params)["val"])
    audio = emb["val"]["audio"]
    preds = {}
    for i, setting in enumerate(grid):
        # the whole validation split goes through the bridge (as `tune` does), so a noised start
        # draws the same noise whatever subset is scored
        out = bridge.configured(**setting).transform(audio) if setting else bridge.transform(audio)
        preds[str(i)] = captioner.generate(out[vidx], beams=params.profile.beams)
    scores = cider_d_items(preds, vrefs)
    table = [{**s, "val_CIDEr-D": float(scores[str(i)].mean())} for i, s in enumerate(grid)]
    best = max(range(len(grid)), key=lambda i: table[i]["val_CIDEr-D"])
    return dict(grid[best]), table


def bridged(params, emb: dict, *, seed: int = 0, methods=None, on=("test",), captioner=None) -> dict:
    """{method: {split: (N, D) bridged audio, "settings": chosen inference settings, "scores": the
    validation score of every setting tried}} for every bridge
    in the registry, for the splits `on`: fitted on the fit scenes, inference settings chosen on val,
    cached as .npz. Without `captioner` the settings serve the gap table (`tune`: audio->text R@1);
    with the zero-shot `captioner` of `fit_captioner` they serve the captioning tables
    (`tune_for_captioning`: that captioner's validation CIDEr-D)."""
    from dlink.bridges.baselines import BRIDGES

    if captioner is not None and getattr(captioner, "cache_key", None) is None:
        raise ValueError(
            "captioner must come from experiment.fit_captioner (its cache key names the selection)"
        )
    tag = "tuned" if captioner is None else f"cider-{captioner.cache_key}"
    out = {}
    for m in list(methods or BRIDGES):
        f = (
            run_dir(params)
            / "bridged"
            / f"{_bridge_key(params, m, seed=seed)[0]}-{_hash8(_digest(emb))}-{tag}.npz"
        )
        have = dict(np.load(f)) if f.is_file() else {}
        if not all(s in have for s in on) or "scores" not in have:
            b = fit_bridge(params, m, emb, seed=seed)
            if captioner is None:
                settings, scores = tune(params, m, b, emb, seed=seed)
            else:
                settings, scores = tune_for_captioning(params, m, b, emb, captioner)
            b = b.configured(**settings) if settings else b
            have = {s: have[s] if s in have else b.transform(emb[s]["audio"]).astype(np.float32) for s in on}
            have["settings"] = np.array(json.dumps(settings, sort_keys=True))
            have["scores"] = np.array(json.dumps(scores, sort_keys=True))
            _save_npz(f, have)
        out[m] = {s: have[s] for s in on} | {
            "settings": json.loads(str(have["settings"])),
            "scores": json.loads(str(have["scores"])),  # every setting tried, with its validation score
        }
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
    params,
    name: str,
    embeddings,
    captions: list[str],
    *,
    seed: int = 0,
    cache: bool = True,
    val=None,
    **overrides,
):
    """Train (or load the cached) PrefixCaptioner `name` on embeddings (N, D) with N captions.

    Decoder, epochs and beams come from the profile; `val` = (val_embeddings, val_captions) logs a validation
    loss per epoch (the curves notebook 05 draws). Cached per inputs, config and code. A pretrained
    LM's fit (minutes to hours) writes its training state after every epoch to <folder>.partial and a
    rerun resumes after the last finished epoch; the scratch decoder's (seconds) reruns whole.
    """
    import shutil

    from dlink.captioning.aac import train_captioner
    from dlink.captioning.captioner import PrefixCaptioner

    cfg = dict(
        lm=params.profile.lm, epochs=params.profile.captioner_epochs, beams=params.profile.beams, seed=seed
    )
    cfg.update(dict(params.profile.captioner), **overrides)
    digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    code = _code_hash("captioning/captioner", "captioning/lm")
    digest.update(json.dumps([cfg, captions, code, val is not None], sort_keys=True).encode())
    folder = run_dir(params) / "captioners" / f"{name}-{digest.hexdigest()[:10]}"
    partial = folder.with_name(folder.name + ".partial") if cache and cfg["lm"] != "scratch" else None
    if cache and (folder / "config.json").is_file():
        cap = PrefixCaptioner.load(folder, device=params.device)
    else:
        cap = train_captioner(embeddings, captions, cfg, device=params.device, val=val, checkpoint=partial)
        if cache:
            cap.save(folder)
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
    # names this captioner in the caches of what was chosen with it (`bridged(captioner=)`)
    cap.cache_key = folder.name if cache else None
    return cap


def caption_rows(
    params, cap, inputs: dict, references, *, seed: int, decoder: str = "generative"
) -> tuple[list, dict]:
    """Caption every input set {row name: (M, D)}; return (records with per-item CIDEr-D, {row: predictions})."""
    from dlink.captioning.aac import evaluate

    rows, preds = [], {}
    for name, emb in inputs.items():
        metrics, preds[name] = evaluate(cap, emb, references, beams=params.profile.beams)
        metrics.pop("notes", None)
        metrics.pop("n_items", None)
        rows.append({"decoder": decoder, "method": name, "seed": seed, **metrics})
    return rows, preds


def eval_subset(params, frame_eval) -> tuple[np.ndarray, list[list[str]]]:
    """Indices of the items scored (the profile's eval_items, seeded; all by default) and their
    references: captions 2-5 of each item, for EVERY row, because the text oracle is fed caption 1."""
    from dlink.captioning.aac import subsample

    idx = subsample(len(frame_eval), params.profile.eval_items, seed=0)
    refs = [list(frame_eval["captions"].iloc[i])[1:] for i in idx]
    if any(len(r) == 0 for r in refs):
        raise ValueError(
            "every scored item needs >= 2 captions (caption 1 feeds the oracle, 2.. are references)"
        )
    return idx, refs


def cross_fitted(params, name: str, emb: dict, *, seed: int, folds: int, settings: dict) -> dict:
    """K-fold cross-fitting of bridge `name` over the fit scenes, for the supervised captioner.

    Returns {"fit": (N_fit, D) out-of-fold bridged audio: scene fold f is bridged by the bridge fitted
    on the other folds, so no captioner input comes from a bridge that saw its pair; "test":
    (folds, N_test, D) the test audio bridged by EACH fold's bridge, so the test inputs come from the
    same bridges as the training inputs (score each and average)}. `settings`: the inference settings.
    """
    n = len(emb["fit"]["audio"])
    if not 2 <= folds <= n:
        raise ValueError(f"cross_fit_folds={folds} must be in 2..{n} (the fit scenes)")
    digest = _hash8(hashlib.sha256(np.ascontiguousarray(emb["fit"]["audio"]).tobytes()).hexdigest())
    tag = _hash8(json.dumps(settings, sort_keys=True))
    path = (
        run_dir(params)
        / "bridged"
        / f"{_bridge_key(params, name, seed=seed)[0]}-oof{folds}-{digest}-{_hash8(_digest(emb))}-{tag}.npz"
    )
    if path.is_file():
        with np.load(path) as z:
            return {"fit": z["fit"], "test": z["test"]}
    fold = np.random.default_rng(seed).permutation(n) % folds
    out = np.zeros_like(emb["fit"]["audio"])
    test = np.zeros((folds, *emb["test"]["audio"].shape), dtype=np.float32)
    for f in range(folds):
        part = {"fit": {k: v[fold != f] for k, v in emb["fit"].items()}, "val": emb["val"]}
        bridge = fit_bridge(params, name, part, seed=seed, split="fit", cache=False)
        bridge = bridge.configured(**settings) if settings else bridge
        out[fold == f] = bridge.transform(emb["fit"]["audio"][fold == f])
        test[f] = bridge.transform(emb["test"]["audio"])
    _save_npz(path, {"fit": out, "test": test})
    return {"fit": out, "test": test}
