"""Atomic writes and config-next-to-weights checkpoints (no pickle anywhere)."""

from __future__ import annotations

import json
import os
import shutil
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


def _check_folder_target(folder: Path) -> None:
    """A checkpoint folder is swapped in by rename: it cannot be the working directory (or a root),
    nor be a file, nor sit under a file."""
    if folder.resolve() in (Path.cwd().resolve(), Path(folder.resolve().anchor)) or folder.name in (
        "",
        ".",
        "..",
    ):
        raise ValueError(
            f"checkpoint folder {str(folder)!r} must be a new or checkpoint sub-folder, not '.' or '..'"
        )
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"checkpoint folder {folder} is an existing file; choose a folder path")
    for parent in folder.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"checkpoint folder {folder} lies under {parent}, which is a file, not a folder"
                )
            break


def path_under(base: str | os.PathLike, stem, arg: str) -> Path:
    """`base / stem` for a relative `stem`, which must stay inside `base` ("../x" is refused with a
    ValueError naming `arg`); an absolute `stem` is the caller's explicit choice and used as is."""
    if not isinstance(stem, (str, os.PathLike)) or not str(stem).strip():
        raise ValueError(f"{arg} must be a non-empty file name or path; got {stem!r}")
    stem = Path(stem)
    if stem.is_absolute():
        return stem
    base = Path(os.path.normpath(base))
    out = Path(os.path.normpath(base / stem))
    if base not in out.parents:
        raise ValueError(
            f"{arg}={str(stem)!r} points outside {base}; give a name inside it, or an absolute path"
        )
    return out


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


_WEIGHTS, _CONFIG = "model.safetensors", "config.json"


def save_checkpoint(folder: str | os.PathLike, config: dict, tensors: dict) -> Path:
    """Write `folder/config.json` + `folder/model.safetensors` as one atomic step.

    Both files are written into a temporary sibling folder, which then takes the place of
    `folder`, so a reader (or a save killed half way) sees the old pair or the new pair, never a
    new config with old weights. Other files already in `folder` are carried over.
    """
    import torch
    from safetensors.torch import save

    folder = Path(folder)
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint config for {folder} must be a dict; got {type(config).__name__}")
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(
                f"checkpoint tensor {k!r} for {folder} is a {type(v).__name__}, not a torch.Tensor"
            )
        if v.is_meta:
            raise ValueError(
                f"checkpoint tensor {k!r} for {folder} is on the meta device (it holds no values); "
                "materialise the model (e.g. .to_empty(device='cpu') and load weights) before saving"
            )
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _check_folder_target(folder)
    given = folder
    if folder.is_symlink():
        folder = folder.resolve()  # swap the folder it points to, not the link
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual permissions
        atomic_write_bytes(tmp / _WEIGHTS, save(tensors))
        write_json(tmp / _CONFIG, config)
        if folder.is_dir():
            for p in folder.iterdir():  # never drop a file the caller put beside the checkpoint
                if p.name not in (_WEIGHTS, _CONFIG):
                    (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
        replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the swap succeeded
    return given


def replace_folder(new: Path, folder: Path) -> None:
    """Put folder `new` at `folder`: an atomic exchange on Linux, else two renames (a moment without it)."""
    if not folder.exists():
        os.rename(new, folder)
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; a checkpoint is a folder")
    if not _exchange(new, folder):
        old = new.with_name(new.name + ".old")
        os.rename(folder, old)
        os.rename(new, folder)
        new = old
    shutil.rmtree(new)  # after an exchange `new` holds the previous checkpoint


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 (macOS, Windows, musl)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):  # the file system cannot exchange
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def load_checkpoint(folder: str | os.PathLike, required: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Read a folder written by `save_checkpoint`: (config dict, tensors dict on CPU).

    Raises FileNotFoundError for a missing file and ValueError naming the file for a config that is
    not a JSON object or lacks a `required` key, unreadable (truncated, empty) weights, or a tensor
    holding NaN or inf.
    """
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg, weights = folder / _CONFIG, folder / _WEIGHTS
    for p in (cfg, weights):
        if not p.is_file():
            raise FileNotFoundError(
                f"checkpoint folder {folder} has no {p.name}; expected config.json + model.safetensors"
            )
    config = read_json(cfg)
    if not isinstance(config, dict):
        raise ValueError(f"{cfg} must hold a JSON object (key: value); it holds a {type(config).__name__}")
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(
            f"{cfg} lacks {', '.join(map(repr, missing))}; it was not written by this code's save"
        )
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # SafetensorError names neither the file nor what to do
        raise ValueError(
            f"{weights} is not a readable safetensors file ({e}); it is truncated or corrupt"
        ) from e
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"{weights}: tensor {k!r} holds NaN or inf values; the file is corrupt")
    return config, tensors


def write_csv_gz(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write dict rows (same keys) as gzip-compressed CSV, atomically and byte-reproducibly (no mtime)."""
    import csv
    import gzip
    import io

    if not rows:
        raise ValueError(f"no rows to write to {path}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return atomic_write_bytes(path, gzip.compress(buf.getvalue().encode("utf-8"), mtime=0))
