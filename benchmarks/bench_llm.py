"""Benchmark the LLM prefix captioner (not a test): tokens/s of training and of beam search, against
this machine's measured float32 matmul rate, with each lever measured side by side in one run.

Levers (each variant is timed against the baseline at the same thread count, in the same process):
- --threads 1 2          torch threads (every variant is run at each count)
- --bucket               training batches of similar caption length (less padding) vs random batches
- --compile              torch.compile of the LM for training (it recompiles for each new batch
                         shape, so with few --steps its row measures compilation: 4 steps took
                         239 s on one busy thread)
- --bf16                 bfloat16 autocast for training and decoding (skipped where the CPU has
                         neither AVX512-BF16 nor AMX, where it is emulated; --bf16 force runs it anyway)
- KV cache               beam search with the cache (transformers' default) and without (always both)

Tokens: training counts every non-padding position of the LM's input (prefix + prompt + caption);
decoding counts the tokens of the returned captions (EOS included) times the beams. The FLOP model
(dense matmuls only): training 4 x body parameters per input token (forward + activation gradients;
the LM is frozen, so no weight gradients) + 4 x head parameters per caption token (logits are kept
there only); decoding 2 x (body + head) parameters per beam token with the cache. "of peak" is that
rate over the measured rate of a float32 matmul of the LM's own shapes.

    python benchmarks/bench_llm.py                                  # SmolLM2-135M, 2 threads
    python benchmarks/bench_llm.py --threads 1 2 --bucket --compile --bf16
    python benchmarks/bench_llm.py --lm tiny-random --steps 2 --items 4 --threads 1

Timings are wall-clock; the 1-minute load average is printed so a shared machine shows itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "aac_metrics_example_1_head50.csv"


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 matmuls natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_gflops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Measured float32 GFLOP/s of (m, k) @ (k, n) at the current thread count."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b, out=out)
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def _param_counts(cap: PrefixCaptioner) -> tuple[int, int]:
    """(body, head): dense parameters used per input token, and the vocabulary head's."""
    lm = cap.lm
    emb = lm.get_input_embeddings().weight
    head = lm.get_output_embeddings().weight
    total = sum(p.numel() for p in lm.parameters())
    tied = head.data_ptr() == emb.data_ptr()
    body = total - emb.numel() - (0 if tied else head.numel())
    return body, head.numel()


def _batches(cap: PrefixCaptioner, caps: list[str], batch: int, steps: int, bucket: bool, seed: int = 0):
    """`steps` index batches: random (as fit draws them) or of similar token length (bucketed)."""
    order = np.random.default_rng(seed).permutation(len(caps))
    if bucket:  # sort within windows of 8 batches: batches stay varied across steps
        lengths = np.array([len(cap._tokens(c)) for c in caps])
        window = 8 * batch
        order = np.concatenate(
            [
                w[np.argsort(lengths[w], kind="stable")]
                for w in np.split(order, range(window, len(order), window))
            ]
        )
    return [order[i * batch : (i + 1) * batch] for i in range(steps)]


def bench_train(cap, x, caps, batches, autocast: bool, lm_forward=None) -> dict:
    """Time training steps (projector + frozen LM, as PrefixCaptioner.fit) on the given batches."""
    params = list(cap._trainable().values())
    opt = torch.optim.AdamW(params, lr=1e-4)
    body, head = _param_counts(cap)
    ctx_len = cap.config.prefix_len + len(cap._prompt_ids)
    lm = cap.lm
    if lm_forward is not None:
        cap.lm = lm_forward
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()

    def step(idx):
        with ctx:
            loss = cap._loss(torch.as_tensor(x[idx]), [caps[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        cap.projector.train()
        step(batches[0])  # warm-up (and compilation)
        tokens = padded = cap_tokens = 0
        t0 = time.perf_counter()
        for idx in batches[1:]:
            step(idx)
            _, mask = cap._encode_captions([caps[i] for i in idx])
            tokens += int(mask.sum()) + len(idx) * ctx_len
            padded += mask.numel() + len(idx) * ctx_len
            cap_tokens += int(mask.sum())
        sec = time.perf_counter() - t0
    finally:
        cap.lm = lm
    flops = 4 * body * tokens + 4 * head * cap_tokens
    return {"tokens/s": tokens / sec, "GFLOP/s": flops / sec / 1e9, "padding": 1 - tokens / padded, "s": sec}


@torch.no_grad()
def bench_decode(cap, x, beams: int, max_new: int, use_cache: bool, autocast: bool) -> dict:
    """Time beam search (the captioner's decode_ids settings) with or without the KV cache."""
    body, head = _param_counts(cap)
    cap.projector.eval()
    ctx_mgr = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx_mgr:
        ctx = cap._context(cap._prepare(torch.as_tensor(x)))
        seqs = cap.lm.generate(
            inputs_embeds=ctx,
            attention_mask=torch.ones(ctx.shape[:2], dtype=torch.long),
            num_beams=beams,
            do_sample=False,
            max_new_tokens=max_new,
            **({"length_penalty": 1.0, "early_stopping": False} if beams > 1 else {}),
            eos_token_id=cap.eos_id,
            pad_token_id=cap.pad_id,
            use_cache=use_cache,
        )
    sec = time.perf_counter() - t0
    eos = cap.eos_id
    n = sum(row.index(eos) + 1 if eos in row else len(row) for row in seqs.tolist()) * beams
    return {
        "tokens/s": n / sec,
        "GFLOP/s": 2 * (body + head) * n / sec / 1e9,
        "padding": float("nan"),
        "s": sec,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm", default="smollm2-135m")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--steps", type=int, default=5, help="training steps per variant (the first is a warm-up)"
    )
    ap.add_argument("--prefix-len", type=int, default=4)
    ap.add_argument("--items", type=int, default=8, help="items captioned per decoding variant")
    ap.add_argument("--beams", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--bucket", action="store_true", help="also time length-bucketed training batches")
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile'd LM in training")
    ap.add_argument(
        "--bf16", nargs="?", const="auto", choices=["auto", "force"], help="also time bf16 autocast"
    )
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be >= 2 (the first step is a warm-up)")

    df = pd.read_csv(FIXTURE)
    caps = df[[f"caption_{i}" for i in range(1, 6)]].values.ravel().tolist()
    n = args.steps * args.batch_size
    caps = (caps * (n // len(caps) + 1))[:n]
    x = np.random.default_rng(0).standard_normal((n, 512)).astype(np.float32)
    cap = PrefixCaptioner(CaptionerConfig(lm=args.lm, prefix_len=args.prefix_len), device="cpu")
    cap._build(x.shape[1])
    width = cap.lm.get_input_embeddings().weight.shape[1]
    inner = getattr(cap.lm.config, "intermediate_size", None) or 4 * width
    bf16 = args.bf16 == "force" or (args.bf16 == "auto" and cpu_has_bf16())
    if args.bf16 and not bf16:
        print(
            "bf16 autocast skipped: this CPU has neither AVX512-BF16 nor AMX (it would be emulated); --bf16 force runs it"
        )
    print(f"lm={args.lm} ({sum(p.numel() for p in cap.lm.parameters()) / 1e6:.1f} M params) batch={args.batch_size} "
          f"steps={args.steps} beams={args.beams} items={args.items} load={os.getloadavg()[0]:.1f} "
          f"torch={torch.__version__} cpu={torch.backends.cpu.get_cpu_capability()}")  # fmt: skip

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = matmul_gflops(args.batch_size * 48, width, inner)
        print(
            f"threads={threads}: float32 matmul ({args.batch_size * 48}x{width} @ {width}x{inner}) {peak:.1f} GFLOP/s"
        )
        random_b = _batches(cap, caps, args.batch_size, args.steps, bucket=False)
        train = {"baseline (random batches, fp32)": lambda b=random_b: bench_train(cap, x, caps, b, False)}
        if args.bucket:
            bucket_b = _batches(cap, caps, args.batch_size, args.steps, bucket=True)
            train["length-bucketed batches"] = lambda b=bucket_b: bench_train(cap, x, caps, b, False)
        if bf16:
            train["bf16 autocast"] = lambda b=random_b: bench_train(cap, x, caps, b, True)
        if args.compile:
            compiled = torch.compile(cap.lm)
            train["torch.compile"] = lambda c=compiled, b=random_b: bench_train(
                cap, x, caps, b, False, lm_forward=c
            )
        decode = {
            f"beam {args.beams}, KV cache (baseline)": lambda: bench_decode(cap, x[: args.items], args.beams, args.max_new_tokens, True, False),
            f"beam {args.beams}, no KV cache": lambda: bench_decode(cap, x[: args.items], args.beams, args.max_new_tokens, False, False),
        }  # fmt: skip
        if bf16:
            decode[f"beam {args.beams}, KV cache, bf16 autocast"] = lambda: bench_decode(
                cap, x[: args.items], args.beams, args.max_new_tokens, True, True
            )
        for stage, variants in (("train", train), ("decode", decode)):
            base = None
            for name, fn in variants.items():
                try:
                    r = fn()
                except Exception as e:  # noqa: BLE001 (a lever this machine cannot pull is reported, not fatal)
                    print(f"threads={threads} {stage} {name}: failed ({type(e).__name__}: {str(e)[:200]})")
                    continue
                base = base or r["tokens/s"]
                rows.append({"threads": threads, "stage": stage, "variant": name, **r,
                             "x baseline": r["tokens/s"] / base, "of peak": r["GFLOP/s"] / peak,
                             "load": os.getloadavg()[0]})  # fmt: skip
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            table.round(
                {"tokens/s": 1, "GFLOP/s": 2, "padding": 2, "s": 2, "x baseline": 2, "of peak": 3, "load": 1}
            ).to_string(index=False)
        )
    return table


if __name__ == "__main__":
    main()
