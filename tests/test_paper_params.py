"""The paper setting's notebook parameters: user paths, lm, clap_tokenizer, clap_amodel, clap_fusion."""

from __future__ import annotations

import json

import pytest

from dlink.profiles import resolve_params, resolve_user_paths


def test_user_paths_are_made_absolute_against_the_callers_directory(tmp_path, monkeypatch):
    (tmp_path / "models" / "lm").mkdir(parents=True)
    params = {"clap_ckpt": "w/clap.pt", "data_root": "../data", "clap_tokenizer": "/abs/tok",
              "lm": "models/lm", "seeds": [0], "dataset": "audiocaps"}  # fmt: skip
    out = resolve_user_paths(params, base=tmp_path)
    assert out["clap_ckpt"] == str(tmp_path / "w" / "clap.pt")
    assert out["data_root"] == str(tmp_path.parent / "data") and out["clap_tokenizer"] == "/abs/tok"
    assert out["lm"] == str(tmp_path / "models" / "lm")  # exists here: a folder, not a hub name
    assert out["seeds"] == [0] and out["dataset"] == "audiocaps"
    hub = resolve_user_paths({"lm": "HuggingFaceTB/SmolLM2-135M"}, base=tmp_path)
    assert hub["lm"] == "HuggingFaceTB/SmolLM2-135M"
    assert resolve_user_paths({"lm": "./mine"}, base=tmp_path)["lm"] == str(tmp_path / "mine")
    monkeypatch.setenv("DLINK_USER_CWD", str(tmp_path))  # what run_all.sh sets
    assert resolve_user_paths({"clap_ckpt": "a.pt"})["clap_ckpt"] == str(tmp_path / "a.pt")


def test_errors_show_the_absolute_path_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        resolve_params(profile="smoke", dataset="clotho", data_root="clotho_here",
                       encoder="laion-clap", clap_ckpt="ckpt.pt", clap_tokenizer="tok")  # fmt: skip
    msg = str(e.value)
    for path in ("clotho_here", "ckpt.pt", "tok"):
        assert str(tmp_path / path) in msg, (path, msg)


def _lm_folder(folder, arch="GPT2LMHeadModel", model_type="gpt2", weights=True, tokenizer=True):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": model_type}))
    if weights:
        (folder / "model.safetensors").write_bytes(b"x")
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def test_lm_parameter(tmp_path, monkeypatch):
    assert resolve_params(profile="smoke").profile.lm == "scratch"  # None keeps the profile's
    params = resolve_params(profile="smoke", lm="tiny-random")
    assert (
        params.lm == "tiny-random" and params.profile.name == "smoke" and params.profile.captioner_epochs == 1
    )
    good = _lm_folder(tmp_path / "gpt")
    assert resolve_params(profile="smoke", lm=str(good)).profile.lm == str(good)
    cases = {
        "not a causal language model": _lm_folder(tmp_path / "bert", arch="BertModel", model_type="bert"),
        "has no weights": _lm_folder(tmp_path / "noweights", weights=False),
        "has no tokenizer files": _lm_folder(tmp_path / "notok", tokenizer=False),
        "has no config.json": tmp_path,
    }
    for needle, folder in cases.items():
        with pytest.raises(ValueError, match=needle):
            resolve_params(profile="smoke", lm=str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="hub is not reachable"):
        resolve_params(profile="smoke", lm="no-such-org/no-such-lm")
    with pytest.raises(ValueError, match="lm must be None"):
        resolve_params(profile="smoke", lm=3)


def test_laion_options(tmp_path):
    ckpt = tmp_path / "music_audioset_epoch_15_esc_90.14.pt"
    ckpt.write_bytes(b"x")
    tok = tmp_path / "roberta-base"
    tok.mkdir()
    with pytest.raises(
        ValueError, match=r"holds no tokenizer vocabulary; expected vocab\.json \+ merges\.txt"
    ):
        resolve_params(profile="smoke", encoder="laion-clap", clap_ckpt=str(ckpt), clap_tokenizer=str(tok))
    (tok / "vocab.json").write_text("{}")
    (tok / "merges.txt").write_text("")
    params = resolve_params(profile="smoke", encoder="laion-clap", clap_ckpt=str(ckpt), clap_tokenizer=str(tok),
                       clap_amodel="HTSAT-base", clap_fusion=False)  # fmt: skip
    assert params.encoder_options.loader_kwargs() == {
        "amodel": "HTSAT-base",
        "enable_fusion": False,
        "tokenizer": tok,
        "download": False,
    }
    assert params.encoder_options.checkpoint == ckpt and params.as_dict()["clap_amodel"] == "HTSAT-base"
    # with a checkpoint file the encoder is built on first use: its fingerprint needs only file hashes
    from dlink.encoders.laion import LazyLaionClap

    lazy = params.encoder_options.encoder("cpu")
    assert isinstance(lazy, LazyLaionClap) and "HTSAT-base" in lazy.fingerprint
    # the embedded encoder takes no options; its parameters still read as the defaults
    E = resolve_params(profile="smoke")
    assert E.encoder_options is None and E.as_dict()["clap_amodel"] == "HTSAT-tiny"
    with pytest.raises(ValueError) as e:
        resolve_params(profile="smoke", clap_amodel="HTSAT-huge", clap_fusion="yes", clap_tokenizer=str(tok))
    msg = str(e.value)
    assert (
        "HTSAT-base" in msg
        and "clap_fusion must be True" in msg
        and "only used with encoder='laion-clap'" in msg
    )


def test_every_resolve_params_argument_reaches_every_notebook():
    """By name where the parameters cell declares it, else inside its `options` dict, which the set-up
    cell hands to resolve_params; `-p options {...}` is the same as the single names."""
    from dlink import paths
    from dlink.runner.pipeline import (
        _expand_options,
        _resolve_params_names,
        _route_parameters,
        find_notebooks,
    )

    notebooks = find_notebooks(paths.NOTEBOOKS)
    given = {name: f"value of {name}" for name in _resolve_params_names()}
    assert {"lm", "clap_ckpt", "clap_tokenizer", "clap_amodel", "clap_fusion", "max_missing"} <= set(given)
    for nb, routed in _route_parameters(notebooks, given).items():
        assert {k: v for k, v in routed.items() if k != "options"} | routed.get("options", {}) == given, (
            nb.name
        )
        assert "**options)" in nb.read_text(), nb.name
    assert _expand_options({"seeds": [0], "options": {"lm": "scratch"}}) == {"seeds": [0], "lm": "scratch"}
    with pytest.raises(ValueError, match="given twice"):
        _expand_options({"lm": "scratch", "options": {"lm": "tiny-random"}})
    with pytest.raises(ValueError, match="give a mapping"):
        _expand_options({"options": "lm=scratch"})


def test_audiocaps_version_is_validated_and_reaches_the_loader(tmp_path, monkeypatch):
    import paper_fixtures as fixtures

    from dlink import experiment

    monkeypatch.setattr(experiment.paths, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(experiment.paths, "CACHE", tmp_path / "cache")  # load_split's audio checks

    fixtures.make_audiocaps(tmp_path, layout="v1", counts=(3, 2, 2), seconds=0.2)
    fixtures.make_audiocaps(tmp_path, layout="v2", counts=(4, 2, 2), seconds=0.2)
    params = resolve_params(
        profile="smoke", dataset="audiocaps", data_root=str(tmp_path), audiocaps_version="v2"
    )
    assert params.audiocaps_version == "v2" and params.as_dict()["audiocaps_version"] == "v2"
    assert experiment.run_key(params) != experiment.run_key(resolve_params(profile="smoke", dataset="audiocaps",
                                                                      data_root=str(tmp_path)))  # fmt: skip
    assert len(experiment.splits(params)["train"]) == 4  # the v2 captions
    assert (
        tmp_path / "results" / params.label / "skipped_audio_audiocaps.csv"
    ).read_text() == "split,id,audio,reason\n"
    with pytest.raises(ValueError, match=r"audiocaps_version='2.0': expected 'v1'"):
        resolve_params(profile="smoke", dataset="audiocaps", data_root=str(tmp_path), audiocaps_version="2.0")
    with pytest.raises(ValueError, match="with dataset='audiocaps' only"):
        resolve_params(profile="smoke", audiocaps_version="v2")
