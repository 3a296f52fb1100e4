"""Automatic audio captioning experiment helpers: the few steps the captioning notebooks repeat.

Zero-shot: `pairs_from_split(text_emb, captions)` -> `train_captioner` on TEXT embeddings, then
`evaluate` on audio embeddings (raw, or `bridge.transform(audio)` for each bridge).
Supervised: the same with AUDIO embeddings as training inputs. Bridges come from dlink.bridge /
dlink.baselines (`fit(audio, text)` / `transform(audio)`); nothing here knows about them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from . import paths
from ._io import atomic_write_text
from .captioner import CaptionerConfig, PrefixCaptioner
from .metrics import caption_metrics


def _check_captions(captions, n: int, name: str = "captions"):
    if isinstance(captions, str) or len(captions) != n:
        raise ValueError(f"{name} must hold {n} lists of captions (one list per embedding row)")
    for i, caps in enumerate(captions):
        if isinstance(caps, str) or len(caps) == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty list of strings, got {caps!r}")


def pairs_from_split(emb, captions) -> tuple[np.ndarray, list[str]]:
    """Flatten a split into (embedding, caption) training pairs.

    emb: (N, D) one embedding per item (audio, or a per-item text embedding), repeated for each of
    its captions; or (N, C, D) one embedding per caption (text embeddings of the captions themselves).
    captions: N lists of captions. Returns X (sum of list lengths, D) float32 and the flat captions.
    """
    emb = np.asarray(emb, dtype=np.float32)
    _check_captions(captions, emb.shape[0] if emb.ndim in (2, 3) else -1)
    if emb.ndim == 2:
        rows = [i for i, caps in enumerate(captions) for _ in caps]
        return emb[rows], [c for caps in captions for c in caps]
    if emb.ndim == 3:
        xs, flat = [], []
        for i, caps in enumerate(captions):
            if len(caps) > emb.shape[1]:
                raise ValueError(f"item {i} has {len(caps)} captions but emb holds {emb.shape[1]} per item")
            xs.append(emb[i, : len(caps)])
            flat += list(caps)
        return np.concatenate(xs), flat
    raise ValueError(f"emb must be (N, D) or (N, C, D), got shape {emb.shape}")


def subsample(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of range(n) of `size` (all of them if size is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def train_captioner(
    X, captions: list[str], config: CaptionerConfig | dict | None = None, device: str = "auto", val=None
) -> PrefixCaptioner:
    """A fresh PrefixCaptioner trained on X (N, D) with captions (N strings). val: (X_val, captions_val)."""
    if isinstance(config, dict):
        config = CaptionerConfig(**config)
    return PrefixCaptioner(config, device=device).fit(X, captions, val=val)


def evaluate(
    captioner: PrefixCaptioner,
    emb,
    references,
    beams: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    sbert: bool = False,
):
    """Caption emb (M, D) and score against references (M lists). Returns (metrics dict, predictions)."""
    emb = np.asarray(emb, dtype=np.float32)
    _check_captions(references, emb.shape[0], "references")
    preds = captioner.generate(emb, beams=beams, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return caption_metrics(preds, [list(r) for r in references], sbert=sbert), preds


def write_samples(
    name: str,
    ids: list[str],
    references,
    predictions: dict[str, list[str]],
    n: int | None = 20,
    folder: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write generated captions per method beside the references: <folder>/<name>.csv and .md.

    ids: M item ids; references: M lists; predictions: {method: M captions}. The markdown shows the
    first `n` items (all if None), the CSV all of them. Defaults to dlink.paths.RESULTS. Atomic writes.
    """
    m = len(ids)
    _check_captions(references, m, "references")
    for method, preds in predictions.items():
        if len(preds) != m:
            raise ValueError(f"predictions[{method!r}] has {len(preds)} captions, expected {m} (one per id)")
    folder = Path(folder) if folder is not None else paths.RESULTS
    methods = list(predictions)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", *methods, "references"])
    for i in range(m):
        w.writerow([ids[i], *[predictions[k][i] for k in methods], " | ".join(references[i])])
    csv_path = atomic_write_text(folder / f"{name}.csv", buf.getvalue())

    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = [f"# Generated captions: {name}", ""]
    for i in range(m if n is None else min(n, m)):
        lines += [f"## {ids[i]}", "", "| method | caption |", "| --- | --- |"]
        lines += [f"| {k} | {cell(predictions[k][i])} |" for k in methods]
        lines += [f"| reference {j + 1} | {cell(r)} |" for j, r in enumerate(references[i])] + [""]
    md_path = atomic_write_text(folder / f"{name}.md", "\n".join(lines))
    return csv_path, md_path
