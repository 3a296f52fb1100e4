"""The Encoder interface: what every audio-text encoder provides, and the helpers they share.

An `Encoder` turns audio (file paths or 1-D waveforms) and captions into embeddings in a shared
space: `(N, D) float32`, L2-normalised. Implementations: `dlink.encoders.laion.LaionClap` (the paper's
encoder) and `dlink.encoders.embedded_clap.EmbeddedClap` (a small CLAP trained offline); `dlink.encoders.registry`
builds one by name (`load_encoder`) and embeds whole splits (`embed_split`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlink.audio import load_audio, resample

# --------------------------------------------------------------------------- audio input


def fit_length(wav: np.ndarray, n: int, mode: str = "repeatpad") -> np.ndarray:
    """Crop or pad a waveform to exactly `n` samples.

    Longer clips are cropped from the START (deterministic; LAION-CLAP crops at random, which
    would make embeddings and the cache non-reproducible). Shorter clips are tiled and
    zero-padded (``"repeatpad"``, LAION-CLAP's default) or zero-padded (``"pad"``).
    """
    if len(wav) >= n:
        return wav[:n]
    if mode == "repeatpad":
        wav = np.tile(wav, n // len(wav))
    elif mode != "pad":
        raise ValueError(f"fit_length mode must be 'repeatpad' or 'pad', got {mode!r}")
    return np.pad(wav, (0, n - len(wav)))


def validate_audio_items(items: Sequence, sr: int | None) -> list:
    """`items` as a list of existing paths or finite 1-D waveforms (waveforms need `sr`); ValueError otherwise."""
    if isinstance(items, (str, os.PathLike, np.ndarray)):
        raise ValueError("embed_audio expects a LIST of paths or waveforms; wrap a single item in [ ]")
    items = list(items)
    if not items:
        raise ValueError("embed_audio got an empty list; pass at least one path or waveform")
    for i, x in enumerate(items):
        if isinstance(x, np.ndarray) or hasattr(x, "numpy"):
            x = np.asarray(x)
            if sr is None:
                raise ValueError(f"audio item {i} is a waveform but sr=None; pass sr=<its sample rate>")
            if x.ndim != 1 or x.size == 0:
                raise ValueError(f"audio item {i} must be a non-empty 1-D mono waveform, got shape {x.shape}")
            if not np.all(np.isfinite(x)):
                raise ValueError(f"audio item {i} contains NaN or inf samples")
        elif isinstance(x, (str, os.PathLike)):
            if not Path(x).is_file():
                raise FileNotFoundError(f"audio item {i}: file {x} does not exist")
        else:
            raise ValueError(
                f"audio item {i} has type {type(x).__name__}; expected a path or a 1-D np.ndarray"
            )
    return items


def validate_texts(texts: Sequence) -> list[str]:
    """`texts` as a list of non-empty strings; ValueError otherwise."""
    if isinstance(texts, str):
        raise ValueError("embed_text expects a LIST of captions; wrap a single caption in [ ]")
    texts = list(texts)
    if not texts:
        raise ValueError("embed_text got an empty list; pass at least one caption")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"caption {i} has type {type(t).__name__}; captions must be str")
        if not t.strip():
            raise ValueError(f"caption {i} is empty or whitespace; drop it or fill it in")
    return texts


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows (last axis) scaled to unit L2 norm, float32; all-zero rows stay zero.

    Entries beyond ~2e19 overflow the float32 sum of squares and a norm below 1e-12 meets the
    eps, so rows with entries beyond 1e18 or all below 1e-6 are divided by their largest entry
    first; ordinary rows skip that rescale, so they keep the bits of the plain division that every
    cached embedding and reported number rests on.
    """
    x = np.asarray(x, dtype=np.float32)
    peak = np.abs(x).max(axis=-1, keepdims=True) if x.size else np.ones(x.shape[:-1] + (1,), np.float32)
    odd = ((peak > 1e18) | (peak < 1e-6)) & (peak > 0)
    if odd.any():
        x = np.where(odd, x / np.where(odd, peak, 1), x).astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- the interface


class Encoder:
    """Base class: batching, validation, loading and normalisation; subclasses embed batches.

    Subclasses set `name`, `dim`, `sample_rate`, `fingerprint` (a string that changes whenever
    the weights change, or None when the weights are not reproducible, e.g. random init) and
    implement `_embed_waveforms(list of (n,) float32 at sample_rate) -> (B, D)` and
    `_embed_texts(list[str]) -> (B, D)`.
    """

    name: str = "encoder"
    dim: int = 0
    sample_rate: int = 0
    fingerprint: str | None = None
    audio_batch_size: int = 8
    text_batch_size: int = 64

    def embed_audio(
        self, items: Sequence, sr: int | None = None, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """Embed audio files or 1-D waveforms (resampled from `sr` to `self.sample_rate`).

        Returns `(N, D) float32`, L2-normalised. Each encoder documents its own clip length policy.
        """
        from tqdm.auto import tqdm

        items = validate_audio_items(items, sr)
        bs = batch_size or self.audio_batch_size
        out = []
        with tqdm(total=len(items), desc=f"{self.name} audio", unit="clip", disable=not progress) as bar:
            for start in range(0, len(items), bs):
                wavs = []
                for x in items[start : start + bs]:
                    if isinstance(x, (str, os.PathLike)):
                        wavs.append(load_audio(x, self.sample_rate))
                    else:
                        wavs.append(resample(np.asarray(x, dtype=np.float32), sr, self.sample_rate))
                out.append(np.asarray(self._embed_waveforms(wavs), dtype=np.float32))
                bar.update(len(wavs))
        return l2_normalize(np.concatenate(out))

    def embed_text(
        self, texts: Sequence[str], batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """Embed captions: `(N, D) float32`, L2-normalised."""
        from tqdm.auto import tqdm

        texts = validate_texts(texts)
        bs = batch_size or self.text_batch_size
        out = []
        with tqdm(total=len(texts), desc=f"{self.name} text", unit="caption", disable=not progress) as bar:
            for start in range(0, len(texts), bs):
                chunk = texts[start : start + bs]
                out.append(np.asarray(self._embed_texts(chunk), dtype=np.float32))
                bar.update(len(chunk))
        return l2_normalize(np.concatenate(out))

    def _embed_waveforms(self, wavs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, sample_rate={self.sample_rate})"
