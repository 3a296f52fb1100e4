"""One Diffusion-Link training epoch, idle and next to one busy process, under two thread policies.

    python benchmarks/bench_threads.py            # < 2 min on a 2-core CPU

"torch default" is torch's own thread count (os.cpu_count() cores); "dlink" is
`dlink.device.torch_threads()` (usable CPUs from affinity and cgroup quota, less one). The busy
process is `python -c "while True: pass"`. Prints each policy's idle and busy epoch time and their
ratio; the target is a busy/idle ratio <= 2.5.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import torch

from dlink.bridges.base import synthetic_gap_pairs
from dlink.bridges.diffusion_link import DiffusionLink
from dlink.device import torch_threads, usable_cpus


def epoch_seconds(a, t, threads: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        DiffusionLink(epochs=1, batch_size=256, progress=False).fit(a, t)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1024, help="training pairs (one epoch = n / 256 steps)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2, help="best of this many epochs per cell")
    a = p.parse_args(argv)
    audio, text = synthetic_gap_pairs(a.n, a.dim, seed=0)
    policies = {"torch default": torch.get_num_threads(), "dlink": torch_threads()}
    print(f"machine: {platform.machine()} {platform.processor() or ''}, os.cpu_count()={os.cpu_count()}, "
          f"usable_cpus()={usable_cpus()}, load average before: {os.getloadavg()[0]:.2f}; torch {torch.__version__}")  # fmt: skip
    print(f"one epoch of DiffusionLink on {a.n} pairs of dim {a.dim}, batch 256, best of {a.repeats}\n")
    epoch_seconds(audio, text, 1, 1)  # warm-up: first-call allocations are not the policy's cost
    rows = []
    for name, n in policies.items():
        idle = epoch_seconds(audio, text, n, a.repeats)
        busy_proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            busy = epoch_seconds(audio, text, n, a.repeats)
        finally:
            busy_proc.kill()
            busy_proc.wait()
        rows.append((name, n, idle, busy))
    print("| policy | threads | idle s | 1 busy process s | busy / idle |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, idle, busy in rows:
        print(f"| {name} | {n} | {idle:.2f} | {busy:.2f} | {busy / idle:.2f}x |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
