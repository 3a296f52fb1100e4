"""dlink.bridges.baselines: every bridge's contract (shape, unit norm, save/load) and the property that
defines it (identity changes nothing, mean shift lands on the text centroid, projection stays in
the span of training texts, the learned ones move audio toward its paired text)."""

import numpy as np
import pytest
import torch

from dlink.bridges.base import Bridge, synthetic_gap_pairs
from dlink.bridges.baselines import BRIDGES, MeanShift, Projection, make_bridge

torch.set_num_threads(1)  # tiny networks: one thread avoids oversubscription on shared cores

D = 64
FAST = dict(epochs=25, progress=False)  # learned bridges: ~2 s each on one CPU thread


@pytest.fixture(scope="module")
def data():
    a, t = synthetic_gap_pairs(1700, D, mismatch=1.0, noise=0.2, seed=1)
    return a[:1500], t[:1500], a[1500:], t[1500:]


def _config(name):
    return {} if name in ("identity", "mean_shift", "projection", "ridge") else dict(FAST)


@pytest.fixture(scope="module")
def fitted(data):
    a, t, _, _ = data
    return {name: make_bridge(name, **_config(name)).fit(a, t, device="cpu") for name in BRIDGES}


@pytest.mark.parametrize("name", list(BRIDGES))
def test_contract_shape_norm_and_save_load(name, fitted, data, tmp_path):
    x = data[2]
    out = fitted[name].transform(x)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    fitted[name].save(tmp_path / name)
    again = Bridge.load(tmp_path / name)
    assert type(again) is type(fitted[name])
    np.testing.assert_allclose(again.transform(x), out, atol=1e-6)


def test_identity_changes_nothing(fitted, data):
    np.testing.assert_allclose(fitted["identity"].transform(data[2]), data[2], atol=1e-6)


def test_mean_shift_lands_exactly_on_the_text_centroid(data):
    a, t, _, _ = data
    shifted = MeanShift(renormalize=False).fit(a, t).transform(a)
    np.testing.assert_allclose(shifted.mean(0), t.mean(0), atol=1e-5)
    renorm = MeanShift().fit(a, t).transform(a)
    assert np.linalg.norm(renorm.mean(0) - t.mean(0)) < 0.1 * np.linalg.norm(a.mean(0) - t.mean(0))


def test_projection_stays_in_the_span_of_training_texts(data):
    a, t, va, _ = data
    bank = t[:20]  # 20 texts in 64-d: their span is a proper subspace
    out = Projection(k=5, temperature=0.1).fit(a[:20], bank).transform(va)
    coef, *_ = np.linalg.lstsq(bank.T, out.T, rcond=None)
    np.testing.assert_allclose(bank.T @ coef, out.T, atol=1e-4)
    # a near-zero temperature with k=1 returns exactly the nearest training text
    hard = Projection(k=1, temperature=1e-4).fit(a[:20], bank).transform(va)
    np.testing.assert_allclose(hard, bank[(va @ bank.T).argmax(1)], atol=1e-6)


@pytest.mark.parametrize("name", ["mlp_regression", "diffusion_link", "conditional_prior"])
def test_paired_learners_move_audio_toward_its_caption(name, fitted, data):
    _, _, va, vt = data
    out = fitted[name].transform(va)
    assert (out * vt).sum(1).mean() > (va * vt).sum(1).mean() + 0.05


def test_diffusion_bridge_is_a_text_prior_that_closes_the_centroid_gap(fitted, data):
    _, _, va, vt = data
    m = fitted["diffusion_bridge"]
    assert set(m.history) == {"prior", "total"}  # trained on text only
    gap = lambda x: np.linalg.norm(x.mean(0) - vt.mean(0))  # noqa: E731
    assert gap(m.transform(va)) < 0.7 * gap(va)
    # the paired losses are what Diffusion-Link adds: it must close more of the gap than the prior alone
    # (per-modality centring, the default, already removes most of the gap vector for both)
    assert gap(fitted["diffusion_link"].transform(va)) < gap(m.transform(va))
    # no config carries a field its class ignores: the text prior has no paired-loss weights
    with pytest.raises(ValueError, match=r"unknown DiffusionBridgeConfig field\(s\) \['lambda_cross'\]"):
        make_bridge("diffusion_bridge", lambda_cross=1.0)
    for name, ignored in [
        ("mlp_regression", "start_step"),
        ("conditional_prior", "start_step"),
        ("ridge", "epochs"),
    ]:
        with pytest.raises(ValueError, match=f"unknown .*'{ignored}'"):
            make_bridge(name, **{ignored: 1})


def test_conditional_prior_concat_is_seeded_and_samples_from_noise(data):
    a, t, va, _ = data

    def fit(seed):
        m = make_bridge("conditional_prior", conditioning="concat", seed=seed, steps=10, **FAST)
        return m.fit(a[:500], t[:500], device="cpu")

    m = fit(0)
    np.testing.assert_array_equal(m.transform(va), fit(0).transform(va))
    assert not np.array_equal(m.transform(va), fit(1).transform(va))
    with pytest.raises(ValueError, match="conditioning"):
        make_bridge("conditional_prior", conditioning="xattn")


def test_registry_and_errors(data):
    # one registry, in table order: the floor first, the method last
    assert list(BRIDGES) == [
        "identity",
        "mean_shift",
        "projection",
        "ridge",
        "mlp_regression",
        "diffusion_bridge",
        "conditional_prior",
        "diffusion_link",
    ]
    from dlink.bridges.base import BRIDGES as registry

    assert BRIDGES is registry
    with pytest.raises(ValueError, match="unknown bridge 'magic'.*diffusion_link"):
        make_bridge("magic")
    with pytest.raises(ValueError, match=r"unknown ProjectionConfig field\(s\) \['kk'\]"):
        make_bridge("projection", kk=3)
    with pytest.raises(ValueError, match="temperature"):
        Projection(temperature=0)
    for name in ("identity", "mean_shift", "projection", "ridge"):
        with pytest.raises(ValueError, match="rows"):
            make_bridge(name).fit(data[0][:5], data[1][:4])
        with pytest.raises(ValueError, match="not fitted"):
            make_bridge(name).transform(data[2])


def test_ridge_recovers_a_linear_map_and_picks_lambda_on_validation():
    from dlink.bridges.baselines import Ridge

    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 16))
    a = rng.standard_normal((400, 16)).astype(np.float32)
    t = a @ w
    t = (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)
    r = Ridge().fit(a[:300], t[:300], val=(a[300:], t[300:]))
    assert float(r.lam) == pytest.approx(min(r.config.lambdas))  # noiseless: the least penalty wins
    out = r.transform(a[300:])
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert (out * t[300:]).sum(1).mean() > 0.99
