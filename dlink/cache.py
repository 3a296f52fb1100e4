"""Content hashes and the content-keyed array cache (the bottom layer: paths and _io only).

`content_key` hashes the CONTENT of inputs (file bytes, waveform samples, caption strings) so a
renamed file or a copied data folder hits the cache and a changed clip never returns a stale
array; `code_hash` hashes dlink's own source files, so an artifact made by other code is not reused.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dlink import paths
from dlink._io import atomic_write_bytes

_PACKAGE = Path(__file__).resolve().parent


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def code_hash(*files: str) -> str:
    """sha256 hex digest of dlink's source `files` ("data.py", "sounds.toml"), concatenated in order;
    with no names, of every module of the package, subpackages included (each prefixed by its path)."""
    h = hashlib.sha256()
    if files:
        for f in files:
            h.update((_PACKAGE / f).read_bytes())
    else:
        for f in sorted(_PACKAGE.rglob("*.py")):
            h.update(f.relative_to(_PACKAGE).as_posix().encode() + f.read_bytes())
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


def cache_file(key: str, folder: Path | None = None) -> Path:
    """Where `cached` keeps the array cached under `key` (default folder: data/cache/embeddings)."""
    return Path(folder or paths.CACHE / "embeddings") / key[:2] / f"{key}.npy"


def cached(
    key: str, compute: Callable[[], np.ndarray], enabled: bool = True, folder: Path | None = None
) -> np.ndarray:
    """Return the array cached under `key`, or compute it and store it atomically (`.npy`)."""
    if not enabled:
        return compute()
    path = cache_file(key, folder)
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a corrupt entry is recomputed, not trusted
    arr = np.asarray(compute())
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:  # read-only or full cache folder: the computed result is still good
        warnings.warn(
            f"could not write the cache entry {path} ({e}); returning the result uncached", stacklevel=2
        )
    return arr
