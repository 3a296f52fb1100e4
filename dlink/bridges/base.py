"""The contract every bridge shares, and the plumbing the learned ones share.

A bridge maps audio embeddings (M, D) into the text-embedding distribution:

    bridge = make_bridge("diffusion_link", epochs=20)      # dlink.bridges.baselines; or DiffusionLink(...)
    bridge.fit(audio, text, val=(audio_val, text_val))     # paired (N, D) embeddings
    bridged = bridge.transform(audio_test)                 # (M, D) float32, L2-normalised, finite
    bridge.save("checkpoints/x"); Bridge.load("checkpoints/x")

Reading order:
- inputs: `as_matrix` / `as_pair` / `as_val`, the one validator of (N, D) embeddings;
- `TrainConfig`: epochs, batch, lr, patience, EMA, seed: the training settings a profile fills,
  stated once for every learned bridge;
- `Bridge`: keyword config -> dataclass, the one registry `BRIDGES`, save/load as a folder
  (config.json + model.safetensors, no pickle);
- `EmbeddingSpace`: embedding sphere <-> the space the denoiser works in (centring, scaling);
- `fit_loop`: one training loop (shuffled batches, gradient clipping, EMA, validation loss,
  early stopping, history, a clear error on a non-finite loss);
- `DenoiserBridge`: a bridge built on `dlink.bridges.denoiser.ResidualMLPDenoiser` and `fit_loop`. Its
  subclasses (`dlink.bridges.diffusion_link.DiffusionLink`, the learned baselines in `dlink.bridges.baselines`) say
  only which network they build, which losses they train and how they bridge.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dlink import _io
from dlink.arrays import as_embeddings, normalize_rows
from dlink.bridges.denoiser import ResidualMLPDenoiser
from dlink.device import resolve_device

CENTRES = ("none", "text", "modality")
_SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed (+ SEED_OFFSETS)

# --------------------------------------------------------------------------- inputs


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm without overflow: rows are first divided by their largest
    absolute entry, so a finite float32 row of norm 1e30 normalises like any other."""
    peak = x.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return F.normalize(x / peak, dim=1)


def as_matrix(x, name: str, dim: int | None = None) -> torch.Tensor:
    """numpy / torch / nested list -> (N, D) float32 CPU tensor, or ValueError saying what is wrong
    (`as_embeddings`' checks, then the fitted dimension `dim` and no all-zero rows)."""
    t = torch.from_numpy(as_embeddings(x, name, np.float32))
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name} has dimension {t.shape[1]} but the bridge was fitted on D={dim}")
    zero = (t == 0).all(1)
    if zero.any():
        raise ValueError(f"{name} has {int(zero.sum())} all-zero rows (first: row {int(zero.nonzero()[0])})")
    return t


def as_pair(audio, text) -> tuple[torch.Tensor, torch.Tensor]:
    a, t = as_matrix(audio, "audio"), as_matrix(text, "text")
    if a.shape[0] != t.shape[0]:
        raise ValueError(
            f"audio has {a.shape[0]} rows but text has {t.shape[0]}; pairs must align row by row"
        )
    if a.shape[1] != t.shape[1]:
        raise ValueError(
            f"audio is {a.shape[1]}-d but text is {t.shape[1]}-d; both must come from one encoder"
        )
    return a, t


def as_val(val, dim: int):
    """None, or the (audio_val, text_val) pair checked like the training pairs and against D."""
    if val is None:
        return None
    if not (isinstance(val, (tuple, list)) and len(val) == 2):
        raise ValueError("val must be a pair (audio_val (N, D), text_val (N, D)) or None")
    va, vt = as_pair(*val)
    if va.shape[1] != dim:
        raise ValueError(f"val embeddings are {va.shape[1]}-d but training ones are {dim}-d")
    return va, vt


def to_output(x: torch.Tensor, who: str) -> np.ndarray:
    """(M, D) -> L2-normalised float32 numpy; a non-finite row is an error, never an output."""
    out = unit_rows(x.float().cpu())
    bad = ~torch.isfinite(out).all(1)
    if bad.any():
        raise RuntimeError(
            f"{who} produced NaN/inf for {int(bad.sum())} row(s) (first: row {int(bad.nonzero()[0])}); "
            "its weights are broken: refit it or reload a good checkpoint"
        )
    return out.numpy().astype(np.float32, copy=False)


def _device(device) -> torch.device:
    return torch.device(resolve_device(device))


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
    return normalize_rows(audio).astype(np.float32), normalize_rows(text).astype(np.float32)


# --------------------------------------------------------------------------- configs


def check_config(checks: list[tuple[bool, str]]) -> None:
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
    )


@dataclass
class TrainConfig:
    """How a learned bridge is trained; the profile fills epochs, batch_size, patience and seed.

    seed fixes the network's initialisation, the batch order, every training noise draw and the
    inference noise (SDEdit's start noise, eta > 0, the conditional prior's x_T), each kind of draw
    from its own generator (`SEED_OFFSETS`).
    """

    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 30  # at most: early stopping (patience) usually ends sooner
    max_steps: int | None = None
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max gradient norm; 0 = no clipping
    ema_decay: float = 0.0  # 0 -> no EMA; else the EMA weights are evaluated, early-stopped and kept
    patience: int | None = None  # epochs without a better validation loss before stopping (needs val)
    infer_batch_size: int = 8192
    progress: bool = True

    def __post_init__(self):
        check_config(
            [
                (
                    is_int(self.seed) and 0 <= self.seed <= _SEED_MAX - 8,
                    f"seed={self.seed!r} must be an int in 0..2**63-9",
                ),
                (is_number(self.lr) and self.lr > 0, f"lr={self.lr!r} must be a number > 0"),
                (
                    is_int(self.batch_size) and self.batch_size >= 2,
                    f"batch_size={self.batch_size!r} must be an int >= 2",
                ),
                (is_int(self.epochs) and self.epochs >= 1, f"epochs={self.epochs!r} must be an int >= 1"),
                (
                    self.max_steps is None or (is_int(self.max_steps) and self.max_steps >= 1),
                    f"max_steps={self.max_steps!r} must be None or an int >= 1",
                ),
                (
                    is_number(self.weight_decay) and self.weight_decay >= 0,
                    f"weight_decay={self.weight_decay!r} must be >= 0",
                ),
                (
                    is_number(self.grad_clip) and self.grad_clip >= 0,
                    f"grad_clip={self.grad_clip!r} must be >= 0 (0 = off)",
                ),
                (
                    is_number(self.ema_decay) and 0 <= self.ema_decay < 1,
                    f"ema_decay={self.ema_decay!r} must be in [0, 1)",
                ),
                (
                    self.patience is None or (is_int(self.patience) and self.patience >= 1),
                    f"patience={self.patience!r} must be None or an int >= 1",
                ),
                (
                    is_int(self.infer_batch_size) and self.infer_batch_size >= 1,
                    f"infer_batch_size={self.infer_batch_size!r} must be an int >= 1",
                ),
            ]
        )


def _split_config(config_cls, kwargs: dict, train: bool):
    """Flat keyword arguments -> (method config, TrainConfig | None); unknown names are an error."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    train_names = [f.name for f in dataclasses.fields(TrainConfig)] if train else []
    unknown = [k for k in kwargs if k not in names and k not in train_names]
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} field(s) {unknown}; valid fields: {', '.join(names + train_names)}"
        )
    cfg = config_cls(**{k: v for k, v in kwargs.items() if k in names})
    return cfg, (TrainConfig(**{k: v for k, v in kwargs.items() if k in train_names}) if train else None)


# --------------------------------------------------------------------------- the contract

BRIDGES: dict[str, type[Bridge]] = {}  # name -> class, in definition order; filled by subclassing


class Bridge:
    """Shared surface: `Cls(**config)`, `.fit(audio, text, val=None, device=None)`, `.transform(audio)`,
    `.save(folder)`, `Bridge.load(folder)`. Subclasses set `name` and `config_cls` (and
    `learned = True` to take `TrainConfig` fields), implement fit/transform and `_state`/`_set_state`,
    and declare what the experiment needs to know of them: `learned`, `cache_modules` and
    `inference_grid`. Defining the subclass registers it in `BRIDGES`: a new bridge is one file."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type]
    # True: trained by `fit_loop` with the profile's training settings (TrainConfig fields);
    # False: fitted in closed form, so a profile has nothing to set for it
    learned: ClassVar[bool] = False
    # dlink modules (paths below dlink/ without .py) whose source decides what a fit produces: a
    # cached fit made by other source is not reused (dlink.experiment's cache keys hash them)
    cache_modules: ClassVar[tuple[str, ...]] = ("arrays", "bridges/base")

    @classmethod
    def inference_grid(cls, profile) -> list[dict]:
        """The inference-time settings tried on validation (`configured(**setting)` each), read from
        the run's `profile` (dlink.profiles.Profile); [{}] when there is nothing to choose."""
        return [{}]

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            BRIDGES[cls.name] = cls

    def __init__(self, **config):
        self.config, self.train = _split_config(self.config_cls, config, self.learned)
        self.history: dict[str, list[float]] = {}
        self.dim: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}{', ' + str(self.train) if self.train else ''})"

    def _check_fitted(self):
        if self.dim is None:
            raise ValueError(
                f"{type(self).__name__} is not fitted; call .fit(audio, text) or .load(folder) first"
            )

    def configured(self, **fields) -> Bridge:
        """A copy of this fitted bridge with config fields replaced (checked like the constructor's):
        for fields read at inference (k*, S, start noise, projection's k), so a setting can be tuned on
        validation without refitting. The copy shares the fitted weights."""
        other = copy.copy(self)
        other.config = dataclasses.replace(self.config, **fields)
        return other

    def _state(self) -> dict[str, torch.Tensor]:
        return {}

    def _set_state(self, tensors: dict[str, torch.Tensor], device=None) -> None:
        pass

    def save(self, folder):
        """Write folder/config.json (with the training history) + folder/model.safetensors (atomic).
        Returns the folder Path."""
        self._check_fitted()
        meta = {"bridge": self.name, "dim": self.dim, "config": asdict(self.config)}
        if self.train is not None:
            meta["train"] = asdict(self.train)
        if self.history:  # so a bridge loaded from a cache can still plot how it was trained
            meta["history"] = {k: [float(v) for v in vals] for k, vals in self.history.items()}
        return _io.save_checkpoint(folder, meta, self._state())

    @classmethod
    def load(cls, folder, device=None):
        """Rebuild a bridge saved with `.save(folder)`; the class comes from config.json."""
        meta, tensors = _io.load_checkpoint(folder)
        if not isinstance(meta, dict) or not {"bridge", "dim", "config"} <= set(meta):
            raise ValueError(f"{folder}/config.json is not a bridge checkpoint (needs bridge, dim, config)")
        _check_meta(meta, folder)
        name = meta["bridge"]
        if name not in BRIDGES:
            raise ValueError(
                f"{folder}/config.json names bridge {name!r}; known: {sorted(BRIDGES)} (import dlink.bridges.baselines)"
            )
        sub = BRIDGES[name]
        if not issubclass(sub, cls):
            raise ValueError(
                f"{folder} holds a {sub.__name__}, not a {cls.__name__}; load it with {sub.__name__}.load"
            )
        try:
            obj = sub(**meta["config"], **meta.get("train", {}))
        except ValueError as e:
            raise ValueError(f"{folder}/config.json: {e}") from e
        obj.dim = int(meta["dim"])
        obj.history = {k: list(v) for k, v in meta.get("history", {}).items()}
        obj._check_state(tensors, folder)
        obj._set_state(tensors, device=device)
        return obj

    def _expected_state(self) -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape this bridge's `_set_state` needs for its config and `dim`; a name
        absent here is not checked (its size depends on the training data)."""
        return {}

    def _check_state(self, tensors: dict, folder) -> None:
        """Weights against config.json before any is loaded: a missing tensor or a shape that does
        not fit `dim` / the config is named, instead of failing inside torch."""
        for key, shape in self._expected_state().items():
            if key not in tensors:
                raise ValueError(f"{folder}/model.safetensors lacks tensor {key!r} that a {self.name} needs")
            if tuple(tensors[key].shape) != tuple(shape):
                raise ValueError(
                    f"{folder}: tensor {key!r} has shape {tuple(tensors[key].shape)} but config.json "
                    f"(dim={self.dim}, config) implies {tuple(shape)}; the config was edited or belongs to other weights"
                )


def _check_meta(meta: dict, folder) -> None:
    """config.json's fields, typed, before they build anything."""
    check_config(
        [
            (
                isinstance(meta["bridge"], str),
                f"{folder}/config.json: bridge={meta['bridge']!r} must be a name",
            ),
            (
                is_int(meta["dim"]) and meta["dim"] >= 1,
                f"{folder}/config.json: dim={meta['dim']!r} must be an int >= 1",
            ),
            (isinstance(meta["config"], dict), f"{folder}/config.json: config must be an object of fields"),
            (
                isinstance(meta.get("train", {}), dict),
                f"{folder}/config.json: train must be an object of fields",
            ),
            (
                isinstance(meta.get("history", {}), dict)
                and all(
                    isinstance(v, list)
                    and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                    for v in meta.get("history", {}).values()
                ),
                f"{folder}/config.json: history must map each loss name to a list of numbers",
            ),
        ]
    )


# --------------------------------------------------------------------------- geometry


@dataclass
class SpaceConfig:
    """x = scale * normalize(normalize(e) - mean); scale None -> sqrt(D). centre: "none" (mean 0),
    "text" (both modalities minus the text mean), "modality" (each minus its OWN mean, as Diffusion
    Bridge's code does: the gap vector is removed before the network sees the input)."""

    scale: float | None = None
    centre: str = "modality"

    def __post_init__(self):
        check_config(
            [
                (self.centre in CENTRES, f"centre={self.centre!r} must be one of {CENTRES}"),
                (
                    self.scale is None or (is_number(self.scale) and self.scale > 0),
                    f"scale={self.scale!r} must be > 0",
                ),
            ]
        )


class EmbeddingSpace:
    """The embedding sphere <-> the denoiser's space, fitted on the training pairs."""

    def __init__(self, config: SpaceConfig):
        self.config = config

    def fit(self, audio: torch.Tensor, text: torch.Tensor) -> EmbeddingSpace:
        a, t = unit_rows(audio), unit_rows(text)
        c = self.config.centre
        self.text_mean = t.mean(0) if c in ("text", "modality") else torch.zeros(t.shape[1])
        self.audio_mean = a.mean(0) if c == "modality" else self.text_mean.clone()
        self.radius = (t - self.text_mean).norm(dim=1).mean().reshape(())
        self.scale = float(self.config.scale) if self.config.scale is not None else math.sqrt(t.shape[1])
        return self

    def to_x(self, e: torch.Tensor, audio: bool = False) -> torch.Tensor:
        """(B, D) embeddings -> scale * normalize(normalize(e) - its modality's mean)."""
        mean = self.audio_mean if audio else self.text_mean
        return self.scale * F.normalize(unit_rows(e) - mean.to(e.device), dim=1)

    def from_x(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_x` up to the norm lost by centring: mean norm `radius` is assumed."""
        return F.normalize(
            self.radius.to(x.device) * F.normalize(x, dim=1) + self.text_mean.to(x.device), dim=1
        )

    def renorm(self, x0: torch.Tensor) -> torch.Tensor:
        """Back onto the data sphere of radius `scale` (Diffusion Bridge renormalises every x0_hat)."""
        return self.scale * F.normalize(x0, dim=1)

    def state(self) -> dict[str, torch.Tensor]:
        return {"text_mean": self.text_mean, "audio_mean": self.audio_mean, "radius": self.radius}

    def load_state(self, tensors: dict[str, torch.Tensor], dim: int) -> EmbeddingSpace:
        self.text_mean, self.radius = tensors["text_mean"].float(), tensors["radius"].float()
        self.audio_mean = tensors["audio_mean"].float()
        self.scale = float(self.config.scale) if self.config.scale is not None else math.sqrt(dim)
        return self


@dataclass
class DenoiserConfig(SpaceConfig):
    """The denoiser network: `n_blocks` residual MLP blocks (3 in the paper); width None -> D,
    hidden None -> 2 * width; time_dim: the timestep embedding's size (even)."""

    n_blocks: int = 3
    width: int | None = None
    hidden: int | None = None
    time_dim: int = 128

    def __post_init__(self):
        super().__post_init__()
        check_config(
            [
                (
                    is_int(self.n_blocks) and self.n_blocks >= 1,
                    f"n_blocks={self.n_blocks!r} must be an int >= 1",
                ),
                (
                    self.width is None or (is_int(self.width) and self.width >= 1),
                    f"width={self.width!r} must be None or an int >= 1",
                ),
                (
                    self.hidden is None or (is_int(self.hidden) and self.hidden >= 1),
                    f"hidden={self.hidden!r} must be None or an int >= 1",
                ),
                (
                    is_int(self.time_dim) and self.time_dim >= 2 and self.time_dim % 2 == 0,
                    f"time_dim={self.time_dim!r} must be an even int >= 2 (sin and cos halves)",
                ),
            ]
        )

    def network(self, dim: int, cond_dim: int = 0, cond_mode: str = "film") -> nn.Module:
        width = self.width or dim
        return ResidualMLPDenoiser(
            dim, width, self.hidden or 2 * width, self.n_blocks, self.time_dim, cond_dim, cond_mode
        )


# --------------------------------------------------------------------------- one training loop

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], dict[str, torch.Tensor]]

# One training seed (TrainConfig.seed) feeds a generator per kind of draw, each seeded with the seed
# plus its offset here, so how many draws one kind takes never moves another's: more batches per
# epoch leave the inference noise alone, and validation sees the same noise every epoch. The network's
# initialisation (torch's global generator, forked) and the batch order use the seed itself.
SEED_OFFSETS = {"train_noise": 1, "val_noise": 2, "inference_noise": 3}


def seeded_generator(seed: int, stream: str, device=None) -> torch.Generator:
    """The generator of draw kind `stream` (a key of SEED_OFFSETS) for training seed `seed`."""
    return torch.Generator(device=device).manual_seed(seed + SEED_OFFSETS[stream])


def _weighted(terms: dict, weights: dict[str, float]):
    return sum(weights.get(key, 1.0) * v for key, v in terms.items())


@torch.no_grad()
def _eval_losses(net, losses: LossFn, weights, a, t, cfg: TrainConfig) -> dict[str, float]:
    gen = seeded_generator(cfg.seed, "val_noise", a.device)  # the same draws every epoch
    sums, n = {}, 0
    for i in range(0, a.shape[0] - 1, cfg.batch_size):
        aa, tt = a[i : i + cfg.batch_size], t[i : i + cfg.batch_size]
        if aa.shape[0] < 2:
            break
        for key, v in losses(net, aa, tt, gen).items():
            sums[key] = sums.get(key, 0.0) + float(v) * aa.shape[0]
        n += aa.shape[0]
    out = {key: v / n for key, v in sums.items()}
    out["total"] = _weighted(out, weights)
    return out


def fit_loop(
    net: nn.Module,
    losses: LossFn,
    weights: dict[str, float],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    cfg: TrainConfig,
    desc: str = "fit",
) -> tuple[nn.Module, dict[str, list[float]]]:
    """Train `net` on pairs (a, t) (N, D) (already on the net's device) with AdamW.

    losses(net, a_batch, t_batch, generator) -> {term: scalar}; the total is the `weights`-weighted
    sum. Per epoch: history[term] (training means, plus "total") and, with val, history[val_<term>]
    on fixed noise draws. With `cfg.patience`, stops after that many epochs without a better
    validation total and returns the best epoch's weights. With `cfg.ema_decay`, the EMA weights are
    the ones validated and returned. A non-finite loss stops training with a ValueError.
    Returns (net in eval mode without gradients, history).
    """
    a, t = train
    ema = copy.deepcopy(net).requires_grad_(False) if cfg.ema_decay else None
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order_gen = torch.Generator().manual_seed(cfg.seed)  # batch order: a CPU generator of its own
    noise_gen = seeded_generator(cfg.seed, "train_noise", a.device)
    bs = min(cfg.batch_size, a.shape[0])
    history: dict[str, list[float]] = {}
    best, best_state, bad, step = math.inf, None, 0, 0
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not cfg.progress)
    for epoch in bar:
        net.train()
        perm = torch.randperm(a.shape[0], generator=order_gen).to(a.device)
        sums, n = {}, 0
        for i in range(0, a.shape[0], bs):
            idx = perm[i : i + bs]
            if idx.shape[0] < 2:  # the topology loss needs pairs within a batch
                continue
            terms = losses(net, a[idx], t[idx], noise_gen)
            total = _weighted(terms, weights)
            if not torch.isfinite(total):
                raise ValueError(
                    f"{desc}: the training loss became {float(total.detach())} at epoch {epoch + 1}, step {step + 1}; "
                    f"lower lr (now {cfg.lr}) or keep grad_clip > 0 (now {cfg.grad_clip})"
                )
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                        pe.lerp_(p, 1 - cfg.ema_decay)
            for key, v in {**terms, "total": total}.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach()) * idx.shape[0]
            n += idx.shape[0]
            step += 1
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        for key, v in sums.items():
            history.setdefault(key, []).append(v / max(n, 1))
        post = {"loss": f"{history['total'][-1]:.4f}"}
        stop = cfg.max_steps is not None and step >= cfg.max_steps
        if val is not None:
            use = ema if ema is not None else net
            use.eval()
            vl = _eval_losses(use, losses, weights, *val, cfg)
            for key, v in vl.items():
                history.setdefault(f"val_{key}", []).append(v)
            post["val"] = f"{vl['total']:.4f}"
            if cfg.patience is not None:
                if vl["total"] < best - 1e-6:
                    best, bad, best_state = vl["total"], 0, copy.deepcopy(use.state_dict())
                else:
                    bad += 1
                    stop = stop or bad >= cfg.patience
        bar.set_postfix(post)
        if stop:
            break
    net = ema if ema is not None else net
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval().requires_grad_(False), history


# --------------------------------------------------------------------------- learned bridges


class DenoiserBridge(Bridge):
    """A bridge whose map is a `ResidualMLPDenoiser` trained by `fit_loop` in an `EmbeddingSpace`.

    Subclasses implement `_make_net(dim)`, `_losses(net, a, t, gen)` (a, t: (B, D) in the
    denoiser's space), `_weights()` and `_bridge(net, x, gen)` ((B, D) audio in that space ->
    (B, D) text estimate), and may extend `transform` with inference options.
    """

    learned = True
    cache_modules = Bridge.cache_modules + ("bridges/denoiser",)

    def __init__(self, **config):
        super().__init__(**config)
        self.net: nn.Module | None = None
        self.space = EmbeddingSpace(self.config)
        self.device = torch.device("cpu")

    def _make_net(self, dim: int) -> nn.Module:
        return self.config.network(dim)

    def _losses(self, net, a, t, gen) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _weights(self) -> dict[str, float]:
        return {}

    def _bridge(self, net, x, gen) -> torch.Tensor:
        raise NotImplementedError

    def _new_net(self, dim: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train.seed)
            return self._make_net(dim)

    def fit(self, audio, text, val=None, device=None):
        """Train on paired embeddings audio, text (N, D) (numpy or torch). `val`: optional
        (audio_val, text_val) pair; its loss is logged per epoch and drives `patience`.
        Returns self; `.history[term]` holds per-epoch means (and val_<term> with val)."""
        a, t = as_pair(audio, text)
        if a.shape[0] < 2:
            raise ValueError(f"need at least 2 pairs to train, got {a.shape[0]}")
        val = as_val(val, a.shape[1])
        if val is not None and val[0].shape[0] < 2:
            # the validation loss is taken over pairs (topology term): one pair would score 0 and stop training
            raise ValueError(f"val needs at least 2 pairs, got {val[0].shape[0]}; pass more or val=None")
        dev = _device(device)
        self.dim, self.device = a.shape[1], dev
        self.space.fit(a, t)
        xa, xt = self.space.to_x(a, audio=True).to(dev), self.space.to_x(t).to(dev)
        xval = (
            None
            if val is None
            else (self.space.to_x(val[0], audio=True).to(dev), self.space.to_x(val[1]).to(dev))
        )
        net = self._new_net(self.dim).to(dev)
        self.net, self.history = fit_loop(
            net, self._losses, self._weights(), (xa, xt), xval, self.train, desc=f"fit {self.name}"
        )
        return self

    @torch.no_grad()
    def _transform(self, audio, bridge_fn) -> np.ndarray:
        """Shared batching: (M, D) audio -> space -> bridge_fn(x, gen) -> embedding sphere."""
        self._check_fitted()
        a = as_matrix(audio, "audio", self.dim)
        gen = seeded_generator(self.train.seed, "inference_noise", self.device)
        bs, out = self.train.infer_batch_size, []
        starts = range(0, a.shape[0], bs)
        for i in tqdm(starts, desc=f"bridge {self.name}", disable=not self.train.progress or len(starts) < 4):
            x = self.space.to_x(a[i : i + bs].to(self.device), audio=True)
            out.append(self.space.from_x(bridge_fn(x, gen)).cpu())
        return to_output(torch.cat(out), type(self).__name__)

    def transform(self, audio) -> np.ndarray:
        """Bridge audio embeddings (M, D): (M, D) float32, L2-normalised. Same config + seed + device
        -> same output. Noise (if any) is drawn per batch of `infer_batch_size`: keep it fixed too."""
        return self._transform(audio, lambda x, gen: self._bridge(self.net, x, gen))

    def _state(self):
        return {**{f"net.{k}": v for k, v in self.net.state_dict().items()}, **self.space.state()}

    def _expected_state(self):
        with torch.random.fork_rng(devices=[]), torch.device("meta"):  # shapes only: no values, no RNG draws
            shapes = {f"net.{k}": tuple(v.shape) for k, v in self._make_net(self.dim).state_dict().items()}
        return {**shapes, "text_mean": (self.dim,), "audio_mean": (self.dim,), "radius": ()}

    def _set_state(self, tensors, device=None):
        self.space.load_state(tensors, self.dim)
        net = self._new_net(self.dim)
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        dev = _device(device) if device is not None else torch.device("cpu")
        self.net, self.device = net.to(dev).eval().requires_grad_(False), dev

    def to(self, device):
        """Move a fitted bridge to `device` ('cpu' / 'cuda'); returns self."""
        self._check_fitted()
        self.device = _device(device)
        self.net.to(self.device)
        return self
