"""Atomic writes and config-next-to-weights checkpoints (no pickle anywhere)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it and regenerate it") from e


def save_checkpoint(folder: str | os.PathLike, config: dict, tensors: dict) -> Path:
    """Write `folder/config.json` + `folder/model.safetensors` atomically."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(folder / "model.safetensors", save(tensors))
    write_json(folder / "config.json", config)
    return folder


def load_checkpoint(folder: str | os.PathLike) -> tuple[dict, dict]:
    """Read a folder written by `save_checkpoint`: (config dict, tensors dict on CPU)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg, weights = folder / "config.json", folder / "model.safetensors"
    for p in (cfg, weights):
        if not p.is_file():
            raise FileNotFoundError(
                f"checkpoint folder {folder} has no {p.name}; expected config.json + model.safetensors"
            )
    return read_json(cfg), load_file(str(weights))
