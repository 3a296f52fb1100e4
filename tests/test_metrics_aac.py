"""SPICE / SPIDEr / FENSE: computed through aac-metrics exactly when it and its resources are present."""

from __future__ import annotations

import sys
import types

import pytest

from dlink.evaluation import metrics
from dlink.evaluation.metrics import UNAVAILABLE

PREDS = ["a dog barks", "rain falls on a roof"]
REFS = [["a dog is barking", "dogs bark"], ["rain is falling", "it rains on a tin roof"]]


def _fake_aac_metrics(monkeypatch, tmp_path, spice_ok: bool, calls: list):
    """A stand-in `aac_metrics` package with the 0.6.0 names dlink uses."""

    def check_spice_install(cache_path):
        if not spice_ok:
            raise FileNotFoundError(f"Cannot find JAR file '{cache_path}/aac-metrics/spice/spice-1.0.jar'")

    def spice(cands, mrefs, return_all_scores=True):
        calls.append(("spice", cands, mrefs))
        return {"spice": 0.25}, {"spice": [0.2, 0.3]}

    def fense(cands, mrefs, return_all_scores=True, device=None):
        calls.append(("fense", cands, mrefs))
        return {"fense": 0.5}, {"fense": [0.4, 0.6]}

    mods = {
        "aac_metrics": {},
        "aac_metrics.functional": {},
        "aac_metrics.functional.spice": {"spice": spice, "check_spice_install": check_spice_install},
        "aac_metrics.functional.fense": {"fense": fense},
        "aac_metrics.utils": {},
        "aac_metrics.utils.globals": {"get_default_cache_path": lambda: str(tmp_path / "cache")},
    }
    for name, attrs in mods.items():
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)


def test_without_aac_metrics_everything_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "aac_metrics", None)  # import fails as if not installed
    out = {"CIDEr-D": 0.4}
    metrics._add_aac_metrics(out, PREDS, REFS)
    assert out["SPICE"] == out["SPIDEr"] == out["FENSE"] == UNAVAILABLE
    assert (
        "pip install aac-metrics" in out["notes"]["SPICE"]
        and "SPICE is unavailable" in out["notes"]["SPIDEr"]
    )


def test_choice_follows_the_resources(monkeypatch, tmp_path):
    calls: list = []
    _fake_aac_metrics(monkeypatch, tmp_path, spice_ok=True, calls=calls)
    monkeypatch.setenv("FENSE_DATA", str(tmp_path / "fense"))
    monkeypatch.setattr(metrics, "_sbert_cached", lambda repo=metrics._FENSE_SBERT: True)

    # SPICE's jars present, FENSE's checkpoint absent
    out = {"CIDEr-D": 0.45}
    metrics._add_aac_metrics(out, PREDS, REFS)
    assert out["SPICE"] == 0.25 and out["SPIDEr"] == pytest.approx((0.45 + 0.25) / 2)
    assert out["FENSE"] == UNAVAILABLE and "echecker_clotho_audiocaps_base.ckpt" in out["notes"]["FENSE"]
    assert [c[0] for c in calls] == ["spice"] and calls[0][1:] == (PREDS, REFS)

    # both present
    (tmp_path / "fense").mkdir()
    (tmp_path / "fense" / "echecker_clotho_audiocaps_base.ckpt").write_bytes(b"x")
    out = {"CIDEr-D": 0.45}
    metrics._add_aac_metrics(out, PREDS, REFS)
    assert out["FENSE"] == 0.5 and out["notes"]["FENSE"] == "aac-metrics"

    # SPICE's jars absent: SPICE and SPIDEr unavailable, the reason names the missing file
    _fake_aac_metrics(monkeypatch, tmp_path, spice_ok=False, calls=calls)
    out = {"CIDEr-D": 0.45}
    metrics._add_aac_metrics(out, PREDS, REFS)
    assert out["SPICE"] == out["SPIDEr"] == UNAVAILABLE and "spice-1.0.jar" in out["notes"]["SPICE"]
    assert out["FENSE"] == 0.5


def test_a_failing_scorer_is_reported_not_replaced(monkeypatch, tmp_path):
    _fake_aac_metrics(monkeypatch, tmp_path, spice_ok=True, calls=[])

    def broken(*a, **k):
        raise RuntimeError("java exited with 1")

    monkeypatch.setattr(sys.modules["aac_metrics.functional.spice"], "spice", broken)
    monkeypatch.setenv("FENSE_DATA", str(tmp_path / "nothing"))
    out = {"CIDEr-D": 0.45}
    metrics._add_aac_metrics(out, PREDS, REFS)
    assert out["SPICE"] == UNAVAILABLE and "java exited with 1" in out["notes"]["SPICE"]
