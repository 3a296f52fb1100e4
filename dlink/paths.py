"""Where things live. Every path the package or a notebook writes comes from here.

The project root is the folder holding the `dlink` package, unless DLINK_ROOT says
otherwise (so notebooks and tests run from any working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("DLINK_ROOT", Path(__file__).resolve().parent.parent)).resolve()
DATA = ROOT / "data"  # generated data and caches (git-ignored)
CACHE = DATA / "cache"  # content-keyed caches (embeddings, converted LMs)
SOURCES = DATA / "sources"  # unpacked sound packages
FIGURES = ROOT / "figures"
RESULTS = ROOT / "results"
CHECKPOINTS = DATA / "checkpoints"
NOTEBOOKS = ROOT / "notebooks"


def ensure(path: Path) -> Path:
    """Create folder `path` (and parents) if needed and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
