"""Property tests (hypothesis) of what must hold on ANY finite input: bridge outputs finite, unit and
of the query's shape; gap metrics non-negative, symmetric where they are defined symmetric, blind to
the order of rows, recalls in [0, 1]; bootstrap intervals ordered and exact where the answer is
known. tests/test_properties.py covers bad input (NaN, inf, empty); this file, the invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dlink.bridges.baselines import BRIDGES, make_bridge
from dlink.evaluation import gap, stats

torch.set_num_threads(1)
FAST = {"epochs": 1, "batch_size": 8, "progress": False, "time_dim": 8, "n_blocks": 1}
SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIXED = [name for name, cls in BRIDGES.items() if not cls.learned]


def _matrix(draw, n: int, d: int) -> np.ndarray:
    """(n, d) finite floats, every row away from 0 (a zero row has no direction to normalise)."""
    x = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-100, 100, allow_nan=False, width=32)))
    assume((np.linalg.norm(x, axis=1) > 1e-3).all())
    return x


@st.composite
def pair_sets(draw, n_min: int = 4, n_max: int = 16, d_max: int = 6):
    n, d = draw(st.integers(n_min, n_max)), draw(st.integers(2, d_max))
    return _matrix(draw, n, d), _matrix(draw, n, d)


def _unit_and_finite(out: np.ndarray, query: np.ndarray) -> None:
    assert out.shape == query.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)


# --------------------------------------------------------------- bridges
@pytest.mark.parametrize("name", FIXED)
@SETTINGS
@given(data=st.data())
def test_fixed_bridges_give_finite_unit_rows_in_query_order(name, data):
    a, t = data.draw(pair_sets())
    q = _matrix(data.draw, data.draw(st.integers(1, 8)), a.shape[1])
    b = make_bridge(name).fit(a, t, device="cpu")
    out = b.transform(q)
    _unit_and_finite(out, q)
    perm = data.draw(st.permutations(range(len(q))))
    # each query row is mapped on its own: reordering the queries reorders the outputs
    assert np.allclose(b.transform(q[list(perm)]), out[list(perm)], atol=1e-5)


@SETTINGS
@given(pair=pair_sets())
def test_mean_shift_moves_the_audio_mean_onto_the_text_mean(pair):
    a, t = pair
    b = make_bridge("mean_shift", renormalize=False).fit(a, t, device="cpu")
    unit_t = t / np.linalg.norm(t, axis=1, keepdims=True)
    assert np.allclose(b.transform(a).mean(0), unit_t.mean(0), atol=1e-5)


@pytest.mark.parametrize("name", ["mlp_regression", "diffusion_link"])
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_learned_bridge_one_epoch_on_tiny_dims(name, data):
    a, t = data.draw(pair_sets(n_min=8, n_max=12, d_max=4))
    q = _matrix(data.draw, data.draw(st.integers(1, 5)), a.shape[1])
    _unit_and_finite(make_bridge(name, **FAST).fit(a, t, device="cpu").transform(q), q)


# --------------------------------------------------------------- gap metrics
@SETTINGS
@given(pair=pair_sets(n_min=10, n_max=16), data=st.data())
def test_gap_distances_nonnegative_symmetric_and_row_order_free(pair, data):
    a, t = pair
    r = gap.gap_report(a, t, paired=True, k=3, max_points=50)
    swapped = gap.gap_report(t, a, paired=True, k=3, max_points=50)
    assert r["centroid_distance"] >= 0 and r["frechet"] >= -1e-9
    for key in ("centroid_distance", "frechet", "paired_cos_mean"):
        assert swapped[key] == pytest.approx(r[key], rel=1e-6, abs=1e-6), key
    assert gap.mmd2_rbf(t, a) == pytest.approx(gap.mmd2_rbf(a, t), rel=1e-4, abs=1e-5)
    perm = list(data.draw(st.permutations(range(len(a)))))
    shuffled = gap.gap_report(a[perm], t[perm], paired=True, k=3, max_points=50)
    for key in ("centroid_distance", "frechet", "paired_cos_mean"):
        assert shuffled[key] == pytest.approx(r[key], rel=1e-6, abs=1e-6), key
    for key in ("a2t_R1", "a2t_R5", "a2t_R10", "separability"):
        assert 0 <= r[key] <= 1, key
    assert r["a2t_R1"] <= r["a2t_R5"] <= r["a2t_R10"]


@SETTINGS
@given(pair=pair_sets(n_min=2, n_max=16))
def test_recall_in_unit_interval_and_one_at_k_equal_n(pair):
    a, t = pair
    n = len(a)
    r = gap.retrieval_recall(a, t, ks=(1, 2, n))
    assert all(0 <= v <= 1 for v in r.values())
    assert r["R@1"] <= r["R@2"] <= r[f"R@{n}"] == 1.0  # a rank counts wrong items: it is < n


# --------------------------------------------------------------- stats
scores = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 3), st.integers(2, 12)),
    elements=st.floats(-1e3, 1e3, allow_nan=False),
)


@SETTINGS
@given(c=st.floats(-1e3, 1e3, allow_nan=False), shape=st.tuples(st.integers(1, 3), st.integers(2, 12)))
def test_bootstrap_of_constant_scores_is_the_constant(c, shape):
    est, lo, hi = stats.bootstrap_ci(np.full(shape, c), n_boot=200)
    tol = 1e-9 * max(1.0, abs(c))
    assert est == pytest.approx(c, abs=tol)
    assert lo - tol <= est <= hi + tol and hi - lo <= 2 * tol


@SETTINGS
@given(v=scores, level=st.floats(0.5, 0.99), seed=st.integers(0, 2**31))
def test_bootstrap_interval_is_ordered_and_within_the_data(v, level, seed):
    est, lo, hi = stats.bootstrap_ci(v, level=level, n_boot=200, seed=seed)
    assert est == pytest.approx(v.mean(), rel=1e-12, abs=1e-9)
    assert v.min() - 1e-9 <= lo <= hi <= v.max() + 1e-9


@SETTINGS
@given(v=scores, seed=st.integers(0, 2**31))
def test_paired_difference_of_a_row_with_itself_is_zero(v, seed):
    assert stats.paired_difference(v, v, n_boot=200, seed=seed) == (0.0, 0.0, 0.0)


@SETTINGS
@given(vw=scores.map(lambda v: (v, v[:, ::-1] * 0.5 + 1.0)), seed=st.integers(0, 2**31))
def test_paired_difference_is_antisymmetric(vw, seed):
    v, w = vw
    d, lo, hi = stats.paired_difference(v, w, n_boot=200, seed=seed)
    d2, lo2, hi2 = stats.paired_difference(w, v, n_boot=200, seed=seed)
    assert (d2, lo2, hi2) == pytest.approx((-d, -hi, -lo), rel=1e-9, abs=1e-9)
    assert lo <= hi


@SETTINGS
@given(v=scores, seed=st.integers(0, 2**31))
def test_relative_gain_of_a_row_over_itself_is_zero(v, seed):
    v = np.abs(v) + 1.0  # a relative gain needs a positive mean
    assert stats.paired_relative_gain(v, v, n_boot=200, seed=seed) == (0.0, 0.0, 0.0)
