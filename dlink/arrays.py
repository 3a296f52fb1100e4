"""Embedding matrices: the one check every public function runs on an (N, D) input."""

from __future__ import annotations

import numpy as np


def as_embeddings(x, name: str, dtype=np.float64) -> np.ndarray:
    """numpy / torch / nested lists -> `(N, D)` array of `dtype`, or a ValueError naming `name`:
    not numeric, not 2-D, empty, or holding NaN/inf (also values beyond `dtype`'s range)."""
    if hasattr(x, "detach"):  # a torch tensor, on any device and of any float type
        if getattr(x, "is_meta", False):
            raise ValueError(f"{name} is a meta-device tensor (no data); pass real embeddings")
        x = x.detach().cpu().float().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:  # ragged rows
        raise ValueError(f"{name} must be a numeric (N, D) array; got {type(x).__name__} ({e})") from e
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric (N, D) array; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {arr.shape}. Stack embeddings row-wise.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one embedding")
    with np.errstate(over="ignore"):
        arr = arr.astype(dtype)
    bad = ~np.isfinite(arr).all(1)
    if bad.any():
        rows = np.flatnonzero(bad)
        beyond = (
            f", or values beyond {np.dtype(dtype).name}'s range" if np.isfinite(np.asarray(x)).all() else ""
        )
        raise ValueError(
            f"{name} has NaN/inf{beyond} in {rows.size} row(s) (first: row {rows[0]}); "
            "drop or recompute those embeddings"
        )
    return arr


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; ValueError for a zero row (its cosine is undefined). Each row is
    divided by its largest entry first, so huge or tiny finite entries neither overflow nor underflow.

    The package's numpy row normaliser; torch code uses `dlink.bridges.base.unit_rows` (the same rule).
    Two stay apart on purpose: encoder outputs (`encoders.base.l2_normalize`) and captioner inputs
    (`captioning.captioner._unit`) rescale only extreme rows and keep all-zero rows, because
    rescaling every row changes the last bits of ordinary embeddings, and with them every
    downstream number."""
    peak = np.abs(x).max(axis=1, keepdims=True)
    x = x / np.where(peak > 0, peak, 1.0)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    if (n < 1e-12).any():
        raise ValueError("an embedding has zero norm, so its cosine similarity is undefined")
    return x / n
