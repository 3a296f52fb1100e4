"""Intervals: percentile bootstrap over test items, plain and paired.

A captioning row's score is a mean of per-item scores (CIDEr-D per item, averaged over seeds first), so
its uncertainty over the test items is estimated by resampling items with replacement. Two rows scored
on the SAME items are compared with a PAIRED bootstrap (one resample of item indices for both), which
keeps the item-to-item correlation and gives much narrower intervals for differences than two
independent intervals would.

Why self-written rather than `scipy.stats.bootstrap`: the paired relative gain is a ratio of two means
under one shared resample, which scipy's `paired=True` supports only through a vectorised statistic
over stacked samples; 20 lines of numpy say the same thing more plainly and run in milliseconds.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 2000


def _items(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2:  # (seeds, items): the seed-averaged score of each item
        v = v.mean(0)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(
            f"{name} must hold >= 2 per-item scores as (items,) or (seeds, items); got {v.shape}"
        )
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or inf per-item scores")
    return v


def _check_args(level, n_boot, seed) -> None:
    """The bootstrap's settings, checked where they enter (a level of 0 or 1 is no interval)."""
    if (
        isinstance(level, bool)
        or not isinstance(level, (int, float, np.integer, np.floating))
        or not 0 < level < 1
    ):
        raise ValueError(f"level={level!r} must be a number strictly between 0 and 1 (e.g. 0.95)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r} must be an int >= 1 (default {N_BOOT})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an int >= 0")


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(boots: np.ndarray, level: float) -> tuple[float, float]:
    q = (1 - level) / 2
    return float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))


def _pair(x, y, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two rows' per-item scores, checked to be over the same items."""
    x, y = _items(x, names[0]), _items(y, names[1])
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} and {names[1]} must score the same items: {x.shape} vs {y.shape}")
    return x, y


def bootstrap_ci(
    values, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of per-item scores and its percentile-bootstrap interval over items.

    values: (items,) or (seeds, items) float; with seeds, items are averaged over seeds first.
    """
    _check_args(level, n_boot, seed)
    v = _items(values, "values")
    return float(v.mean()), *_interval(v[_indices(v.size, n_boot, seed)].mean(1), level)


def paired_relative_gain(
    with_, without, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(gain, lo, hi) of mean(with_) / mean(without) - 1 over the same items, paired bootstrap.

    with_, without: per-item scores of two rows on the same items, (items,) or (seeds, items).
    """
    _check_args(level, n_boot, seed)
    w, b = _pair(with_, without, ("with_", "without"))
    if b.mean() <= 0:
        raise ValueError("without has mean score <= 0: a relative gain is undefined")
    idx = _indices(w.size, n_boot, seed)
    num, den = w[idx].mean(1), b[idx].mean(1)
    return float(w.mean() / b.mean() - 1), *_interval(num[den > 0] / den[den > 0] - 1, level)


def paired_difference(
    a, b, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(difference, lo, hi) of mean(a) - mean(b) over the same items, paired percentile bootstrap.

    a, b: per-item scores of two rows on the same items, (items,) or (seeds, items).
    """
    _check_args(level, n_boot, seed)
    x, y = _pair(a, b, ("a", "b"))
    d = x - y
    return float(d.mean()), *_interval(d[_indices(d.size, n_boot, seed)].mean(1), level)
