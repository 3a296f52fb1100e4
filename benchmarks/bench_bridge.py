"""Benchmark the Diffusion-Link bridge (not a test). All numbers are measured in one run, side by side:

1. transform throughput (embeddings/s) for D=512, N=100,000, S=5 DDIM steps, and the machine's
   dense matmul rate for the same shapes (a roofline: how close the bridge is to pure GEMM);
2. fit time to convergence (early stopping on validation loss) on 50,000 synthetic pairs,
   with peak memory (tracemalloc for Python/numpy, ru_maxrss for the process, CUDA peak);
3. the same S-step chain through a Diffusion-Bridge-style 1-D U-Net denoiser of the published
   size (dim 512, dim_mults 1,2,4,8): the speed ratio. (Run after the fit so that the fit's
   RSS peak is not the U-Net's 3.5 GB of weights.)

    python benchmarks/bench_bridge.py              # full sizes
    python benchmarks/bench_bridge.py --quick      # minutes on a laptop CPU
    python benchmarks/bench_bridge.py --device cuda --n 100000
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import sys
import time
import tracemalloc

import torch
import torch.nn.functional as F
from torch import nn

from dlink.bridges.base import synthetic_gap_pairs
from dlink.bridges.denoiser import sinusoid as _sinusoid
from dlink.bridges.diffusion_link import DiffusionLink

# --------------------------------------------------------------------------- 1-D U-Net


class _ResBlock1d(nn.Module):
    def __init__(self, c_in, c_out, t_dim, groups=8):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups, c_in), nn.Conv1d(c_in, c_out, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(groups, c_out), nn.Conv1d(c_out, c_out, 3, padding=1)
        self.t = nn.Linear(t_dim, 2 * c_out)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.t(emb)[..., None].chunk(2, dim=1)
        h = self.c2(F.silu(self.n2(h) * (1 + scale) + shift))
        return h + self.skip(x)


class UNet1D(nn.Module):
    """Compact 1-D U-Net in the layout of lucidrains' Unet1D (used by Diffusion Bridge): the
    D-dim embedding is a 1-channel sequence of length D; per level two ResNet blocks and a
    stride-2 conv, a two-block middle, a mirrored up path with skip concatenation. Attention
    layers are left out, so this is a LOWER bound on that network's cost."""

    def __init__(self, dim=512, dim_mults=(1, 2, 4, 8), channels=1):
        super().__init__()
        dims = [dim * m for m in dim_mults]
        t_dim = 4 * dim
        self.dim = dim
        self.time = nn.Sequential(nn.Linear(dim, t_dim), nn.GELU(), nn.Linear(t_dim, t_dim))
        self.init = nn.Conv1d(channels, dim, 7, padding=3)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        c = dim
        for i, c_out in enumerate(dims):
            last = i == len(dims) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        _ResBlock1d(c, c, t_dim),
                        _ResBlock1d(c, c, t_dim),
                        nn.Conv1d(c, c_out, 3, padding=1) if last else nn.Conv1d(c, c_out, 4, 2, 1),
                    ]
                )
            )
            c = c_out
        self.mid = nn.ModuleList([_ResBlock1d(c, c, t_dim), _ResBlock1d(c, c, t_dim)])
        skips = [dim] + dims[:-1]
        for i, c_skip in reversed(list(enumerate(skips))):
            shallowest = i == 0  # lucidrains: every up level but the shallowest upsamples
            self.up.append(
                nn.ModuleList(
                    [
                        _ResBlock1d(c + c_skip, c, t_dim),
                        _ResBlock1d(c + c_skip, c, t_dim),
                        nn.Conv1d(c, c_skip, 3, padding=1)
                        if shallowest
                        else nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv1d(c, c_skip, 3, padding=1)),
                    ]
                )
            )
            c = c_skip
        self.final = _ResBlock1d(2 * dim, dim, t_dim)
        self.out = nn.Conv1d(dim, channels, 1)

    def forward(self, x, k):  # x (B, D), k (B,) or (1,) -> x0_hat (B, D)
        emb = self.time(_sinusoid(k, self.dim))
        h = self.init(x[:, None])
        r, skips = h, []
        for b1, b2, down in self.down:
            h = b1(h, emb)
            skips.append(h)
            h = b2(h, emb)
            skips.append(h)
            h = down(h)
        for b in self.mid:
            h = b(h, emb)
        for b1, b2, up in self.up:
            h = b1(torch.cat([h, skips.pop()], 1), emb)
            h = b2(torch.cat([h, skips.pop()], 1), emb)
            h = up(h)
        return self.out(self.final(torch.cat([h, r], 1), emb))[:, 0]


# --------------------------------------------------------------------------- helpers


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, device, repeat=3):
    fn()  # warm-up
    _sync(device)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _denoiser_gemms(link: DiffusionLink, batch: int):
    """The (B, in) @ (in, out) shapes of one denoiser forward; the timestep path is one row."""
    d = link.dim
    w = link.config.width or d
    h = link.config.hidden or 2 * w
    return [(batch, d, w)] + [(batch, w, h), (batch, h, w)] * link.config.n_blocks + [(batch, w, d)]


def _gemm_rate(shapes, device):
    """Dense FLOP/s of exactly these matmuls, back to back (the roofline for the MLP denoiser)."""
    mats = [(torch.randn(b, i, device=device), torch.randn(i, o, device=device)) for b, i, o in shapes]
    outs = [torch.empty(b, o, device=device) for b, _, o in shapes]  # reused: time the math, not allocation
    flops = sum(2 * b * i * o for b, i, o in shapes)
    reps = 10

    def run():
        for _ in range(reps):
            for (x, w), out in zip(mats, outs, strict=True):
                torch.mm(x, w, out=out)

    t = _timeit(run, device, repeat=5)
    return flops * reps / t, flops


def _peak(device):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    cuda = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return rss, cuda


# --------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="embeddings to bridge for throughput")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--steps", type=int, default=5, help="DDIM steps S")
    p.add_argument("--fit-n", type=int, default=50_000, help="training pairs for the fit benchmark")
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--unet-dim", type=int, default=512)
    p.add_argument(
        "--unet-n", type=int, default=None, help="embeddings timed through the U-Net (default 256 GPU, 4 CPU)"
    )
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--skip-fit", action="store_true")
    p.add_argument("--quick", action="store_true", help="n=10,000, fit-n=5,000, max-epochs=5, unet-n=2")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.fit_n, a.max_epochs, a.unet_n = min(a.n, 10_000), min(a.fit_n, 5_000), min(a.max_epochs, 5), 2
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if a.unet_n is None:
        a.unet_n = 256 if device.type == "cuda" else 4
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(f"device: {device} ({name}); torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    print(f"python {sys.version.split()[0]}; args: {vars(a)}\n")

    # ---- 1. Diffusion-Link transform throughput + roofline
    audio, text = synthetic_gap_pairs(max(a.n, 1024), a.dim, latent=64, mismatch=1.0, noise=0.2, seed=0)
    link = DiffusionLink(steps=a.steps, max_steps=1, progress=False).fit(
        audio[:1024], text[:1024], device=device
    )
    x = audio[: a.n]
    shapes = _denoiser_gemms(link, min(link.config.infer_batch_size, a.n))
    rate, flops_fwd = _gemm_rate(shapes, device)
    t_link = _timeit(lambda: link.transform(x), device, repeat=2)
    thr_link = a.n / t_link
    # again after the transform, keeping the faster: on a shared machine load drifts between them
    rate = max(rate, _gemm_rate(shapes, device)[0])
    flops_per_emb = flops_fwd / shapes[0][0] * a.steps
    ideal = rate / flops_per_emb
    n_params = sum(p.numel() for p in link.net.parameters())
    print(
        f"[1] Diffusion-Link denoiser: {n_params / 1e6:.2f} M params, {flops_per_emb / 1e6:.1f} MFLOP/embedding for S={a.steps}"
    )
    print(
        f"    transform: N={a.n:,} in {t_link:.3f} s -> {thr_link:,.0f} embeddings/s (end to end, numpy in/out)"
    )
    print(f"    dense matmul, same shapes: {rate / 1e9:.1f} GFLOP/s -> roofline {ideal:,.0f} embeddings/s")
    print(f"    ratio measured / roofline: {thr_link / ideal:.2f}\n")

    # ---- 2. fit to convergence (before the U-Net, so the process RSS peak is the fit's)
    if not a.skip_fit:
        n_val = max(a.fit_n // 10, 256)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tracemalloc.start()
        fa, ft = synthetic_gap_pairs(a.fit_n + n_val, a.dim, latent=64, mismatch=1.0, noise=0.2, seed=1)
        t0 = time.perf_counter()
        fitted = DiffusionLink(epochs=a.max_epochs, patience=a.patience).fit(
            fa[: a.fit_n], ft[: a.fit_n], val=(fa[a.fit_n :], ft[a.fit_n :]), device=device
        )
        _sync(device)
        t_fit = time.perf_counter() - t0
        _, py_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss, cuda_peak = _peak(device)
        h = fitted.history
        epochs = len(h["total"])
        converged = epochs < a.max_epochs
        va, vt = fa[a.fit_n :], ft[a.fit_n :]
        out = fitted.transform(va)
        gap_raw = float(((va.mean(0) - vt.mean(0)) ** 2).sum() ** 0.5)
        gap_new = float(((out.mean(0) - vt.mean(0)) ** 2).sum() ** 0.5)
        print(f"[2] fit on {a.fit_n:,} pairs (D={a.dim}, batch {fitted.config.batch_size}, val {n_val:,}):")
        print(
            f"    {t_fit:.1f} s, {epochs} epochs ({t_fit / epochs:.2f} s/epoch); "
            f"{'converged (early stop, patience ' + str(a.patience) + ')' if converged else 'hit max-epochs, not converged'}"
        )
        print(
            f"    val total loss {h['val_total'][0]:.4f} -> {min(h['val_total']):.4f}; held-out centroid gap {gap_raw:.3f} -> {gap_new:.3f}"
        )
        print(
            f"    peak memory: Python/numpy (tracemalloc) {py_peak / 2**20:.0f} MiB, process RSS {rss:.0f} MiB, CUDA {cuda_peak:.0f} MiB"
        )
        print()

    # ---- 3. 1-D U-Net of the published size, same S
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet1D(a.unet_dim, (1, 2, 4, 8)).to(device).eval()
    u_params = sum(p.numel() for p in unet.parameters())
    xu = torch.randn(a.unet_n, a.dim, device=device)

    @torch.no_grad()
    def run_unet():
        link.diffusion.ddim_loop(lambda xk, k: unet(xk, k[:1]), xu, link.config.T // 2, a.steps)

    t_unet = _timeit(run_unet, device, repeat=1 if device.type == "cpu" else 3)
    thr_unet = a.unet_n / t_unet
    print(f"[3] 1-D U-Net (dim {a.unet_dim}, dim_mults 1,2,4,8, no attention): {u_params / 1e6:.1f} M params")
    print(f"    {a.unet_n} embeddings x S={a.steps} in {t_unet:.2f} s -> {thr_unet:,.1f} embeddings/s")
    print(f"    speed ratio Diffusion-Link / U-Net: {thr_link / thr_unet:,.0f}x")
    print(f"    parameter ratio U-Net / Diffusion-Link: {u_params / n_params:,.0f}x\n")


if __name__ == "__main__":
    main()
