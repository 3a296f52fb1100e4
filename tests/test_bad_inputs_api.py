"""Bad inputs to the bridges, stats, gap metrics, caches and checkpoints: each is refused where it
enters, with a ValueError naming the field, never a crash from inside numpy / torch or a silent
wrong number."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

from dlink import cache
from dlink.bridges.base import Bridge, synthetic_gap_pairs
from dlink.bridges.baselines import make_bridge
from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner
from dlink.device import THREAD_VARS, _cgroup_quota, set_torch_threads, thread_env, torch_threads, usable_cpus
from dlink.encoders.embedded_clap import EmbeddedClapConfig
from dlink.evaluation import gap, stats
from dlink.evaluation.tables import _aggregate
from dlink.profiles import resolve_params

torch.set_num_threads(1)
A, T = synthetic_gap_pairs(24, 6, seed=0)
FAST = {
    "epochs": 1,
    "batch_size": 8,
    "progress": False,
    "time_dim": 8,
    "n_blocks": 1,
    "T": 20,
    "start_step": 5,
}
NAN = float("nan")

# --------------------------------------------------------------- bridge configs
BRIDGE_CONFIGS = {
    "projection k=2.5": ("projection", {"k": 2.5}, "k=2.5"),
    "projection k=0": ("projection", {"k": 0}, "k=0"),
    "projection k=True": ("projection", {"k": True}, "k=True"),
    "projection temperature=nan": ("projection", {"temperature": NAN}, "temperature=nan"),
    "projection temperature='1'": ("projection", {"temperature": "1"}, "temperature='1'"),
    "projection temperature=inf": ("projection", {"temperature": float("inf")}, "temperature=inf"),
    "projection temperature=0": ("projection", {"temperature": 0}, "temperature=0"),
    "projection chunk=0": ("projection", {"chunk": 0}, "chunk=0"),
    "projection chunk=1.5": ("projection", {"chunk": 1.5}, "chunk=1.5"),
    "ridge lam='1'": ("ridge", {"lam": "1"}, "lam='1'"),
    "ridge lam=nan": ("ridge", {"lam": NAN}, "lam=nan"),
    "ridge lam=-1": ("ridge", {"lam": -1}, "lam=-1"),
    "ridge lambdas='abc'": ("ridge", {"lambdas": "abc"}, "lambdas='abc'"),
    "ridge lambdas=()": ("ridge", {"lambdas": ()}, r"lambdas=\(\)"),
    "ridge lambdas with nan": ("ridge", {"lambdas": (1.0, NAN)}, "lambdas="),
    "ridge lambdas with str": ("ridge", {"lambdas": (1.0, "x")}, "lambdas="),
    "mean_shift renormalize='no'": ("mean_shift", {"renormalize": "no"}, "renormalize='no'"),
    "mean_shift renormalize=1": ("mean_shift", {"renormalize": 1}, "renormalize=1"),
    "conditional_prior steps=2.5": ("conditional_prior", {"steps": 2.5}, "steps=2.5"),
    "conditional_prior steps=0": ("conditional_prior", {"steps": 0}, "steps=0"),
    "conditional_prior steps=True": ("conditional_prior", {"steps": True}, "steps=True"),
    "conditional_prior conditioning": ("conditional_prior", {"conditioning": "add"}, "conditioning='add'"),
    "diffusion_link seed=-1": ("diffusion_link", {"seed": -1}, "seed=-1"),
    "diffusion_link lr=nan": ("diffusion_link", {"lr": NAN}, "lr=nan"),
    "unknown bridge": ("diffusion-link", {}, "unknown bridge"),
    "unknown field": ("ridge", {"lamda": 1.0}, "unknown RidgeConfig field"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BRIDGE_CONFIGS))
def test_bridge_config(case):
    name, kwargs, match = BRIDGE_CONFIGS[case]
    with pytest.raises(ValueError, match=match):
        make_bridge(name, **kwargs)


# --------------------------------------------------------------- embedded-CLAP config
CLAP_CONFIGS = {
    "dim=0": ({"dim": 0}, "dim=0"),
    "dim=2.5": ({"dim": 2.5}, "dim=2.5"),
    "hidden=-1": ({"hidden": -1}, "hidden=-1"),
    "init_temperature=nan": ({"init_temperature": NAN}, "init_temperature=nan"),
    "init_temperature=0": ({"init_temperature": 0.0}, "init_temperature=0"),
    "lr='1'": ({"lr": "1"}, "lr='1'"),
    "dropout=1": ({"dropout": 1.0}, "dropout=1"),
    "batch_size=True": ({"batch_size": True}, "batch_size=True"),
    "seed=-1": ({"seed": -1}, "seed=-1"),
    "audio_tower='vggish'": ({"audio_tower": "vggish"}, "audio_tower='vggish'"),
}


@pytest.mark.parametrize("case", list(CLAP_CONFIGS))
def test_embedded_clap_config(case):
    kwargs, match = CLAP_CONFIGS[case]
    with pytest.raises(ValueError, match=f"EmbeddedClapConfig: {match}"):
        EmbeddedClapConfig(**kwargs)


def test_embedded_clap_config_defaults_are_valid():
    assert EmbeddedClapConfig().dim == 512


# --------------------------------------------------------------- silent wrong numbers
def test_ridge_lam0_on_fewer_rows_than_dims():
    with pytest.raises(ValueError, match="lam=0 needs more training pairs than dimensions; got N=5, D=6"):
        make_bridge("ridge", lam=0).fit(A[:5], T[:5])
    make_bridge("ridge", lam=0).fit(A, T)  # N > D: well posed
    make_bridge("ridge", lam=0.1).fit(A[:5], T[:5])  # a penalty makes it well posed


@pytest.mark.parametrize("name", ["diffusion_link", "mlp_regression"])
def test_one_item_validation_set(name):
    with pytest.raises(ValueError, match="val needs at least 2 pairs, got 1"):
        make_bridge(name, patience=1, **({} if name != "mlp_regression" else {}),
                    **{k: v for k, v in FAST.items() if name == "diffusion_link" or k not in ("T", "start_step")}
                    ).fit(A, T, val=(A[:1], T[:1]))  # fmt: skip


STATS = {
    "bootstrap level=0": (lambda: stats.bootstrap_ci(np.arange(5.0), level=0), "level=0"),
    "bootstrap level=1": (lambda: stats.bootstrap_ci(np.arange(5.0), level=1), "level=1"),
    "bootstrap level=1.5": (lambda: stats.bootstrap_ci(np.arange(5.0), level=1.5), "level=1.5"),
    "bootstrap level='95'": (lambda: stats.bootstrap_ci(np.arange(5.0), level="95"), "level='95'"),
    "bootstrap level=nan": (lambda: stats.bootstrap_ci(np.arange(5.0), level=NAN), "level=nan"),
    "bootstrap n_boot=0": (lambda: stats.bootstrap_ci(np.arange(5.0), n_boot=0), "n_boot=0"),
    "bootstrap n_boot=2.5": (lambda: stats.bootstrap_ci(np.arange(5.0), n_boot=2.5), "n_boot=2.5"),
    "bootstrap seed=-1": (lambda: stats.bootstrap_ci(np.arange(5.0), seed=-1), "seed=-1"),
    "bootstrap seed=None": (lambda: stats.bootstrap_ci(np.arange(5.0), seed=None), "seed=None"),
    "paired gain n_boot=0": (lambda: stats.paired_relative_gain([1.0, 2], [1.0, 2], n_boot=0), "n_boot=0"),
    "paired gain level=0": (lambda: stats.paired_relative_gain([1.0, 2], [1.0, 2], level=0), "level=0"),
    "paired diff seed=-1": (lambda: stats.paired_difference([1.0, 2], [1.0, 2], seed=-1), "seed=-1"),
}


@pytest.mark.parametrize("case", list(STATS))
def test_stats_arguments(case):
    call, match = STATS[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("scale", [1e20, 1e30, 3e37])
def test_mmd_is_finite_at_huge_norms(scale):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 4)) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning is a failure too
        big = gap.mmd2_rbf(x * scale, y * scale)
    assert np.isfinite(big)
    assert big == pytest.approx(gap.mmd2_rbf(x, y), rel=1e-4)  # median bandwidth: scale-free


def test_mmd_unchanged_for_ordinary_inputs():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32)
    z = np.concatenate([x, y])
    sq = (z * z).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0, None)
    assert gap.mmd2_rbf(x, y, bandwidth=1.5) == gap.mmd2_rbf(x.astype(np.float64), y, bandwidth=1.5)
    assert np.isfinite(d2).all()


def test_nan_seed_is_counted_apart_from_the_mean():
    import pandas as pd

    from dlink.evaluation.tables import write_table  # noqa: F401  (the table writer reads n_finite)

    df = pd.DataFrame({"method": ["x"] * 3, "R1": [0.5, NAN, 0.7]})
    (rec,) = _aggregate(df, ["method"], ["R1"])
    assert rec["n_seeds"] == 3 and rec["n_finite"]["R1"] == 2
    assert rec["R1"][0] == pytest.approx(0.6)


# --------------------------------------------------------------- checkpoints: edited config.json
@pytest.fixture
def ridge_ck(tmp_path):
    return make_bridge("ridge").fit(A, T).save(tmp_path / "ridge")


@pytest.fixture
def dlink_ck(tmp_path):
    return make_bridge("diffusion_link", **FAST).fit(A, T).save(tmp_path / "dl")


def _edit(folder, **fields):
    meta = json.loads((folder / "config.json").read_text())
    for k, v in fields.items():
        if isinstance(v, dict) and isinstance(meta.get(k), dict):
            meta[k].update(v)
        else:
            meta[k] = v
    (folder / "config.json").write_text(json.dumps(meta))


EDITS = {
    "dim=99": ({"dim": 99}, r"tensor 'w' has shape \(6, 6\) but config.json \(dim=99"),
    "dim='x'": ({"dim": "x"}, "dim='x' must be an int"),
    "dim=0": ({"dim": 0}, "dim=0 must be an int"),
    "dim=6.0": ({"dim": 6.5}, "dim=6.5 must be an int"),
    "bridge=['x']": ({"bridge": ["x"]}, r"bridge=\['x'\] must be a name"),
    "bridge of another kind": ({"bridge": "mean_shift"}, "unknown MeanShiftConfig field"),
    "bridge unknown": ({"bridge": "nope"}, "names bridge 'nope'"),
    "history a list": ({"history": [1, 2]}, "history must map"),
    "history of strings": ({"history": {"a": "xyz"}}, "history must map"),
    "config a list": ({"config": [1]}, "config must be an object"),
    "config field bad": ({"config": {"lam": "1"}}, r"config.json: lam='1'"),
}


DLINK_EDITS = {
    "dim=8": ({"dim": 8}, r"tensor 'net\..*' has shape .* config.json \(dim=8"),
    "width=7": ({"config": {"width": 7}}, r"tensor 'net\..*' has shape"),
    "n_blocks=2": ({"config": {"n_blocks": 2}}, r"lacks tensor 'net\..*"),
    "time_dim=16": ({"config": {"time_dim": 16}}, r"tensor 'net\..*' has shape"),
    "train a list": ({"train": [1]}, "train must be an object"),
    "train seed=-1": ({"train": {"seed": -1}}, "seed=-1"),
}


@pytest.mark.parametrize(
    ("checkpoint", "case"),
    [("ridge_ck", c) for c in EDITS] + [("dlink_ck", c) for c in DLINK_EDITS],
)
def test_edited_checkpoint(request, checkpoint, case):
    fields, match = (DLINK_EDITS if checkpoint == "dlink_ck" else EDITS)[case]
    folder = request.getfixturevalue(checkpoint)
    _edit(folder, **fields)
    with pytest.raises(ValueError, match=match):
        Bridge.load(folder)


def test_checkpoint_check_draws_no_random_numbers(dlink_ck):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    Bridge.load(dlink_ck)
    assert torch.equal(torch.rand(3), expected)


def test_projection_bank_of_another_dim(tmp_path):
    ck = make_bridge("projection").fit(A, T).save(tmp_path / "p")
    _edit(ck, dim=5)
    with pytest.raises(ValueError, match=r"tensor 'bank' is \(24, 6\) but config.json implies \(N, dim=5\)"):
        Bridge.load(ck)


# --------------------------------------------------------------- where things are saved
def test_save_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"checkpoint folder '\.' must be"):
        make_bridge("ridge").fit(A, T).save(".")


def test_save_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="lies under .*f, which is a file"):
        make_bridge("ridge").fit(A, T).save(tmp_path / "f" / "sub")


def test_save_onto_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        make_bridge("ridge").fit(A, T).save(tmp_path / "f")


def test_read_only_cache_returns_the_result(tmp_path, monkeypatch):
    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache, "atomic_write_bytes", refuse)  # root ignores chmod: refuse the write itself
    with pytest.warns(UserWarning, match="could not write the cache entry"):
        out = cache.cached("ab" * 8, lambda: np.arange(3.0), folder=tmp_path)
    assert out.tolist() == [0.0, 1.0, 2.0]


# --------------------------------------------------------------- captioner
def test_generate_beyond_the_trained_length():
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    cfg = CaptionerConfig(batch_size=4, prefix_len=1, projector_hidden=8, scratch_width=8, scratch_layers=1,
                          scratch_heads=1, vocab_min_count=1, epochs=1, max_new_tokens=3)  # fmt: skip
    cap = PrefixCaptioner(cfg, device="cpu").fit(
        x, ["a dog barks", "rain falls", "a car", "birds"], progress=False
    )
    with pytest.raises(ValueError, match="max_new_tokens=500 does not fit: the LM holds"):
        cap.generate(x, max_new_tokens=500, progress=False)
    assert len(cap.generate(x, max_new_tokens=3, progress=False)) == 4


# --------------------------------------------------------------- notebook (-p) parameters
@pytest.mark.parametrize("field", ["clap_ckpt", "clap_tokenizer", "data_root"])
@pytest.mark.parametrize("value", [3, ""])
def test_path_parameters(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a file or folder path"):
        resolve_params(profile="smoke", encoder="laion-clap", **{field: value})


# --------------------------------------------------------------- threads
def test_usable_cpus_respects_affinity():
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cgroup_quota(str(tmp_path)) == quota


def test_thread_policy(monkeypatch):
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLINK_THREADS", "3")
    assert torch_threads() == 3
    assert thread_env() == dict.fromkeys(THREAD_VARS, "3")
    monkeypatch.setenv("DLINK_THREADS", "zero")
    with pytest.raises(ValueError, match="DLINK_THREADS='zero'"):
        torch_threads()
    monkeypatch.delenv("DLINK_THREADS")
    monkeypatch.setattr("dlink.device.usable_cpus", lambda: 4)
    assert torch_threads() == 3
    assert thread_env() == dict.fromkeys(THREAD_VARS, "3")
    monkeypatch.setattr("dlink.device.usable_cpus", lambda: 2)
    assert torch_threads() == 1  # a 2-core machine: one thread, as under OMP_NUM_THREADS=1
    monkeypatch.setattr("dlink.device.usable_cpus", lambda: 1)
    assert torch_threads() == 1


@pytest.mark.parametrize(("omp", "n"), [("1", 1), ("3", 3), ("4,2", 4), (" 2 ", 2)])
def test_explicit_omp_num_threads_is_kept(monkeypatch, omp, n):
    monkeypatch.delenv("DLINK_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr("dlink.device.usable_cpus", lambda: 8)
    assert torch_threads() == n
    assert thread_env() == {}  # the user's count stands; the pipeline exports nothing


@pytest.mark.parametrize("omp", ["0", "two", "-1", ",4"])
def test_bad_omp_num_threads(monkeypatch, omp):
    monkeypatch.delenv("DLINK_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    with pytest.raises(ValueError, match="OMP_NUM_THREADS="):
        torch_threads()


def test_set_torch_threads():
    with pytest.raises(ValueError, match="threads=0"):
        set_torch_threads(0)
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
