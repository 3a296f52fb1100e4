"""LAION-CLAP (the paper's encoder) from the real `laion_clap` package code, offline-safe.

What this module works around, and why:

- `import laion_clap` runs `hook.py` -> `training/data.py`, which calls
  `RobertaTokenizer.from_pretrained('roberta-base')` AT IMPORT TIME and hangs without internet.
  We therefore load only the model code (`laion_clap/clap_module`) under a private module name;
  `create_model` and `CLAP` are the package's own.
- `clap_module` imports `torchvision`, which does not import beside CPU torch 2.13 here. Only when
  the real import fails we register a minimal stand-in for the names it touches (FrozenBatchNorm2d,
  a few image transforms it never calls for audio). It is registered AFTER `import transformers`,
  which crashes on a torchvision module whose `__spec__` is None.
- `CLAP(...)` with the roberta/bert/bart text tower calls `XModel.from_pretrained(hub name)`.
  The user's checkpoint holds every text-tower weight, so we build the tower from its published
  config instead (no download, same parameter names) and load the checkpoint over it.
- transformers 5 offline may return a 5-token tokenizer for a hub name instead of raising; the
  tokenizer's vocabulary size is checked against the tower's.

- The tower's size is read from the checkpoint's tensor shapes (layers, vocabulary, widths): the
  published roberta-base checkpoints give exactly roberta-base's config, and a small random tower
  saved in the same layout (the tests' fixture) loads through the same code.
- Checkpoints are read with `torch.load(weights_only=True)` and an explicit allowlist of the numpy
  scalar/dtype globals LAION-CLAP's training script leaves in them (see `read_state_dict`).

Clip policy: audio is resampled to 48 kHz, quantised through int16 (as LAION-CLAP does), and
cropped (from the start, deterministic) or repeat-padded to 10 s (480,000 samples). Fusion
checkpoints (enable_fusion=True, fusion_type "aff_2d" as in `CLAP_Module`) get what laion_clap
feeds them: for a clip of at most 10 s the log-mel spectrogram stacked four times, `longer`
False; for a longer clip (Clotho's are 15-30 s) the whole clip's mel resized to 10 s plus three
10 s crops from its front, middle and back, `longer` True (see `LaionClap._fusion_input`); the
mel is computed here with torch (laion_clap uses torchaudio, not installed here).
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dlink import paths
from dlink.cache import file_sha256
from dlink.checks import absolute_path, hub_online, path_param
from dlink.encoders.base import Encoder, fit_length

SAMPLE_RATE = 48000
# the audio tower of the 630k-audioset-best.pt checkpoint, the paper's encoder; the one default of it
DEFAULT_AMODEL = "HTSAT-tiny"
CLIP_SAMPLES = 480000  # 10 s at 48 kHz, LAION-CLAP's training length
_PRIVATE = "_dlink_clap_module"
_HUB = "https://huggingface.co/lukewys/laion_clap/resolve/main/"
DOWNLOADS = {  # the published checkpoints (laion_clap README); fetched only with download=True
    name: _HUB + name
    for name in ("630k-best.pt", "630k-audioset-best.pt", "630k-fusion-best.pt",
                 "630k-audioset-fusion-best.pt", "music_audioset_epoch_15_esc_90.14.pt")
}  # fmt: skip
# Published configs of the hub towers CLAP would download; the checkpoint supplies the weights.
_TOWER_CONFIGS = {
    "roberta": ("RobertaModel", "RobertaConfig", "roberta-base", dict(
        vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
        layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "bert": ("BertModel", "BertConfig", "bert-base-uncased", dict(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, pad_token_id=0)),
    "bart": ("BartModel", "BartConfig", "facebook/bart-base", dict(
        vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
        max_position_embeddings=1024, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
}  # fmt: skip
_TOKENIZERS = {"roberta": "RobertaTokenizer", "bert": "BertTokenizer", "bart": "BartTokenizer"}


# --------------------------------------------------------------------------- importing the package


def _install_torchvision_standin() -> None:
    """Register a tiny `torchvision` with the few names clap_module imports (only if the real fails)."""
    import transformers  # noqa: F401  (must come first, see module docstring)

    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
    import torch
    import torch.nn.functional as F

    class FrozenBatchNorm2d(torch.nn.Module):
        """BatchNorm2d with fixed statistics (torchvision.ops.misc's semantics)."""

        def __init__(self, num_features: int, eps: float = 1e-5):
            super().__init__()
            self.eps = eps
            for name, init in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                self.register_buffer(name, torch.full((num_features,), init))

        def forward(self, x):
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            shift = self.bias - self.running_mean * scale
            return x * scale[None, :, None, None] + shift[None, :, None, None]

    class Resize:
        """Tensor-only Resize (bilinear, antialiased: torchvision's tensor default)."""

        def __init__(self, size, interpolation=None, antialias=True):
            self.size = list(size) if isinstance(size, (list, tuple)) else [size, size]

        def __call__(self, x):
            return F.interpolate(
                x[None], size=self.size, mode="bilinear", antialias=True, align_corners=False
            )[0]

    def _image_only(name):
        def init(self, *a, **k):
            raise NotImplementedError(
                f"torchvision.transforms.{name} (image transform) is not available here"
            )

        return type(name, (), {"__init__": init})

    def module(name):
        m = types.ModuleType(name)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() must not raise on it
        m.__dict__["__dlink_standin__"] = True
        sys.modules[name] = m
        return m

    tv, ops, misc, tf, ds = (module(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.misc",
                                                 "torchvision.transforms", "torchvision.datasets"))  # fmt: skip
    tv.ops, ops.misc, tv.transforms, tv.datasets = ops, misc, tf, ds
    misc.FrozenBatchNorm2d = FrozenBatchNorm2d
    tf.Resize = Resize
    tf.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    for n in ("Normalize", "Compose", "RandomResizedCrop", "ToTensor", "CenterCrop"):
        setattr(tf, n, _image_only(n))


def clap_module():
    """laion_clap's `clap_module` package, imported without `laion_clap/__init__` (no network)."""
    if _PRIVATE in sys.modules:
        return sys.modules[_PRIVATE]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("laion_clap is not installed: pip install --no-deps laion-clap==1.1.7")
    folder = Path(list(spec.submodule_search_locations)[0]) / "clap_module"
    _install_torchvision_standin()
    pkg_spec = importlib.util.spec_from_file_location(
        _PRIVATE, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    mod = importlib.util.module_from_spec(pkg_spec)
    sys.modules[_PRIVATE] = mod
    try:
        pkg_spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[_PRIVATE]
        raise
    return mod


# --------------------------------------------------------------------------- building the model


class _ConfigTower:
    """Stands in for `RobertaModel` etc. inside clap_module.model: from_pretrained -> from config."""

    def __init__(self, model_cls, config_cls, kwargs):
        self.model_cls, self.config_cls, self.kwargs = model_cls, config_cls, kwargs

    def from_pretrained(self, *_args, **_kw):
        return self.model_cls(self.config_cls(**self.kwargs))


def build_clap(
    amodel: str = DEFAULT_AMODEL,
    tmodel: str = "roberta",
    seed: int = 0,
    device: str = "cpu",
    enable_fusion: bool = False,
    tower: dict | None = None,
):
    """The LAION-CLAP `CLAP` module with random weights (towers built from configs). `(model, cfg)`.

    `tower`: config values replacing the published ones of the roberta/bert/bart tower (read from
    a checkpoint's shapes by `tower_config`). `enable_fusion` builds the fusion model ("aff_2d").
    """
    import torch
    import transformers

    cm = clap_module()
    if amodel not in cm.list_models():
        raise ValueError(f"unknown LAION-CLAP audio model {amodel!r}; choose one of {cm.list_models()}")
    if tmodel not in ("transformer", *_TOWER_CONFIGS):
        raise ValueError(
            f"unknown LAION-CLAP text model {tmodel!r}; choose transformer, roberta, bert or bart"
        )
    model_mod = sys.modules[f"{_PRIVATE}.model"]
    saved = {}
    for name, (model_name, config_name, _, kw) in _TOWER_CONFIGS.items():
        saved[model_name] = getattr(model_mod, model_name)
        kw = {**kw, **(tower or {})} if name == tmodel else kw
        stand_in = _ConfigTower(getattr(transformers, model_name), getattr(transformers, config_name), kw)
        setattr(model_mod, model_name, stand_in)
    torch.manual_seed(seed)
    try:
        model, cfg = cm.create_model(
            amodel, tmodel, precision="fp32", device=torch.device(device), enable_fusion=enable_fusion,
            fusion_type="aff_2d" if enable_fusion else "None",  # CLAP_Module's choice for fusion
        )  # fmt: skip
    finally:
        for k, v in saved.items():
            setattr(model_mod, k, v)
    return model.eval(), cfg


def _numpy_safe_globals() -> list:
    """The numpy globals a LAION-CLAP training checkpoint pickles, for weights_only loading.

    The optimizer's learning rate comes from `cosine_lr`, which computes it with numpy, so
    `optimizer.param_groups[i]["lr"]` is a numpy.float64: pickled as `numpy.core.multiarray.scalar`
    (numpy 1.x, the published files; `numpy._core.multiarray.scalar` under numpy 2) applied to a
    `numpy.dtype`. Only these reconstructors are allowed; nothing else gets unpickled.
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtype_classes = [type(np.dtype(t)) for t in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "?")]
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *dtype_classes,
    ]


def _torch_load(path: Path):
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        try:
            extra = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:
            extra = []
        allowed = {n for g in _numpy_safe_globals() for n in ([g[1]] if isinstance(g, tuple) else [])}
        extra = [g for g in extra if g not in allowed and not g.startswith("numpy.dtype")]
        what = (
            f"it pickles objects beyond tensors and numpy scalars ({', '.join(extra[:5])})"
            if extra
            else str(e)
        )
        raise ValueError(
            f"{path.resolve()} cannot be read with torch.load(weights_only=True): {what}. dlink never "
            "unpickles arbitrary objects from a user's file: re-save it as {'state_dict': model.state_dict()} "
            "or as .safetensors"
        ) from e


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors of a `.safetensors` file or a `.pt`/`.ckpt`/`.pth`/`.bin` checkpoint (weights_only).

    The layout LAION-CLAP's training script writes (LAION-AI/CLAP, src/laion_clap/training/main.py,
    "Saving checkpoints"): `torch.save({"epoch": completed_epoch, "name": args.name,
    "state_dict": model.state_dict(), "optimizer": optimizer.state_dict() [or
    "pretrained_optimizer"/"new_optimizer" with --split-opt], ["scaler": scaler.state_dict()]}, ...)`
    with the model wrapped in DistributedDataParallel, so every key starts with "module.". The
    published 630k-*.pt and music_*.pt files are such dicts. A bare state_dict loads too.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAION-CLAP checkpoint {path.resolve()} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as e:
            raise ValueError(f"{path.resolve()} is not a readable .safetensors file ({e})") from e
    elif path.suffix in (".pt", ".ckpt", ".pth", ".bin"):
        sd = _torch_load(path)
    else:
        raise ValueError(f"{path}: checkpoint must end in .safetensors, .pt, .ckpt, .pth or .bin")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"{path.resolve()} holds no state_dict")
    import torch

    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path.resolve()}: state_dict entries that are not tensors: {bad[:3]}")
    return sd


def tower_config(sd: dict, tmodel: str) -> dict:
    """Config values of the roberta/bert text tower that a state_dict's shapes determine.

    For the published checkpoints this gives roberta-base's own values (12 layers, vocabulary
    50,265, 514 positions, FFN 3,072); CLAP's text projection fixes the width at 768.
    """
    if tmodel not in ("roberta", "bert"):
        return {}
    emb = "text_branch.embeddings."
    if emb + "word_embeddings.weight" not in sd:
        return {}
    vocab, width = sd[emb + "word_embeddings.weight"].shape
    layers = {int(k.split(".")[3]) for k in sd if k.startswith("text_branch.encoder.layer.")}
    out = {
        "vocab_size": int(vocab),
        "hidden_size": int(width),
        "num_attention_heads": max(1, int(width) // 64),
    }
    if layers:
        out["num_hidden_layers"] = max(layers) + 1
    ffn = sd.get("text_branch.encoder.layer.0.intermediate.dense.weight")
    if ffn is not None:
        out["intermediate_size"] = int(ffn.shape[0])
    for key, name in (
        ("position_embeddings", "max_position_embeddings"),
        ("token_type_embeddings", "type_vocab_size"),
    ):
        if emb + key + ".weight" in sd:
            out[name] = int(sd[emb + key + ".weight"].shape[0])
    return out


def guess_architecture(sd: dict) -> dict:
    """Best guess of (amodel, tmodel, fusion) from a state_dict's keys and shapes."""
    guess = {"fusion": any("fusion_model" in k or "mel_conv2d" in k for k in sd)}
    if "token_embedding.weight" in sd:
        guess["tmodel"] = "transformer"
    elif "text_branch.shared.weight" in sd:
        guess["tmodel"] = "bart"
    elif "text_branch.embeddings.word_embeddings.weight" in sd:
        v = sd["text_branch.embeddings.word_embeddings.weight"].shape[0]
        guess["tmodel"] = "bert" if v == 30522 else "roberta"
    if "audio_projection.0.weight" in sd:
        width = sd["audio_projection.0.weight"].shape[1]
        kind = "HTSAT" if any(k.startswith("audio_branch.layers.") for k in sd) else "PANN"
        cfgs = clap_module().factory._MODEL_CONFIGS
        guess["amodel"] = [n for n, c in cfgs.items()
                           if c["audio_cfg"].get("model_type") == kind and c["embed_dim"] == width]  # fmt: skip
    return guess


# Where the pretrained LAION-CLAP weights live (the paper's encoder); our machines cannot fetch them.
LAION_CKPT_URL = _HUB + "630k-audioset-best.pt"


def _laion_amodels() -> list[str] | None:
    """Audio towers laion_clap ships configs for (read from its files; nothing is imported)."""
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "clap_module" / "model_configs"
    return sorted(f.stem for f in folder.glob("*.json") if f.stem.startswith(("HTSAT", "PANN"))) or None


def _check_tokenizer_folder(folder: Path) -> str | None:
    """None if `folder` holds a roberta (BPE) tokenizer's files, else what is wrong."""
    if not folder.is_dir():
        return f"clap_tokenizer: {folder} is not a folder; pass a local copy of roberta-base's tokenizer"
    if (folder / "tokenizer.json").is_file() or all(
        (folder / f).is_file() for f in ("vocab.json", "merges.txt")
    ):
        return None
    return (
        f"clap_tokenizer: {folder} holds no tokenizer vocabulary; expected vocab.json + merges.txt "
        "(or tokenizer.json), e.g. from AutoTokenizer.from_pretrained('roberta-base').save_pretrained(folder)"
    )


def _check_tower(clap_amodel, clap_fusion, errors: list[str]) -> None:
    """clap_amodel must name an audio tower laion_clap ships; clap_fusion must be a bool."""
    amodels = _laion_amodels()
    if not isinstance(clap_amodel, str) or (amodels is not None and clap_amodel not in amodels):
        errors.append(
            f"clap_amodel={clap_amodel!r} is not a LAION-CLAP audio model; valid: {', '.join(amodels or [])} "
            "(HTSAT-tiny for 630k-*.pt, HTSAT-base for music_audioset_epoch_15_esc_90.14.pt)"
        )
    if not isinstance(clap_fusion, bool):
        errors.append(
            f"clap_fusion must be True (630k-*-fusion-best.pt checkpoints) or False; got {clap_fusion!r}"
        )


@dataclass(frozen=True)
class LaionClapOptions:
    """What a run with encoder="laion-clap" knows of its encoder (a notebook's clap_* parameters).

    checkpoint: the user's weights file (None: laion_clap downloads the published one, internet
    only); tokenizer: a local roberta-base tokenizer folder (offline); amodel: the audio tower
    (HTSAT-tiny for 630k-*, HTSAT-base for music_audioset_epoch_15_esc_90.14); fusion: the
    630k-*-fusion-best.pt checkpoints. Built and checked by `from_params`, which
    `dlink.profiles.resolve_params` calls with the notebook parameters named in `PARAMS`.
    """

    # notebook parameter -> the option (field) it sets
    FIELDS: ClassVar[dict[str, str]] = {
        "clap_ckpt": "checkpoint",
        "clap_tokenizer": "tokenizer",
        "clap_amodel": "amodel",
        "clap_fusion": "fusion",
    }
    # each notebook parameter's value when not given: its field's default (set below the class)
    PARAMS: ClassVar[dict[str, Any]]
    PATH_PARAMS: ClassVar[tuple[str, ...]] = ("clap_ckpt", "clap_tokenizer")  # relative to the user's cwd

    checkpoint: Path | None = None
    tokenizer: Path | None = None
    amodel: str = DEFAULT_AMODEL
    fusion: bool = False

    @classmethod
    def from_params(cls, errors: list[str], **values) -> LaionClapOptions:
        """The options of a run with encoder="laion-clap" from the parameters given (`values`, names
        of PARAMS); each problem is appended to `errors` (paths made absolute, errors naming the
        absolute path tried)."""
        v = cls.PARAMS | values
        clap_ckpt = path_param("clap_ckpt", v["clap_ckpt"], errors)
        clap_tokenizer = path_param("clap_tokenizer", v["clap_tokenizer"], errors)
        ckpt = tok = None
        if clap_ckpt is not None:
            ckpt = absolute_path(clap_ckpt)
            if not ckpt.is_file():
                errors.append(
                    f"clap_ckpt={str(clap_ckpt)!r} -> {ckpt} does not exist; download it from {LAION_CKPT_URL}"
                )
        elif not hub_online():
            errors.append(
                "encoder='laion-clap' without clap_ckpt needs the model hub, which is not reachable here: "
                f"download 630k-audioset-best.pt on a machine with internet ({LAION_CKPT_URL}) "
                "and pass clap_ckpt='/path/to/630k-audioset-best.pt'"
            )
        if clap_tokenizer is not None:
            tok = absolute_path(clap_tokenizer)
            if problem := _check_tokenizer_folder(tok):
                errors.append(f"{problem} (clap_tokenizer={str(clap_tokenizer)!r})")
        _check_tower(v["clap_amodel"], v["clap_fusion"], errors)
        return cls(checkpoint=ckpt, tokenizer=tok, amodel=v["clap_amodel"], fusion=v["clap_fusion"])

    @classmethod
    def unused_params(cls, errors: list[str], **values) -> list[str]:
        """With another encoder: the parameters given that it would ignore (clap_ckpt, clap_tokenizer).
        clap_amodel and clap_fusion only describe the checkpoint, so without one they change nothing
        and are not refused; every value is still checked, so a typo is reported whichever encoder."""
        v = cls.PARAMS | values
        unused = [name for name in cls.PATH_PARAMS if path_param(name, v[name], errors) is not None]
        _check_tower(v["clap_amodel"], v["clap_fusion"], errors)
        return unused

    def as_params(self) -> dict[str, Any]:
        """The notebook parameters that give these options (JSON-able)."""
        values = {name: getattr(self, field) for name, field in self.FIELDS.items()}
        return {name: str(v) if isinstance(v, Path) else v for name, v in values.items()}

    def loader_kwargs(self) -> dict:
        """Keyword arguments of `LaionClap` beyond checkpoint and device."""
        return {
            "amodel": self.amodel,
            "enable_fusion": self.fusion,
            "tokenizer": self.tokenizer,
            "download": self.checkpoint is None,  # resolve_params allows that only with the hub reachable
        }

    def encoder(self, device: str = "cpu"):
        """The encoder. With a checkpoint file it is built on first use (`LazyLaionClap`), so a run
        whose embeddings are cached never reads the weights; without one it downloads them now."""
        if self.checkpoint is not None:
            return LazyLaionClap(self.checkpoint, device=device, **self.loader_kwargs())
        return LaionClap(checkpoint=None, device=device, **self.loader_kwargs())


LaionClapOptions.PARAMS = LaionClapOptions().as_params()  # the fields' defaults, by parameter name


class LaionClap(Encoder):
    """LAION-CLAP as an `Encoder` (512-d joint space).

    checkpoint: path of the user's LAION-CLAP weights: 630k-audioset-best.pt (amodel="HTSAT-tiny"),
    630k-audioset-fusion-best.pt (enable_fusion=True), music_audioset_epoch_15_esc_90.14.pt
    (amodel="HTSAT-base"); all with tmodel="roberta". `tokenizer`: a local tokenizer folder for
    roberta/bert/bart (offline the hub name cannot be fetched; the "transformer" tower uses the
    CLIP BPE shipped in the wheel). `download=True` (internet only) fetches the published
    checkpoint for these options. `random_init=True` builds untrained weights (tests; never cached).
    """

    name = "laion-clap"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        amodel: str = DEFAULT_AMODEL,
        tmodel: str = "roberta",
        tokenizer: str | os.PathLike | None = None,
        device: str = "cpu",
        download: bool = False,
        random_init: bool = False,
        seed: int = 0,
        enable_fusion: bool = False,
    ):
        if checkpoint is None and download:
            checkpoint = _download(_published_name(amodel, enable_fusion))
        if checkpoint is None and not random_init:
            raise ValueError(
                "LaionClap needs checkpoint=<path to LAION-CLAP .pt/.safetensors> (e.g. 630k-audioset-best.pt "
                "from huggingface.co/lukewys/laion_clap), or download=True where there is internet"
            )
        self.device, self.amodel, self.tmodel, self.fusion = device, amodel, tmodel, bool(enable_fusion)
        sd = read_state_dict(checkpoint) if checkpoint is not None else None
        tower = tower_config(sd, tmodel) if sd is not None else {}
        self.model, self.cfg = build_clap(amodel, tmodel, seed=seed, device=device,
                                          enable_fusion=self.fusion, tower=tower)  # fmt: skip
        if sd is not None:
            self._load(sd, checkpoint)
        self.model.to(device).eval()
        self.dim = self.model.joint_embed_shape
        self._tokenizer, _ = self._make_tokenizer(tokenizer)
        self.fingerprint = None
        if checkpoint is not None:
            self.fingerprint = fingerprint(checkpoint, amodel, tmodel, tokenizer, self.fusion)

    def _load(self, sd, checkpoint=None) -> None:
        """Load a state_dict (`read_state_dict`'s) into the model; wrong architectures name the right one."""
        if not isinstance(sd, dict):  # a path, as older callers pass it
            sd, checkpoint = read_state_dict(sd), sd
        own = self.model.state_dict()
        # position_ids / token_type_ids: non-persistent buffers that transformers < 4.31 saved into
        # the published checkpoints and newer ones neither save nor accept; dropped when the model
        # lacks them, kept when it has them (laion-clap 1.1.7 `del`s the key unconditionally and
        # raises KeyError on a file without it).
        sd = {k: v for k, v in sd.items() if k in own or not k.endswith(("position_ids", "token_type_ids"))}
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        shape = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or shape:
            g = guess_architecture(sd)
            amodels = g.get("amodel") or []
            hint = (
                f"clap_amodel={' or '.join(map(repr, amodels)) or '?'} (amodel), tmodel={g.get('tmodel')!r}, "
                f"clap_fusion={g['fusion']} (enable_fusion)"
            )
            raise ValueError(
                f"{Path(checkpoint).resolve()} does not fit LAION-CLAP amodel={self.amodel!r}, "
                f"tmodel={self.tmodel!r}, enable_fusion={self.fusion}: {len(missing)} missing "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
                f"{len(shape)} shape mismatches (e.g. {shape[:3]}). The checkpoint looks like {hint}; "
                "pass those"
            )
        self.model.load_state_dict(sd, strict=True)

    def _make_tokenizer(self, tokenizer):
        """(texts -> token batch, a hash of the tokenizer's files for the cache fingerprint)."""
        if self.tmodel == "transformer":
            tok = clap_module().tokenizer.tokenize
            return (lambda texts: tok(texts, context_length=self.model.context_length)), "clip-bpe"
        import transformers

        source = str(tokenizer) if tokenizer is not None else _TOWER_CONFIGS[self.tmodel][2]
        tok_hash = _tokenizer_hash(self.tmodel, tokenizer)
        model = getattr(self, "model", None)  # the tower's vocabulary; the published one before a build
        want = (
            model.text_branch.config.vocab_size
            if model is not None
            else _TOWER_CONFIGS[self.tmodel][3]["vocab_size"]
        )
        try:
            tok = getattr(transformers, _TOKENIZERS[self.tmodel]).from_pretrained(source)
        except Exception as e:
            raise ValueError(
                f"cannot load the {self.tmodel} tokenizer from {source!r} ({e}); pass tokenizer=<local folder "
                f"with its vocab files> (offline the hub name {source!r} is not reachable)"
            ) from e
        if len(tok) > want or want - len(tok) > 10:
            raise ValueError(
                f"the {self.tmodel} tokenizer from {source!r} has {len(tok)} tokens, the checkpoint's text "
                f"tower {want}: " + ("its ids would overflow the embedding table" if len(tok) > want else
                "transformers returned a broken offline stub or another vocabulary")
                + "; pass tokenizer=<local folder with the tower's own vocab files>"
            )  # fmt: skip

        def run(texts):
            enc = tok(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
            return {k: v for k, v in enc.items()}

        return run, tok_hash

    def _embed_waveforms(self, wavs):
        import torch

        # int16 round trip: LAION-CLAP quantises every clip this way before its front end
        wavs = [
            (np.round(np.clip(w, -1, 1) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
            for w in wavs
        ]
        batch = np.stack([fit_length(w, CLIP_SAMPLES) for w in wavs])
        with torch.inference_mode():
            wave = torch.from_numpy(batch).to(self.device)
            x = {"waveform": wave}
            if self.fusion:
                mels, longer = zip(
                    *(self._fusion_input(w, c) for w, c in zip(wavs, wave, strict=True)), strict=True
                )
                x = {"mel_fusion": torch.stack(mels),
                     "longer": torch.tensor(longer, dtype=torch.bool, device=self.device)}  # fmt: skip
            emb = self.model.audio_projection(self.model.encode_audio(x, device=self.device)["embedding"])
        return emb.float().cpu().numpy()

    def _fusion_input(self, full: np.ndarray, clip):
        """(mel_fusion (4, frames, mel_bins), longer) for one clip, as laion_clap's get_audio_features
        builds them: a clip of at most 10 s (`clip`, repeat-padded) gives its mel four times; a longer
        one gives its whole mel resized to one chunk's frames, then three chunk crops drawn from the
        front, middle and back thirds of the possible starts (drawn with a fixed seed here, so a clip
        always embeds the same; laion_clap draws them at random)."""
        import torch

        cfg = self.cfg["audio_cfg"]
        if len(full) <= CLIP_SAMPLES:
            return log_mel(clip[None], cfg)[0][None].expand(4, -1, -1), False
        mel = log_mel(torch.from_numpy(full).to(self.device)[None], cfg)[0]  # (frames, mel_bins)
        chunk = CLIP_SAMPLES // cfg["hop_size"] + 1
        if mel.shape[0] == chunk:  # longer by less than a hop: the whole mel is one chunk
            return mel[None].expand(4, -1, -1), False
        rng = np.random.default_rng(0)
        ranges = np.array_split(np.arange(mel.shape[0] - chunk + 1), 3)
        starts = [int(rng.choice(r)) if len(r) else 0 for r in ranges]
        shrink = torch.nn.functional.interpolate(
            mel[None, None], size=(chunk, mel.shape[1]), mode="bilinear", align_corners=False, antialias=True
        )[0, 0]  # torchvision's Resize on a tensor: bilinear with antialiasing
        return torch.stack([shrink, *(mel[i : i + chunk] for i in starts)]), True

    def _embed_texts(self, texts):
        import torch

        tokens = self._tokenizer(texts)
        with torch.inference_mode():
            emb = self.model.encode_text(tokens, device=self.device)
        return emb.float().cpu().numpy()


def _tokenizer_hash(tmodel: str, tokenizer) -> str:
    """Hash of the tokenizer's vocabulary files (of the hub name when no folder is given)."""
    import hashlib

    if tmodel == "transformer":
        return "clip-bpe"
    source = str(tokenizer) if tokenizer is not None else _TOWER_CONFIGS[tmodel][2]
    if tokenizer is None:
        return hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = Path(tokenizer).resolve()
    files = [f for f in ("vocab.json", "merges.txt", "vocab.txt", "tokenizer.json") if (folder / f).is_file()]
    if not folder.is_dir() or not files:
        raise ValueError(
            f"tokenizer folder {folder} holds no vocabulary files (expected vocab.json + merges.txt, "
            f"vocab.txt or tokenizer.json of {_TOWER_CONFIGS[tmodel][2]})"
        )
    return hashlib.sha256(b"".join((folder / f).read_bytes() for f in sorted(files))).hexdigest()[:16]


def fingerprint(
    checkpoint, amodel=DEFAULT_AMODEL, tmodel="roberta", tokenizer=None, enable_fusion=False
) -> str:
    """The cache fingerprint of `LaionClap(checkpoint, ...)`, from file hashes alone (no model built)."""
    return (f"laion-clap|{amodel}|{tmodel}|" + ("fusion|" if enable_fusion else "")
            + f"{file_sha256(checkpoint)}|{_tokenizer_hash(tmodel, tokenizer)}")  # fmt: skip


class LazyLaionClap:
    """`LaionClap(checkpoint, **options)` built on first use; its `fingerprint` is known at once.

    `embed_split` on a split already in the embedding cache needs only the fingerprint, so the
    notebooks after 02 (and a rerun of 02) read their embeddings without building the model
    (seconds per notebook for HTSAT + roberta-base, plus reading the checkpoint). Anything else
    (`embed_audio`, `model`, ...) builds it, with the same errors as `LaionClap`.
    """

    name, sample_rate = "laion-clap", SAMPLE_RATE

    def __init__(self, checkpoint, **options):
        opts = {k: options.get(k, d) for k, d in (("amodel", DEFAULT_AMODEL), ("tmodel", "roberta"),
                                                  ("tokenizer", None), ("enable_fusion", False))}  # fmt: skip
        self.fingerprint = fingerprint(checkpoint, **opts)
        self._args, self._built = (checkpoint, options), None

    _BUILT_ATTRS = ("model", "cfg", "dim", "device", "amodel", "tmodel", "fusion", "_tokenizer")

    def __getattr__(self, attr):
        # only what a LaionClap has builds it: `getattr(enc, "embed_split_fast", None)` must not
        if attr.startswith("__") or not (hasattr(LaionClap, attr) or attr in self._BUILT_ATTRS):
            raise AttributeError(attr)
        if self._built is None:
            checkpoint, options = self._args
            self._built = LaionClap(checkpoint=checkpoint, **options)
        return getattr(self._built, attr)


def log_mel(wave, audio_cfg: dict):
    """`(B, n)` waveforms -> `(B, T, mel_bins)` log-mel, as laion_clap's `get_mel` computes it.

    torchaudio's MelSpectrogram (hann window, centre reflect padding, power 2, HTK mel scale,
    no filter normalisation) then AmplitudeToDB(top_db=None), written with torch ops because
    torchaudio is not installed beside torch 2.13 here.
    """
    import torch

    sr, n_fft, hop = audio_cfg["sample_rate"], audio_cfg["window_size"], audio_cfg["hop_size"]
    n_mels, fmin, fmax = audio_cfg["mel_bins"], audio_cfg["fmin"], audio_cfg["fmax"]
    window = torch.hann_window(n_fft, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                      pad_mode="reflect", onesided=True, return_complex=True).abs() ** 2  # fmt: skip
    freqs = torch.linspace(0, sr // 2, n_fft // 2 + 1, dtype=torch.float64)

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    m_pts = torch.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2, dtype=torch.float64)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0).to(wave.dtype).to(wave.device)  # (F, n_mels)
    mel = torch.matmul(spec.transpose(1, 2), fb)  # (B, T, n_mels)
    return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


def _published_name(amodel: str, fusion: bool) -> str:
    if amodel == "HTSAT-base":
        return "music_audioset_epoch_15_esc_90.14.pt"
    return "630k-audioset-fusion-best.pt" if fusion else "630k-audioset-best.pt"


def _download(name: str) -> Path:
    """laion_clap's own download (guarded: refuses when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise ValueError(f"download=True but HF_HUB_OFFLINE is set; download {DOWNLOADS[name]} yourself")
    import urllib.request

    from dlink._io import atomic_write_bytes

    out = paths.CACHE / "laion_clap" / name
    if not out.is_file():
        with urllib.request.urlopen(DOWNLOADS[name], timeout=60) as r:  # noqa: S310 (fixed https URL)
            atomic_write_bytes(out, r.read())
    return out
