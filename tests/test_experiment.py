"""dlink.experiment: the fit split and out-of-fold bridging keep every stage off its own training pairs."""

import dataclasses

import numpy as np
import pytest

from dlink import experiment as X
from dlink import paths
from dlink.baselines import make_bridge
from dlink.bridge import synthetic_gap_pairs
from dlink.profiles import resolve_params


def test_encoder_share_splits_train_for_the_embedded_encoder_only():
    P = resolve_params(profile="smoke")
    assert X._n_encoder_scenes(P, 100) == 50
    laion = dataclasses.replace(P, encoder="laion-clap")  # a pretrained encoder: fit on all of train
    assert X._n_encoder_scenes(laion, 100) == 0
    bad = dataclasses.replace(P, profile=dataclasses.replace(P.profile, encoder_share=1.0))
    with pytest.raises(ValueError, match="encoder_share"):
        X._n_encoder_scenes(bad, 100)


def test_cross_fitted_bridging_is_out_of_fold(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "DATA", tmp_path)
    P = resolve_params(profile="smoke")
    a, t = synthetic_gap_pairs(90, dim=16, seed=0)
    emb = {"fit": {"audio": a[:60], "text": t[:60, None]}, "val": {"audio": a[60:], "text": t[60:, None]}}
    oof = X.cross_fitted(P, "ridge", emb, seed=0, folds=3)
    fold = np.random.default_rng(0).permutation(60) % 3
    for f in range(3):  # fold f is bridged by a ridge fitted on the other two folds only
        ref = make_bridge("ridge").fit(a[:60][fold != f], t[:60][fold != f], val=(a[60:], t[60:]))
        np.testing.assert_allclose(oof[fold == f], ref.transform(a[:60][fold == f]), atol=1e-5)
    in_sample = make_bridge("ridge").fit(a[:60], t[:60], val=(a[60:], t[60:])).transform(a[:60])
    assert not np.allclose(oof, in_sample, atol=1e-3)
    np.testing.assert_array_equal(X.cross_fitted(P, "ridge", emb, seed=0, folds=3), oof)  # cached
    with pytest.raises(ValueError, match="cross_fit_folds"):
        X.cross_fitted(P, "ridge", emb, seed=0, folds=1)


def test_tune_chooses_inference_settings_on_validation_by_one_rule(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "DATA", tmp_path)
    P = resolve_params(profile="smoke")
    a, t = synthetic_gap_pairs(400, dim=16, mismatch=1.0, noise=0.3, seed=0)
    emb = {
        "fit": {"audio": a[:300], "text": t[:300, None]},
        "val": {"audio": a[300:], "text": t[300:, None]},
        "test": {"audio": a[300:], "text": t[300:, None]},
    }
    proj = make_bridge("projection").fit(a[:300], t[:300])
    chosen, scores = X.tune(P, "projection", proj, emb, seed=0)
    assert len(scores) == len(X.tuning_grid(P, "projection")) == 9
    top = max(s["a2t_R1"] for s in scores)
    pick = next(s for s in scores if s["k"] == chosen["k"] and s["temperature"] == chosen["temperature"])
    assert pick["a2t_R1"] >= top - 0.005  # the rule: best R@1 (ties to the smaller centroid distance)
    # Diffusion-Link and Diffusion Bridge get the same grid; bridges with nothing to tune get none
    assert X.tuning_grid(P, "diffusion_link") == X.tuning_grid(P, "diffusion_bridge")
    assert (
        X.tuning_grid(P, "ridge") == [{}]
        and X.tune(P, "ridge", make_bridge("ridge").fit(a, t), emb, 0)[0] == {}
    )
    # bridged() applies the chosen settings and records them
    out = X.bridged(P, emb, seed=0, methods=["projection"])
    assert out["projection"]["settings"] == chosen
    np.testing.assert_allclose(
        out["projection"]["test"], proj.configured(**chosen).transform(a[300:]), atol=1e-6
    )
    with pytest.raises(ValueError, match="temperature"):
        proj.configured(temperature=-1.0)
