"""Adding an encoder is one registration: its loader, its options, and how the run trains it (or
that it is pretrained elsewhere)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from dlink import experiment
from dlink.encoders.base import Encoder
from dlink.encoders.registry import ENCODERS, load_encoder, register_encoder
from dlink.profiles import resolve_params


class ToyEncoder(Encoder):
    """A fixed random projection of waveform statistics and of a hashed bag of words."""

    name, dim, sample_rate, fingerprint = "toy", 8, 16000, None

    def __init__(self, seed: int = 0, device: str = "cpu"):
        rng = np.random.default_rng(seed)
        self.audio_proj = rng.standard_normal((3, self.dim))
        self.text_proj = rng.standard_normal((16, self.dim))
        self.device = device

    def _embed_waveforms(self, wavs):
        stats = np.array([[np.abs(w).mean(), w.std(), len(w) / self.sample_rate] for w in wavs])
        return stats @ self.audio_proj

    def _embed_texts(self, texts):
        bags = np.zeros((len(texts), 16))
        for i, text in enumerate(texts):
            for word in text.lower().split():
                bags[i, zlib.crc32(word.encode()) % 16] += 1
        return bags @ self.text_proj


@dataclass(frozen=True)
class ToyOptions:
    """The toy encoder's one notebook parameter, `toy_seed` (its projection's seed)."""

    PARAMS: ClassVar[dict[str, Any]] = {"toy_seed": 0}
    PATH_PARAMS: ClassVar[tuple[str, ...]] = ()

    seed: int = 0

    @classmethod
    def from_params(cls, errors: list[str], toy_seed=0) -> ToyOptions:
        if not isinstance(toy_seed, int) or isinstance(toy_seed, bool):
            errors.append(f"toy_seed must be an int; got {toy_seed!r}")
            toy_seed = 0
        return cls(seed=toy_seed)

    @classmethod
    def unused_params(cls, errors: list[str], toy_seed=0) -> list[str]:
        return [] if toy_seed == 0 else ["toy_seed"]

    def as_params(self) -> dict[str, Any]:
        return {"toy_seed": self.seed}

    def encoder(self, device: str = "cpu") -> ToyEncoder:
        return ToyEncoder(self.seed, device=device)


@pytest.fixture
def toy():
    entry = register_encoder(
        "toy", lambda checkpoint, device, **kw: ToyEncoder(device=device, **kw), options=ToyOptions
    )
    try:
        yield entry
    finally:
        del ENCODERS["toy"]


def test_a_registered_encoder_is_a_notebook_parameter_and_loads_by_name(toy):
    assert list(ENCODERS) == ["embedded", "laion-clap", "toy"] and toy.pretrained
    params = resolve_params(profile="smoke", encoder="toy", device="cpu")
    assert params.encoder_options == ToyOptions(seed=0)
    assert experiment._n_encoder_scenes(params, 10) == 0  # pretrained elsewhere: all of train fits
    assert experiment.run_key(params) == "embedded-smoke-toy-smoke" and params.label == "smoke-toy"
    d = params.as_dict()
    assert d["toy_seed"] == 0 and d["clap_ckpt"] is None and list(d)[-1] == "toy_seed"

    enc = load_encoder("toy", device="cpu")
    assert isinstance(enc, ToyEncoder)
    audio = enc.embed_audio([np.sin(np.arange(16000) / 10.0).astype(np.float32)], sr=16000, progress=False)
    text = enc.embed_text(["a dog barks", "rain falls"], progress=False)
    assert audio.shape == (1, 8) and text.shape == (2, 8)
    assert np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)

    seeded = resolve_params(profile="smoke", encoder="toy", device="cpu", toy_seed=3)
    built = experiment.encoder(seeded)
    assert isinstance(built, ToyEncoder) and np.allclose(built.text_proj, ToyEncoder(3).text_proj)


def test_options_an_encoder_does_not_take_are_refused(toy):
    with pytest.raises(ValueError) as e:
        resolve_params(profile="smoke", encoder="toy", device="cpu", clap_ckpt="weights.pt", toy_bogus=1)
    msg = str(e.value)
    assert "clap_ckpt is only used with encoder='laion-clap', not 'toy'; drop it" in msg
    assert (
        "unknown parameter(s) toy_bogus; valid: profile," in msg
        and "max_missing, clap_ckpt, clap_tokenizer, clap_amodel, clap_fusion, toy_seed\n" in msg
    )
    with pytest.raises(ValueError, match="toy_seed is only used with encoder='toy', not 'embedded'"):
        resolve_params(profile="smoke", device="cpu", toy_seed=3)
    with pytest.raises(ValueError, match="toy_seed must be an int; got 'x'"):
        resolve_params(profile="smoke", encoder="toy", device="cpu", toy_seed="x")


def test_names_are_registered_once():
    with pytest.raises(ValueError, match="'embedded' is registered already"):
        register_encoder("embedded", lambda checkpoint, device: None)
    assert "toy" not in ENCODERS  # the fixture took its registration back


def test_an_encoder_the_run_trains_is_trained_once_per_seed_and_cached(tmp_path, monkeypatch):
    import json

    import pandas as pd

    calls = []

    def train(enc, val, out, seed, max_epochs):
        calls.append((len(enc), len(val), seed, max_epochs))
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps({"seed": seed}))

    def load(checkpoint, device):
        return ToyEncoder(json.loads((checkpoint / "config.json").read_text())["seed"], device=device)

    entry = register_encoder("toy-trained", load, train=train, code_modules=("encoders/base",))
    try:
        assert not entry.pretrained and entry.cache_dir == "toy-trained"
        params = resolve_params(profile="smoke", encoder="toy-trained", device="cpu")
        assert experiment.run_key(params).endswith(f"toy-trained-e{params.profile.clap_epochs}-smoke")
        assert experiment._n_encoder_scenes(params, 10) == round(params.profile.encoder_share * 10)
        monkeypatch.setattr(experiment, "run_dir", lambda p: tmp_path)
        frame = {"enc": pd.DataFrame({"id": ["a", "b", "c"]}), "val": pd.DataFrame({"id": ["d"]})}
        first = experiment.encoder(params, frame, seed=2)
        again = experiment.encoder(params, frame, seed=2)
        assert calls == [(3, 1, 2, params.profile.clap_epochs)]  # the second call read the cache
        assert np.allclose(first.text_proj, ToyEncoder(2).text_proj)
        assert np.allclose(again.text_proj, first.text_proj)
        assert [p.parent.parent.name for p in tmp_path.glob("*/*/config.json")] == ["toy-trained"]
    finally:
        del ENCODERS["toy-trained"]
