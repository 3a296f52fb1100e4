"""dlink.bridges.diffusion and dlink.bridges.base: schedule algebra, DDIM exactness, and Diffusion-Link closing a
known gap on synthetic paired embeddings without losing pairing (retrieval)."""

import dataclasses

import numpy as np
import pytest
import torch

from dlink.bridges.base import synthetic_gap_pairs
from dlink.bridges.diffusion import GaussianDiffusion, ddim_timesteps, make_alpha_bar
from dlink.bridges.diffusion_link import DiffusionLink

# the networks here are tiny: one thread avoids oversubscription on shared CI cores (10x faster)
torch.set_num_threads(1)

N_TRAIN, N_TEST, D = 3000, 500, 64


def centroid_distance(x, y):
    return float(np.linalg.norm(x.mean(0) - y.mean(0)))


def recall_at_1(audio, text):
    return float(((audio @ text.T).argmax(1) == np.arange(len(audio))).mean())


@pytest.fixture(scope="module")
def data():
    # mismatch=1 and noise=0.2 make raw retrieval imperfect (R@1 ~0.74), so keeping it is a real test
    a, t = synthetic_gap_pairs(N_TRAIN + N_TEST, D, mismatch=1.0, noise=0.2, seed=0)
    return a[:N_TRAIN], t[:N_TRAIN], a[N_TRAIN:], t[N_TRAIN:]


@pytest.fixture(scope="module")
def link(data):
    a, t, va, vt = data
    return DiffusionLink(epochs=20, progress=False).fit(a, t, val=(va, vt), device="cpu")


# ---------------------------------------------------------------- diffusion


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_alpha_bar_is_a_valid_schedule(schedule):
    ab = make_alpha_bar(schedule, 1000)
    assert ab.shape == (1001,) and ab[0] == 1
    assert (ab[1:] < ab[:-1]).all()
    assert ab[-1] < 1e-3 and ab[1] > 0.999


def test_ddim_timesteps():
    assert ddim_timesteps(500, 5) == [500, 400, 300, 200, 100, 0]
    assert ddim_timesteps(3, 10) == [3, 2, 1, 0]


def test_deterministic_ddim_step_with_true_x0_stays_on_the_noise_trajectory():
    d = GaussianDiffusion("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    k = lambda v: torch.full((8,), v)  # noqa: E731
    x_prev = d.ddim_step(d.q_sample(x0, k(700), eps), x0, 700, 300)
    torch.testing.assert_close(x_prev, d.q_sample(x0, k(300), eps), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.q_sample(x0, k(0), eps), x0)


def test_sdedit_with_oracle_model_returns_target_and_eta_is_seeded():
    d = GaussianDiffusion("linear", 200)
    target = torch.randn(4, 8)
    oracle = lambda x, k: target  # noqa: E731
    out = d.sdedit(oracle, torch.randn(4, 8), 150, 5, noise=torch.randn(4, 8))
    torch.testing.assert_close(out, target)
    # stochastic chain with a model that ignores its target: seed fixes it, another seed changes it
    half = lambda x, k: 0.5 * x  # noqa: E731

    def run(seed):
        return d.ddim_loop(
            half, torch.ones(4, 8), 150, 5, eta=1.0, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))
    with pytest.raises(ValueError, match="Generator"):
        d.ddim_loop(half, torch.ones(4, 8), 150, 5, eta=1.0)


# ---------------------------------------------------------------- Diffusion-Link


def test_diffusion_link_closes_the_gap_and_keeps_pairing(link, data):
    _, _, va, vt = data
    out = link.transform(va)
    assert out.shape == va.shape and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    raw_cd, new_cd = centroid_distance(va, vt), centroid_distance(out, vt)
    assert raw_cd >= 0.5  # a large gap, so closing it is a real test
    assert new_cd <= 0.2 * raw_cd, (raw_cd, new_cd)  # >= 80 % of the centroid distance closed
    assert recall_at_1(out, vt) >= recall_at_1(va, vt)
    # and the bridged audio sits closer to its own caption than raw audio does
    assert (out * vt).sum(1).mean() > (va * vt).sum(1).mean() + 0.1


def test_history_logs_every_term_and_training_reduces_loss(link):
    h = link.history
    for key in ["prior", "cross", "topo", "total", "val_prior", "val_cross", "val_topo", "val_total"]:
        assert len(h[key]) == 20, key
    assert h["total"][-1] < 0.7 * h["total"][0]
    assert h["val_total"][-1] < h["val_total"][0]


def test_save_load_gives_identical_outputs(link, data, tmp_path):
    va = data[2][:100]
    link.save(tmp_path / "ck")
    assert {p.name for p in (tmp_path / "ck").iterdir()} == {"config.json", "model.safetensors"}
    again = DiffusionLink.load(tmp_path / "ck")
    np.testing.assert_array_equal(again.transform(va), link.transform(va))
    assert again.config == link.config and again.train == link.train
    # a bridge loaded from a cache still has its training curves (notebook 03 plots them)
    assert again.history == link.history and len(again.history["total"]) == 20


def test_batching_and_input_types_do_not_change_outputs(link, data):
    va = data[2][:300]
    small = DiffusionLink.__new__(DiffusionLink)
    small.__dict__.update(link.__dict__)
    small.train = dataclasses.replace(link.train, infer_batch_size=7)
    np.testing.assert_allclose(small.transform(va), link.transform(va), atol=1e-6)
    np.testing.assert_array_equal(link.transform(torch.from_numpy(va)), link.transform(va))


def test_same_seed_same_model_other_seed_differs(data):
    a, t = data[0][:400], data[1][:400]
    fit = lambda seed, **kw: DiffusionLink(epochs=2, seed=seed, progress=False, **kw).fit(a, t, device="cpu")  # noqa: E731
    x = data[2][:50]
    np.testing.assert_array_equal(fit(3).transform(x), fit(3).transform(x))
    assert not np.array_equal(fit(3).transform(x), fit(4).transform(x))
    # the stochastic path (noised start, eta > 0) is fixed by the seed too
    m = fit(5, start_noise=True, eta=0.5, centre="modality", schedule="linear", ema_decay=0.9)
    np.testing.assert_array_equal(
        m.transform(x, start_step=300, steps=3), m.transform(x, start_step=300, steps=3)
    )


def test_switching_terms_off_removes_them(data):
    a, t = data[0][:300], data[1][:300]
    m = DiffusionLink(epochs=1, lambda_topo=0, progress=False).fit(a, t, device="cpu")
    assert set(m.history) == {"prior", "cross", "total"}
    m = DiffusionLink(epochs=1, use_prior=False, progress=False).fit(a, t, device="cpu")
    assert set(m.history) == {"cross", "topo", "total"}
    m = DiffusionLink(epochs=1, lambda_cross=0, progress=False).fit(a, t, device="cpu")
    assert set(m.history) == {"prior", "topo", "total"}  # topology still acts on bridged audio


def test_bad_config_and_bad_input_raise_clear_errors(link, data):
    with pytest.raises(
        ValueError, match=r"unknown DiffusionLinkConfig field\(s\) \['stepz'\].*valid fields:.*steps"
    ):
        DiffusionLink(stepz=5)
    with pytest.raises(ValueError, match="schedule"):
        DiffusionLink(schedule="quadratic")
    a, t = data[0][:10], data[1][:10]
    m = DiffusionLink(epochs=1, progress=False)
    with pytest.raises(ValueError, match="not fitted"):
        m.transform(a)
    with pytest.raises(ValueError, match="audio has 10 rows but text has 9"):
        m.fit(a, t[:9])
    with pytest.raises(ValueError, match="fitted on D=64"):
        link.transform(np.ones((3, 32), np.float32))
    bad = a.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN/inf.*row 4"):
        m.fit(bad, t)
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        link.transform(bad)
    with pytest.raises(ValueError, match="empty"):
        m.fit(np.zeros((0, 64)), np.zeros((0, 64)))
    with pytest.raises(ValueError, match="2-D"):
        link.transform(a[0])
    with pytest.raises(ValueError, match="start_step"):
        link.transform(a, start_step=5000)
    with pytest.raises(FileNotFoundError, match="config.json"):
        DiffusionLink.load("/nonexistent/folder")


def test_start_step_and_steps_move_the_output_in_the_documented_direction(link, data):
    """docs/METHOD.md, "Inference": with a noised start, a larger k* keeps less of the audio (R@1
    and the output's covariance with its input fall), and so do more DDIM steps from one k*."""
    _, _, va, vt = data

    def keeps(x):  # mean centred inner product of output and input: how much audio survives
        return float(((x - x.mean(0)) * (va - va.mean(0))).sum(1).mean())

    out = {(k, s): link.transform(va, start_step=k, steps=s) for k in (100, 600, 900) for s in (1, 5)}
    r1 = {key: recall_at_1(x, vt) for key, x in out.items()}
    kept = {key: keeps(x) for key, x in out.items()}
    assert r1[100, 1] >= r1[600, 1] > r1[900, 1] and kept[100, 1] > kept[600, 1] > kept[900, 1], (r1, kept)
    assert r1[600, 1] > r1[600, 5] and kept[600, 1] > kept[600, 5], (r1, kept)
    assert np.allclose(np.linalg.norm(out[600, 5], axis=1), 1, atol=1e-5)


def test_diffusion_bridge_fits_on_text_alone(data):
    """Diffusion Bridge's denoiser never sees audio: with the pairing destroyed (audio rows shuffled),
    the fitted weights are bitwise the same."""
    from dlink.bridges.baselines import DiffusionBridge

    a, t = data[0][:300], data[1][:300]
    fit = lambda audio: DiffusionBridge(epochs=2, progress=False).fit(audio, t, device="cpu")  # noqa: E731
    m1, m2 = fit(a), fit(a[np.random.default_rng(0).permutation(len(a))])
    for (k, v1), v2 in zip(m1.net.state_dict().items(), m2.net.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k
    assert set(m1.history) == {"prior", "total"}


def test_a_diverging_fit_stops_with_a_clear_error(data):
    a, t = data[0][:200], data[1][:200]
    with pytest.raises(ValueError, match="loss became .*lower lr"):
        DiffusionLink(epochs=3, batch_size=32, lr=1e8, grad_clip=0.0, progress=False).fit(a, t, device="cpu")


def test_broken_weights_never_give_non_finite_outputs(link, data):
    m = DiffusionLink.__new__(DiffusionLink)
    m.__dict__.update(link.__dict__)
    m.net = __import__("copy").deepcopy(link.net)
    with torch.no_grad():
        next(m.net.parameters()).fill_(float("nan"))
    with pytest.raises(RuntimeError, match="NaN/inf.*refit"):
        m.transform(data[2][:10])


def test_huge_finite_rows_normalise_without_overflow(link, data):
    from dlink.bridges.baselines import Identity

    va = data[2][:20]
    big = va * np.float32(1e30)  # finite in float32; its squared norm is not
    np.testing.assert_allclose(link.transform(big), link.transform(va), atol=1e-5)
    ident = Identity().fit(va, data[3][:20])
    np.testing.assert_allclose(ident.transform(big), va, atol=1e-6)


@pytest.mark.parametrize(
    "field, value",
    [
        ("grad_clip", -1.0),
        ("time_dim", 127),
        ("hidden", -4),
        ("infer_batch_size", 0),
        ("seed", 2**64),
        ("lr", "0.1"),
        ("start_step", 1.5),
        ("start_step", 0),
        ("batch_size", 1),
        ("epochs", 0),
        ("patience", 0),
        ("ema_decay", 1.0),
        ("n_blocks", 0),
        ("T", 1),
        ("eta", -0.1),
        ("lambda_cross", -1.0),
        ("centre", "audio"),
        ("scale", 0.0),
        ("steps", 0),
    ],
)
def test_every_config_field_is_checked_at_construction(field, value):
    with pytest.raises(ValueError, match=rf"^{field}="):
        DiffusionLink(**{field: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(link, data):
    va = data[2][:200]
    cpu = link.transform(va)
    link.to("cuda")
    try:
        np.testing.assert_allclose(link.transform(va), cpu, atol=1e-4)
    finally:
        link.to("cpu")


def test_each_kind_of_draw_has_its_own_stream_at_a_fixed_offset():
    """The offsets are part of every learned bridge's numbers: changing one changes every fit."""
    import torch

    from dlink.bridges.base import SEED_OFFSETS, seeded_generator

    assert SEED_OFFSETS == {"train_noise": 1, "val_noise": 2, "inference_noise": 3}
    draws = {k: torch.randn(4, generator=seeded_generator(7, k)) for k in SEED_OFFSETS}
    for k, offset in SEED_OFFSETS.items():
        assert torch.equal(draws[k], torch.randn(4, generator=torch.Generator().manual_seed(7 + offset)))
    assert not torch.equal(draws["train_noise"], draws["val_noise"])
