"""Checks shared by the validation of a notebook's parameters (`dlink.profiles`) and of the
encoders' options (`dlink.encoders.laion.LaionClapOptions.from_params`): user paths, and whether
the model hub can be reached. Each check appends a readable problem to an `errors` list or
returns what it found; none raises.
"""

from __future__ import annotations

import os
from pathlib import Path


def hub_online(host: str | None = None, timeout: float = 3.0) -> bool:
    """True when the model hub can be reached (so laion_clap can download its default weights).

    An HTTPS request through urllib, so HTTPS_PROXY / https_proxy / NO_PROXY are honoured as the hub
    library honours them (a raw socket fails behind a proxy); HF_ENDPOINT names a mirror. Any HTTP
    answer from the hub, even an error status, means it is reachable."""
    import urllib.error
    import urllib.request

    if any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "DLINK_OFFLINE")
    ):
        return False
    url = f"https://{host}" if host else os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # URLError, a refused tunnel, a timeout, a malformed HF_ENDPOINT
        return False


def absolute_path(value: str | os.PathLike, base: Path | None = None) -> Path:
    """`value` as an absolute, normalised path (relative ones joined to `base`, default the cwd)."""
    path = Path(value).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else (base or Path.cwd()) / path))


def path_param(name: str, value, errors: list[str]):
    """A path parameter as given, or None (with an error) when it is not a non-empty path."""
    if value is None or (isinstance(value, (str, os.PathLike)) and str(value).strip()):
        return value
    errors.append(f"{name} must be a file or folder path (str) or None; got {value!r}")
    return None
