"""dlink.profiles: the profiles and resolve_params' validation."""

from __future__ import annotations

import dataclasses

import pytest

from dlink.device import resolve_device
from dlink.profiles import PROFILES, Params, Profile, get_profile, resolve_params


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    # never probe the network from tests; an unset profile variable unless a test sets it
    monkeypatch.setenv("DLINK_OFFLINE", "1")
    monkeypatch.delenv("DLINK_PROFILE", raising=False)


def test_profiles_grow_from_smoke_to_full():
    assert set(PROFILES) == {"smoke", "default", "full", "llm"}
    s, d, f = PROFILES["smoke"], PROFILES["default"], PROFILES["full"]
    assert (s.n_seeds, d.n_seeds, f.n_seeds) == (1, 3, 3) and d.caption_seeds >= 3
    assert (s.lm, d.lm, f.lm) == ("scratch", "scratch", "smollm2-135m")
    assert (s.beams, f.beams) == (2, 4) and d.eval_items is None and f.eval_items is None
    assert 0.016 in d.noise_variances and 0.016 in f.noise_variances
    assert s.dataset_size == "smoke" and d.dataset_size == "default"
    for small, big in ((s, d), (d, f)):
        for name in ("clap_epochs", "bridge_epochs", "umap_points"):
            assert getattr(small, name) <= getattr(big, name), name
        for grid in ("start_steps", "ddim_steps", "n_blocks"):
            assert len(getattr(small, grid)) <= len(getattr(big, grid)), grid
    for p in PROFILES.values():
        assert all(0 < k < 1000 for k in p.start_steps) and all(n >= 1 for n in p.ddim_steps + p.n_blocks)
        hash(p)  # frozen + tuples: usable as a cache key
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n_seeds = 5


def test_defaults_and_environment(monkeypatch):
    params = resolve_params()
    assert isinstance(params, Params) and params.profile.name == "default"
    assert params.seeds == (0, 1, 2) == tuple(range(PROFILES["default"].n_seeds))
    assert params.device in ("cpu", "cuda") and params.dataset == "embedded" and params.encoder == "embedded"
    assert params.bridge_epochs == PROFILES["default"].bridge_epochs  # profile fields read through
    monkeypatch.setenv("DLINK_PROFILE", "smoke")
    params = resolve_params(profile=None, seeds=[3, 5])
    assert params.profile is PROFILES["smoke"] and params.seeds == (3, 5) and params.lm == "scratch"
    assert resolve_params(profile="full").profile.name == "full"  # explicit beats the environment
    assert resolve_params(profile=PROFILES["full"]).profile.name == "full"
    d = params.as_dict()
    assert d["profile"]["name"] == "smoke" and d["seeds"] == [3, 5] and d["clap_ckpt"] is None
    monkeypatch.setenv("DLINK_PROFILE", "tiny")
    with pytest.raises(
        ValueError, match=r"\$DLINK_PROFILE='tiny' is not a profile; valid: smoke, default, full, llm"
    ):
        get_profile()


def test_every_problem_reported_at_once():
    with pytest.raises(ValueError) as e:
        resolve_params(profile="huge", dataset="esc50", encoder="msclap", seeds=[], beams=3, lr=0.1)
    msg = str(e.value)
    for needle in (
        "unknown parameter(s) beams, lr",
        "profile='huge' is not a profile; valid: smoke, default, full, llm",
        "dataset='esc50' is not known; valid: embedded, audiocaps, clotho",
        "encoder='msclap' is not known; valid: embedded, laion-clap",
        "seeds must be None",
    ):
        assert needle in msg, (needle, msg)
    assert msg.count("\n  - ") == 5


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"seeds": 3}, "non-empty list of ints"),
        ({"seeds": [0, "1"]}, "non-empty list of ints"),
        ({"seeds": [True]}, "non-empty list of ints"),
        ({"seeds": [-1]}, "non-empty list of ints"),
        ({"seeds": [1, 1]}, "duplicates"),
        ({"dataset": "audiocaps"}, "needs data_root"),
        ({"dataset": "clotho", "data_root": "/no/such/clotho"}, "is not a folder"),
        ({"data_root": "/tmp"}, "only used with dataset='audiocaps' or 'clotho'"),
        ({"encoder": "laion-clap"}, "clap_ckpt='/path/to/630k-audioset-best.pt'"),
        ({"encoder": "laion-clap", "clap_ckpt": "/no/such.pt"}, "does not exist; download it from https://"),
        ({"clap_ckpt": "/no/such.pt"}, "only used with encoder='laion-clap'"),
        ({"device": "tpu"}, "device must be 'auto'"),
    ],
)
def test_bad_values(kwargs, needle):
    with pytest.raises(ValueError, match="invalid notebook parameters") as e:
        resolve_params(profile="smoke", **kwargs)
    assert needle in str(e.value)


def test_real_paths_accepted(tmp_path):
    ckpt = tmp_path / "630k-audioset-best.pt"
    ckpt.write_bytes(b"x")
    params = resolve_params(profile="smoke", encoder="laion-clap", clap_ckpt=str(ckpt))
    assert params.encoder_options.checkpoint == ckpt and params.encoder == "laion-clap"
    params = resolve_params(profile="smoke", dataset="audiocaps", data_root=tmp_path)
    assert params.data_root == tmp_path


def test_resolve_device():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError):
        resolve_device("")


@pytest.mark.parametrize("seeds", [[2**70], [0, 2**32], [-1]])
def test_seeds_beyond_32_bits_are_refused(seeds):
    with pytest.raises(ValueError, match=r"seeds must be .* \[0, 2\*\*32\)"):
        resolve_params(profile="smoke", seeds=seeds)


def test_largest_32_bit_seed_is_accepted():
    assert resolve_params(profile="smoke", seeds=[2**32 - 1]).seeds == (2**32 - 1,)


def test_profile_is_a_dataclass_with_documented_fields():
    names = {f.name for f in dataclasses.fields(Profile)}
    assert {
        "name", "dataset_size", "n_seeds", "clap_epochs", "bridge_epochs", "bridge_batch_size", "lm",
        "captioner_epochs", "eval_items", "beams", "umap_points",
        "start_steps", "ddim_steps", "n_blocks", "device",
    } <= names  # fmt: skip


def test_only_the_canonical_default_run_is_labelled_default():
    """results/ holds the committed default run alone: every other run gets a folder of its own."""
    from dlink.experiment import results_dir

    assert resolve_params(profile="default").label == "default"
    assert resolve_params(profile="default", seeds=[0, 1, 2]).label == "default"
    assert resolve_params(profile="default", seeds=[0]).label == "default-seeds-0"
    assert resolve_params(profile="default", lm="tiny-random").label == "default-lm-tiny-random"
    assert resolve_params(profile="smoke").label == "smoke"
    assert results_dir(resolve_params(profile="default", seeds=[0])).name == "default-seeds-0"


def test_the_llm_profile_trains_smollm2_like_the_default_run_and_writes_results_llm():
    from dlink import paths
    from dlink.experiment import results_dir

    llm, d = PROFILES["llm"], PROFILES["default"]
    params = resolve_params(profile="llm")
    assert params.label == "llm" and results_dir(params) == paths.RESULTS / "llm"
    assert params.lm == "smollm2-135m" and params.seeds == (0,) and params.eval_items is None
    # the same data, encoder heads and bridge training as the default run's seed 0
    for name in (
        "dataset_size",
        "clap_epochs",
        "bridge_epochs",
        "bridge_batch_size",
        "bridge_patience",
        "encoder_share",
    ):
        assert getattr(llm, name) == getattr(d, name), name
    assert llm.notebooks == ("01", "02", "03", "04", "05")  # up to the zero-shot table
    assert d.notebooks is None and PROFILES["smoke"].notebooks is None  # every notebook


def test_the_hub_check_goes_through_the_https_proxy(monkeypatch):
    import socket
    import threading

    from dlink.checks import hub_online

    seen = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def proxy():  # a proxy that refuses the tunnel, after recording what it was asked for
        conn, _ = server.accept()
        with conn:
            seen.append(conn.recv(4096).split(b"\r\n", 1)[0])
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    t = threading.Thread(target=proxy, daemon=True)
    t.start()
    for v in ("HF_HUB_OFFLINE", "DLINK_OFFLINE", "NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        assert hub_online("hub.example.invalid", timeout=5) is False  # the tunnel was refused
    finally:
        server.close()
    t.join(5)
    assert seen and seen[0].startswith(b"CONNECT hub.example.invalid:443 ")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_online() is False


def test_a_profiles_captioner_settings_reach_the_captioner_and_must_suit_its_lm(monkeypatch, tmp_path):
    import numpy as np

    from dlink import experiment, profiles

    llm = dataclasses.replace(
        PROFILES["llm"], name="llm-lora", captioner=(("lora", True), ("batch_size", 16))
    )
    monkeypatch.setitem(profiles.PROFILES, "llm-lora", llm)
    seen = {}
    monkeypatch.setattr(experiment, "run_dir", lambda params: tmp_path)  # nothing written under data/
    monkeypatch.setattr(
        "dlink.captioning.aac.train_captioner", lambda X, caps, cfg, **kw: seen.update(cfg) or 1 / 0
    )
    params = resolve_params(profile="llm-lora")
    with pytest.raises(ZeroDivisionError):
        experiment.fit_captioner(params, "t", np.zeros((2, 4), np.float32), ["a", "b"], cache=False, epochs=1)
    assert seen["lora"] is True and seen["batch_size"] == 16 and seen["epochs"] == 1  # the call's own win
    with pytest.raises(ValueError, match="llm-lora profile's captioner settings .*lora=True.* lm='scratch'"):
        resolve_params(profile="llm-lora", lm="scratch")
