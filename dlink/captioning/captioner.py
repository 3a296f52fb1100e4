"""Prefix captioner (ClipCap-style): embedding -> MLP -> k prefix vectors -> causal LM decoder.

One interface, two decoders (`CaptionerConfig.lm`):
- "scratch": a small GPT-2-style transformer trained FROM SCRATCH on the training captions, with a
  word vocabulary built from them (the WSAC recipe; fits a 2-core CPU). Everything trains.
- a pretrained causal LM ("smollm2-135m", "tiny-random", any transformers hub name or local folder;
  see `dlink.captioning.lm`): FROZEN, only the projector learns (and LoRA on the attention projections when
  `lora=True`, found per architecture or named by `lora_targets`). The paper's kind. It runs in
  `lm_dtype`; the trainable parts keep float32 weights whatever that dtype is.

Input sequence per item: [prefix (k vectors) ; prompt tokens ; caption tokens + EOS]. Only the caption
tokens carry a loss (teacher forcing). Decoding is transformers' `generate` over `inputs_embeds`
(beam search; beams=1 is greedy). A checkpoint holds what was trained (projector, LoRA, or the whole
scratch decoder and its vocabulary); a pretrained LM is referenced by name. `fit(checkpoint=folder)`
writes the training state after every epoch and resumes from the last finished one.
"""

from __future__ import annotations

import dataclasses
import io
import math
import numbers
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlink._io import atomic_write_bytes, load_checkpoint, save_checkpoint
from dlink.arrays import as_embeddings
from dlink.captioning.lm import LM_DTYPES, load_lm, lora_target_modules
from dlink.device import resolve_device

_FORMAT = "dlink.PrefixCaptioner/2"
_STATE_FORMAT = "dlink.PrefixCaptioner.training/1"
_STATE_FILE = "training_state.pt"
SCRATCH = "scratch"


@dataclass
class CaptionerConfig:
    lm: str = (
        SCRATCH  # "scratch" (trained from scratch) or a pretrained LM name (dlink.captioning.lm.OFFLINE_LMS)
    )
    prefix_len: int = 4  # k prefix vectors in the decoder's input space
    projector_hidden: int = 512
    prompt: str = "Sound description:"  # pretrained LMs only; the scratch decoder has no prompt
    max_caption_tokens: int = 32  # training captions are cut here (EOS included)
    normalize: bool = True  # L2-normalise inputs (encoders and bridges emit unit vectors)
    # the scratch decoder (GPT-2 blocks): width, layers, heads, dropout; words seen fewer than
    # vocab_min_count times in training become <unk>. Sized for 2 CPU cores: width 128 x 2 layers
    # trains an epoch of the default profile's 7,500 fit captions in ~12 s on an idle machine, width
    # 256 x 3 layers in ~50 s
    scratch_width: int = 128
    scratch_layers: int = 2
    scratch_heads: int = 4
    scratch_dropout: float = 0.1
    vocab_min_count: int = 2
    # The pretrained LM's dtype: float32 | bfloat16 | float16 | model (the checkpoint's own, bfloat16
    # for most hub LMs). float32 by default: on a CPU without bf16 matrix units (AVX512-BF16 / AMX)
    # bfloat16 matmuls are emulated and slower, float32 gives the same numbers on every device, and a
    # 135 M LM fits anywhere in it. Where bfloat16 pays (a GPU, a CPU with AMX) state it. Whatever the
    # LM's dtype, the projector and LoRA weights stay float32 (master weights: an update of 1e-4 on a
    # weight of 1 vanishes in bfloat16's 8-bit mantissa); the prefix is cast to the LM's dtype.
    lm_dtype: str = "float32"
    lora: bool = False  # pretrained LMs only
    lora_r: int = 8
    lora_alpha: int = 16
    # module names LoRA adapts (e.g. ["q_proj", "v_proj"]); None = found per architecture (dlink.captioning.lm)
    lora_targets: tuple[str, ...] | None = None
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 128
    # Validation only (benchmarks/compare_decoders.py -> results/decoder_comparison.md: one 8-epoch
    # run per seed, 3 seeds, all validation scenes scored after each epoch): mean CIDEr-D still rises
    # at epoch 8, which validation picks: text oracle 1.417 vs 1.341 at epoch 5 (paired difference
    # +0.075 [-0.009, +0.162]), validation audio without a bridge 0.507 vs 0.493 (+0.013 [-0.036,
    # +0.064]); neither interval excludes 0. Those are checkpoints of one 8-epoch learning-rate
    # schedule; with its own 5-epoch schedule seed 0 scored 1.231 / 0.452, its 8-epoch run 1.409 / 0.512
    epochs: int = 5
    noise_std: float = 0.0  # CapDec: Gaussian noise of this per-dim std on the (unit) input, renormalised
    seed: int = 0
    beams: int = 3
    max_new_tokens: int = 30

    def __post_init__(self):
        # checked here, naming the field, so a bad value fails at construction, not deep in torch
        counts = ("prefix_len", "projector_hidden", "max_caption_tokens", "batch_size", "epochs", "scratch_width",
                  "scratch_layers", "scratch_heads", "vocab_min_count", "lora_r", "beams", "max_new_tokens")  # fmt: skip
        for name in counts:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"CaptionerConfig.{name}={v!r} must be an int >= 1")
        reals = {
            "lr": (0, False),
            "lora_alpha": (0, False),
            "weight_decay": (0, True),
            "noise_std": (0, True),
        }
        for name, (low, closed) in reals.items():
            v = getattr(self, name)
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v < low or (v == low and not closed):
                raise ValueError(
                    f"CaptionerConfig.{name}={v!r} must be a finite number {'>=' if closed else '>'} {low}"
                )
        d = self.scratch_dropout
        if isinstance(d, bool) or not isinstance(d, numbers.Real) or not 0 <= d < 1:
            raise ValueError(f"CaptionerConfig.scratch_dropout={d!r} must be a number in [0, 1)")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, numbers.Integral)
            or not 0 <= self.seed < 2**64
        ):
            raise ValueError(f"CaptionerConfig.seed={self.seed!r} must be an int in [0, 2**64)")
        for name in ("lm", "prompt"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"CaptionerConfig.{name}={getattr(self, name)!r} must be a string")
        if self.scratch_width % self.scratch_heads:
            raise ValueError(
                f"CaptionerConfig.scratch_width={self.scratch_width} must be a multiple of "
                f"scratch_heads={self.scratch_heads}"
            )
        if self.lora and self.lm == SCRATCH:
            raise ValueError("CaptionerConfig.lora is for a pretrained LM; the scratch decoder trains fully")
        if self.lm_dtype not in LM_DTYPES:
            raise ValueError(
                f"CaptionerConfig.lm_dtype={self.lm_dtype!r} must be one of {', '.join(LM_DTYPES)}"
            )
        if self.lm == SCRATCH and self.lm_dtype != "float32":
            raise ValueError(
                "CaptionerConfig.lm_dtype is for a pretrained LM; the scratch decoder trains in float32"
            )
        if self.lora_targets is not None:
            t = self.lora_targets
            if isinstance(t, str) or not isinstance(t, (list, tuple)) or not t:
                raise ValueError(
                    f"CaptionerConfig.lora_targets={t!r} must be None or a non-empty list of module names, "
                    "e.g. ['q_proj', 'v_proj']"
                )
            if not all(isinstance(n, str) and n for n in t):
                raise ValueError(f"CaptionerConfig.lora_targets={t!r} must hold non-empty module names")
            if not self.lora:
                raise ValueError("CaptionerConfig.lora_targets needs lora=True (they name what LoRA adapts)")
            self.lora_targets = tuple(t)  # a list after a JSON round trip


# --------------------------------------------------------------------------- the scratch decoder's words

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def config_overrides(items, lm: str = SCRATCH) -> dict:
    """Parse ["field=value", ...] into typed CaptionerConfig overrides (the command-line form).

    Values take the field's type: int, float, true/false, a comma list for lora_targets, "none"
    where the field may be None. The result is checked by building a CaptionerConfig for `lm` from it.
    """
    kinds = {f.name: str(f.type) for f in dataclasses.fields(CaptionerConfig)}
    out = {}
    for item in items:
        name, sep, text = str(item).partition("=")
        if not sep or name not in kinds:
            raise ValueError(f"{item!r} is not FIELD=VALUE with FIELD one of {', '.join(kinds)}")
        kind = kinds[name]
        try:
            if "None" in kind and text.lower() == "none":
                value = None
            elif kind.startswith("bool"):
                if text.lower() not in ("true", "false"):
                    raise ValueError("expected true or false")
                value = text.lower() == "true"
            elif kind.startswith("int"):
                value = int(text)
            elif kind.startswith("float"):
                value = float(text)
            elif kind.startswith("tuple"):
                value = tuple(t.strip() for t in text.split(",") if t.strip())
            else:
                value = text
        except ValueError as e:
            raise ValueError(f"{name}={text!r}: {e}") from None
        out[name] = value
    CaptionerConfig(**({"lm": lm} | out))  # names the field when a value is out of range
    return out


class WordVocab:
    """Lower-cased word vocabulary of the training captions: <pad> 0, <eos> 1, <unk> 2, then words
    by frequency. Punctuation marks are words of their own."""

    SPECIALS = ("<pad>", "<eos>", "<unk>")
    pad_id, eos_id, unk_id = 0, 1, 2

    def __init__(self, words: list[str]):
        if list(words[:3]) != list(self.SPECIALS):
            raise ValueError(f"a WordVocab starts with {self.SPECIALS}, got {words[:3]}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: list[str], min_count: int = 1) -> WordVocab:
        counts = Counter(w for c in captions for w in _WORD.findall(c.lower()))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls([*cls.SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in _WORD.findall(text.lower())]

    def decode(self, ids) -> str:
        text = " ".join(self.words[i] for i in ids if i > self.unk_id)
        return re.sub(r" ([,.;:!?])", r"\1", text)


def _scratch_lm(cfg: CaptionerConfig, vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.prefix_len + cfg.max_caption_tokens + cfg.max_new_tokens + 8,
        n_embd=cfg.scratch_width,
        n_layer=cfg.scratch_layers,
        n_head=cfg.scratch_heads,
        resid_pdrop=cfg.scratch_dropout,
        embd_pdrop=cfg.scratch_dropout,
        attn_pdrop=cfg.scratch_dropout,
        bos_token_id=WordVocab.eos_id,
        eos_token_id=WordVocab.eos_id,
        pad_token_id=WordVocab.pad_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return GPT2LMHeadModel(config)


class _Projector(nn.Module):
    def __init__(self, dim: int, hidden: int, k: int, width: int):
        super().__init__()
        self.k, self.width = k, width
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, k * width))

    def forward(self, e):  # (B, D) -> (B, k, E)
        return self.net(e).view(e.shape[0], self.k, self.width)


def _as_tensor(emb, name: str) -> torch.Tensor:
    return torch.from_numpy(as_embeddings(emb, name, np.float32))


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (all-zero rows stay zero). A float32 row whose entries reach
    ~2e19 is finite but its sum of squares overflows, and a row of norm < 1e-12 meets normalize's
    eps, so rows with entries beyond 1e18 or all below 1e-6 are divided by their largest entry
    first; ordinary rows (unit embeddings) skip that rescale, so they keep the bits of the plain
    division that every trained captioner and reported score rests on."""
    peak = x.abs().amax(dim=-1, keepdim=True)
    odd = ((peak > 1e18) | (peak < 1e-6)) & (peak > 0)
    return nn.functional.normalize(torch.where(odd, x / torch.where(odd, peak, 1.0), x), dim=-1)


def _positive_int(value, name: str, default: int) -> int:
    """A caller's optional count (None -> default); ValueError unless it is an int >= 1."""
    if value is None:
        return int(default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1 or None (default {default}); got {value!r}")
    return int(value)


def _check_captions(captions, n: int, name: str = "captions") -> None:
    if isinstance(captions, str) or len(captions) != n:
        raise ValueError(f"{name} must be a list of {n} strings (one per embedding row)")
    for i, c in enumerate(captions):
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"{name}[{i}] must be a non-empty string, got {c!r}")


def clean_caption(text: str) -> str:
    """First line of the generated text, whitespace collapsed, first letter upper-cased (AudioCaps style)."""
    text = text.strip().split("\n")[0]
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


class PrefixCaptioner:
    """Caption (N, D) embeddings. Build, `.fit(...)`, `.generate(...)`, `.save(folder)`, `.load(folder)`."""

    def __init__(self, config: CaptionerConfig | None = None, device: str = "auto", **overrides):
        self.config = dataclasses.replace(config or CaptionerConfig(), **overrides)
        self.device = resolve_device(device)
        self.scratch = self.config.lm == SCRATCH
        self.lm = self.tokenizer = self.vocab = None
        self.projector: _Projector | None = None
        self.input_dim: int | None = None
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        if not self.scratch:
            self._load_pretrained()

    # ---- the decoder -----------------------------------------------------------------------------
    def _load_pretrained(self):
        cfg = self.config
        self.lm, self.tokenizer = load_lm(cfg.lm, device=self.device, seed=cfg.seed, dtype=cfg.lm_dtype)
        for p in self.lm.parameters():
            p.requires_grad_(False)
        if cfg.lora:
            from peft import LoraConfig, get_peft_model

            targets = lora_target_modules(self.lm, cfg.lora_targets)
            # GPT-2's fused c_attn is a Conv1D, whose weight is stored transposed
            conv1d = any(
                type(m).__name__ == "Conv1D" and n.rsplit(".", 1)[-1] in targets
                for n, m in self.lm.named_modules()
            )
            lora = LoraConfig(
                r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=targets, fan_in_fan_out=conv1d
            )
            # autocast_adapter_dtype: the adapters of a bfloat16 / float16 LM are kept in float32
            self.lm = get_peft_model(self.lm, lora, autocast_adapter_dtype=True)
        self._prompt_ids = self.tokenizer(
            cfg.prompt, add_special_tokens=False, return_tensors="pt"
        ).input_ids[0]

    def _build(self, dim: int, vocab: WordVocab | None = None):
        """Make the trainable parts: the scratch decoder (from `vocab`) and the projector for inputs of `dim`."""
        cfg = self.config
        if self.scratch:
            self.vocab = vocab
            self.lm = _scratch_lm(cfg, len(vocab)).to(self.device)
            self._prompt_ids = torch.zeros(0, dtype=torch.long)
        width = self.lm.get_input_embeddings().weight.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.projector = _Projector(dim, cfg.projector_hidden, cfg.prefix_len, width).to(self.device)
        self.input_dim = dim

    @property
    def eos_id(self) -> int:
        return WordVocab.eos_id if self.scratch else self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        return WordVocab.pad_id if self.scratch else self.tokenizer.pad_token_id

    def _tokens(self, caption: str) -> list[int]:
        if self.scratch:
            return self.vocab.encode(caption)
        # Leading space: the caption continues the prompt as ordinary running text.
        return self.tokenizer(" " + caption.strip(), add_special_tokens=False).input_ids

    def _text(self, ids) -> str:
        if self.scratch:
            return self.vocab.decode(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _trainable(self) -> dict[str, nn.Parameter]:
        out = {f"projector.{k}": v for k, v in self.projector.named_parameters()}
        if self.scratch:
            out.update({f"lm.{k}": v for k, v in self.lm.named_parameters()})
        elif self.config.lora:
            out.update({f"lm.{k}": v for k, v in self.lm.named_parameters() if "lora_" in k})
        return out

    # ---- building blocks -------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor, noise_gen: torch.Generator | None = None) -> torch.Tensor:
        if self.config.normalize:
            x = _unit(x)
        if noise_gen is not None and self.config.noise_std > 0:
            x = x + self.config.noise_std * torch.randn(x.shape, generator=noise_gen)
            x = _unit(x)
        return x

    def _context(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings -> (B, k + P, E) [prefix ; prompt] input embeddings."""
        prefix = self.projector(x)
        if not self.scratch:  # float32 projector (master weights) -> the LM's dtype
            prefix = prefix.to(self.lm.get_input_embeddings().weight.dtype)
        if len(self._prompt_ids) == 0:
            return prefix
        prompt = self.lm.get_input_embeddings()(self._prompt_ids.to(self.device))
        return torch.cat([prefix, prompt.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)

    def _encode_captions(self, captions: list[str]):
        eos, cut = self.eos_id, self.config.max_caption_tokens - 1
        ids = [self._tokens(c)[:cut] + [eos] for c in captions]
        n = max(len(i) for i in ids)
        tok = torch.full((len(ids), n), eos, dtype=torch.long)
        mask = torch.zeros((len(ids), n), dtype=torch.long)
        for r, i in enumerate(ids):
            tok[r, : len(i)], mask[r, : len(i)] = torch.tensor(i), 1
        return tok, mask

    def _loss(self, x: torch.Tensor, captions: list[str]) -> torch.Tensor:
        tok, mask = self._encode_captions(captions)
        tok, mask = tok.to(self.device), mask.to(self.device)
        ctx = self._context(x)
        embeds = torch.cat([ctx, self.lm.get_input_embeddings()(tok)], dim=1)
        attn = torch.cat([torch.ones(ctx.shape[:2], dtype=torch.long, device=self.device), mask], dim=1)
        # Logits only where a caption token is predicted (the last context position onwards): the
        # vocabulary head is the costliest layer per position, and the context needs none.
        n = tok.shape[1]
        logits = self.lm(inputs_embeds=embeds, attention_mask=attn, logits_to_keep=n + 1).logits[:, :-1]
        labels = tok.masked_fill(mask == 0, -100)
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
        )

    # ---- public API ------------------------------------------------------------------------------
    def fit(
        self,
        embeddings,
        captions: list[str],
        val=None,
        device: str | None = None,
        progress: bool = True,
        checkpoint=None,
    ):
        """Train on pairs: embeddings (N, D) float, captions list[str] of length N (N >= 2).

        val: optional (embeddings (M, D), captions list[str]); its loss is logged once per epoch.
        history["train_loss"] has one value per step, history["val_loss"] one per epoch.
        checkpoint: a folder; after every epoch the whole training state (trainable weights,
        optimizer, schedule, random states, history) is written there atomically, and a fit that
        finds one continues after its last finished epoch with the same result as an uninterrupted fit
        (on CPU; CUDA random state is not saved). It must be the same fit (config, data size, input dim).
        """
        from tqdm.auto import tqdm

        if device is not None and resolve_device(device) != self.device:
            self.to(device)
        x = _as_tensor(embeddings, "embeddings")
        _check_captions(captions, x.shape[0])
        if x.shape[0] < 2:
            raise ValueError("a captioner needs at least 2 training captions, got 1")
        if val is not None:
            if not (isinstance(val, (tuple, list)) and len(val) == 2):
                raise ValueError("val must be a pair (embeddings (M, D), captions list[str]) or None")
            vx = _as_tensor(val[0], "val embeddings")
            _check_captions(val[1], vx.shape[0], "val captions")
            if vx.shape[1] != x.shape[1]:
                raise ValueError(f"val embeddings have dim {vx.shape[1]}, training ones {x.shape[1]}")
        if self.projector is None:
            self._build(
                x.shape[1], WordVocab.build(captions, self.config.vocab_min_count) if self.scratch else None
            )
        elif x.shape[1] != self.input_dim:
            raise ValueError(
                f"embeddings have dim {x.shape[1]} but this captioner was built for {self.input_dim}"
            )
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        params = list(self._trainable().values())
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * math.ceil(len(captions) / cfg.batch_size)
        warm = max(1, steps // 20)
        # Linear warm-up then cosine decay: stable for a freshly initialised projector.
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        )
        bar = tqdm(total=steps, desc=f"captioner fit ({cfg.lm})", disable=not progress)
        state = None if checkpoint is None else Path(checkpoint) / _STATE_FILE
        with torch.random.fork_rng(devices=[]):
            # dropout draws from torch's global state: seed it, or a run's result would depend on
            # what ran before it in the process (e.g. which captioners came from a cache)
            torch.manual_seed(cfg.seed)
            start = 0
            if state is not None and state.is_file():
                start = self._resume(state, opt, sched, gen, len(captions))
                bar.update(start * math.ceil(len(captions) / cfg.batch_size))
            self._train(x, captions, val, gen, opt, sched, params, bar, start=start, state=state)
        bar.close()
        self.projector.eval()
        self.lm.eval()
        return self

    def _train(self, x, captions, val, gen, opt, sched, params, bar, start=0, state=None):
        cfg = self.config
        for epoch in range(start, cfg.epochs):
            self.projector.train()
            self.lm.train(self.scratch or cfg.lora)  # a frozen LM stays in eval mode (no dropout)
            order = torch.randperm(len(captions), generator=gen)
            for b in range(0, len(order), cfg.batch_size):
                idx = order[b : b + cfg.batch_size]
                xb = self._prepare(x[idx], noise_gen=gen)
                loss = self._batch_loss(xb, idx, captions)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                self.history["train_loss"].append(self._logged_loss(loss))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{self.history['train_loss'][-1]:.3f}")
            if val is not None:
                self.history["val_loss"].append(self.evaluate_loss(*val))
            if state is not None and self._writes_state():
                self._save_state(state, epoch + 1, opt, sched, gen, len(captions))

    # The three points where a multi-process fit (dlink.distributed's DDPCaptioner) differs; the loop
    # above is the one training loop of both.
    def _batch_loss(self, xb, idx, captions: list[str]):
        """Loss of one batch: `xb` the prepared inputs, `idx` their rows in `captions`."""
        return self._loss(xb.to(self.device), [captions[i] for i in idx.tolist()])

    def _logged_loss(self, loss) -> float:
        return float(loss.detach())

    def _writes_state(self) -> bool:
        return True

    def _state_id(self, n: int) -> dict:
        return {"config": dataclasses.asdict(self.config), "n": n, "input_dim": self.input_dim}

    def _save_state(self, path: Path, epochs_done: int, opt, sched, gen, n: int):
        """Everything a resumed fit needs, as one file written atomically (a kill leaves the last one)."""
        buf = io.BytesIO()
        torch.save(
            {
                "format": _STATE_FORMAT,
                "id": self._state_id(n),
                "epochs_done": epochs_done,
                "trainable": {k: v.detach().cpu() for k, v in self._trainable().items()},
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": self.history,
            },
            buf,
        )
        atomic_write_bytes(path, buf.getvalue())

    def _resume(self, path: Path, opt, sched, gen, n: int) -> int:
        """Load the state `_save_state` wrote; returns the number of finished epochs."""
        try:
            s = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (any unreadable file gets the same advice)
            raise ValueError(f"{path} is not a readable training state ({e}); delete it to start over") from e
        if not isinstance(s, dict) or s.get("format") != _STATE_FORMAT or s.get("id") != self._state_id(n):
            raise ValueError(
                f"{path} holds the training state of another fit (config, data size or input dim differ); "
                "delete it, or pass another checkpoint folder"
            )
        with torch.no_grad():
            for k, p in self._trainable().items():
                p.copy_(s["trainable"][k].to(p.device))
        opt.load_state_dict(s["optimizer"])
        sched.load_state_dict(s["scheduler"])
        gen.set_state(s["generator"])
        torch.set_rng_state(s["torch_rng"])
        self.history = s["history"]
        done = int(s["epochs_done"])
        print(
            f"captioner fit ({self.config.lm}): resuming at epoch {done + 1} of {self.config.epochs} "
            f"({done} finished, state read from {path})",
            flush=True,
        )
        return done

    @torch.no_grad()
    def evaluate_loss(self, embeddings, captions: list[str], batch_size: int = 128) -> float:
        """Mean teacher-forced loss (nats per token, averaged per batch) on held-out pairs."""
        self._require_trained()
        x = _as_tensor(embeddings, "val embeddings")
        self.projector.eval()
        self.lm.eval()
        losses = []
        for b in range(0, x.shape[0], batch_size):
            xb = self._prepare(x[b : b + batch_size]).to(self.device)
            losses.append(float(self._loss(xb, list(captions[b : b + batch_size]))))
        return float(np.mean(losses))

    @torch.no_grad()
    def generate(
        self,
        embeddings,
        beams: int | None = None,
        max_new_tokens: int | None = None,
        batch_size: int = 64,
        progress: bool = True,
    ) -> list[str]:
        """Captions for embeddings (N, D): list of N strings. beams=1 is greedy; default config.beams.

        transformers' `generate` (beam search over `inputs_embeds`, length penalty 1). batch_size: items
        per call.
        """
        from tqdm.auto import tqdm

        self._require_trained()
        beams = _positive_int(beams, "beams", self.config.beams)
        max_new = _positive_int(max_new_tokens, "max_new_tokens", self.config.max_new_tokens)
        batch_size = _positive_int(batch_size, "batch_size", 64)
        x = _as_tensor(embeddings, "embeddings")
        if x.shape[1] != self.input_dim:
            raise ValueError(
                f"embeddings have dim {x.shape[1]} but this captioner was trained on dim {self.input_dim}"
            )
        self.projector.eval()
        self.lm.eval()
        out: list[str] = []
        for b in tqdm(
            range(0, x.shape[0], batch_size), desc=f"captioning (beams={beams})", disable=not progress
        ):
            ctx = self._context(self._prepare(x[b : b + batch_size]).to(self.device))
            self._check_length(ctx.shape[1], max_new)
            ids = self.decode_ids(ctx, beams, max_new)
            out += [clean_caption(self._text(i)) for i in ids]
        return out

    @torch.no_grad()
    def decode_ids(self, ctx: torch.Tensor, beams: int, max_new_tokens: int, length_penalty: float = 1.0):
        """Token ids (without EOS) of the best beam for each (B, L, E) context: B lists."""
        seqs = self.lm.generate(
            inputs_embeds=ctx,
            attention_mask=torch.ones(ctx.shape[:2], dtype=torch.long, device=ctx.device),
            num_beams=beams,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            # early_stopping=True would stop once `beams` hypotheses end, even while a better one is
            # still running (measured: it cut "and" out of a caption the model had learnt exactly)
            **({"length_penalty": length_penalty, "early_stopping": False} if beams > 1 else {}),
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
        )
        out = []
        for row in seqs.tolist():  # with inputs_embeds only the new tokens come back
            out.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return out

    def to(self, device: str):
        self.device = resolve_device(device)
        if self.lm is not None:
            self.lm.to(self.device)
        if self.projector is not None:
            self.projector.to(self.device)
        return self

    def _check_length(self, context: int, max_new: int) -> None:
        """The LM's position table bounds context + new tokens; past it torch fails with an index error."""
        cfg = self.lm.config
        limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        if limit and context + max_new > limit:
            raise ValueError(
                f"max_new_tokens={max_new} does not fit: the LM holds {limit} positions and the context takes "
                f"{context}; use max_new_tokens <= {limit - context} (this captioner was built for "
                f"{self.config.max_new_tokens})"
            )

    def _require_trained(self):
        if self.projector is None:
            raise ValueError(
                "this PrefixCaptioner is not trained: call .fit(embeddings, captions) or .load(folder)"
            )

    def save(self, folder) -> Path:
        """Write folder/config.json + folder/model.safetensors (what was trained; a pretrained LM by name)."""
        self._require_trained()
        config = {
            "format": _FORMAT,
            "input_dim": self.input_dim,
            "captioner": dataclasses.asdict(self.config),
            "vocab": self.vocab.words if self.scratch else None,
            "history": self.history,
        }
        return save_checkpoint(folder, config, {k: v.data for k, v in self._trainable().items()})

    @classmethod
    def load(cls, folder, device: str = "auto") -> PrefixCaptioner:
        config, tensors = load_checkpoint(folder)
        if config.get("format") != _FORMAT:
            raise ValueError(
                f"{folder} is not a {_FORMAT} checkpoint (format={config.get('format')!r}); retrain it"
            )
        try:
            cfg, dim = CaptionerConfig(**config["captioner"]), int(config["input_dim"])
            vocab = WordVocab(config["vocab"]) if cfg.lm == SCRATCH else None
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{folder}/config.json is malformed ({type(e).__name__}: {e}); retrain or re-save it"
            ) from e
        self = cls(cfg, device=device)
        self._build(dim, vocab)
        params = self._trainable()
        if set(params) != set(tensors):
            raise ValueError(
                f"{folder}/model.safetensors does not match the config: missing "
                f"{sorted(set(params) - set(tensors))[:3]}, unexpected {sorted(set(tensors) - set(params))[:3]}"
            )
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(tensors[k].to(p.device))
        self.history = config.get("history", self.history)
        self.projector.eval()
        self.lm.eval()
        return self


class RetrievalCaptioner:
    """Calibration decoder: the caption of the nearest training embedding (cosine). Same interface as
    PrefixCaptioner: `.fit(embeddings (N, D), captions (N))`, `.generate(embeddings (M, D))`."""

    def fit(self, embeddings, captions: list[str], **_ignored):
        x = _as_tensor(embeddings, "embeddings")
        _check_captions(captions, x.shape[0])
        self.bank, self.captions = _unit(x), list(captions)
        return self

    def generate(self, embeddings, batch_size: int = 4096, **_ignored) -> list[str]:
        if not hasattr(self, "bank"):
            raise ValueError("this RetrievalCaptioner is not fitted: call .fit(embeddings, captions)")
        q = _as_tensor(embeddings, "embeddings")
        if q.shape[1] != self.bank.shape[1]:
            raise ValueError(
                f"embeddings have dim {q.shape[1]} but the caption bank has dim {self.bank.shape[1]}"
            )
        q = _unit(q)
        best = torch.cat(
            [(q[i : i + batch_size] @ self.bank.T).argmax(1) for i in range(0, len(q), batch_size)]
        )
        return [self.captions[i] for i in best.tolist()]
