"""Prefix captioner (ClipCap-style): embedding -> MLP -> k prefix vectors -> frozen causal LM.

Input sequence per item: [prefix (k vectors) ; prompt tokens ; caption tokens + EOS]. Only the caption
tokens carry a loss (teacher forcing). The LM stays frozen unless `lora=True` (peft LoRA on q/v).
A checkpoint holds only what was trained (projector, LoRA); the LM is referenced by name.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._io import load_checkpoint, save_checkpoint
from .lm import load_lm, resolve_device

_FORMAT = "dlink.PrefixCaptioner/1"


@dataclass
class CaptionerConfig:
    lm: str = "smollm2-135m"  # see dlink.lm.OFFLINE_LMS
    prefix_len: int = 8  # k prefix vectors in the LM's input space
    projector_hidden: int = 1024
    prompt: str = "Sound description:"
    max_caption_tokens: int = 32  # training captions are cut here (EOS included)
    normalize: bool = True  # L2-normalise inputs (encoders and bridges emit unit vectors)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lr: float = 2e-3  # 40 steps of 32 at 2e-3: loss 6.5 -> 3.6 with SmolLM2 (measured)
    weight_decay: float = 0.01
    batch_size: int = 32
    epochs: int = 5
    noise_std: float = 0.0  # CapDec: Gaussian noise on the (unit) input, then renormalised
    seed: int = 0
    beams: int = 4
    max_new_tokens: int = 30

    def __post_init__(self):
        for name in ("prefix_len", "projector_hidden", "max_caption_tokens", "batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CaptionerConfig.{name}={getattr(self, name)} must be >= 1")
        if self.beams < 1 or self.max_new_tokens < 1:
            raise ValueError("CaptionerConfig.beams and max_new_tokens must be >= 1")
        if self.noise_std < 0 or self.lr <= 0:
            raise ValueError("CaptionerConfig.noise_std must be >= 0 and lr > 0")


class _Projector(nn.Module):
    def __init__(self, dim: int, hidden: int, k: int, width: int):
        super().__init__()
        self.k, self.width = k, width
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, k * width))

    def forward(self, e):  # (B, D) -> (B, k, E)
        return self.net(e).view(e.shape[0], self.k, self.width)


def _as_tensor(emb, name: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(emb), dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf values")
    return x


def _cache_kw(lm) -> str:
    """Name of the KV-cache argument: transformers >= 5.2x says `cache`, earlier 5.x `past_key_values`.

    Checked on the model's own signature because a model taking **kwargs would silently ignore
    the wrong name and decode without context.
    """
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _lm_step(lm, cache, **inputs):
    # Only the last position's logits are needed: skipping the 49k-way head elsewhere saves time.
    out = lm(**inputs, **{_cache_kw(lm): cache}, use_cache=True, logits_to_keep=1)
    new = out.get("cache")
    return out.logits[:, -1].float().log_softmax(-1), out.get("past_key_values") if new is None else new


@torch.no_grad()
def _beam_search(lm, ctx: torch.Tensor, beams: int, max_new_tokens: int, eos_id: int) -> list[list[int]]:
    """Batched beam search over `inputs_embeds` with a KV cache; beams=1 is greedy.

    ctx: (B, L, E) context embeddings (all rows the same length, so no padding is needed).
    Finished beams keep their score and emit EOS; the best beam is picked by log-prob / length
    (length penalty 1, as transformers' default). Returns B token-id lists without the EOS.
    """
    from transformers import DynamicCache

    b = ctx.shape[0]
    logp, cache = _lm_step(lm, DynamicCache(), inputs_embeds=ctx)  # (B, V)
    vocab = logp.shape[-1]
    score, tok = logp.topk(beams, dim=-1)  # (B, K)
    seqs = tok.unsqueeze(-1)  # (B, K, 1)
    done = tok == eos_id
    length = torch.ones_like(score)
    if beams > 1:
        cache.batch_repeat_interleave(beams)
    offsets = (torch.arange(b, device=ctx.device) * beams).unsqueeze(1)
    for _ in range(max_new_tokens - 1):
        if bool(done.all()):
            break
        logp, cache = _lm_step(lm, cache, input_ids=seqs[:, :, -1].reshape(b * beams, 1))
        logp = logp.view(b, beams, vocab)
        # A finished beam may only "emit" EOS again at no cost, so its score stays fixed.
        frozen = torch.full_like(logp[0, 0], float("-inf"))
        frozen[eos_id] = 0.0
        logp = torch.where(done.unsqueeze(-1), frozen, logp)
        cand = (score.unsqueeze(-1) + logp).view(b, beams * vocab)
        score, flat = cand.topk(beams, dim=-1)
        src, tok = flat // vocab, flat % vocab
        seqs = torch.cat(
            [seqs.gather(1, src.unsqueeze(-1).expand(-1, -1, seqs.shape[-1])), tok.unsqueeze(-1)], dim=-1
        )
        prev_done = done.gather(1, src)
        length = length.gather(1, src) + (~prev_done).float()
        done = prev_done | (tok == eos_id)
        if beams > 1:
            cache.reorder_cache((src + offsets).view(-1))
    best = (score / length).argmax(dim=-1)
    out = []
    for i in range(b):
        ids = seqs[i, best[i]].tolist()
        out.append(ids[: ids.index(eos_id)] if eos_id in ids else ids)
    return out


def clean_caption(text: str) -> str:
    """First line of the generated text, whitespace collapsed, first letter upper-cased (AudioCaps style)."""
    text = text.strip().split("\n")[0]
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


class PrefixCaptioner:
    """Caption (N, D) embeddings with a frozen LM. Build, `.fit(...)`, `.generate(...)`, `.save(folder)`."""

    def __init__(self, config: CaptionerConfig | None = None, device: str = "auto", **overrides):
        self.config = dataclasses.replace(config or CaptionerConfig(), **overrides)
        self.device = resolve_device(device)
        self.lm, self.tokenizer = load_lm(self.config.lm, device=self.device, seed=self.config.seed)
        for p in self.lm.parameters():
            p.requires_grad_(False)
        if self.config.lora:
            from peft import LoraConfig, get_peft_model

            self.lm = get_peft_model(
                self.lm,
                LoraConfig(
                    r=self.config.lora_r,
                    lora_alpha=self.config.lora_alpha,
                    target_modules=["q_proj", "v_proj"],
                ),
            )
        self.width = self.lm.get_input_embeddings().weight.shape[1]
        self.projector: _Projector | None = None
        self.input_dim: int | None = None
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        # Leading space: the caption continues the prompt as ordinary running text.
        self._prompt_ids = self.tokenizer(
            self.config.prompt, add_special_tokens=False, return_tensors="pt"
        ).input_ids[0]

    # ---- building blocks -------------------------------------------------------------------------
    def _build_projector(self, dim: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.projector = _Projector(dim, self.config.projector_hidden, self.config.prefix_len, self.width)
        self.projector.to(self.device)
        self.input_dim = dim

    def _trainable(self) -> dict[str, nn.Parameter]:
        out = {f"projector.{k}": v for k, v in self.projector.named_parameters()}
        if self.config.lora:
            out.update({f"lm.{k}": v for k, v in self.lm.named_parameters() if "lora_" in k})
        return out

    def _prepare(self, x: torch.Tensor, noise_gen: torch.Generator | None = None) -> torch.Tensor:
        if self.config.normalize:
            x = nn.functional.normalize(x, dim=-1)
        if noise_gen is not None and self.config.noise_std > 0:
            x = x + self.config.noise_std * torch.randn(x.shape, generator=noise_gen).to(x.device)
            x = nn.functional.normalize(x, dim=-1)
        return x

    def _context(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings -> (B, k + P, E) [prefix ; prompt] input embeddings."""
        prefix = self.projector(x)
        prompt = self.lm.get_input_embeddings()(self._prompt_ids.to(self.device))
        return torch.cat([prefix, prompt.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)

    def _encode_captions(self, captions: list[str]):
        eos = self.tokenizer.eos_token_id
        ids = [
            self.tokenizer(" " + c.strip(), add_special_tokens=False).input_ids[
                : self.config.max_caption_tokens - 1
            ]
            + [eos]
            for c in captions
        ]
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
        cap = self.lm.get_input_embeddings()(tok)
        embeds = torch.cat([ctx, cap], dim=1)
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
        self, embeddings, captions: list[str], val=None, device: str | None = None, progress: bool = True
    ):
        """Train on pairs: embeddings (N, D) float, captions list[str] of length N.

        val: optional (embeddings (M, D), captions list[str]); its loss is logged once per epoch.
        Only the projector (and LoRA, if on) learn; history["train_loss"] has one value per step.
        """
        from tqdm.auto import tqdm

        if device is not None and resolve_device(device) != self.device:
            self.to(device)
        x = _as_tensor(embeddings, "embeddings")
        if isinstance(captions, str) or len(captions) != x.shape[0]:
            raise ValueError(f"captions must be a list of {x.shape[0]} strings (one per embedding row)")
        for i, c in enumerate(captions):
            if not isinstance(c, str) or not c.strip():
                raise ValueError(f"captions[{i}] must be a non-empty string, got {c!r}")
        if self.projector is None:
            self._build_projector(x.shape[1])
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
        for epoch in range(cfg.epochs):
            self.projector.train()
            self.lm.train(cfg.lora)  # dropout only matters for LoRA; the frozen LM stays in eval mode
            order = torch.randperm(len(captions), generator=gen)
            for b in range(0, len(order), cfg.batch_size):
                idx = order[b : b + cfg.batch_size]
                xb = self._prepare(x[idx], noise_gen=gen).to(self.device)
                loss = self._loss(xb, [captions[i] for i in idx.tolist()])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                self.history["train_loss"].append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{self.history['train_loss'][-1]:.3f}")
            if val is not None:
                self.history["val_loss"].append(self.evaluate_loss(*val))
        bar.close()
        self.projector.eval()
        self.lm.eval()
        return self

    @torch.no_grad()
    def evaluate_loss(self, embeddings, captions: list[str], batch_size: int = 64) -> float:
        """Mean teacher-forced loss per batch on held-out pairs."""
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
        batch_size: int = 32,
        progress: bool = True,
    ) -> list[str]:
        """Captions for embeddings (N, D): list of N strings. beams=1 is greedy; default config.beams.

        batch_size: LM rows per decoding call (items x beams).
        """
        from tqdm.auto import tqdm

        self._require_trained()
        beams = int(beams or self.config.beams)
        max_new = int(max_new_tokens or self.config.max_new_tokens)
        x = _as_tensor(embeddings, "embeddings")
        if x.shape[1] != self.input_dim:
            raise ValueError(
                f"embeddings have dim {x.shape[1]} but this captioner was trained on dim {self.input_dim}"
            )
        self.projector.eval()
        self.lm.eval()
        out: list[str] = []
        # batch_size counts LM rows (items x beams): on CPU, 128-row beam steps ran ~4x slower per row
        # than 32-row ones (measured), so wider beams take fewer items at a time.
        batch_size = max(1, batch_size // beams)
        for b in tqdm(
            range(0, x.shape[0], batch_size), desc=f"captioning (beams={beams})", disable=not progress
        ):
            ctx = self._context(self._prepare(x[b : b + batch_size]).to(self.device))
            ids = _beam_search(
                self.lm, ctx, beams=beams, max_new_tokens=max_new, eos_id=self.tokenizer.eos_token_id
            )
            out += [clean_caption(self.tokenizer.decode(i, skip_special_tokens=True)) for i in ids]
        return out

    def to(self, device: str):
        self.device = resolve_device(device)
        self.lm.to(self.device)
        if self.projector is not None:
            self.projector.to(self.device)
        return self

    def _require_trained(self):
        if self.projector is None:
            raise ValueError(
                "this PrefixCaptioner is not trained: call .fit(embeddings, captions) or .load(folder)"
            )

    def save(self, folder) -> Path:
        """Write folder/config.json + folder/model.safetensors (projector and LoRA only; the LM by name)."""
        self._require_trained()
        config = {
            "format": _FORMAT,
            "input_dim": self.input_dim,
            "captioner": dataclasses.asdict(self.config),
            "history": self.history,
        }
        return save_checkpoint(folder, config, {k: v.data for k, v in self._trainable().items()})

    @classmethod
    def load(cls, folder, device: str = "auto") -> PrefixCaptioner:
        config, tensors = load_checkpoint(folder)
        if config.get("format") != _FORMAT:
            raise ValueError(
                f"{folder} is not a PrefixCaptioner checkpoint (format={config.get('format')!r})"
            )
        self = cls(CaptionerConfig(**config["captioner"]), device=device)
        self._build_projector(int(config["input_dim"]))
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
