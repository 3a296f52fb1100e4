"""dlink.evaluation.stats: the seed x item bootstrap covers at about its nominal rate, widens with seed spread,
reduces to the item bootstrap for one seed, and is exact for a constant paired shift."""

import numpy as np
import pytest

from dlink.evaluation.stats import (
    bootstrap_ci,
    draws,
    paired_difference,
    paired_relative_gain,
    replicate_means,
    seed_t_interval,
)


def test_bootstrap_interval_covers_a_known_mean_at_about_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(300):  # skewed per-item scores, like CIDEr-D; true mean 1.0
        v = rng.exponential(1.0, size=200)
        _, lo, hi = bootstrap_ci(v, n_boot=500, seed=rep)
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / 300 <= 0.98


def test_one_seed_is_the_item_bootstrap():
    v = np.random.default_rng(3).exponential(1.0, size=150)
    idx = np.random.default_rng(7).integers(0, 150, size=(400, 150))  # a plain item bootstrap
    assert np.allclose(replicate_means(v[None], n_boot=400, seed=7), v[idx].mean(1), atol=1e-12)
    assert bootstrap_ci(v, seed=7) == bootstrap_ci(v[None], seed=7)


def test_seed_offsets_widen_the_interval_and_are_covered():
    rng = np.random.default_rng(4)
    items = rng.exponential(1.0, size=300)
    offsets = np.array([-0.3, 0.0, 0.3, 0.15, -0.15])  # a large seed effect, the items' spread ~1
    x = items[None] + offsets[:, None] + rng.normal(0, 0.05, size=(5, 300))
    m, lo, hi = bootstrap_ci(x, seed=1)
    # the item-only bootstrap: a seed-averaged mean over items, no seed resampling
    ilo, ihi = np.quantile(x.mean(0)[draws(1, 300, seed=1)[1]].mean(1), [0.025, 0.975])
    assert hi - lo > 1.5 * (ihi - ilo)
    seed_means = x.mean(1)
    assert lo <= seed_means.mean() <= hi and hi - lo >= 0.5 * (seed_means.max() - seed_means.min())
    # the paired difference keeps the seed pairing: a shared seed offset cancels
    d, dlo, dhi = paired_difference(x + 0.1 + rng.normal(0, 0.05, size=x.shape), x, seed=1)
    assert 0.05 < dlo < d < dhi < 0.15


def test_paired_gain_point_and_interval():
    rng = np.random.default_rng(1)
    base = rng.exponential(1.0, size=(3, 300))
    g, lo, hi = paired_relative_gain(base * 1.2, base)
    assert g == pytest.approx(0.2) and lo == pytest.approx(0.2) and hi == pytest.approx(0.2)
    noisy = base * 1.2 + rng.normal(0, 0.3, size=base.shape)
    g, lo, hi = paired_relative_gain(noisy, base)
    assert lo < g < hi and lo > 0.05
    seeds = np.stack([base[0], base[0] * 1.1])  # the point is the grand mean over seeds and items
    assert bootstrap_ci(seeds)[0] == pytest.approx(base[0].mean() * 1.05)


def test_paired_difference_is_exact_for_a_constant_shift_and_narrower_than_unpaired():
    rng = np.random.default_rng(2)
    base = rng.exponential(1.0, size=(3, 300)) + np.array([[0.0], [0.5], [1.0]])
    assert paired_difference(base + 0.1, base) == pytest.approx((0.1, 0.1, 0.1))
    noisy = base + 0.1 + rng.normal(0, 0.2, size=base.shape)
    d, lo, hi = paired_difference(noisy, base)
    assert lo < d < hi and lo > 0  # resolved although items and seeds spread ~10x the shift
    _, blo, bhi = bootstrap_ci(noisy)
    assert hi - lo < (bhi - blo) / 3
    with pytest.raises(ValueError, match="same seeds and items"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="same seeds and items"):
        paired_difference(base, base[:2])


def test_seeded_and_deterministic():
    x = np.random.default_rng(5).exponential(1.0, size=(3, 100))
    assert bootstrap_ci(x, seed=2) == bootstrap_ci(x, seed=2)
    assert bootstrap_ci(x, seed=2) != bootstrap_ci(x, seed=3)


def test_seed_t_interval():
    m, lo, hi = seed_t_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and lo == pytest.approx(2 - 4.302653 / np.sqrt(3)) and hi > 3
    assert np.isnan(seed_t_interval([1.0])[1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match=">= 2"):
        bootstrap_ci([1.0])
    with pytest.raises(ValueError, match="same seeds and items"):
        paired_relative_gain([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="<= 0"):
        paired_relative_gain([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=95)
