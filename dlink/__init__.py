"""dlink: Diffusion-Link (arXiv 2510.11330) as a reproducible research artifact.

Public names are imported lazily, so `import dlink` stays fast and a notebook that only
plots does not pay for torch or transformers.
"""

from __future__ import annotations

import importlib
import warnings

# Without ipywidgets (papermill kernels, the default environment) tqdm.auto already falls back to
# the text bar; its "IProgress not found" warning would only print a path into every notebook.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"

_LAZY = {
    "SAMPLE_RATE": "data",
    "build_embedded_dataset": "data",
    "load_split": "data",
    "load_audio": "audio",
    "Encoder": "encoders",
    "load_encoder": "encoders",
    "embed_split": "encoders",
    "LaionClap": "laion",
    "EmbeddedClap": "embedded_clap",
    "train_embedded_clap": "embedded_clap",
    "Profile": "profiles",
    "PROFILES": "profiles",
    "Params": "profiles",
    "resolve_params": "profiles",
    "resolve_device": "device",
    "get_profile": "profiles",
    "gap_report": "gap",
    "retrieval_recall": "gap",
    "GAP_DIRECTIONS": "gap",
    "plot_embedding_map": "plots",
    "write_table": "tables",
    "DiffusionLink": "diffusion_link",
    "DiffusionLinkConfig": "diffusion_link",
    "TrainConfig": "bridge",
    "synthetic_gap_pairs": "bridge",
    "GaussianDiffusion": "diffusion",
    "BRIDGES": "baselines",
    "make_bridge": "baselines",
    "PrefixCaptioner": "captioner",
    "CaptionerConfig": "captioner",
    "load_lm": "lm",
    "caption_metrics": "metrics",
    "relative_gain": "metrics",
    "run_pipeline": "runner.pipeline",
    "strip_outputs": "runner.pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"dlink.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dlink' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
