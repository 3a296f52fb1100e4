"""Diffusion-Link (arXiv 2510.11330): a diffusion model that maps audio embeddings into the
text-embedding distribution.

    link = DiffusionLink(epochs=20).fit(audio, text, val=(audio_val, text_val))
    bridged = link.transform(audio_test)        # (M, D) float32, L2-normalised
    link.save("checkpoints/dlink"); link = DiffusionLink.load("checkpoints/dlink")

Reading order: `SDEditConfig` / `SDEditBridge`, the mechanism Diffusion-Link shares with Diffusion
Bridge (a denoiser over the diffusion process of `dlink.bridges.diffusion`, applied to audio by SDEdit from
step k* with S DDIM steps); then `DiffusionLinkConfig` and `DiffusionLink`: the three training
terms. Design choices are RECONSTRUCTION unless METHOD.md says the paper states them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlink.bridges.base import DenoiserBridge, DenoiserConfig, check_config, is_int, is_number
from dlink.bridges.diffusion import SCHEDULES, GaussianDiffusion, denoise, topology_loss, x0_loss


@dataclass
class DiffusionConfig(DenoiserConfig):
    """The diffusion process (x0-prediction) and its DDIM sampler: eta = 0 is deterministic;
    renorm puts every x0_hat back on the data sphere (Diffusion Bridge)."""

    schedule: str = "cosine"
    T: int = 1000
    eta: float = 0.0
    renorm: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_config(
            [
                (self.schedule in SCHEDULES, f"schedule={self.schedule!r} must be one of {SCHEDULES}"),
                (is_int(self.T) and self.T >= 2, f"T={self.T!r} must be an int >= 2"),
                (is_number(self.eta) and self.eta >= 0, f"eta={self.eta!r} must be a number >= 0"),
            ]
        )


@dataclass
class SDEditConfig(DiffusionConfig):
    """Bridging by SDEdit: the audio (in the denoiser's space) is put at step k* = start_step, noised
    with a seeded draw (start_noise=True: the inputs the cross-sample term trains the denoiser on) or
    as it is (False: Diffusion Bridge's code; inputs the denoiser never saw), then `steps` DDIM steps
    to k = 0. Defaults chosen on the validation split of the default profile (docs/METHOD.md,
    "Inference"): highest audio->text R@1 among noised starts, ties to the smaller centroid gap."""

    start_step: int = 300
    steps: int = 1
    start_noise: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_config(
            [
                (
                    is_int(self.start_step) and 1 <= self.start_step <= self.T,
                    f"start_step={self.start_step!r} must be an int in 1..T={self.T}",
                ),
                (is_int(self.steps) and self.steps >= 1, f"steps={self.steps!r} must be an int >= 1"),
            ]
        )


class SDEditBridge(DenoiserBridge):
    """A denoiser over `GaussianDiffusion`, applied to audio by seeded SDEdit. Subclasses give the losses."""

    config_cls = SDEditConfig
    cache_modules = DenoiserBridge.cache_modules + ("bridges/diffusion", "bridges/diffusion_link")

    @classmethod
    def inference_grid(cls, profile) -> list[dict]:
        """Start step k* x DDIM steps S x start noise (noised or clean audio), k* and S from the profile."""
        return [
            {"start_step": k, "steps": s, "start_noise": n}
            for k in profile.start_steps
            for s in profile.ddim_steps
            for n in (True, False)
        ]

    def __init__(self, **config):
        super().__init__(**config)
        self.diffusion = GaussianDiffusion(self.config.schedule, self.config.T)

    def _bridge(self, net, x, gen, start_step=None, steps=None, start_noise=None) -> torch.Tensor:
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
            x0_fn=self.space.renorm if c.renorm else None,
        )

    def transform(
        self, audio, start_step: int | None = None, steps: int | None = None, start_noise: bool | None = None
    ) -> np.ndarray:
        """Bridge audio embeddings (M, D) into the text distribution: (M, D) float32, L2-normalised.

        start_step (k*), steps (S) and start_noise default to the config's; passing them here runs
        another inference setting on the same fitted denoiser (the ablations sweep them).
        """
        c = self.config
        k0 = c.start_step if start_step is None else start_step
        s = c.steps if steps is None else steps
        noised = c.start_noise if start_noise is None else bool(start_noise)
        if not (is_int(k0) and 1 <= k0 <= c.T):
            raise ValueError(f"start_step={k0!r} must be an int in 1..T={c.T}")
        if not (is_int(s) and s >= 1):
            raise ValueError(f"steps={s!r} must be an int >= 1")
        return self._transform(audio, lambda x, gen: self._bridge(self.net, x, gen, k0, s, noised))


@dataclass
class DiffusionLinkConfig(SDEditConfig):
    """Diffusion-Link's training terms: total = prior + lambda_cross * cross + lambda_topo * topo."""

    use_prior: bool = True
    lambda_cross: float = 1.0
    lambda_topo: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_config(
            [
                (
                    is_number(self.lambda_cross)
                    and is_number(self.lambda_topo)
                    and min(self.lambda_cross, self.lambda_topo) >= 0,
                    f"lambda_cross={self.lambda_cross!r} and lambda_topo={self.lambda_topo!r} must be numbers >= 0",
                ),
                (
                    self.use_prior or self.lambda_cross > 0,
                    "no loss left: enable use_prior or set lambda_cross > 0",
                ),
            ]
        )


class DiffusionLink(SDEditBridge):
    """Diffusion-Link as reconstructed in METHOD.md: one denoiser trained with
    - prior: noised TEXT -> text (the text distribution, as Diffusion Bridge),
    - cross: noised AUDIO -> its paired text (the cross-sample term: the denoiser learns to move audio),
    - topo: the cosine-similarity structure of bridged audio within a batch matches its texts'.
    """

    name = "diffusion_link"
    config_cls = DiffusionLinkConfig

    def _weights(self) -> dict[str, float]:
        c = self.config
        return {"prior": 1.0 if c.use_prior else 0.0, "cross": c.lambda_cross, "topo": c.lambda_topo}

    def _losses(self, net, a, t, gen) -> dict[str, torch.Tensor]:
        """Per-term losses for a batch of pairs a, t (B, D) in the denoiser's space: one forward
        pass over the noised texts and the noised audio."""
        w, B = self._weights(), t.shape[0]
        audio_terms = bool(w["cross"] or w["topo"])  # topology needs x0_hat from audio even with cross off
        x0 = torch.cat([x for x, use in ((t, w["prior"]), (a, audio_terms)) if use])
        pred = denoise(lambda x, k: net(x, k), self.diffusion, x0, gen)
        out = {}
        if w["prior"]:
            out["prior"] = x0_loss(pred[:B], t)
        if audio_terms:
            pa = pred[-B:]
            if w["cross"]:
                out["cross"] = x0_loss(pa, t)
            if w["topo"]:
                out["topo"] = topology_loss(pa, t)
        return out
