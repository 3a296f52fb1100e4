"""Tables: aggregation over seeds, best-value marking, pass-through text, atomic files."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dlink.evaluation.tables import GAP_DIRECTIONS, write_table


def _rows():
    return [
        {"method": "identity", "seed": 0, "centroid_distance": 0.80, "separability": 1.00, "a2t_R1": 0.30},
        {"method": "identity", "seed": 1, "centroid_distance": 0.82, "separability": 0.98, "a2t_R1": 0.32},
        {"method": "mean_shift", "seed": 0, "centroid_distance": 0.10, "separability": 0.70, "a2t_R1": 0.29},
        {"method": "mean_shift", "seed": 1, "centroid_distance": 0.12, "separability": 0.72, "a2t_R1": 0.31},
        {
            "method": "diffusion_link",
            "seed": 0,
            "centroid_distance": 0.20,
            "separability": 0.52,
            "a2t_R1": 0.40,
        },
        {
            "method": "diffusion_link",
            "seed": 1,
            "centroid_distance": 0.22,
            "separability": 0.46,
            "a2t_R1": 0.42,
        },
    ]


def test_mean_std_and_best(tmp_path):
    csv, md = write_table(_rows(), tmp_path / "gap")
    assert csv == tmp_path / "gap.csv" and md == tmp_path / "gap.md"
    df = pd.read_csv(csv)
    assert list(df["method"]) == ["identity", "mean_shift", "diffusion_link"]  # first-appearance order
    assert list(df["n_seeds"]) == [2, 2, 2]
    row = df.set_index("method").loc["identity"]
    assert row["centroid_distance_mean"] == pytest.approx(0.81)
    assert row["centroid_distance_std"] == pytest.approx(math.sqrt(2 * 0.01**2))  # ddof=1
    text = md.read_text()
    lines = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| ")}
    # lower centroid distance, separability closest to 0.5, higher R@1
    assert "**0.110 ± 0.014**" in lines["mean_shift"]
    assert "**0.490 ± 0.042**" in lines["diffusion_link"] and "**0.410 ± 0.014**" in lines["diffusion_link"]
    assert text.count("**") == 2 * 3
    assert "centroid_distance ↓" in text and "separability →0.5" in text and "a2t_R1 ↑" in text


def test_overrides_strings_and_dataframe(tmp_path):
    rows = pd.DataFrame(
        [
            {"method": "raw", "seed": 0, "CIDEr": 0.2, "SPICE": "unavailable"},
            {"method": "raw", "seed": 1, "CIDEr": 0.4, "SPICE": "unavailable"},
            {"method": "dlink", "seed": 0, "CIDEr": 0.5, "SPICE": "unavailable"},
        ]
    )
    csv, md = write_table(rows, tmp_path / "cap", higher_is_better={"CIDEr": False}, decimals=2)
    df = pd.read_csv(csv)
    assert list(df["SPICE_mean"]) == ["unavailable", "unavailable"]
    assert df["CIDEr_std"].isna().tolist() == [False, True]  # one seed: no std
    text = md.read_text()
    assert "| dlink | 1 | 0.50 | unavailable |" in text  # single seed: mean only, not bold
    assert "**0.30 ± 0.14**" in text and "CIDEr ↓" in text  # lower is better, overridden


def test_ties_at_display_precision_all_bold(tmp_path):
    rows = [{"method": "a", "m": 0.1001}, {"method": "b", "m": 0.1002}, {"method": "c", "m": 0.05}]
    _, md = write_table(rows, tmp_path / "t", decimals=3)
    assert md.read_text().count("**0.100**") == 2


def test_relative_stem_goes_to_results(tmp_path, monkeypatch):
    from dlink import paths

    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    csv, md = write_table(_rows(), "gap_k0.5")
    assert csv == tmp_path / "results" / "gap_k0.5.csv" and md.is_file()
    assert not [p for p in (tmp_path / "results").iterdir() if p.name.endswith(".tmp")]


def test_directions_cover_gap_report_keys():
    assert GAP_DIRECTIONS["centroid_distance"] == "lower" and GAP_DIRECTIONS["separability"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rows": []}, "empty"),
        ({"rows": "abc"}, "DataFrame"),
        ({"by": "bridge"}, "grouping column"),
        ({"metrics": ["cider"]}, "not in rows"),
        ({"higher_is_better": {"nope": True}}, "unknown metric"),
        ({"higher_is_better": {"a2t_R1": "up"}}, "direction"),
        ({"decimals": -1}, "decimals"),
    ],
)
def test_bad_input_raises(tmp_path, kwargs, match):
    kwargs = {"rows": _rows(), "stem": tmp_path / "x"} | kwargs
    with pytest.raises(ValueError, match=match):
        write_table(**kwargs)


@pytest.mark.parametrize("stem", ["../../../x", "../x", "sub/../../x", ".", ""])
def test_relative_stem_may_not_leave_results(tmp_path, monkeypatch, stem):
    from dlink import paths

    results = tmp_path / "a" / "b" / "results"
    monkeypatch.setattr(paths, "RESULTS", results)
    with pytest.raises(ValueError, match="stem"):
        write_table(_rows(), stem)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written anywhere


def test_reference_rows_are_shown_but_never_ranked(tmp_path):
    rows = [{"method": "a", "seed": 0, "x": 0.5}, {"method": "b", "seed": 0, "x": 0.4},
            {"method": "oracle", "seed": 0, "x": 0.9}]  # fmt: skip
    _, md = write_table(rows, tmp_path / "t", higher_is_better=True, reference=["oracle"])
    text = md.read_text()
    assert "| a | 1 | **0.500** |" in text and "| *oracle* | 1 | 0.900 |" in text
    with pytest.raises(ValueError, match="not values of column"):
        write_table(rows, tmp_path / "t", reference=["nope"])


def test_write_intervals_marks_resolved_differences(tmp_path):
    from dlink.evaluation.tables import write_intervals

    base = {"n_seeds": 3, "n_items": 300, "centroid_distance": 0.2, "centroid_distance_lo": 0.19,
            "centroid_distance_hi": 0.21, "a2t_R1": 0.1, "a2t_R1_lo": 0.08, "a2t_R1_hi": 0.12,
            "separability": 0.9, "separability_lo": float("nan"), "separability_hi": float("nan")}  # fmt: skip
    zero = {f"d_{c}{s}": 0.0 for c in ("centroid_distance", "a2t_R1") for s in ("", "_lo", "_hi")}
    rows = [
        base | zero | {"method": "dl", "d_separability": 0.0, "d_separability_lo": float("nan"),
                       "d_separability_hi": float("nan")},
        base | {"method": "db", "d_centroid_distance": 0.02, "d_centroid_distance_lo": 0.01,
                "d_centroid_distance_hi": 0.03, "d_a2t_R1": 0.01, "d_a2t_R1_lo": -0.01, "d_a2t_R1_hi": 0.03,
                "d_separability": 0.1, "d_separability_lo": float("nan"), "d_separability_hi": float("nan")},
    ]  # fmt: skip
    _, md = write_intervals(rows, tmp_path / "iv", versus="dl")
    text = md.read_text()
    assert (
        "| db | 0.200 [0.190, 0.210] | +0.020 [+0.010, +0.030] (resolved) | 0.900 | +0.100 | "
        "0.100 [0.080, 0.120] | +0.010 [-0.010, +0.030] |" in text
    )
    assert "| method | centroid_distance ↓ [95 % CI] | minus dl | separability →0.5 [95 % CI] |" in text
    assert "| dl |" in text and "All 300 test items x 3 seed(s)" in text and "seeds as the unit" in text
    with pytest.raises(ValueError, match="gap_intervals"):
        write_intervals([{"method": "x"}], tmp_path / "iv", versus="x")
