"""LAION-CLAP extraction cost: FLOPs per clip / caption (exact, torch's FlopCounterMode) and
measured CPU time of decoding and of the encoder's forward passes, for the README's scale
estimates. The towers have the published 630k-audioset-best architecture (HTSAT-tiny, roberta-base
size) with random weights: the cost does not depend on the weight values.

    python benchmarks/bench_extraction.py [--threads 2] [--clips 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=int, default=8, help="batch of 10 s clips")
    ap.add_argument("--captions", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import soundfile as sf
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dlink.audio import load_audio
    from dlink.encoders.laion import CLIP_SAMPLES, LaionClap

    torch.set_num_threads(args.threads)
    print(f"device {args.device}; torch {torch.__version__}; threads {args.threads}")
    # no roberta-base vocabulary offline: token batches of the right shape instead
    LaionClap._make_tokenizer = lambda self, tokenizer: (_stub_tokenizer(), "stub")
    enc = LaionClap(random_init=True, device=args.device)  # HTSAT-tiny + roberta-base sized tower
    n_par = sum(p.numel() for p in enc.model.parameters()) / 1e6
    print(f"LAION-CLAP HTSAT-tiny + roberta: {n_par:.1f} M parameters")

    with tempfile.TemporaryDirectory() as tmp:  # an AudioCaps clip: 10 s flac at 32 kHz
        path = Path(tmp) / "clip.flac"
        t = np.arange(320000) / 32000
        sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(
            t.size)).astype(np.float32), 32000)  # fmt: skip
        t0 = time.perf_counter()
        for _ in range(10):
            load_audio(path, 48000)
        dec = (time.perf_counter() - t0) / 10
    print(
        f"decode + resample 32 -> 48 kHz, one 10 s flac clip: {dec * 1e3:.1f} ms ({1 / dec:.0f} clips/s per core)"
    )

    wavs = [
        np.random.default_rng(i).uniform(-0.3, 0.3, CLIP_SAMPLES).astype(np.float32)
        for i in range(args.clips)
    ]
    with FlopCounterMode(display=False) as fc:
        enc._embed_waveforms(wavs[:1])
    audio_flops = fc.get_total_flops()
    enc._embed_waveforms(wavs)  # warm-up
    t0 = time.perf_counter()
    enc._embed_waveforms(wavs)
    a_s = (time.perf_counter() - t0) / args.clips
    print(f"audio tower, one 10 s clip: {audio_flops / 1e9:.1f} GFLOP; measured {a_s * 1e3:.0f} ms/clip "
          f"in batches of {args.clips} ({1 / a_s:.1f} clips/s)")  # fmt: skip

    texts = ["a dog barks while rain falls on a roof and a man speaks"] * args.captions
    with FlopCounterMode(display=False) as fc:
        enc._embed_texts(texts[:1])
    text_flops = fc.get_total_flops()
    enc._embed_texts(texts)
    t0 = time.perf_counter()
    enc._embed_texts(texts)
    t_s = (time.perf_counter() - t0) / args.captions
    print(f"text tower, one caption (77 tokens): {text_flops / 1e9:.2f} GFLOP; measured {t_s * 1e3:.1f} ms/caption "
          f"({1 / t_s:.0f} captions/s)")  # fmt: skip


def _stub_tokenizer():
    """roberta-shaped token batches (77 ids) without the roberta-base vocabulary files."""
    import torch

    def run(texts):
        ids = torch.full((len(texts), 77), 1)
        ids[:, :14] = torch.arange(14) + 100
        mask = (ids != 1).long()
        return {"input_ids": ids, "attention_mask": mask}

    return run


if __name__ == "__main__":
    main()
