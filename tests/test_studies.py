"""dlink.studies: the small helpers the notebooks read their verdicts and label sets from (the studies
themselves run in every notebook's smoke test)."""

import pandas as pd
import pytest

from dlink.studies import ABLATION_REFERENCE, ablation_variants, label_sets, verdict


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
