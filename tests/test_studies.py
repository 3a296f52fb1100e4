"""dlink.studies: the small helpers the notebooks read their verdicts and label sets from (the studies
themselves run in every notebook's smoke test)."""

import pandas as pd
import pytest

from dlink.paths import ROOT
from dlink.studies import (
    ABLATION_REFERENCE,
    TERM_VARIANTS,
    ablation_variants,
    label_sets,
    resolved_differences,
    verdict,
    write_term_ablation,
)


def test_verdict_reads_the_interval():
    assert verdict(0.01, 0.3).startswith("reproduced")
    assert verdict(-0.3, -0.01).startswith("reversed")
    assert verdict(-0.1, 0.2).startswith("not resolved")
    assert verdict(0.0, 0.2).startswith("not resolved")  # an interval touching 0 does not exclude it


def test_label_sets_sort_each_scene_and_are_none_without_labels():
    frame = pd.DataFrame({"labels": ["rain;dog", "dog;rain", "car"]})
    assert label_sets(frame) == ["dog;rain", "dog;rain", "car"]
    assert label_sets(pd.DataFrame({"id": ["a"]})) is None


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_the_reference_variant_is_the_default_model(profile):
    from dlink import resolve_params

    trained, inference = ablation_variants(resolve_params(profile=profile))
    names = [f"{group}: {value}" for group, value, _ in trained + inference]
    assert ABLATION_REFERENCE in names and len(set(names)) == len(names)
    assert dict((f"{g}: {v}", o) for g, v, o in trained)[ABLATION_REFERENCE] == {}


def test_resolved_differences_names_only_intervals_that_exclude_zero():
    def row(value, d_c, lo_c, hi_c):
        base = {
            "ablation": "g",
            "value": value,
            "d_centroid_distance": d_c,
            "d_centroid_distance_lo": lo_c,
            "d_centroid_distance_hi": hi_c,
        }
        return base | {
            f"d_{k}{s}": v for k in ("a2t_R1", "CIDEr-D") for s, v in (("", 0.0), ("_lo", -1), ("_hi", 1))
        }

    rows = [row("ref", 0.0, 0.0, 0.0), row("a", 0.02, 0.01, 0.03), row("b", 0.01, -0.01, 0.03)]
    lines = resolved_differences(rows, versus="g: ref")
    assert lines == ["g: a: centroid_distance +0.020 [+0.010, +0.030]", "g: b: nothing resolved"]


def test_write_term_ablation_rewrites_the_committed_table_from_its_csv(tmp_path):
    """The markdown of results/term_ablation comes from its CSV alone, arrows from the gap metrics'
    directions: rewriting it from the committed CSV gives the committed file, byte for byte."""
    import pandas as pd

    committed = ROOT / "results" / "term_ablation"
    rows = pd.read_csv(f"{committed}.csv").to_dict("records")
    csv_path, md_path = write_term_ablation(rows, tmp_path / "term_ablation")
    assert md_path.read_text() == committed.with_suffix(".md").read_text()
    assert "centroid distance ↓" in md_path.read_text() and "CIDEr-D ↑" in md_path.read_text()
    assert csv_path.read_text() == committed.with_suffix(".csv").read_text()


def test_the_sweep_and_the_term_table_switch_off_the_same_terms():
    from dlink import resolve_params

    trained, _ = ablation_variants(resolve_params(profile="smoke"))
    terms = {value: overrides for group, value, overrides in trained if group == "loss terms"}
    assert terms and all(TERM_VARIANTS[value] == overrides for value, overrides in terms.items())
