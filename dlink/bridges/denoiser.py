"""The denoiser network: a residual MLP over embedding vectors, conditioned on the timestep.

It knows nothing about schedules or losses (those are `dlink.bridges.diffusion`), nor about which bridge
uses it: Diffusion-Link, Diffusion Bridge, the conditional prior and the MLP regression baseline all
build this one network, so they differ only in what they train it to do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoid(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Timestep embedding: k (B,) -> (B, dim) [sin, cos] over geometric frequencies (dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=k.device, dtype=torch.float32) / half)
    ang = k.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class Block(nn.Module):
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
        self.blocks = nn.ModuleList(Block(width, hidden) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x, k, cond=None):
        emb = self.time(sinusoid(k, self.time_dim))
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
