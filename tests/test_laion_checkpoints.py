"""LAION-CLAP checkpoints as the training script writes them (numpy scalars, "module." prefixes,
position_ids present or absent, fusion, HTSAT-base), loaded through the notebooks' path."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
laion = pytest.importorskip("dlink.encoders.laion")
import paper_fixtures as fixtures  # noqa: E402


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    d = tmp_path_factory.mktemp("laion")
    vocab = fixtures.make_roberta_tokenizer(d / "tok")
    sd = fixtures.make_laion_checkpoint(d / "with_pos.pt", vocab, position_ids=True)
    fixtures.make_laion_checkpoint(d / "without_pos.pt", vocab, position_ids=False)
    return d, vocab, sd


def test_training_layout_needs_the_numpy_allowlist_and_loads_with_it(fx):
    d, _, sd = fx
    with pytest.raises(Exception, match="(?i)weights only load failed"):  # torch's own refusal
        torch.load(d / "with_pos.pt", weights_only=True)
    got = laion.read_state_dict(d / "with_pos.pt")
    assert "text_branch.embeddings.position_ids" in got and not any(k.startswith("module.") for k in got)
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    names = {g[1] for g in laion._numpy_safe_globals() if isinstance(g, tuple)}
    assert "numpy.core.multiarray.scalar" in names  # the name numpy 1.x wrote into the published files


def test_other_pickled_objects_are_refused_not_unpickled(tmp_path):
    import argparse

    bad = tmp_path / "odd.pt"  # some training scripts save their argparse Namespace beside the weights
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1e-4)}, bad)
    with pytest.raises(ValueError, match=r"argparse\.Namespace.*never unpickles"):
        laion.read_state_dict(bad)


def test_position_ids_present_or_absent_load_to_the_same_encoder_via_the_notebook_path(fx):
    from dlink import experiment
    from dlink.profiles import resolve_params

    d, vocab, _ = fx
    wave = [np.sin(np.linspace(0, 900, 24000)).astype(np.float32)]
    texts = ["a dog barks while rain falls", "a car passes by"]
    out = []
    for name in ("with_pos.pt", "without_pos.pt"):
        params = resolve_params(profile="smoke", dataset="embedded", encoder="laion-clap",
                           clap_ckpt=str(d / name), clap_tokenizer=str(d / "tok"))  # fmt: skip
        enc = experiment.encoder(params)  # what notebook 02 calls
        assert (
            enc.model.text_branch.config.vocab_size == vocab
            and enc.model.text_branch.config.num_hidden_layers == 1
        )
        out.append((enc.embed_audio(wave, sr=16000, progress=False), enc.embed_text(texts, progress=False)))
    np.testing.assert_allclose(out[0][0], out[1][0], atol=1e-6)
    np.testing.assert_allclose(out[0][1], out[1][1], atol=1e-6)
    assert out[0][1].shape == (2, 512) and abs(float(out[0][1][0] @ out[0][1][1])) < 0.9999


def test_tower_config_of_a_published_roberta_checkpoint_is_roberta_base():
    shapes = {
        "text_branch.embeddings.word_embeddings.weight": (50265, 768),
        "text_branch.embeddings.position_embeddings.weight": (514, 768),
        "text_branch.embeddings.token_type_embeddings.weight": (1, 768),
        "text_branch.encoder.layer.0.intermediate.dense.weight": (3072, 768),
        **{f"text_branch.encoder.layer.{i}.output.dense.weight": (768, 3072) for i in range(12)},
    }
    cfg = laion.tower_config({k: torch.empty(s) for k, s in shapes.items()}, "roberta")
    base = laion._TOWER_CONFIGS["roberta"][3]
    assert all(cfg[k] == base[k] for k in cfg if k in base) and cfg["num_hidden_layers"] == 12
    assert cfg["num_attention_heads"] == 12


def test_tokenizer_folder_errors(fx, tmp_path):
    d, _, _ = fx
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no vocabulary files.*vocab\.json \+ merges\.txt"):
        laion.LaionClap(checkpoint=d / "without_pos.pt", tokenizer=tmp_path / "empty")
    import json
    import shutil

    big = shutil.copytree(d / "tok", tmp_path / "big")  # another vocabulary: 50 more tokens than the tower
    vocab = json.loads((big / "vocab.json").read_text())
    vocab.update({f"extra{i}": len(vocab) + i for i in range(50)})
    (big / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="overflow the embedding table"):
        laion.LaionClap(checkpoint=d / "without_pos.pt", tokenizer=big)


@pytest.mark.slow
def test_fusion_checkpoint_loads_with_fusion_and_names_the_option_without(fx):
    d, vocab, _ = fx
    fixtures.make_laion_checkpoint(d / "fusion.pt", vocab, fusion=True, position_ids=False)
    enc = laion.LaionClap(checkpoint=d / "fusion.pt", tokenizer=d / "tok", enable_fusion=True)
    a = enc.embed_audio([np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1],
                        sr=48000, progress=False)  # fmt: skip
    assert a.shape == (1, 512) and np.isfinite(a).all() and "|fusion|" in enc.fingerprint
    plain = laion.LaionClap(checkpoint=d / "without_pos.pt", tokenizer=d / "tok")
    with pytest.raises(ValueError, match=r"clap_fusion=True"):
        plain._load(d / "fusion.pt")


@pytest.mark.slow
def test_a_checkpoint_of_another_audio_tower_names_the_one_to_use(fx):
    d, _, _ = fx
    with pytest.raises(ValueError, match=r"amodel='HTSAT-base'.*clap_amodel='HTSAT-tiny'"):
        laion.LaionClap(checkpoint=d / "without_pos.pt", amodel="HTSAT-base", tokenizer=d / "tok")


def test_log_mel_matches_an_independent_reference():
    # a pure tone's energy lands in the mel band whose centre is nearest its frequency
    cfg = {
        "sample_rate": 48000,
        "window_size": 1024,
        "hop_size": 480,
        "mel_bins": 64,
        "fmin": 50,
        "fmax": 14000,
    }
    t = torch.arange(48000) / 48000
    mel = laion.log_mel(torch.sin(2 * torch.pi * 1000 * t)[None], cfg)
    assert mel.shape == (1, 101, 64)
    m = np.linspace(2595 * np.log10(1 + 50 / 700), 2595 * np.log10(1 + 14000 / 700), 66)
    centres = 700 * (10 ** (m[1:-1] / 2595) - 1)
    assert int(mel[0, 50].argmax()) == int(np.abs(centres - 1000).argmin())


def test_the_notebooks_encoder_is_built_only_when_used(fx):
    d, _, _ = fx
    lazy = laion.LazyLaionClap(d / "without_pos.pt", tokenizer=d / "tok")
    real = laion.LaionClap(checkpoint=d / "without_pos.pt", tokenizer=d / "tok")
    # the cache key of a split needs only the fingerprint, which equals the built encoder's
    assert lazy.fingerprint == real.fingerprint and lazy._built is None
    assert getattr(lazy, "embed_split_fast", None) is None and lazy._built is None  # what embeddings() asks
    assert lazy.fingerprint != laion.LazyLaionClap(d / "with_pos.pt", tokenizer=d / "tok").fingerprint
    assert lazy.dim == 512 and lazy._built is not None  # anything else builds it
    with pytest.raises(ValueError, match="holds no vocabulary files"):
        laion.LazyLaionClap(d / "without_pos.pt", tokenizer=d)  # a bad folder still fails at once


@pytest.mark.slow
def test_a_checkpoint_of_another_text_tower_names_the_one_to_use(fx):
    d, _, _ = fx
    with pytest.raises(ValueError, match=r"tmodel='transformer'.*looks like.*tmodel='roberta'"):
        laion.LaionClap(checkpoint=d / "without_pos.pt", tmodel="transformer")


@pytest.mark.slow
def test_fusion_feeds_long_clips_the_whole_clip_mel_and_three_crops(fx):
    d, vocab, _ = fx
    if not (d / "fusion.pt").is_file():
        fixtures.make_laion_checkpoint(d / "fusion.pt", vocab, fusion=True, position_ids=False)
    enc = laion.LaionClap(checkpoint=d / "fusion.pt", tokenizer=d / "tok", enable_fusion=True)
    rng = np.random.default_rng(0)
    long = (rng.standard_normal(25 * 48000) * 0.1).astype(np.float32)  # a Clotho-length clip
    long[12 * 48000 :] *= 0.05  # so its later part differs from its first 10 s
    mel, longer = enc._fusion_input(long, torch.from_numpy(long[: laion.CLIP_SAMPLES]))
    whole = laion.log_mel(torch.from_numpy(long)[None], enc.cfg["audio_cfg"])[0]
    assert longer and mel.shape == (4, 1001, 64) and whole.shape[0] == 2501
    # channels 1-3: crops starting in the front, middle and back thirds of the 1501 possible starts
    starts = [next(i for i in range(1501) if torch.equal(whole[i : i + 1001], mel[k])) for k in (1, 2, 3)]
    assert starts[0] < 501 <= starts[1] < 1001 <= starts[2] <= 1500
    short = long[: 5 * 48000]
    clip = torch.from_numpy(np.tile(short, 2))  # fit_length's repeat-pad of a 5 s clip
    mel, longer = enc._fusion_input(short, clip)
    assert not longer and torch.equal(mel[3], laion.log_mel(clip[None], enc.cfg["audio_cfg"])[0])
    a_long, a_head, a_short = enc.embed_audio(
        [long, long[: laion.CLIP_SAMPLES], short], sr=48000, progress=False
    )
    assert not np.allclose(a_long, a_head, atol=1e-4)  # not just the first 10 s any more
    again = enc.embed_audio([long], sr=48000, progress=False)
    assert np.allclose(again[0], a_long, atol=1e-5)  # the crops are drawn the same way every time
