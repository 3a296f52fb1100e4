"""dlink.stats: bootstrap intervals cover at about their nominal rate; the paired gain is exact on its point."""

import numpy as np
import pytest

from dlink.stats import bootstrap_ci, paired_difference, paired_relative_gain


def test_bootstrap_interval_covers_a_known_mean_at_about_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(300):  # skewed per-item scores, like CIDEr-D; true mean 1.0
        v = rng.exponential(1.0, size=200)
        _, lo, hi = bootstrap_ci(v, n_boot=500, seed=rep)
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / 300 <= 0.98


def test_paired_gain_point_and_interval():
    rng = np.random.default_rng(1)
    base = rng.exponential(1.0, size=300)
    g, lo, hi = paired_relative_gain(base * 1.2, base)
    assert g == pytest.approx(0.2) and lo == pytest.approx(0.2) and hi == pytest.approx(0.2)
    noisy = base * 1.2 + rng.normal(0, 0.3, size=300)
    g, lo, hi = paired_relative_gain(noisy, base)
    assert lo < g < hi and lo > 0.05
    seeds = np.stack([base, base * 1.1])  # (seeds, items): averaged over seeds first
    assert bootstrap_ci(seeds)[0] == pytest.approx(base.mean() * 1.05)


def test_paired_difference_is_exact_for_a_constant_shift_and_narrower_than_unpaired():
    rng = np.random.default_rng(2)
    base = rng.exponential(1.0, size=300)
    assert paired_difference(base + 0.1, base) == pytest.approx((0.1, 0.1, 0.1))
    noisy = base + 0.1 + rng.normal(0, 0.2, size=300)
    d, lo, hi = paired_difference(noisy, base)
    assert lo < d < hi and lo > 0  # the shift is resolved although the items' spread (~1) is 10x it
    _, blo, bhi = bootstrap_ci(noisy)
    assert hi - lo < (bhi - blo) / 3
    with pytest.raises(ValueError, match="same items"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match=">= 2"):
        bootstrap_ci([1.0])
    with pytest.raises(ValueError, match="same items"):
        paired_relative_gain([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="<= 0"):
        paired_relative_gain([1.0, 2.0], [0.0, 0.0])
