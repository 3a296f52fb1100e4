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
    enc = P.encoder if P.encoder != "embedded" else f"embedded-e{P.profile.clap_epochs}"
    if P.clap_ckpt is not None:
        enc += "-" + _short(str(Path(P.clap_ckpt).resolve()))
    return f"{data}-{enc}-{P.profile.name}"


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _code_hash(*modules: str) -> str:
    """Hash of dlink modules' source: a cached artifact made by older code is not reused."""
    here = Path(__file__).resolve().parent
    return _short("".join((here / f"{m}.py").read_text() for m in modules))


def run_dir(P) -> Path:
    return paths.ensure(paths.DATA / "runs" / run_key(P))


# --------------------------------------------------------------------------- data and encoder


def splits(P) -> dict:
    """{split: DataFrame(id, audio, captions, ...)}; builds the embedded dataset if needed."""
    from dlink import data

    if P.dataset == "embedded":
        data.build_embedded_dataset(P.profile.dataset_size, seed=0)
        return {s: data.load_split(s, size=P.profile.dataset_size, seed=0) for s in SPLITS}
    return {s: data.load_split(s, dataset=P.dataset, root=P.data_root) for s in SPLITS}


def encoder(P, frame: dict | None = None):
    """The run's frozen encoder. The embedded CLAP's heads are trained once on the train split."""
    from dlink import encoders

    if P.encoder == "laion-clap":
        return encoders.load_encoder("laion-clap", checkpoint=P.clap_ckpt, device=P.device)
    folder = run_dir(P) / "embedded-clap" / _code_hash("embedded_clap")
    if not (folder / "config.json").is_file():
        from dlink.embedded_clap import train_embedded_clap

        frame = frame or splits(P)
        train_embedded_clap(
            frame["train"], frame["val"], out=folder, seed=0, max_epochs=P.profile.clap_epochs
        )
    return encoders.load_encoder("embedded", checkpoint=folder, device=P.device)


def embeddings(P) -> dict:
    """{split: {"audio": (N, D), "text": (N, C, D)}} float32, L2-normalised; cached on disk."""
    from dlink.encoders import embed_split

    frame = splits(P)
    enc = encoder(P, frame)
    # the embedded CLAP reuses the frozen-tower features cached while training its heads
    embed = getattr(enc, "embed_split_fast", None) or (lambda df: embed_split(enc, df))
    return {s: embed(frame[s]) for s in SPLITS}


def pairs(emb: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every (audio, caption) pair of a split: audio row i repeated once per caption.

    emb: {"audio": (N, D), "text": (N, C, D)} -> (N*C, D), (N*C, D).
    """
    a, t = emb["audio"], emb["text"]
    c = t.shape[1]
    return np.repeat(a, c, axis=0), t.reshape(-1, t.shape[-1])


# --------------------------------------------------------------------------- bridges


def bridge_config(P, name: str, seed: int, **overrides) -> dict:
    """Training settings from the profile for a learned bridge (fixed ones take none)."""
    if name in ("identity", "mean_shift", "projection"):
        return dict(overrides)
    cfg = dict(epochs=P.profile.bridge_epochs, batch_size=P.profile.bridge_batch_size, seed=seed)
    cfg.update(overrides)
    return cfg


def _bridge_key(P, name: str, seed: int, **overrides) -> tuple[str, dict]:
    cfg = bridge_config(P, name, seed, **overrides)
    code = _code_hash("diffusion", "bridge", "baselines")
    return f"{name}-{_short(json.dumps([name, cfg, code], sort_keys=True, default=str))}", cfg


def fit_bridge(P, name: str, emb: dict, seed: int = 0, cache: bool = True, **overrides):
    """Fit bridge `name` on the train pairs (val pairs for early stopping), cached per config + code."""
    from dlink.baselines import BRIDGES, make_bridge

    key, cfg = _bridge_key(P, name, seed, **overrides)
    folder = run_dir(P) / "bridges" / key
    if cache and (folder / "config.json").is_file():
        return BRIDGES[name].load(folder, device=P.device)
    bridge = make_bridge(name, **cfg)
    bridge.fit(*pairs(emb["train"]), val=pairs(emb["val"]), device=P.device)
    if cache:
        bridge.save(folder)
    return bridge


def bridged(P, emb: dict, seed: int = 0, methods=None, splits_=("test",)) -> dict:
    """{method: {split: (N, D) bridged audio}} for every bridge in the registry, cached as .npz."""
    from dlink.baselines import BRIDGES

    out = {}
    for m in list(methods or BRIDGES):
        f = run_dir(P) / "bridged" / f"{_bridge_key(P, m, seed)[0]}.npz"
        have = dict(np.load(f)) if f.is_file() else {}
        if not all(s in have for s in splits_):
            b = fit_bridge(P, m, emb, seed=seed)
            for s in splits_:
                if s not in have:
                    have[s] = b.transform(emb[s]["audio"]).astype(np.float32)
            _save_npz(f, have)
        out[m] = {s: have[s] for s in splits_}
    return out


def _save_npz(path: Path, arrays: dict) -> Path:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- captioning

# CapDec-style noise injection: Gaussian noise of this per-dimension std is added to the unit
# text embedding during text-only training (RECONSTRUCTION: CapDec tunes it per encoder; at
# D = 512 this gives a noise vector of norm ~0.45 against the unit signal).
CAPDEC_NOISE_STD = 0.02


def captioner(P, name: str, X, captions: list[str], seed: int = 0, cache: bool = True, **overrides):
    """Train (or load the cached) PrefixCaptioner `name` on X (N, D) with N captions."""
    from dlink.aac import train_captioner
    from dlink.captioner import PrefixCaptioner

    cfg = dict(lm=P.profile.lm, epochs=P.profile.captioner_epochs, beams=P.profile.beams, seed=seed)
    cfg.update(overrides)
    digest = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    code = _code_hash("captioner", "lm")
    digest.update(json.dumps([cfg, captions, code], sort_keys=True).encode())
    folder = run_dir(P) / "captioners" / f"{name}-{digest.hexdigest()[:10]}"
    if cache and (folder / "config.json").is_file():
        return PrefixCaptioner.load(folder, device=P.device)
    cap = train_captioner(X, captions, cfg, device=P.device)
    if cache:
        cap.save(folder)
    return cap


def caption_rows(P, cap, inputs: dict, references, seed: int, **extra) -> tuple[list[dict], dict]:
    """Caption every input set {row name: (M, D)}; return (metric rows, {row name: predictions})."""
    from dlink.aac import evaluate

    rows, preds = [], {}
    for name, emb in inputs.items():
        metrics, preds[name] = evaluate(cap, emb, references, beams=P.profile.beams)
        metrics.pop("notes", None)
        metrics.pop("n_items", None)
        rows.append({"method": name, "seed": seed, **extra, **metrics})
    return rows, preds


def eval_subset(P, frame_test) -> tuple[np.ndarray, list[list[str]]]:
    """Indices of the test items scored (the profile's eval_items, seeded) and their references."""
    from dlink.aac import subsample

    idx = subsample(len(frame_test), P.profile.eval_items, seed=0)
    return idx, [list(frame_test["captions"].iloc[i]) for i in idx]


def write_gain(path, cider, paper: float) -> Path:
    """Record CIDEr-D with and without Diffusion-Link and the relative gain beside the paper's."""
    from dlink._io import write_json
    from dlink.metrics import relative_gain

    base, link = float(cider["identity"]), float(cider["diffusion_link"])
    gain = relative_gain(link, base) if base > 0 else None
    return write_json(
        path,
        {"cider_d_without": base, "cider_d_with": link, "relative_gain": gain, "paper_relative_gain": paper},
    )
