"""Audio-text encoders behind one interface, and a content-keyed embedding cache.

An `Encoder` turns audio (file paths or 1-D waveforms) and captions into embeddings in a shared
space: `(N, D) float32`, L2-normalised. Two encoders exist:

- ``"laion-clap"`` (`dlink.laion`): the paper's encoder; needs the user's checkpoint file.
- ``"embedded"`` (`dlink.embedded_clap`): a small CLAP we train offline on the embedded data set
  (frozen pretrained towers + contrastive projection heads).

`embed_split` embeds a whole split (audio + every caption) and caches the result on disk under
``CACHE/embeddings`` keyed by the encoder's fingerprint and the CONTENT of the inputs (file bytes,
waveform bytes, caption strings), so a rerun, a renamed file or a copied data folder costs nothing,
and a changed checkpoint or a changed clip never returns a stale embedding.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dlink import paths
from dlink._io import atomic_write_bytes

ENCODERS = ("embedded", "laion-clap")

# --------------------------------------------------------------------------- audio input


def _read_audio(path: str | os.PathLike, sr: int) -> np.ndarray:
    """Fallback loader (mono float32 at `sr`) used only while `dlink.data.load_audio` is absent."""
    import soundfile as sf
    import soxr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    try:
        wav, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError
        raise ValueError(f"cannot decode audio file {path}: {e}") from e
    wav = wav.mean(axis=1)
    if file_sr != sr:
        wav = soxr.resample(wav, file_sr, sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def load_audio(path: str | os.PathLike, sr: int) -> np.ndarray:
    """Mono float32 waveform `(n,)` at `sr`; DATA's loader when present (one decoding path)."""
    try:
        from dlink.data import load_audio as data_load_audio
    except ImportError:
        data_load_audio = _read_audio
    return data_load_audio(path, sr)


def _resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return wav
    import soxr

    return np.asarray(soxr.resample(wav, sr_in, sr_out), dtype=np.float32)


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


def _validate_audio_items(items: Sequence, sr: int | None) -> list:
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


def _validate_texts(texts: Sequence) -> list[str]:
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
    first; ordinary rows are computed as before.
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

        items = _validate_audio_items(items, sr)
        bs = batch_size or self.audio_batch_size
        out = []
        with tqdm(total=len(items), desc=f"{self.name} audio", unit="clip", disable=not progress) as bar:
            for start in range(0, len(items), bs):
                wavs = []
                for x in items[start : start + bs]:
                    if isinstance(x, (str, os.PathLike)):
                        wavs.append(load_audio(x, self.sample_rate))
                    else:
                        wavs.append(_resample(np.asarray(x, dtype=np.float32), sr, self.sample_rate))
                out.append(np.asarray(self._embed_waveforms(wavs), dtype=np.float32))
                bar.update(len(wavs))
        return l2_normalize(np.concatenate(out))

    def embed_text(
        self, texts: Sequence[str], batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """Embed captions: `(N, D) float32`, L2-normalised."""
        from tqdm.auto import tqdm

        texts = _validate_texts(texts)
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


def load_encoder(
    name: str = "embedded", checkpoint: str | os.PathLike | None = None, device: str = "cpu", **kwargs
):
    """Build an encoder by name.

    - ``"embedded"``: `checkpoint` = folder written by `train_embedded_clap` (config.json + model.safetensors).
    - ``"laion-clap"``: `checkpoint` = a LAION-CLAP `.pt`/`.ckpt`/`.safetensors` file; extra kwargs
      (`amodel`, `tmodel`, `enable_fusion`, `tokenizer`, `download`) go to `dlink.laion.LaionClap`.
    """
    from dlink.profiles import resolve_device

    device = resolve_device(device)  # "gpu0" fails here, naming the argument, not deep in torch
    if name == "embedded":
        from dlink.embedded_clap import EmbeddedClap

        if checkpoint is None:
            raise ValueError(
                "load_encoder('embedded') needs checkpoint=<folder from train_embedded_clap>; "
                "train one with dlink.embedded_clap.train_embedded_clap(train_df, val_df, out=folder)"
            )
        return EmbeddedClap.load(checkpoint, device=device, **kwargs)
    if name == "laion-clap":
        from dlink.laion import LaionClap

        return LaionClap(checkpoint=checkpoint, device=device, **kwargs)
    raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODERS}")


# --------------------------------------------------------------------------- the cache


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_key(tag: str, items: Sequence, kind: str, sr: int | None = None) -> str:
    """Hex digest of `tag` and the CONTENT of `items`.

    kind="audio": paths hash their file bytes, waveforms their samples and `sr`;
    kind="text": items are caption strings.
    """
    if kind not in ("audio", "text"):
        raise ValueError(f"content_key kind must be 'audio' or 'text', got {kind!r}")
    h = hashlib.sha256(f"{kind}|{tag}".encode())
    for x in items:
        if kind == "text":
            h.update(b"s" + str(x).encode("utf-8") + b"\0")
        elif isinstance(x, (str, os.PathLike)):
            h.update(b"f" + file_sha256(x).encode())
        else:
            a = np.ascontiguousarray(x, dtype=np.float32)
            h.update(b"w" + f"{sr}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


def cached(
    key: str, compute: Callable[[], np.ndarray], enabled: bool = True, folder: Path | None = None
) -> np.ndarray:
    """Return the array cached under `key`, or compute it and store it atomically (`.npy`)."""
    if not enabled:
        return compute()
    path = Path(folder or paths.CACHE / "embeddings") / f"{key[:2]}" / f"{key}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a corrupt entry is recomputed, not trusted
    arr = np.asarray(compute())
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    return arr


def embed_split(encoder: Encoder, df, cache: bool = True, progress: bool = True) -> dict[str, np.ndarray]:
    """Embed a split: `{"audio": (N, D), "text": (N, C, D)}`, float32, L2-normalised.

    `df` has columns `audio` (path) and `captions` (list[str]); every row must have the same
    number C of captions (raises otherwise: pad or subsample the captions before calling).
    Cached by content when `cache=True` and the encoder has a fingerprint (random-init encoders
    have none and are never cached).
    """
    for col in ("audio", "captions"):
        if col not in df.columns:
            raise ValueError(f"embed_split needs a DataFrame with column {col!r}; got {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("embed_split got an empty DataFrame")
    caps = [list(c) for c in df["captions"]]
    counts = {len(c) for c in caps}
    if len(counts) != 1 or 0 in counts:
        bad = next(i for i, c in enumerate(caps) if len(c) != len(caps[0]))
        raise ValueError(
            f"embed_split needs the same number of captions per row; row {bad} has {len(caps[bad])}, "
            f"row 0 has {len(caps[0])} (counts seen: {sorted(counts)}); pad or subsample captions first"
        )
    n_cap = counts.pop()
    audio_items = [str(p) for p in df["audio"]]
    flat = [t for c in caps for t in c]
    _validate_texts(flat)
    use = cache and encoder.fingerprint is not None
    fp = encoder.fingerprint or ""
    audio = cached(
        content_key(fp, audio_items, "audio") if use else "",
        lambda: encoder.embed_audio(audio_items, progress=progress),
        enabled=use,
    )
    text = cached(
        content_key(fp, flat, "text") if use else "",
        lambda: encoder.embed_text(flat, progress=progress),
        enabled=use,
    )
    return {"audio": audio.astype(np.float32), "text": text.reshape(len(df), n_cap, -1).astype(np.float32)}
