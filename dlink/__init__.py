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
    "Encoder": "encoders.base",
    "load_encoder": "encoders.registry",
    "embed_split": "encoders.registry",
    "LaionClap": "encoders.laion",
    "EmbeddedClap": "encoders.embedded_clap",
    "train_embedded_clap": "encoders.embedded_clap",
    "Profile": "profiles",
    "PROFILES": "profiles",
    "Params": "profiles",
    "resolve_params": "profiles",
    "resolve_device": "device",
    "get_profile": "profiles",
    "gap_report": "evaluation.gap",
    "retrieval_recall": "evaluation.gap",
    "GAP_DIRECTIONS": "evaluation.gap",
    "plot_embedding_map": "evaluation.plots",
    "write_table": "evaluation.tables",
    "DiffusionLink": "bridges.diffusion_link",
    "DiffusionLinkConfig": "bridges.diffusion_link",
    "TrainConfig": "bridges.base",
    "synthetic_gap_pairs": "bridges.base",
    "GaussianDiffusion": "bridges.diffusion",
    "BRIDGES": "bridges.baselines",
    "make_bridge": "bridges.baselines",
    "PrefixCaptioner": "captioning.captioner",
    "CaptionerConfig": "captioning.captioner",
    "load_lm": "captioning.lm",
    "caption_metrics": "evaluation.metrics",
    "relative_gain": "evaluation.metrics",
    "run_pipeline": "runner.pipeline",
    "strip_outputs": "runner.pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"dlink.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dlink' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
