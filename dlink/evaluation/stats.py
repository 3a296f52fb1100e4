"""Intervals: a seed x item percentile bootstrap, plain and paired.

Every score here is a matrix (n_seeds, n_items): training seed s scored on test item i. Both are
samples: another run draws other round-off and so, in effect, other seeds, and another test set other
items. One bootstrap replicate therefore resamples seeds with replacement AND items with replacement
(independently: a crossed design, Owen's "pigeonhole" bootstrap) and averages the drawn sub-matrix.
With one seed it is the plain item bootstrap.

Two rows scored on the same seeds and items are compared with the SAME draws (`draws`), so their
difference keeps the seed-to-seed and item-to-item correlation: a paired interval, much narrower
than two independent ones. Every function below with the same (n_seeds, n_items, n_boot, seed) uses
the same draws, so intervals from separate calls on one table stay paired.

Why self-written rather than `scipy.stats.bootstrap`: scipy resamples one axis; the two-level draw
and the ratio of two means under one shared draw are a few lines of numpy and run in milliseconds.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 2000


def scores(values, name: str) -> np.ndarray:
    """values as a finite (n_seeds, n_items) float array; (n_items,) is one seed."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[1] < 2:
        raise ValueError(
            f"{name} must hold >= 2 per-item scores as (items,) or (seeds, items); got {np.shape(values)}"
        )
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or inf per-item scores")
    return v


def check_args(level=0.95, n_boot=N_BOOT, seed=0) -> None:
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


def draws(n_seeds: int, n_items: int, n_boot: int = N_BOOT, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(seed_idx (n_boot, n_seeds), item_idx (n_boot, n_items)): one row per replicate, with replacement.

    Items are drawn first, so with one seed the item draws are those of a plain item bootstrap.
    """
    check_args(n_boot=n_boot, seed=seed)
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n_items, size=(int(n_boot), n_items))
    seeds = rng.integers(0, n_seeds, size=(int(n_boot), n_seeds))
    return seeds, items


def weights(idx: np.ndarray, n: int) -> np.ndarray:
    """(n_boot, n): how often each unit is drawn in each replicate, / draws per replicate.

    Row b of weights @ x is the mean of x over replicate b's draw, without materialising the draw.
    """
    w = np.zeros((idx.shape[0], n))
    np.add.at(w, (np.arange(idx.shape[0])[:, None], idx), 1.0 / idx.shape[1])
    return w


def replicate_means(values, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot,) the mean of values (n_seeds, n_items) over each replicate's drawn seeds and items."""
    v = scores(values, "values")
    s_idx, i_idx = draws(*v.shape, n_boot=n_boot, seed=seed)
    ws, wi = weights(s_idx, v.shape[0]), weights(i_idx, v.shape[1])
    return ((ws @ v) * wi).sum(1)


def interval(boots, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of replicate values."""
    check_args(level=level)
    q = (1 - level) / 2
    return float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))


def _pair(x, y, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two rows' scores, checked to be over the same seeds and items."""
    x, y = scores(x, names[0]), scores(y, names[1])
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must score the same seeds and items: {x.shape} vs {y.shape}"
        )
    return x, y


def bootstrap_ci(
    values, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of values (n_seeds, n_items) and its seed x item bootstrap interval."""
    check_args(level, n_boot, seed)
    v = scores(values, "values")
    return float(v.mean()), *interval(replicate_means(v, n_boot, seed), level)


def paired_relative_gain(
    with_, without, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(gain, lo, hi) of mean(with_) / mean(without) - 1, paired seed x item bootstrap.

    with_, without: (n_seeds, n_items) scores of two rows on the same seeds and items.
    """
    check_args(level, n_boot, seed)
    w, b = _pair(with_, without, ("with_", "without"))
    if b.mean() <= 0:
        raise ValueError("without has mean score <= 0: a relative gain is undefined")
    num, den = replicate_means(w, n_boot, seed), replicate_means(b, n_boot, seed)
    ok = den > 0
    return float(w.mean() / b.mean() - 1), *interval(num[ok] / den[ok] - 1, level)


def paired_difference(
    a, b, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """(difference, lo, hi) of mean(a) - mean(b), paired seed x item bootstrap.

    a, b: (n_seeds, n_items) scores of two rows on the same seeds and items.
    """
    check_args(level, n_boot, seed)
    x, y = _pair(a, b, ("a", "b"))
    return float((x - y).mean()), *interval(replicate_means(x - y, n_boot, seed), level)


def seed_t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) with seeds as the unit: Student-t interval of per-seed values (NaN for one seed).

    For statistics too costly to recompute on every bootstrap replicate (a classifier fit); it covers
    the spread over seeds, not the item sampling within a seed.
    """
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"values must be finite per-seed values; got {v}")
    if v.size < 2:
        return float(v.mean()), float("nan"), float("nan")
    half = t.ppf(1 - (1 - level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)
