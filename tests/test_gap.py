"""Analytic checks of the modality-gap metrics (dlink/evaluation/gap.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dlink.evaluation.gap import (
    GAP_DIRECTIONS,
    frechet_distance,
    gap_report,
    knn_mixing,
    mmd2_rbf,
    retrieval_recall,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def emb():
    rng = np.random.default_rng(0)
    return _unit(rng.standard_normal((300, 32)))


def test_identical_sets_have_no_gap(emb):
    r = gap_report(emb, emb.copy(), k=10, seed=0)
    assert list(r) == list(GAP_DIRECTIONS)
    assert r["centroid_distance"] == pytest.approx(0.0, abs=1e-12)
    assert r["paired_cos_mean"] == pytest.approx(1.0) and r["paired_cos_std"] == pytest.approx(0.0, abs=1e-7)
    assert 0.4 <= r["separability"] <= 0.6
    assert r["frechet"] == pytest.approx(0.0, abs=1e-8)
    assert abs(r["mmd2_rbf"]) < 0.01
    # each point's twin is a neighbour from the other set; the rest alternate: ~0.5
    assert 0.45 <= r["knn_mixing"] <= 0.6
    assert r["a2t_R1"] == 1.0 and r["a2t_R10"] == 1.0


def test_same_distribution_mixes_and_far_sets_do_not():
    rng = np.random.default_rng(1)
    x, y = _unit(rng.standard_normal((400, 16))), _unit(rng.standard_normal((400, 16)))
    share, norm = knn_mixing(x, y, k=10)
    assert share == pytest.approx(400 / 799, abs=0.05) and norm == pytest.approx(1.0, abs=0.1)
    far = _unit(rng.standard_normal((400, 16)) * 0.05 + 10.0)  # tight cone around (1, ..., 1)
    share_far, _ = knn_mixing(x + 0.0, -far, k=10)
    assert share_far < 0.01
    r = gap_report(x, y, paired=False)
    assert 0.4 <= r["separability"] <= 0.6
    assert np.isnan(r["paired_cos_mean"]) and np.isnan(r["a2t_R1"])


def test_shift_gives_centroid_distance_and_frechet():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 8))
    shift = np.array([3.0, -4.0, 0, 0, 0, 0, 0, 0])  # ||shift|| = 5
    r = gap_report(x, x + shift, normalize=False, max_points=500)
    assert r["centroid_distance"] == pytest.approx(5.0, abs=1e-9)
    assert r["frechet"] == pytest.approx(25.0, abs=1e-6)  # same covariance: exactly ||shift||^2
    assert r["separability"] > 0.98 and r["mmd2_rbf"] > 0.5
    # independent samples: FD -> ||shift||^2 up to sampling noise of the covariances
    y = rng.standard_normal((4000, 8)) + shift
    assert frechet_distance(x, y) == pytest.approx(25.0, rel=0.02)


def test_frechet_matches_closed_form_for_different_covariances():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20000, 3)) * np.array([1.0, 2.0, 3.0])
    y = rng.standard_normal((20000, 3)) * np.array([2.0, 2.0, 1.0])
    # diagonal covariances: FD = sum (s1 - s2)^2 over standard deviations
    assert frechet_distance(x, y) == pytest.approx(1.0 + 0.0 + 4.0, abs=0.15)


def test_mmd_identical_near_zero_shifted_positive():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 10))
    assert abs(mmd2_rbf(x, x.copy())) < 0.01
    assert mmd2_rbf(x, x.copy(), unbiased=False) == pytest.approx(0.0, abs=1e-6)
    assert mmd2_rbf(x, x + 2.0) > 0.3


def test_retrieval_recall():
    rng = np.random.default_rng(5)
    t = _unit(rng.standard_normal((200, 64)))
    assert retrieval_recall(t, t.copy()) == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}
    # a random gallery: recall@k ~ k / N
    r = retrieval_recall(_unit(rng.standard_normal((200, 64))), t, ks=(10,))
    assert r["R@10"] < 0.15
    # collapse onto one point: ties count against the query -> no hits
    assert retrieval_recall(np.ones((200, 64)), np.ones((200, 64)), ks=(1,))["R@1"] == 0.0
    # several captions per clip
    gal = np.repeat(t, 3, axis=0) + 0.01 * rng.standard_normal((600, 64))
    assert retrieval_recall(t, gal, ks=(1,), gallery_ids=np.repeat(np.arange(200), 3))["R@1"] == 1.0


@pytest.mark.parametrize(
    ("audio", "text", "kwargs", "match"),
    [
        (np.ones(5), np.ones((20, 4)), {}, "2-D"),
        (np.ones((20, 4)), np.ones((20, 5)), {}, "embedding dim"),
        (np.ones((20, 4)), np.ones((21, 4)), {}, "paired=False"),
        (np.full((20, 4), np.nan), np.ones((20, 4)), {}, "NaN/inf"),
        (np.ones((3, 4)), np.ones((3, 4)), {}, "at least"),
        (np.zeros((20, 4)), np.ones((20, 4)), {}, "zero norm"),
        (np.ones((20, 4)), np.ones((20, 4)), {"k": 0}, "k must be"),
    ],
)
def test_bad_input_raises(audio, text, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gap_report(audio, text, **kwargs)


def test_unpaired_sizes_allowed_and_seed_deterministic(emb):
    a, b = (
        gap_report(emb[:200], emb[100:], paired=False, seed=3),
        gap_report(emb[:200], emb[100:], paired=False, seed=3),
    )
    assert a == pytest.approx(b, nan_ok=True)


def test_label_set_map_counts_same_label_texts_as_hits():
    from dlink.evaluation.gap import label_set_map

    rng = np.random.default_rng(0)
    t = rng.standard_normal((40, 8))
    labels = np.repeat(["a;b", "c", "d;e", "f"], 10)
    # a query that ranks all same-label texts first has AP 1: audio = its label group's mean text
    groups = {lab: t[labels == lab].mean(0) for lab in set(labels)}
    centroids = np.stack([groups[lab] for lab in labels])
    close = np.stack([groups[lab] + 0.01 * rng.standard_normal(8) for lab in labels])
    t_grouped = centroids + 0.05 * rng.standard_normal((40, 8))
    assert label_set_map(close, t_grouped, labels) == pytest.approx(1.0)
    # random queries: about the share of relevant items (1/4), far below 1
    chance = label_set_map(rng.standard_normal((40, 8)), t_grouped, labels)
    assert 0.1 < chance < 0.6
    with pytest.raises(ValueError, match="N labels"):
        label_set_map(t, t, labels[:5])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda f: f.frechet_distance(np.ones((5, 3)), np.ones((5, 4))), "share the embedding dim"),
        (lambda f: f.mmd2_rbf(np.eye(5), np.eye(5), bandwidth="x"), "bandwidth must be a number"),
        (lambda f: f.separability(np.eye(6), np.eye(6)[::-1], folds=1), "folds must be an int"),
        (lambda f: f.knn_mixing(np.full((3, 2), np.nan), np.ones((3, 2))), "NaN/inf"),
    ],
)
def test_distribution_distances_check_their_inputs(call, match):
    import dlink.evaluation.gap as f

    with pytest.raises(ValueError, match=match):
        call(f)


def test_unit_rows_do_not_overflow():
    from dlink.evaluation.gap import gap_report

    rng = np.random.default_rng(0)
    a, t = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    small, huge = gap_report(a, t, max_points=20), gap_report(a * 1e300, t, max_points=20)
    for k in ("centroid_distance", "paired_cos_mean", "a2t_R1"):
        assert huge[k] == pytest.approx(small[k], abs=1e-9), k


def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _gap_fixture(n=300, d=32, seeds=3, offset=0.0):
    rng = np.random.default_rng(0)
    texts, out = [], {"near": [], "far": [], "far_twin": []}
    for s in range(seeds):
        t = _unit_rows(rng.normal(size=(n, d)))
        texts.append(t)
        out["near"].append(_unit_rows(t + 0.3 * rng.normal(size=(n, d))))  # paired, small gap
        shift = np.zeros(d)
        shift[0] = 1.5 + offset * s
        far = _unit_rows(t + 1.0 * rng.normal(size=(n, d)) + shift)  # big gap, weaker pairing
        out["far"].append(far)
        out["far_twin"].append(far.copy())
    return out, texts


def test_gap_intervals_resolve_a_real_difference_and_not_a_null_one():
    from dlink.evaluation.gap import INTERVAL_COLUMNS, gap_intervals

    out, texts = _gap_fixture()
    labels = [str(i % 7) for i in range(300)]
    rows = {
        r["method"]: r
        for r in gap_intervals(out, texts, versus="near", labels=labels, n_boot=500, n_boot_sets=60)
    }
    near, far, twin = rows["near"], rows["far"], rows["far_twin"]
    for r in rows.values():  # the point estimate sits inside its interval
        for c in INTERVAL_COLUMNS:
            assert r[f"{c}_lo"] <= r[c] <= r[f"{c}_hi"], (r["method"], c)
    for c in INTERVAL_COLUMNS:
        assert near[f"d_{c}"] == 0 and near[f"d_{c}_lo"] == 0 == near[f"d_{c}_hi"]
        assert twin[c] == far[c]
    for c in ("centroid_distance", "frechet", "separability"):
        assert far[f"d_{c}_lo"] > 0, c  # far's gap is larger than near's, resolved
    for c in ("paired_cos_mean", "knn_mixing_norm", "a2t_R1", "a2t_R10", "a2t_mAP_labels"):
        assert far[f"d_{c}_hi"] < 0, c  # and its similarity and retrieval worse, resolved
    # every column matches gap_report's on all items, averaged over seeds (separability: fold seed = seed)
    for c in INTERVAL_COLUMNS:
        ref = np.mean(
            [
                gap_report(a, t, seed=s, labels=labels)[c]
                for s, (a, t) in enumerate(zip(out["far"], texts, strict=True))
            ]
        )
        assert far[c] == pytest.approx(ref, rel=1e-6), c


def test_gap_intervals_cover_seed_spread_and_one_seed():
    from dlink.evaluation.gap import gap_intervals

    out, texts = _gap_fixture(n=120, offset=0.5)  # far's gap grows a lot from seed to seed
    cols = ("centroid_distance", "separability", "a2t_R1")
    three = {r["method"]: r for r in gap_intervals(out, texts, versus="near", columns=cols, n_boot=400)}
    one = {r["method"]: r for r in gap_intervals(
        {k: v[:1] for k, v in out.items()}, texts[:1], versus="near", columns=cols, n_boot=400)}  # fmt: skip
    per_seed = [np.linalg.norm((a - t).mean(0)) for a, t in zip(out["far"], texts, strict=True)]
    width = three["far"]["centroid_distance_hi"] - three["far"]["centroid_distance_lo"]
    assert width > 1.5 * (one["far"]["centroid_distance_hi"] - one["far"]["centroid_distance_lo"])
    assert width >= 0.5 * (max(per_seed) - min(per_seed))
    assert np.isnan(one["far"]["separability_lo"]) and np.isfinite(three["far"]["separability_lo"])
    assert "a2t_mAP_labels" not in three["far"] and "frechet" not in three["far"]


def test_frechet_on_counts_is_the_frechet_of_the_drawn_rows():
    from dlink.evaluation.gap import _frechet_counts

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(80, 40)), rng.normal(size=(80, 40)) + 0.3
    idx = rng.integers(0, 80, size=80)
    counts = np.bincount(idx, minlength=80)
    assert _frechet_counts(x, y, counts) == pytest.approx(frechet_distance(x[idx], y[idx]), rel=1e-9)
    assert _frechet_counts(x, y, np.ones(80, int)) == pytest.approx(frechet_distance(x, y), rel=1e-9)


def test_gap_item_rows_are_long_and_average_to_the_table():
    from dlink.evaluation.gap import gap_item_rows

    out, texts = _gap_fixture(n=40, seeds=2)
    rows = gap_item_rows(out, texts, seeds=[5, 6], ids=[f"s{i}" for i in range(40)])
    assert len(rows) == 3 * 2 * 40 and rows[0]["seed"] == 5 and rows[0]["item"] == "s0"
    far5 = [float(r["a2t_R1"]) for r in rows if r["method"] == "far" and r["seed"] == 5]
    assert np.mean(far5) == pytest.approx(gap_report(out["far"][0], texts[0])["a2t_R1"])
    with pytest.raises(ValueError, match="ids"):
        gap_item_rows(out, texts, ids=["a"])


def test_gap_intervals_bad_input():
    from dlink.evaluation.gap import gap_intervals

    t = [np.eye(12)]
    with pytest.raises(ValueError, match="versus='x'"):
        gap_intervals({"a": [np.eye(12)]}, t, versus="x")
    with pytest.raises(ValueError, match="1 seeds of outputs but 2"):
        gap_intervals({"a": [np.eye(12)]}, t * 2, versus="a")
    with pytest.raises(ValueError, match="shape"):
        gap_intervals({"a": [np.eye(12)[:10]]}, t, versus="a")
    with pytest.raises(ValueError, match="columns"):
        gap_intervals({"a": [np.eye(12)]}, t, versus="a", columns=("mmd",))


def test_gap_calibration_floor_has_no_pairs_and_oracle_is_caption_two():
    from dlink.evaluation.gap import FLOOR, ORACLE, gap_calibration

    rng = np.random.default_rng(1)
    text = rng.normal(size=(50, 3, 8))
    cal = gap_calibration(text, seed=4)
    assert np.array_equal(cal[ORACLE], text[:, 1])
    floor = cal[FLOOR]
    # every row is caption 1 of some OTHER scene, each scene used once
    src = [int(np.flatnonzero((text[:, 1] == row).all(1))[0]) for row in floor]
    assert sorted(src) == list(range(50)) and all(s != i for i, s in enumerate(src))
    assert list(gap_calibration(text[:, :1], seed=0)) == [FLOOR]  # one caption: no oracle


def test_the_registry_holds_the_gap_table_columns_in_report_order():
    from dlink.evaluation.gap import GAP_METRICS, INTERVAL_COLUMNS

    assert list(GAP_METRICS) == ["paired_cos_mean", "paired_cos_std", "centroid_distance", "separability",
                                 "frechet", "mmd2_rbf", "knn_mixing", "knn_mixing_norm", "a2t_R1", "a2t_R5",
                                 "a2t_R10", "a2t_mAP_labels"]  # fmt: skip
    assert tuple(INTERVAL_COLUMNS) == ("paired_cos_mean", "centroid_distance", "separability", "frechet",
                                       "knn_mixing_norm", "a2t_R1", "a2t_R10", "a2t_mAP_labels")  # fmt: skip
    assert dict(GAP_DIRECTIONS) == {k: "higher" for k in GAP_METRICS} | {
        "paired_cos_std": None, "centroid_distance": "lower", "separability": 0.5, "frechet": "lower",
        "mmd2_rbf": "lower"}  # fmt: skip


@pytest.fixture
def toy_metric():
    """A gap metric registered for one test: each pair's Euclidean distance, lower is better."""
    from dlink.evaluation.gap import GAP_METRICS, register_gap_metric

    register_gap_metric("pair_distance", "lower", lambda a, t: np.linalg.norm(a - t, axis=1), interval=True)
    yield "pair_distance"
    GAP_METRICS.pop("pair_distance")


def test_a_new_gap_metric_is_one_registration(toy_metric, tmp_path):
    """Registered once, a metric is a gap_report key, an interval column, ranked by its direction in
    both tables, and shown in the README's gap table."""
    import importlib.util
    from pathlib import Path

    import pandas as pd

    from dlink.evaluation.gap import INTERVAL_COLUMNS, gap_intervals, register_gap_metric
    from dlink.evaluation.tables import write_intervals, write_table

    out, texts = _gap_fixture()
    report = gap_report(out["far"][0], texts[0], seed=0)
    assert list(report)[-1] == toy_metric
    assert report[toy_metric] == pytest.approx(np.linalg.norm(out["far"][0] - texts[0], axis=1).mean())
    assert toy_metric in INTERVAL_COLUMNS and GAP_DIRECTIONS[toy_metric] == "lower"
    rows = {r["method"]: r for r in gap_intervals(out, texts, versus="near", n_boot=300, n_boot_sets=20)}
    far = rows["far"]
    assert far[toy_metric] == pytest.approx(
        np.mean([gap_report(a, t)[toy_metric] for a, t in zip(out["far"], texts, strict=True)])
    )
    assert far[f"{toy_metric}_lo"] <= far[toy_metric] <= far[f"{toy_metric}_hi"]
    assert far[f"d_{toy_metric}_lo"] > 0  # far's pairs sit further apart than near's, resolved

    # tables rank it by its direction: the lowest mean is bold, the header says lower is better
    gap_rows = [{"method": m, "seed": s, **gap_report(x, t, seed=s)}
                for m in ("near", "far") for s, (x, t) in enumerate(zip(out[m], texts, strict=True))]  # fmt: skip
    csv_path, md_path = write_table(gap_rows, tmp_path / "gap_metrics")
    md = md_path.read_text()
    assert f"{toy_metric} ↓" in md
    near_line = next(line for line in md.splitlines() if line.startswith("| near |"))
    assert near_line.split(" | ")[-1].startswith("**")
    _, imd = write_intervals(list(rows.values()), tmp_path / "gap_intervals", versus="near")
    assert f"{toy_metric} ↓ [95 % CI]" in imd.read_text()

    script = Path(__file__).resolve().parents[1] / "scripts" / "readme_results.py"
    spec = importlib.util.spec_from_file_location("readme_results", script)
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    head = readme._gap_table(tmp_path)[0]
    assert head.endswith(f"| {toy_metric} |") and "paired_cos_std" not in head
    assert len(pd.read_csv(csv_path)) == 2

    with pytest.raises(ValueError, match="already registered"):
        register_gap_metric(toy_metric, "lower", lambda a, t: a[:, 0])
