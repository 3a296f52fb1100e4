"""Benchmark the prefix captioner (not a test): training samples/s and caption generation items/s.

Real AudioCaps-style captions (tests/fixtures) with random 512-d inputs: throughput does not depend
on what the embeddings mean. Both wall-clock and process CPU time are printed; on a shared machine
"cpu/threads" estimates the speed the same run would have on otherwise idle cores.

    python benchmarks/bench_captioner.py                       # SmolLM2-135M, 2 threads, CPU
    python benchmarks/bench_captioner.py --lm tiny-random --steps 2 --items 16
    python benchmarks/bench_captioner.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "aac_metrics_example_1_head50.csv"


def _timed(label: str, n: int, threads: int, fn):
    w0, c0 = time.time(), time.process_time()
    out = fn()
    wall, cpu = time.time() - w0, (time.process_time() - c0) / threads
    print(
        f"{label:<34} n={n:<4} wall {wall:6.1f} s ({n / wall:6.2f}/s)   cpu/threads {cpu:6.1f} s "
        f"({n / cpu:6.2f}/s)   load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3, help="training steps to time")
    ap.add_argument("--prefix-len", type=int, default=8)
    ap.add_argument("--items", type=int, default=32, help="items to caption per decoding setting")
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--beams", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = pd.read_csv(FIXTURE)
    caps = df[[f"caption_{i}" for i in range(1, 6)]].values.ravel().tolist()
    n = args.steps * args.batch_size
    caps = (caps * (n // len(caps) + 1))[:n]
    x = np.random.default_rng(0).standard_normal((n, 512)).astype(np.float32)
    cfg = CaptionerConfig(lm=args.lm, epochs=1, batch_size=args.batch_size, prefix_len=args.prefix_len)
    cap = PrefixCaptioner(cfg, device=args.device)
    print(f"lm={args.lm} device={cap.device} threads={args.threads} prefix_len={args.prefix_len}")
    _timed(
        f"train ({args.steps} steps of {args.batch_size})",
        n,
        args.threads,
        lambda: cap.fit(x, caps, progress=False),
    )
    for beams in args.beams:
        out = _timed(
            f"generate beams={beams} max_new={args.max_new_tokens}",
            args.items,
            args.threads,
            lambda b=beams: cap.generate(
                x[: args.items], beams=b, max_new_tokens=args.max_new_tokens, progress=False
            ),
        )
        print(f"{'':<34} mean words {np.mean([len(o.split()) for o in out]):.1f}")


if __name__ == "__main__":
    main()
