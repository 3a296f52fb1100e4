"""Encoder interface: validation, clip length policy, the content-keyed cache, embed_split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlink import paths
from dlink.encoders import registry as encoders
from dlink.encoders.registry import Encoder, embed_split, fit_length

SOUNDS = sorted(Path("/usr/share/sounds/freedesktop/stereo").glob("*.oga"))[:3]


class CountingEncoder(Encoder):
    """Deterministic toy encoder: audio -> simple statistics, text -> character counts."""

    name, dim, sample_rate, fingerprint = "toy", 4, 16000, "toy-v1"

    def __init__(self):
        self.calls = {"audio": 0, "text": 0}

    def _embed_waveforms(self, wavs):
        self.calls["audio"] += len(wavs)
        return np.array([[np.abs(w).mean(), w.std(), len(w) / 1e5, 1.0] for w in wavs])

    def _embed_texts(self, texts):
        self.calls["text"] += len(texts)
        return np.array([[len(t), t.count("a") + 1, t.count(" ") + 1, 1.0] for t in texts], dtype=float)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def test_text_validation_names_the_index():
    enc = CountingEncoder()
    with pytest.raises(ValueError, match="empty list"):
        enc.embed_text([])
    with pytest.raises(ValueError, match="caption 1 is empty"):
        enc.embed_text(["a dog", "   "])
    with pytest.raises(ValueError, match="caption 2 has type int"):
        enc.embed_text(["a", "b", 3])
    with pytest.raises(ValueError, match="LIST"):
        enc.embed_text("a dog barks")


def test_audio_validation():
    enc = CountingEncoder()
    with pytest.raises(ValueError, match="empty list"):
        enc.embed_audio([])
    with pytest.raises(ValueError, match="sr=None"):
        enc.embed_audio([np.zeros(100, np.float32)])
    with pytest.raises(ValueError, match="item 0 must be a non-empty 1-D"):
        enc.embed_audio([np.zeros((2, 100), np.float32)], sr=16000)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        enc.embed_audio(["/nonexistent/nope.wav"])


def test_outputs_are_unit_norm_float32_and_resampled():
    enc = CountingEncoder()
    wav = np.sin(np.arange(8000) / 5).astype(np.float32)
    out = enc.embed_audio([wav, wav], sr=8000, progress=False)
    assert out.shape == (2, 4) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # 8 kHz -> 16 kHz doubles the length the encoder sees (the len feature)
    raw = np.array([np.abs(wav).mean(), wav.std(), 16000 / 1e5, 1.0])
    assert np.dot(out[0], raw / np.linalg.norm(raw)) > 0.999


def test_fit_length_crops_from_start_and_repeat_pads():
    x = np.arange(1, 4, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 8), [1, 2, 3, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(fit_length(x, 7, mode="pad"), [1, 2, 3, 0, 0, 0, 0])
    np.testing.assert_array_equal(fit_length(np.arange(10.0), 4), [0, 1, 2, 3])


def _df(files, caps=None):
    caps = caps or [[f"a sound number {i}", f"clip {i} plays"] for i in range(len(files))]
    return pd.DataFrame(
        {"id": [f"c{i}" for i in range(len(files))], "audio": [str(f) for f in files], "captions": caps}
    )


def test_embed_split_caches_by_content(cache_dir, tmp_path):
    files = [shutil.copy(f, tmp_path / f"{i}.oga") for i, f in enumerate(SOUNDS)]
    enc = CountingEncoder()
    first = embed_split(enc, _df(files), progress=False)
    assert first["audio"].shape == (3, 4) and first["text"].shape == (3, 2, 4)
    assert enc.calls == {"audio": 3, "text": 6}
    again = embed_split(enc, _df(files), progress=False)
    assert enc.calls == {"audio": 3, "text": 6}  # nothing recomputed
    np.testing.assert_array_equal(again["text"], first["text"])
    # same bytes under another name: still a hit; changed bytes: recomputed
    renamed = shutil.copy(files[0], tmp_path / "renamed.oga")
    embed_split(enc, _df([renamed, files[1], files[2]]), progress=False)
    assert enc.calls["audio"] == 3
    shutil.copy(SOUNDS[1], files[0])
    embed_split(enc, _df(files), progress=False)
    assert enc.calls["audio"] == 6
    # another fingerprint (other weights) never reads this cache
    enc.fingerprint = "toy-v2"
    embed_split(enc, _df(files), progress=False)
    assert enc.calls["text"] == 12
    assert len(list(cache_dir.rglob("*.npy"))) == 5 and not list(cache_dir.rglob("*.tmp"))


def test_embed_split_rejects_ragged_captions(cache_dir):
    with pytest.raises(ValueError, match="row 1 has 1"):
        embed_split(CountingEncoder(), _df(SOUNDS[:2], [["a", "b"], ["c"]]))
    with pytest.raises(ValueError, match="column 'captions'"):
        embed_split(CountingEncoder(), pd.DataFrame({"audio": [str(SOUNDS[0])]}))


def test_load_encoder_errors():
    with pytest.raises(ValueError, match="unknown encoder"):
        encoders.load_encoder("clip")
    with pytest.raises(ValueError, match="train_embedded_clap"):
        encoders.load_encoder("embedded")


def test_l2_normalize_survives_huge_and_tiny_rows():
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    unit = encoders.l2_normalize(x)
    for scale in (1e20, 3e37, 1e-25):  # finite float32 rows whose sum of squares over/underflows
        np.testing.assert_allclose(encoders.l2_normalize(x * np.float32(scale)), unit, atol=1e-6)
    assert not encoders.l2_normalize(np.zeros((2, 8))).any()  # zero rows stay zero, no NaN


def test_load_encoder_checks_the_device():
    with pytest.raises(ValueError, match="device must be .*'gpu0'"):
        encoders.load_encoder("embedded", checkpoint="anything", device="gpu0")
