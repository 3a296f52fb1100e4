"""Diffusion-Link: a diffusion model that maps audio embeddings into the text-embedding distribution.

Reading order: `DiffusionLinkConfig` (every design choice, defaults from METHOD.md's
"Diffusion-Link as we build it"), `ResidualMLPDenoiser` (the network; it knows nothing
about schedules), `DiffusionLink` (pre-processing, the three losses, SDEdit + DDIM bridging,
save/load). The diffusion process itself lives in `dlink.diffusion`.

    link = DiffusionLink(epochs=20).fit(audio, text, val=(audio_val, text_val))
    bridged = link.transform(audio_test)        # (M, D) float32, L2-normalised
    link.save("checkpoints/dlink"); link = DiffusionLink.load("checkpoints/dlink")

`Bridge` is the small base every bridge (here and in `dlink.baselines`) shares: dataclass
config from keyword arguments, input checks, checkpoint folder = config.json + model.safetensors.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dlink import _io
from dlink.diffusion import SCHEDULES, GaussianDiffusion

CENTRES = ("none", "text", "modality")

# --------------------------------------------------------------------------- inputs


def _as_matrix(x, name: str, dim: int | None = None) -> torch.Tensor:
    """numpy / torch / nested list -> (N, D) float32 CPU tensor, or ValueError saying what is wrong."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float32)
    else:
        try:
            t = torch.from_numpy(np.asarray(x, dtype=np.float32).copy())
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be an (N, D) numeric array, got {type(x).__name__} ({e})") from e
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one embedding")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name} has dimension {t.shape[1]} but the bridge was fitted on D={dim}")
    bad = ~torch.isfinite(t).all(1)
    if bad.any():
        raise ValueError(
            f"{name} has NaN/inf in {int(bad.sum())} rows (first: row {int(bad.nonzero()[0])}); clean them first"
        )
    zero = t.norm(dim=1) == 0
    if zero.any():
        raise ValueError(f"{name} has {int(zero.sum())} all-zero rows (first: row {int(zero.nonzero()[0])})")
    return t


def _as_pair(audio, text) -> tuple[torch.Tensor, torch.Tensor]:
    a, t = _as_matrix(audio, "audio"), _as_matrix(text, "text")
    if a.shape[0] != t.shape[0]:
        raise ValueError(
            f"audio has {a.shape[0]} rows but text has {t.shape[0]}; pairs must align row by row"
        )
    if a.shape[1] != t.shape[1]:
        raise ValueError(
            f"audio is {a.shape[1]}-d but text is {t.shape[1]}-d; both must come from one encoder"
        )
    return a, t


def _as_val(val):
    if val is None:
        return None
    if not (isinstance(val, (tuple, list)) and len(val) == 2):
        raise ValueError("val must be a pair (audio_val (N, D), text_val (N, D)) or None")
    return _as_pair(*val)


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} requested but CUDA is not available; use device='cpu'")
    return device


def synthetic_gap_pairs(
    n: int,
    dim: int = 64,
    latent: int = 16,
    gap: float = 1.0,
    mismatch: float = 0.2,
    noise: float = 0.05,
    seed: int = 0,
):
    """Paired embeddings with a known modality gap: two shifted cones sharing a latent structure.

    t = normalize(z W_t + c_t), a = normalize(z W_a + c_a + noise), W_a = W_t + mismatch * perturbation,
    z ~ N(0, I_latent). Returns (audio, text), each (n, dim) float32, L2-normalised.
    `gap` scales the offset between the cone axes c_a and c_t.
    """
    rng = np.random.default_rng(seed)
    w_t = rng.standard_normal((latent, dim)) / math.sqrt(latent)
    w_a = w_t + mismatch * rng.standard_normal((latent, dim)) / math.sqrt(latent)
    c_t = rng.standard_normal(dim)
    c_a = c_t + gap * rng.standard_normal(dim)
    z = rng.standard_normal((n, latent))
    text = z @ w_t + c_t
    audio = z @ w_a + c_a + noise * rng.standard_normal((n, dim))
    norm = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return norm(audio), norm(text)


# --------------------------------------------------------------------------- base


def _make_config(config_cls, kwargs: dict):
    names = [f.name for f in dataclasses.fields(config_cls)]
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} field(s) {unknown}; valid fields: {', '.join(names)}"
        )
    return config_cls(**kwargs)


class Bridge:
    """Shared surface: `Cls(**config)`, `.fit(audio, text, val=None, device=None)`, `.transform(audio)`,
    `.save(folder)`, `Bridge.load(folder)`. Subclasses set `name`, `config_cls`, `_state`, `_set_state`."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type]
    _registry: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            Bridge._registry[cls.name] = cls

    def __init__(self, **config):
        self.config = _make_config(self.config_cls, config)
        self.history: dict[str, list[float]] = {}
        self.dim: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def _check_fitted(self):
        if self.dim is None:
            raise ValueError(
                f"{type(self).__name__} is not fitted; call .fit(audio, text) or .load(folder) first"
            )

    def _state(self) -> dict[str, torch.Tensor]:
        return {}

    def _set_state(self, tensors: dict[str, torch.Tensor], device=None) -> None:
        pass

    def save(self, folder):
        """Write folder/config.json + folder/model.safetensors (atomic). Returns the folder Path."""
        self._check_fitted()
        meta = {"bridge": self.name, "dim": self.dim, "config": asdict(self.config)}
        return _io.save_checkpoint(folder, meta, self._state())

    @classmethod
    def load(cls, folder, device=None):
        """Rebuild a bridge saved with `.save(folder)`; the class comes from config.json."""
        meta, tensors = _io.load_checkpoint(folder)
        name = meta.get("bridge")
        if name not in Bridge._registry:
            raise ValueError(f"{folder}/config.json names bridge {name!r}; known: {sorted(Bridge._registry)}")
        sub = Bridge._registry[name]
        if not issubclass(sub, cls):
            raise ValueError(
                f"{folder} holds a {sub.__name__}, not a {cls.__name__}; load it with {sub.__name__}.load"
            )
        obj = sub(**meta["config"])
        obj.dim = int(meta["dim"])
        obj._set_state(tensors, device=device)
        return obj


# --------------------------------------------------------------------------- config + network


@dataclass
class DiffusionLinkConfig:
    """Every Diffusion-Link design choice (RECONSTRUCTION unless stated in the paper summary)."""

    # pre-processing: x = scale * normalize(normalize(e) - mean); scale None -> sqrt(D). centre: "none"
    # (mean 0), "text" (both modalities minus the text mean), "modality" (each minus its OWN mean, as
    # Diffusion Bridge's code does: the gap vector is removed before the network sees the input)
    scale: float | None = None
    centre: str = "modality"
    # diffusion
    schedule: str = "cosine"
    T: int = 1000
    # denoiser: 3 residual MLP blocks (paper); width None -> D, hidden None -> 2 * width
    n_blocks: int = 3
    width: int | None = None
    hidden: int | None = None
    time_dim: int = 128
    # losses: total = prior + lambda_cross * cross + lambda_topo * topo
    use_prior: bool = True
    lambda_cross: float = 1.0
    lambda_topo: float = 1.0
    # bridging: SDEdit from start_step k* (None -> T // 2) with `steps` DDIM steps. start_noise: noise
    # the audio to step k* with a seeded draw (the inputs the cross-sample term trains the denoiser
    # on) or place the clean audio at k* (Diffusion Bridge's code; inputs the denoiser never saw).
    # Defaults chosen on the validation split of the default profile (docs/METHOD.md, "Inference"):
    # highest audio->text R@1 among consistent (noised) starts, ties to the smaller centroid gap.
    start_step: int | None = 300
    steps: int = 1
    start_noise: bool = True
    eta: float = 0.0
    renorm: bool = True  # put every x0_hat back on the data sphere (Diffusion Bridge)
    # optimisation
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 30
    max_steps: int | None = None
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # 0 -> no EMA
    patience: int | None = None  # early stopping on val total loss (needs val)
    infer_batch_size: int = 8192
    progress: bool = True

    def __post_init__(self):
        checks = [
            (self.schedule in SCHEDULES, f"schedule={self.schedule!r} must be one of {SCHEDULES}"),
            (self.centre in CENTRES, f"centre={self.centre!r} must be one of {CENTRES}"),
            (isinstance(self.T, int) and self.T >= 2, f"T={self.T} must be an int >= 2"),
            (self.n_blocks >= 1, f"n_blocks={self.n_blocks} must be >= 1"),
            (self.steps >= 1, f"steps={self.steps} must be >= 1"),
            (
                self.start_step is None or 1 <= self.start_step <= self.T,
                f"start_step={self.start_step} not in 1..T",
            ),
            (self.lambda_cross >= 0 and self.lambda_topo >= 0, "lambda_cross and lambda_topo must be >= 0"),
            (
                self.use_prior or self.lambda_cross > 0,
                "no loss left: enable use_prior or set lambda_cross > 0",
            ),
            (self.eta >= 0, f"eta={self.eta} must be >= 0"),
            (self.scale is None or self.scale > 0, f"scale={self.scale} must be > 0"),
            (self.lr > 0 and self.batch_size >= 2, "lr must be > 0 and batch_size >= 2"),
            (self.epochs >= 1, f"epochs={self.epochs} must be >= 1"),
            (0 <= self.ema_decay < 1, f"ema_decay={self.ema_decay} must be in [0, 1)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


def _sinusoid(k: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=k.device, dtype=torch.float32) / half)
    ang = k.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class _Block(nn.Module):
    """LayerNorm -> (timestep scale/shift) -> Linear D->H -> SiLU -> Linear H->D, residual."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.film = nn.Linear(width, 2 * width)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)
        # zero-init so every block starts as the identity: deep residual stacks train from step 1
        for lin in (self.film, self.fc2):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x, emb):
        scale, shift = self.film(emb).chunk(2, dim=-1)
        h = self.norm(x) * (1 + scale) + shift
        return x + self.fc2(F.silu(self.fc1(h)))


class ResidualMLPDenoiser(nn.Module):
    """f(x_k (B, D), k (B,) or (1,) long, cond (B, C) | None) -> x0_hat (B, D).

    Input projection, `n_blocks` residual MLP blocks conditioned on the timestep (and, for the
    conditional prior, on an extra vector by FiLM or by concatenation to the input), output
    projection. A (1,) k is embedded once and broadcast: at inference every row shares k, and
    the timestep MLP would otherwise cost about half the network's FLOPs.
    """

    def __init__(self, dim, width, hidden, n_blocks=3, time_dim=128, cond_dim=0, cond_mode="film"):
        super().__init__()
        if cond_mode not in ("film", "concat"):
            raise ValueError(f"cond_mode={cond_mode!r} must be 'film' or 'concat'")
        self.time_dim, self.cond_dim, self.cond_mode = time_dim, cond_dim, cond_mode
        concat = cond_dim if cond_mode == "concat" else 0
        self.inp = nn.Linear(dim + concat, width)
        self.time = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width) if cond_dim and cond_mode == "film" else None
        self.blocks = nn.ModuleList(_Block(width, hidden) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x, k, cond=None):
        emb = self.time(_sinusoid(k, self.time_dim))
        if self.cond_dim:
            if cond is None:
                raise ValueError("this denoiser is conditional: pass cond (B, C)")
            if self.cond_mode == "concat":
                x = torch.cat([x, cond], dim=-1)
            else:
                emb = emb + self.cond(cond)
        emb = F.silu(emb)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


# --------------------------------------------------------------------------- Diffusion-Link


class DiffusionLink(Bridge):
    """Diffusion-Link (arXiv 2510.11330) as reconstructed in METHOD.md. See `DiffusionLinkConfig`.

    Subclasses in `dlink.baselines` change only `_losses` / `_bridge` / `_make_net`.
    """

    name = "diffusion_link"
    config_cls = DiffusionLinkConfig

    def __init__(self, **config):
        super().__init__(**config)
        self.net: ResidualMLPDenoiser | None = None
        self.diffusion = GaussianDiffusion(self.config.schedule, self.config.T)
        self.device = torch.device("cpu")

    # ---- geometry: embedding space <-> diffusion space
    def _prep_stats(self, audio: torch.Tensor, text: torch.Tensor):
        a, t = F.normalize(audio, dim=1), F.normalize(text, dim=1)
        c = self.config.centre
        self.text_mean = t.mean(0) if c in ("text", "modality") else torch.zeros(t.shape[1])
        self.audio_mean = a.mean(0) if c == "modality" else self.text_mean.clone()
        self.radius = (t - self.text_mean).norm(dim=1).mean().reshape(())

    @property
    def scale(self) -> float:
        return self.config.scale if self.config.scale is not None else math.sqrt(self.dim)

    def _to_x(self, e: torch.Tensor, audio: bool = False) -> torch.Tensor:
        """(B, D) embeddings -> diffusion space: scale * normalize(normalize(e) - its modality's mean)."""
        mean = self.audio_mean if audio else self.text_mean
        return self.scale * F.normalize(F.normalize(e, dim=1) - mean.to(e.device), dim=1)

    def _from_x(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `_to_x` up to the norm lost by centring: mean norm `radius` is assumed."""
        e = self.radius.to(x.device) * F.normalize(x, dim=1) + self.text_mean.to(x.device)
        return F.normalize(e, dim=1)

    def _renorm(self, x0: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x0, dim=1)

    # ---- network and losses (overridden by baselines)
    def _make_net(self, dim: int) -> nn.Module:
        c = self.config
        width = c.width or dim
        return ResidualMLPDenoiser(dim, width, c.hidden or 2 * width, c.n_blocks, c.time_dim)

    def _weights(self) -> dict[str, float]:
        c = self.config
        return {"prior": 1.0 if c.use_prior else 0.0, "cross": c.lambda_cross, "topo": c.lambda_topo}

    def _losses(self, net, a, t, gen) -> dict[str, torch.Tensor]:
        """Per-term losses for a batch of diffusion-space pairs a, t (B, D)."""
        w, d = self._weights(), self.diffusion
        B = t.shape[0]
        x0 = []
        if w["prior"]:
            x0.append(t)
        if w["cross"] or w["topo"]:  # topology needs x0_hat from audio even with the cross term off
            x0.append(a)
        x0 = torch.cat(x0)
        k = d.sample_steps(x0.shape[0], gen, x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device)
        pred = net(d.q_sample(x0, k, noise), k)
        out, i = {}, 0
        if w["prior"]:
            out["prior"] = F.mse_loss(pred[:B], t)
            i = B
        if w["cross"] or w["topo"]:
            pa = pred[i : i + B]
            if w["cross"]:
                out["cross"] = F.mse_loss(pa, t)
            if w["topo"]:
                s_a, s_t = F.normalize(pa, dim=1), F.normalize(t, dim=1)
                out["topo"] = ((s_a @ s_a.T - s_t @ s_t.T) ** 2).mean()
        return out

    def _bridge(self, net, x, start_step, steps, gen, start_noise) -> torch.Tensor:
        c = self.config
        noise = torch.randn(x.shape, generator=gen, device=x.device) if start_noise else None
        return self.diffusion.sdedit(
            lambda xk, k: net(xk, k[:1]),
            x,
            start_step,
            steps,
            noise=noise,
            eta=c.eta,
            generator=gen,
            x0_fn=self._renorm if c.renorm else None,
        )

    # ---- training
    def _new_net(self, dim: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return self._make_net(dim)

    @torch.no_grad()
    def _eval_losses(self, net, a, t) -> dict[str, float]:
        gen = torch.Generator(device=a.device).manual_seed(self.config.seed + 2)  # same draws every epoch
        bs, sums, n = self.config.batch_size, {}, 0
        for i in range(0, a.shape[0] - 1, bs):
            aa, tt = a[i : i + bs], t[i : i + bs]
            if aa.shape[0] < 2:
                break
            terms = self._losses(net, aa, tt, gen)
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + float(v) * aa.shape[0]
            n += aa.shape[0]
        return {key: v / n for key, v in sums.items()}

    def fit(self, audio, text, val=None, device=None):
        """Train on paired embeddings audio, text (N, D) (numpy or torch). `val`: optional
        (audio_val, text_val) pair; its loss is logged per epoch and drives `patience`.
        Returns self; `.history[term]` holds per-epoch means (terms: prior, cross, topo, total,
        and val_* when val is given)."""
        a, t = _as_pair(audio, text)
        if a.shape[0] < 2:
            raise ValueError(f"need at least 2 pairs to train, got {a.shape[0]}")
        val = _as_val(val)
        if val is not None and val[0].shape[1] != a.shape[1]:
            raise ValueError(f"val embeddings are {val[0].shape[1]}-d but training ones are {a.shape[1]}-d")
        c, dev = self.config, _resolve_device(device)
        self.dim, self.device = a.shape[1], dev
        self._prep_stats(a, t)
        xa, xt = self._to_x(a, audio=True).to(dev), self._to_x(t).to(dev)
        if val is not None:
            va, vt = self._to_x(val[0], audio=True).to(dev), self._to_x(val[1]).to(dev)
        net = self._new_net(self.dim).to(dev)
        ema = copy.deepcopy(net).requires_grad_(False) if c.ema_decay else None
        opt = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        order_gen = torch.Generator().manual_seed(c.seed)
        noise_gen = torch.Generator(device=dev).manual_seed(c.seed + 1)
        weights = self._weights()
        bs = min(c.batch_size, a.shape[0])
        self.history = {}
        best, best_state, bad, step = math.inf, None, 0, 0
        bar = tqdm(range(c.epochs), desc=f"fit {self.name}", disable=not c.progress)
        for _epoch in bar:
            net.train()
            perm = torch.randperm(a.shape[0], generator=order_gen).to(dev)
            sums, n = {}, 0
            for i in range(0, a.shape[0], bs):
                idx = perm[i : i + bs]
                if idx.shape[0] < 2:  # the topology loss needs pairs within a batch
                    continue
                terms = self._losses(net, xa[idx], xt[idx], noise_gen)
                total = sum(weights.get(key, 1.0) * v for key, v in terms.items())
                opt.zero_grad(set_to_none=True)
                total.backward()
                if c.grad_clip:
                    nn.utils.clip_grad_norm_(net.parameters(), c.grad_clip)
                opt.step()
                if ema is not None:
                    with torch.no_grad():
                        for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                            pe.lerp_(p, 1 - c.ema_decay)
                for key, v in {**terms, "total": total}.items():
                    sums[key] = sums.get(key, 0.0) + float(v.detach()) * idx.shape[0]
                n += idx.shape[0]
                step += 1
                if c.max_steps is not None and step >= c.max_steps:
                    break
            for key, v in sums.items():
                self.history.setdefault(key, []).append(v / max(n, 1))
            post = {"loss": f"{self.history['total'][-1]:.4f}"}
            if val is not None:
                use = ema if ema is not None else net
                use.eval()
                vl = self._eval_losses(use, va, vt)
                vl["total"] = sum(weights.get(key, 1.0) * v for key, v in vl.items())
                for key, v in vl.items():
                    self.history.setdefault(f"val_{key}", []).append(v)
                post["val"] = f"{vl['total']:.4f}"
                if c.patience is not None:
                    if vl["total"] < best - 1e-6:
                        best, bad = vl["total"], 0
                        best_state = copy.deepcopy(use.state_dict())
                    else:
                        bad += 1
                        if bad >= c.patience:
                            bar.set_postfix(post)
                            break
            bar.set_postfix(post)
            if c.max_steps is not None and step >= c.max_steps:
                break
        self.net = ema if ema is not None else net
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval().requires_grad_(False)
        return self

    # ---- inference
    def transform(
        self, audio, start_step: int | None = None, steps: int | None = None, start_noise: bool | None = None
    ) -> np.ndarray:
        """Bridge audio embeddings (M, D) into the text distribution: (M, D) float32, L2-normalised.

        start_step (k*) defaults to config.start_step or T // 2; steps (S) to config.steps;
        start_noise to config.start_noise.
        Same config + seed + device -> same output. Where noise is drawn (start_noise, eta > 0,
        conditional prior) it is drawn per batch of `infer_batch_size`, so keep that fixed too.
        """
        self._check_fitted()
        a = _as_matrix(audio, "audio", self.dim)
        c = self.config
        k0 = start_step if start_step is not None else (c.start_step or c.T // 2)
        s = steps if steps is not None else c.steps
        start_noise = c.start_noise if start_noise is None else bool(start_noise)
        if not 1 <= k0 <= c.T:
            raise ValueError(f"start_step={k0} must be in 1..T={c.T}")
        if s < 1:
            raise ValueError(f"steps={s} must be >= 1")
        gen = torch.Generator(device=self.device).manual_seed(c.seed + 3)
        out = []
        with torch.no_grad():
            starts = range(0, a.shape[0], c.infer_batch_size)
            for i in tqdm(starts, desc=f"bridge {self.name}", disable=not c.progress or len(starts) < 4):
                x = self._to_x(a[i : i + c.infer_batch_size].to(self.device), audio=True)
                out.append(self._from_x(self._bridge(self.net, x, k0, s, gen, start_noise)).cpu())
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    # ---- checkpoint
    def _state(self):
        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        return {**state, "text_mean": self.text_mean, "audio_mean": self.audio_mean, "radius": self.radius}

    def _set_state(self, tensors, device=None):
        dev = _resolve_device(device) if device is not None else torch.device("cpu")
        self.text_mean, self.radius = tensors["text_mean"].float(), tensors["radius"].float()
        self.audio_mean = tensors["audio_mean"].float()
        net = self._new_net(self.dim)
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net, self.device = net.to(dev).eval().requires_grad_(False), dev

    def to(self, device):
        """Move a fitted bridge to `device` ('cpu' / 'cuda'); returns self."""
        self._check_fitted()
        self.device = _resolve_device(device)
        self.net.to(self.device)
        return self
