"""Embedded CLAP: retrieval metrics, contrastive heads on tiny synthetic features, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlink._io import save_checkpoint
from dlink.encoders import embedded_clap as ec
from dlink.evaluation.gap import retrieval_recall


def test_recall_at_k_by_hand():
    e = np.eye(3, dtype=np.float32)
    audio = e
    # clip 0's captions match it; clips 1 and 2 rank the other clip's caption first, their own second
    text = np.stack([np.stack([e[0], e[0]]), np.stack([e[2], 0.5 * e[1]]), np.stack([e[1], 0.5 * e[2]])])
    r = ec.recall_at_k(audio, text, ks=(1, 2))
    assert r["R@1"] == pytest.approx(1 / 3) and r["R@2"] == pytest.approx(1.0)


def test_chance_recall_matches_random_embeddings():
    rng = np.random.default_rng(0)
    n, c, d = 200, 5, 64
    hits = [
        ec.recall_at_k(rng.normal(size=(n, d)), rng.normal(size=(n, c, d)), ks=(10,))["R@10"]
        for _ in range(5)
    ]
    assert ec.chance_recall(n, c, 10) == pytest.approx(0.0491, abs=1e-3)  # ~ k/N, a bit less
    assert abs(np.mean(hits) - ec.chance_recall(n, c, 10)) < 0.025


_B = np.random.default_rng(123).normal(size=(8, 24))


@pytest.mark.parametrize("shuffle", [False, True])
def test_heads_learn_pairs_and_not_noise(shuffle):
    rng = np.random.default_rng(1)
    # the audio map must be shared between splits: draw it once via a fixed sub-generator
    a_map = np.random.default_rng(7).normal(size=(8, 32))
    z_tr, z_va = rng.normal(size=(300, 8)), rng.normal(size=(150, 8))

    def make(z, shuffle_pairs):
        a = (z @ a_map + 0.3 * rng.normal(size=(len(z), 32))).astype(np.float32)
        t = (z @ _B)[:, None, :] + 0.3 * rng.normal(size=(len(z), 3, 24))
        t = (t / np.linalg.norm(t, axis=-1, keepdims=True)).astype(np.float32)
        return a, (t[rng.permutation(len(z))] if shuffle_pairs else t)

    a_tr, t_tr = make(z_tr, shuffle)
    a_va, t_va = make(z_va, False)
    cfg = ec.EmbeddedClapConfig(
        audio_in=32, text_in=24, dim=16, hidden=64, max_epochs=60, patience=15, batch_size=64
    )
    m, hist = ec.fit_heads(a_tr, t_tr, a_va, t_va, cfg, progress=False)
    best = max(h["val"]["R@10"] for h in hist)
    chance = ec.chance_recall(150, 3, 10)
    if shuffle:
        assert best < 3 * chance  # nothing to learn from shuffled pairs: stays near chance
    else:
        assert best > 0.6 > 8 * chance
        assert hist[-1]["temperature"] < 0.07  # the learnable temperature sharpened


def test_early_stopping_recall_agrees_with_the_reported_recall():
    rng = np.random.default_rng(0)
    n, c, d = 60, 3, 16
    text = rng.normal(size=(n, c, d)).astype(np.float32)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    audio = text.mean(1) + 0.8 * rng.normal(size=(n, d)).astype(np.float32)
    audio /= np.linalg.norm(audio, axis=-1, keepdims=True)
    reported = retrieval_recall(audio, text.reshape(n * c, d), gallery_ids=np.repeat(np.arange(n), c))
    assert ec.recall_at_k(audio, text) == reported


SOUND = Path("/usr/share/sounds/freedesktop/stereo/bell.oga")


@pytest.mark.slow
def test_checkpoint_roundtrip_and_encoder(tmp_path):
    import torch

    cfg = ec.EmbeddedClapConfig(audio_tower="logmel", audio_in=192, text_in=384, hidden=32)
    torch.manual_seed(0)
    m = ec._heads(cfg)
    save_checkpoint(tmp_path / "ck", {"config": ec.asdict(cfg)}, m.state_dict())
    from dlink.encoders.registry import load_encoder

    enc = load_encoder("embedded", checkpoint=tmp_path / "ck")
    assert enc.dim == 512 and enc.sample_rate == 32000 and enc.fingerprint.startswith("embedded|")
    a = enc.embed_audio([SOUND, SOUND], progress=False)
    t = enc.embed_text(["a bell rings", "a dog barks"], progress=False)
    assert a.shape == (2, 512) and t.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(np.vstack([a, t]), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a[0], a[1], atol=1e-6)  # deterministic
    # loading the same folder again reproduces the head weights exactly
    t2 = load_encoder("embedded", checkpoint=tmp_path / "ck").embed_text(["a bell rings"], progress=False)
    np.testing.assert_allclose(t2[0], t[0], atol=1e-6)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_encoder("embedded", checkpoint=tmp_path / "nothing")
