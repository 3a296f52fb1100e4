"""Baseline bridges behind the same `.fit(audio, text, val=None, device=None)` / `.transform(audio)`.

    identity           raw audio embedding (the "none" row)
    mean_shift         remove the audio mean, add the text mean, renormalise (C3 / WSAC)
    projection         softmax-weighted mix of the k nearest training TEXT embeddings (DRCap / WSAC)
    ridge              closed-form ridge regression audio -> text, lambda chosen on validation
    mlp_regression     audio -> text with MSE, the denoiser's network with the timestep fixed at 0
    diffusion_bridge   text-only diffusion prior + SDEdit (Diffusion-Link with cross & topo off)
    conditional_prior  noise -> text embedding conditioned on audio (DiffGAP / DALL-E 2 prior style)
    diffusion_link     the method (dlink.bridges.diffusion_link.DiffusionLink)

`make_bridge(name, **config)` builds any of them; `BRIDGES` (dlink.bridges.base's registry) maps names
to classes. Every `.transform` returns (M, D) float32, L2-normalised; every bridge saves/loads as a folder.
Each class declares what the experiment reads: `learned`, `cache_modules`, `inference_grid(profile)`.
A bridge in a module of its own under dlink/bridges/ is imported, and so registered, with these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlink.bridges.base import (
    BRIDGES,
    Bridge,
    DenoiserBridge,
    DenoiserConfig,
    as_matrix,
    as_pair,
    as_val,
    check_config,
    is_int,
    is_number,
    to_output,
    unit_rows,
)
from dlink.bridges.diffusion import GaussianDiffusion, denoise, x0_loss
from dlink.bridges.diffusion_link import DiffusionConfig, DiffusionLink, SDEditBridge, SDEditConfig  # noqa: F401

# --------------------------------------------------------------------------- closed-form


@dataclass
class IdentityConfig:
    pass


class Identity(Bridge):
    """The raw audio embedding, L2-normalised: the no-bridge row of every table."""

    name, config_cls = "identity", IdentityConfig
    cache_modules = Bridge.cache_modules + ("bridges/baselines",)

    def fit(self, audio, text, val=None, device=None):
        self.dim = as_pair(audio, text)[0].shape[1]
        return self

    def transform(self, audio) -> np.ndarray:
        self._check_fitted()
        return to_output(as_matrix(audio, "audio", self.dim), "identity")


@dataclass
class MeanShiftConfig:
    # renormalize=False returns the shifted vectors as they are (not unit norm): only for checking
    renormalize: bool = True

    def __post_init__(self):
        check_config(
            [(isinstance(self.renormalize, bool), f"renormalize={self.renormalize!r} must be True or False")]
        )


class MeanShift(Bridge):
    """e -> normalize(e - mean(audio_train) + mean(text_train)) (C3 / WSAC embedding shift)."""

    name, config_cls = "mean_shift", MeanShiftConfig
    cache_modules = Bridge.cache_modules + ("bridges/baselines",)

    def fit(self, audio, text, val=None, device=None):
        a, t = as_pair(audio, text)
        a, t = unit_rows(a), unit_rows(t)
        self.dim, self.audio_mean, self.text_mean = a.shape[1], a.mean(0), t.mean(0)
        return self

    def transform(self, audio) -> np.ndarray:
        self._check_fitted()
        x = unit_rows(as_matrix(audio, "audio", self.dim)) - self.audio_mean + self.text_mean
        return to_output(x, "mean_shift") if self.config.renormalize else x.numpy()

    def _state(self):
        return {"audio_mean": self.audio_mean, "text_mean": self.text_mean}

    def _expected_state(self):
        return {"audio_mean": (self.dim,), "text_mean": (self.dim,)}

    def _set_state(self, tensors, device=None):
        self.audio_mean, self.text_mean = tensors["audio_mean"], tensors["text_mean"]


@dataclass
class ProjectionConfig:
    k: int | None = 32  # nearest training texts mixed; None -> all
    temperature: float = 0.05  # softmax over cosine similarities
    chunk: int = 4096

    def __post_init__(self):
        check_config(
            [
                (
                    self.k is None or (is_int(self.k) and self.k >= 1),
                    f"k={self.k!r} must be an int >= 1 or None",
                ),
                (
                    is_number(self.temperature) and self.temperature > 0,
                    f"temperature={self.temperature!r} must be a finite number > 0",
                ),
                (is_int(self.chunk) and self.chunk >= 1, f"chunk={self.chunk!r} must be an int >= 1"),
            ]
        )


class Projection(Bridge):
    """Projection decoding: sum_j softmax(cos(a, t_j) / tau) t_j over the k nearest training texts
    (DRCap / WSAC; the retrieved captions themselves are not used). Output lies in their span."""

    name, config_cls = "projection", ProjectionConfig
    cache_modules = Bridge.cache_modules + ("bridges/baselines",)

    @classmethod
    def inference_grid(cls, profile) -> list[dict]:
        return [{"k": k, "temperature": t} for k in (8, 32, 128) for t in (0.01, 0.05, 0.2)]

    def fit(self, audio, text, val=None, device=None):
        _, t = as_pair(audio, text)
        self.bank = unit_rows(t)
        self.dim = t.shape[1]
        return self

    def transform(self, audio) -> np.ndarray:
        self._check_fitted()
        a = unit_rows(as_matrix(audio, "audio", self.dim))
        c, out = self.config, []
        k = min(c.k or self.bank.shape[0], self.bank.shape[0])
        for i in range(0, a.shape[0], c.chunk):
            sim, idx = (a[i : i + c.chunk] @ self.bank.T).topk(k, dim=1)
            w = torch.softmax(sim / c.temperature, dim=1)
            out.append(torch.einsum("mk,mkd->md", w, self.bank[idx]))
        return to_output(torch.cat(out), "projection")

    def _state(self):
        return {"bank": self.bank}

    def _check_state(self, tensors, folder):
        bank = tensors.get("bank")
        if bank is None or bank.ndim != 2 or bank.shape[1] != self.dim:
            shape = None if bank is None else tuple(bank.shape)
            raise ValueError(
                f"{folder}: tensor 'bank' is {shape} but config.json implies (N, dim={self.dim})"
            )

    def _set_state(self, tensors, device=None):
        self.bank = tensors["bank"]


@dataclass
class RidgeConfig:
    # ridge penalty; None -> chosen on the validation pairs (lowest MSE) from `lambdas`, or 1.0 without val
    lam: float | None = None
    lambdas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)

    def __post_init__(self):
        check_config(
            [
                (
                    self.lam is None or (is_number(self.lam) and self.lam >= 0),
                    f"lam={self.lam!r} must be None or a finite number >= 0",
                ),
                (
                    isinstance(self.lambdas, (tuple, list))
                    and len(self.lambdas) > 0
                    and all(is_number(v) and v >= 0 for v in self.lambdas),
                    f"lambdas={self.lambdas!r} must be a non-empty list of finite numbers >= 0",
                ),
            ]
        )
        self.lambdas = tuple(float(v) for v in self.lambdas)


class Ridge(Bridge):
    """Closed-form ridge regression audio -> text with an intercept, output renormalised: the simplest
    learned map, and the reference every learned bridge must beat. Lambda chosen on validation."""

    name, config_cls = "ridge", RidgeConfig
    cache_modules = Bridge.cache_modules + ("bridges/baselines",)  # lambda is chosen inside `fit`

    @staticmethod
    def _solve(a, t, lam):
        if lam == 0 and a.shape[0] <= a.shape[1]:
            # the centred Gram matrix has rank <= N - 1 < D: singular, the solve returns noise
            raise ValueError(
                f"ridge with lam=0 needs more training pairs than dimensions; got N={a.shape[0]}, "
                f"D={a.shape[1]}: set lam > 0 (or leave lam=None to choose it on validation)"
            )
        am, tm = a.mean(0), t.mean(0)
        ac, tc = (a - am).double(), (t - tm).double()
        w = torch.linalg.solve(ac.T @ ac + lam * torch.eye(a.shape[1], dtype=torch.float64), ac.T @ tc)
        return w.float(), am, tm

    def fit(self, audio, text, val=None, device=None):
        a, t = (unit_rows(x) for x in as_pair(audio, text))
        self.dim = a.shape[1]
        lams = [self.config.lam] if self.config.lam is not None else list(self.config.lambdas)
        if len(lams) > 1 and val is not None:
            va, vt = (unit_rows(x) for x in as_val(val, self.dim))
            mse = []
            for lam in lams:
                w, am, tm = self._solve(a, t, lam)
                mse.append(float(((F.normalize((va - am) @ w + tm, dim=1) - vt) ** 2).sum(1).mean()))
            self.history = {"lambda": lams, "val_mse": mse}
            lam = lams[int(np.argmin(mse))]
        else:
            lam = 1.0 if self.config.lam is None else self.config.lam
        self.lam = torch.tensor(float(lam))
        self.w, self.audio_mean, self.text_mean = self._solve(a, t, lam)
        return self

    def transform(self, audio) -> np.ndarray:
        self._check_fitted()
        a = unit_rows(as_matrix(audio, "audio", self.dim))
        return to_output((a - self.audio_mean) @ self.w + self.text_mean, "ridge")

    def _state(self):
        return {"w": self.w, "audio_mean": self.audio_mean, "text_mean": self.text_mean, "lam": self.lam}

    def _expected_state(self):
        d = self.dim
        return {"w": (d, d), "audio_mean": (d,), "text_mean": (d,), "lam": ()}

    def _set_state(self, tensors, device=None):
        self.w, self.audio_mean, self.text_mean = tensors["w"], tensors["audio_mean"], tensors["text_mean"]
        self.lam = tensors["lam"]


# --------------------------------------------------------------------------- learned


@dataclass
class MLPRegressionConfig(DenoiserConfig):
    """The denoiser's network and space, nothing of diffusion."""


class MLPRegression(DenoiserBridge):
    """audio -> text by MSE with the denoiser's exact network (timestep fixed at 0): same size and
    training loop as Diffusion-Link, no diffusion. Answers "is diffusion needed at all?"."""

    name, config_cls = "mlp_regression", MLPRegressionConfig
    cache_modules = DenoiserBridge.cache_modules + ("bridges/diffusion", "bridges/baselines")

    def _losses(self, net, a, t, gen):
        return {"mse": x0_loss(net(a, torch.zeros(1, dtype=torch.long, device=a.device)), t)}

    def _bridge(self, net, x, gen):
        return net(x, torch.zeros(1, dtype=torch.long, device=x.device))


@dataclass
class DiffusionBridgeConfig(SDEditConfig):
    """The original's own inference settings are `centre="modality", start_step=600, start_noise=False`
    (SDEdit from 600 of 1000 on the clean input); the notebooks choose k* and S on validation."""


class DiffusionBridge(SDEditBridge):
    """Diffusion Bridge (CVPR 2025): a diffusion prior trained on TEXT only, applied to audio by
    SDEdit. Same denoiser, space and sampler as Diffusion-Link; only the training term differs.
    `fit` uses the audio only for its centring mean (centre="modality") and ignores the pairing."""

    name, config_cls = "diffusion_bridge", DiffusionBridgeConfig
    cache_modules = SDEditBridge.cache_modules + ("bridges/baselines",)  # SDEditBridge's grid

    def _losses(self, net, a, t, gen):
        return {"prior": x0_loss(denoise(lambda x, k: net(x, k), self.diffusion, t, gen), t)}


@dataclass
class ConditionalPriorConfig(DiffusionConfig):
    """Conditional prior: x0-prediction of text from noise given audio, `steps` DDIM steps from k = T."""

    conditioning: str = "film"  # "film" (audio added to the timestep embedding) or "concat" (to the input)
    steps: int = 50

    def __post_init__(self):
        super().__post_init__()
        check_config(
            [
                (
                    self.conditioning in ("film", "concat"),
                    f"conditioning={self.conditioning!r} must be 'film' or 'concat'",
                ),
                (
                    is_int(self.steps) and self.steps >= 1,
                    f"steps={self.steps!r} must be an int >= 1",
                ),
            ]
        )


class ConditionalPrior(DenoiserBridge):
    """noise -> text embedding conditioned on the audio embedding, sampled with seeded DDIM from
    pure noise (DiffGAP / DALL-E 2 prior style)."""

    name, config_cls = "conditional_prior", ConditionalPriorConfig
    cache_modules = DenoiserBridge.cache_modules + ("bridges/diffusion", "bridges/baselines")

    @classmethod
    def inference_grid(cls, profile) -> list[dict]:
        return [{"steps": s, "eta": e} for s in (1, 5, 20, 50) for e in (0.0, 1.0)]

    def __init__(self, **config):
        super().__init__(**config)
        self.diffusion = GaussianDiffusion(self.config.schedule, self.config.T)

    def _make_net(self, dim):
        return self.config.network(dim, cond_dim=dim, cond_mode=self.config.conditioning)

    def _losses(self, net, a, t, gen):
        return {"prior": x0_loss(denoise(lambda x, k: net(x, k, cond=a), self.diffusion, t, gen), t)}

    def _bridge(self, net, x, gen):
        c = self.config
        x_T = torch.randn(x.shape, generator=gen, device=x.device)
        return self.diffusion.ddim_loop(
            lambda xk, k: net(xk, k[:1], cond=x),
            x_T,
            c.T,
            c.steps,
            eta=c.eta,
            generator=gen,
            x0_fn=self.space.renorm if c.renorm else None,
        )


def _import_bridge_modules() -> None:
    """Import every module of dlink.bridges, so a bridge written as a file of its own there is
    registered beside these (defining its class registers it), then put the method last.

    BRIDGES (dlink.bridges.base's one registry) is in definition order, and the method is defined
    first (its module is imported above): the floor first, the method last is every table's order."""
    import importlib
    import pkgutil

    import dlink.bridges as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    BRIDGES["diffusion_link"] = BRIDGES.pop("diffusion_link")


_import_bridge_modules()


def bridge_class(name: str) -> type[Bridge]:
    """The class registered as bridge `name` (see `BRIDGES`): what it declares (`learned`,
    `cache_modules`, `inference_grid`) is what the experiment reads."""
    if name not in BRIDGES:
        raise ValueError(f"unknown bridge {name!r}; choose one of {', '.join(BRIDGES)}")
    return BRIDGES[name]


def make_bridge(name: str, **config) -> Bridge:
    """Build the bridge called `name` (see `BRIDGES`) with config fields as keyword arguments."""
    return bridge_class(name)(**config)
