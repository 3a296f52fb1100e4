"""dlink.experiment: the fit split and out-of-fold bridging keep every stage off its own training pairs."""

import dataclasses

import numpy as np
import pytest

from dlink import experiment, paths
from dlink.bridges.base import synthetic_gap_pairs
from dlink.bridges.baselines import make_bridge
from dlink.profiles import resolve_params


def test_encoder_share_splits_train_for_the_embedded_encoder_only():
    params = resolve_params(profile="smoke")
    assert experiment._n_encoder_scenes(params, 100) == 50
    laion = dataclasses.replace(params, encoder="laion-clap")  # a pretrained encoder: fit on all of train
    assert experiment._n_encoder_scenes(laion, 100) == 0
    bad = dataclasses.replace(params, profile=dataclasses.replace(params.profile, encoder_share=1.0))
    with pytest.raises(ValueError, match="encoder_share"):
        experiment._n_encoder_scenes(bad, 100)


def test_cross_fitted_bridging_is_out_of_fold(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "DATA", tmp_path)
    params = resolve_params(profile="smoke")
    a, t = synthetic_gap_pairs(120, dim=16, seed=0)
    emb = {
        "fit": {"audio": a[:60], "text": t[:60, None]},
        "val": {"audio": a[60:90], "text": t[60:90, None]},
        "test": {"audio": a[90:], "text": t[90:, None]},
    }
    out = experiment.cross_fitted(params, "ridge", emb, seed=0, folds=3, settings={})
    oof = out["fit"]
    assert out["test"].shape == (3, 30, 16)
    fold = np.random.default_rng(0).permutation(60) % 3
    for f in range(3):  # fold f is bridged by a ridge fitted on the other two folds only ...
        ref = make_bridge("ridge").fit(a[:60][fold != f], t[:60][fold != f], val=(a[60:90], t[60:90]))
        np.testing.assert_allclose(oof[fold == f], ref.transform(a[:60][fold == f]), atol=1e-5)
        # ... and the same fold bridge bridges the test audio: test inputs as training inputs
        np.testing.assert_allclose(out["test"][f], ref.transform(a[90:]), atol=1e-5)
    in_sample = make_bridge("ridge").fit(a[:60], t[:60], val=(a[60:90], t[60:90])).transform(a[:60])
    assert not np.allclose(oof, in_sample, atol=1e-3)
    again = experiment.cross_fitted(params, "ridge", emb, seed=0, folds=3, settings={})  # cached
    np.testing.assert_array_equal(again["fit"], oof)
    np.testing.assert_array_equal(again["test"], out["test"])
    with pytest.raises(ValueError, match="cross_fit_folds"):
        experiment.cross_fitted(params, "ridge", emb, seed=0, folds=1, settings={})


def test_tune_for_captioning_picks_the_best_validation_cider(tmp_path, monkeypatch):
    """Captioning tables choose a bridge's inference settings by the captioner's validation CIDEr-D."""
    monkeypatch.setattr(paths, "DATA", tmp_path)
    params = resolve_params(profile="smoke")
    n_val = 6
    refs = [[f"a sound number {i}", f"the sound {i}"] for i in range(n_val)]
    frame = {
        "val": __import__("pandas").DataFrame({"captions": [[f"x {i}"] + r for i, r in enumerate(refs)]})
    }
    monkeypatch.setattr(experiment, "splits", lambda params: frame)
    a, t = synthetic_gap_pairs(n_val, dim=8, seed=0)
    emb = {"val": {"audio": a, "text": t[:, None]}}

    class Scaled:  # a "bridge" whose setting scales its output
        def __init__(self, k=1):
            self.k = k

        def configured(self, k):
            return Scaled(k)

        def transform(self, x):
            return x * self.k

    class Captioner:  # captions right only for the inputs scaled by 3
        def generate(self, x, beams=None):
            right = np.allclose(x, 3 * a[: len(x)])
            return [refs[i][0] if right else "nothing at all" for i in range(len(x))]

    monkeypatch.setattr(experiment, "tuning_grid", lambda params, name: [{"k": 1}, {"k": 3}, {"k": 5}])
    chosen, table = experiment.tune_for_captioning(params, "scaled", Scaled(), emb, Captioner())
    assert chosen == {"k": 3}
    assert [r["k"] for r in table] == [1, 3, 5]
    assert table[1]["val_CIDEr-D"] > max(table[0]["val_CIDEr-D"], table[2]["val_CIDEr-D"])
    with pytest.raises(ValueError, match="fit_captioner"):
        experiment.bridged(params, emb, seed=0, methods=["ridge"], captioner=Captioner())


def test_tune_chooses_inference_settings_on_validation_by_one_rule(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "DATA", tmp_path)
    params = resolve_params(profile="smoke")
    a, t = synthetic_gap_pairs(400, dim=16, mismatch=1.0, noise=0.3, seed=0)
    emb = {
        "fit": {"audio": a[:300], "text": t[:300, None]},
        "val": {"audio": a[300:], "text": t[300:, None]},
        "test": {"audio": a[300:], "text": t[300:, None]},
    }
    proj = make_bridge("projection").fit(a[:300], t[:300])
    chosen, scores = experiment.tune(params, "projection", proj, emb, seed=0)
    assert len(scores) == len(experiment.tuning_grid(params, "projection")) == 9
    top = max(s["a2t_R1"] for s in scores)
    pick = next(s for s in scores if s["k"] == chosen["k"] and s["temperature"] == chosen["temperature"])
    assert pick["a2t_R1"] >= top - 0.005  # the rule: best R@1 (ties to the smaller centroid distance)
    # Diffusion-Link and Diffusion Bridge get the same grid; bridges with nothing to tune get none
    assert experiment.tuning_grid(params, "diffusion_link") == experiment.tuning_grid(
        params, "diffusion_bridge"
    )
    assert (
        experiment.tuning_grid(params, "ridge") == [{}]
        and experiment.tune(params, "ridge", make_bridge("ridge").fit(a, t), emb, seed=0)[0] == {}
    )
    # bridged() applies the chosen settings and records them
    out = experiment.bridged(params, emb, seed=0, methods=["projection"])
    assert out["projection"]["settings"] == chosen
    np.testing.assert_allclose(
        out["projection"]["test"], proj.configured(**chosen).transform(a[300:]), atol=1e-6
    )
    with pytest.raises(ValueError, match="temperature"):
        proj.configured(temperature=-1.0)


def test_a_new_bridge_is_one_class_the_experiment_reads_its_declarations_from(tmp_path, monkeypatch):
    """Adding a bridge is one file plus its test: defining the class registers it, and the
    experiment's helpers (training settings, inference grid, cache key, bridged outputs) take
    everything from what it declares."""
    import torch

    from dlink.bridges.base import Bridge, as_matrix, as_pair, to_output
    from dlink.bridges.baselines import BRIDGES

    monkeypatch.setattr(paths, "DATA", tmp_path)
    params = resolve_params(profile="smoke")

    @dataclasses.dataclass
    class TowardTextConfig:
        alpha: float = 0.0  # how far each audio row moves toward the text mean

    try:

        class TowardText(Bridge):  # closed-form: a + alpha * mean(text), renormalised
            name, config_cls = "toward_text", TowardTextConfig
            cache_modules = ("bridges/base",)

            @classmethod
            def inference_grid(cls, profile):  # read from the profile, as a real grid is
                return [{"alpha": k / 1000} for k in profile.start_steps]

            def fit(self, audio, text, val=None, device=None):
                a, t = as_pair(audio, text)
                self.dim, self.text_mean = a.shape[1], t.mean(0)
                return self

            def transform(self, audio):
                a = as_matrix(audio, "audio", self.dim)
                return to_output(a + self.config.alpha * self.text_mean, self.name)

            def _state(self):
                return {"text_mean": self.text_mean}

            def _set_state(self, tensors, device=None):
                self.text_mean = tensors["text_mean"]

        class LearnedToy(TowardText):  # only declares that it learns: the profile trains it
            name, learned = "learned_toy", True

        assert list(BRIDGES)[-2:] == ["toward_text", "learned_toy"]
        assert experiment.bridge_config(params, "toward_text", seed=4) == {}
        assert experiment.bridge_config(params, "learned_toy", seed=4) == dict(
            epochs=params.profile.bridge_epochs,
            batch_size=params.profile.bridge_batch_size,
            patience=params.profile.bridge_patience,
            seed=4,
        )
        assert experiment.tuning_grid(params, "toward_text") == [
            {"alpha": 0.3},
            {"alpha": 0.5},
        ]  # smoke k* = 300, 500
        # the cache key hashes the declared source: other declared modules, another key
        key = experiment._bridge_key(params, "toward_text", seed=0)[0]
        monkeypatch.setattr(TowardText, "cache_modules", ("bridges/base", "bridges/baselines"))
        assert experiment._bridge_key(params, "toward_text", seed=0)[0] != key
        assert experiment._bridge_key(params, "toward_text", seed=0)[0].startswith("toward_text-")

        a, t = synthetic_gap_pairs(200, dim=16, gap=2.0, seed=0)
        emb = {
            "fit": {"audio": a[:120], "text": t[:120, None]},
            "val": {"audio": a[120:160], "text": t[120:160, None]},
            "test": {"audio": a[160:], "text": t[160:, None]},
        }
        out = experiment.bridged(params, emb, seed=0, methods=["toward_text"])["toward_text"]
        assert out["settings"] in experiment.tuning_grid(params, "toward_text")
        assert [s["alpha"] for s in out["scores"]] == [0.3, 0.5]
        ref = TowardText(**out["settings"]).fit(a[:120], t[:120]).transform(a[160:])
        np.testing.assert_allclose(out["test"], ref, atol=1e-6)
        cached = experiment.fit_bridge(
            params, "toward_text", emb, seed=0
        )  # loaded from the cache fit_bridge wrote
        assert isinstance(cached, TowardText)
        assert torch.equal(cached.text_mean, torch.from_numpy(t[:120]).mean(0))
        assert not np.allclose(out["test"], to_output(torch.from_numpy(a[160:]), "raw"), atol=1e-3)
        with pytest.raises(ValueError, match="unknown bridge 'no_such'"):
            experiment.tuning_grid(params, "no_such")
    finally:
        BRIDGES.pop("toward_text", None)
        BRIDGES.pop("learned_toy", None)
    assert "toward_text" not in BRIDGES


def test_a_bridge_in_a_file_of_its_own_is_registered_with_the_built_ins(tmp_path, monkeypatch):
    import sys

    import dlink.bridges
    from dlink.bridges import baselines

    (tmp_path / "halfway.py").write_text(
        "from dlink.bridges.baselines import BRIDGES, MeanShift\n"
        "class Halfway(MeanShift):\n"
        "    name = 'halfway'\n"
    )
    monkeypatch.setattr(dlink.bridges, "__path__", [*dlink.bridges.__path__, str(tmp_path)])
    try:
        baselines._import_bridge_modules()
        names = list(baselines.BRIDGES)
        assert names[-2:] == ["halfway", "diffusion_link"] and names[0] == "identity"
        assert isinstance(make_bridge("halfway"), baselines.MeanShift)
    finally:
        baselines.BRIDGES.pop("halfway", None)
        sys.modules.pop("dlink.bridges.halfway", None)
