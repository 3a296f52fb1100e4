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

Clip policy: audio is resampled to 48 kHz, quantised through int16 (as LAION-CLAP does), and
cropped (from the start, deterministic) or repeat-padded to 10 s (480,000 samples). Fusion
checkpoints are refused with a clear error (their long-clip path needs torchaudio).
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np

from dlink import paths
from dlink.encoders import Encoder, file_sha256, fit_length

SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000  # 10 s at 48 kHz, LAION-CLAP's training length
_PRIVATE = "_dlink_clap_module"
DOWNLOADS = {  # laion_clap.hook.CLAP_Module.load_ckpt's URLs (used only with download=True)
    "630k-best.pt": "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-best.pt",
    "630k-audioset-best.pt": "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-best.pt",
}
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


def build_clap(amodel: str = "HTSAT-tiny", tmodel: str = "roberta", seed: int = 0, device: str = "cpu"):
    """The LAION-CLAP `CLAP` module with random weights (towers built from configs). `(model, cfg)`."""
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
    for model_name, config_name, _, kw in _TOWER_CONFIGS.values():
        saved[model_name] = getattr(model_mod, model_name)
        tower = _ConfigTower(getattr(transformers, model_name), getattr(transformers, config_name), kw)
        setattr(model_mod, model_name, tower)
    torch.manual_seed(seed)
    try:
        model, cfg = cm.create_model(amodel, tmodel, precision="fp32", device=torch.device(device))
    finally:
        for k, v in saved.items():
            setattr(model_mod, k, v)
    return model.eval(), cfg


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors of a `.safetensors` file or a `.pt`/`.ckpt`/`.pth`/`.bin` state_dict (weights_only)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAION-CLAP checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    elif path.suffix in (".pt", ".ckpt", ".pth", ".bin"):
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(
                f"{path} is not a plain tensor checkpoint loadable with weights_only=True ({e}); "
                "we never unpickle arbitrary objects: re-save it as model.state_dict() or .safetensors"
            ) from e
    else:
        raise ValueError(f"{path}: checkpoint must end in .safetensors, .pt, .ckpt, .pth or .bin")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"{path} holds no state_dict")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


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


class LaionClap(Encoder):
    """LAION-CLAP as an `Encoder` (512-d joint space).

    checkpoint: path of the user's LAION-CLAP weights (e.g. 630k-audioset-best.pt with
    amodel="HTSAT-tiny", tmodel="roberta"). `tokenizer`: a local tokenizer folder for
    roberta/bert/bart (the "transformer" tower uses the CLIP BPE shipped in the wheel).
    `download=True` (internet only) fetches laion_clap's published checkpoint like
    `CLAP_Module.load_ckpt`. `random_init=True` builds untrained weights (tests; never cached).
    """

    name = "laion-clap"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        amodel: str = "HTSAT-tiny",
        tmodel: str = "roberta",
        tokenizer: str | os.PathLike | None = None,
        device: str = "cpu",
        download: bool = False,
        random_init: bool = False,
        seed: int = 0,
    ):
        if checkpoint is None and download:
            checkpoint = _download("630k-audioset-best.pt")
        if checkpoint is None and not random_init:
            raise ValueError(
                "LaionClap needs checkpoint=<path to LAION-CLAP .pt/.safetensors> (e.g. 630k-audioset-best.pt "
                "from huggingface.co/lukewys/laion_clap), or download=True where there is internet"
            )
        self.device, self.amodel, self.tmodel = device, amodel, tmodel
        self.model, self.cfg = build_clap(amodel, tmodel, seed=seed, device=device)
        if checkpoint is not None:
            self._load(checkpoint)
            self.fingerprint = f"laion-clap|{amodel}|{tmodel}|{file_sha256(checkpoint)}"
        else:
            self.fingerprint = None
        self.model.to(device).eval()
        self.dim = self.model.joint_embed_shape
        self._tokenizer = self._make_tokenizer(tokenizer)

    def _load(self, checkpoint) -> None:
        sd = read_state_dict(checkpoint)
        own = self.model.state_dict()
        # non-persistent buffers (e.g. position_ids) old transformers saved and new ones don't
        sd = {k: v for k, v in sd.items() if k in own or not k.endswith(("position_ids", "token_type_ids"))}
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        shape = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or shape:
            g = guess_architecture(sd)
            hint = f"amodel={g.get('amodel')}, tmodel={g.get('tmodel')!r}" + (
                ", a FUSION model" if g["fusion"] else ""
            )
            raise ValueError(
                f"{checkpoint} does not fit LAION-CLAP amodel={self.amodel!r}, tmodel={self.tmodel!r}: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]}), {len(shape)} shape mismatches (e.g. {shape[:3]}). "
                f"The checkpoint looks like {hint}; pass those names (fusion checkpoints are not supported)"
            )
        self.model.load_state_dict(sd, strict=True)

    def _make_tokenizer(self, tokenizer):
        if self.tmodel == "transformer":
            tok = clap_module().tokenizer.tokenize
            return lambda texts: tok(texts, context_length=self.model.context_length)
        import transformers

        source = str(tokenizer) if tokenizer is not None else _TOWER_CONFIGS[self.tmodel][2]
        want = _TOWER_CONFIGS[self.tmodel][3]["vocab_size"]
        try:
            tok = getattr(transformers, _TOKENIZERS[self.tmodel]).from_pretrained(source)
        except Exception as e:
            raise ValueError(
                f"cannot load the {self.tmodel} tokenizer from {source!r} ({e}); pass tokenizer=<local folder "
                f"with its vocab files> (offline the hub name {source!r} is not reachable)"
            ) from e
        if abs(len(tok) - want) > 10:
            raise ValueError(
                f"the {self.tmodel} tokenizer from {source!r} has {len(tok)} tokens, expected about {want}: "
                "transformers returned a broken offline stub; pass tokenizer=<local folder with the real vocab>"
            )

        def run(texts):
            enc = tok(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
            return {k: v for k, v in enc.items()}

        return run

    def _embed_waveforms(self, wavs):
        import torch

        # int16 round trip: LAION-CLAP quantises every clip this way before its front end
        batch = np.stack([fit_length(np.clip(w, -1, 1), CLIP_SAMPLES) for w in wavs])
        batch = (np.round(batch * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
        with torch.inference_mode():
            x = {"waveform": torch.from_numpy(batch).to(self.device)}
            emb = self.model.audio_projection(self.model.encode_audio(x, device=self.device)["embedding"])
        return emb.float().cpu().numpy()

    def _embed_texts(self, texts):
        import torch

        tokens = self._tokenizer(texts)
        with torch.inference_mode():
            emb = self.model.encode_text(tokens, device=self.device)
        return emb.float().cpu().numpy()


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
