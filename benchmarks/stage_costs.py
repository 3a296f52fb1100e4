"""Where a cold default run spends its time: the unit cost of each stage, measured side by side in
one process, times the number of units the default profile runs.

Can the default profile run in <= 15 minutes on 2 cores from cold caches? This script says what
that would take: it measures, on this machine, the cost of one unit of every expensive
stage (one clip through the frozen audio tower, one caption through MiniLM, one epoch of the
encoder heads, of each learned bridge and of the scratch captioner, one scored set of captions)
and multiplies by the units a default run needs (the profile's sizes; bridge and head epochs at
the profile's maximum, so the total is an upper bound where early stopping ends fits sooner). The
unit counts are read off notebooks 03-07 by hand (comments below say how); small stages (ridge,
projection, the validation sweeps of inference settings, gap metrics, UMAP) are left out.

    .venv/bin/python benchmarks/stage_costs.py             # prints the table
    .venv/bin/python benchmarks/stage_costs.py --write     # and writes results/stage_costs.md

Inputs are synthetic where the cost does not depend on the values (bridge, head and captioner
epochs on random unit vectors of the real shapes; captions from the smoke dataset), real where it
does (clips of the smoke dataset through aisfx). Measured under whatever else the machine runs:
the load average is printed with the table; shares of the total are the robust part.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from dlink import data, paths
from dlink._io import atomic_write_text
from dlink.profiles import PROFILES

N_CLIPS_TIMED, N_CAPTIONS_TIMED = 48, 1000


def _timed(fn, repeat: int = 1) -> float:
    """Seconds per call of fn (best of `repeat`, after nothing: the first call counts, as in a cold run)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _unit(x: np.ndarray) -> np.ndarray:
    from dlink.arrays import normalize_rows

    return normalize_rows(x).astype(np.float32)


def measure(profile_name: str = "default") -> list[dict]:
    """[{stage, unit, seconds per unit, units, minutes}] for `profile_name` on this machine."""
    from dlink.audio import load_audio
    from dlink.bridges.baselines import make_bridge
    from dlink.captioning.aac import train_captioner
    from dlink.encoders.embedded_clap import (
        AISFX_SR,
        EmbeddedClapConfig,
        aisfx_features,
        fit_heads,
        text_features,
    )
    from dlink.evaluation.metrics import caption_metrics

    prof = PROFILES[profile_name]
    data.build_embedded_dataset("smoke", seed=0)
    frame = data.load_split("train", size="smoke", seed=0)
    captions = [c for caps in frame["captions"] for c in caps]
    n_train, n_val, n_test, n_caps = 3000, 300, 300, 5  # the default dataset (data/README.md)
    n_fit = n_enc = int(round(prof.encoder_share * n_train))
    seeds = prof.n_seeds
    rng = np.random.default_rng(0)
    rows = []

    def add(stage, unit, sec, units):
        rows.append(
            {"stage": stage, "unit": unit, "s_per_unit": sec, "units": units, "min": sec * units / 60}
        )
        print(f"  {stage}: {sec:.4f} s per {unit} x {units} = {sec * units / 60:.1f} min", flush=True)

    clips = list(frame["audio"][:N_CLIPS_TIMED])
    waves = [load_audio(p, AISFX_SR) for p in clips]
    t_decode = _timed(lambda: [load_audio(p, AISFX_SR) for p in clips]) / len(clips)
    t_aisfx = _timed(lambda: [aisfx_features(waves[i : i + 16]) for i in range(0, len(waves), 16)]) / len(
        waves
    )
    add("audio decode (soxr to 44.1 kHz)", "clip", t_decode, n_train + n_val + n_test)
    add("aisfx audio tower (frozen)", "clip", t_aisfx, n_train + n_val + n_test)
    texts = (captions * (N_CAPTIONS_TIMED // len(captions) + 1))[:N_CAPTIONS_TIMED]
    t_text = _timed(lambda: text_features(texts)) / len(texts)
    add("MiniLM text tower (frozen)", "caption", t_text, (n_train + n_val + n_test) * n_caps)

    a_tr, t_tr = rng.normal(size=(n_enc, 1024)).astype(np.float32), rng.normal(size=(n_enc, n_caps, 384))
    a_va, t_va = rng.normal(size=(n_val, 1024)).astype(np.float32), rng.normal(size=(n_val, n_caps, 384))
    cfg = EmbeddedClapConfig(max_epochs=3, patience=100)
    t_heads = (
        _timed(lambda: fit_heads(a_tr, t_tr.astype(np.float32), a_va, t_va.astype(np.float32), cfg, False))
        / 3
    )
    add("embedded CLAP heads", "epoch", t_heads, seeds * prof.clap_epochs)

    a = _unit(rng.normal(size=(n_fit * n_caps, 512)))
    t = _unit(rng.normal(size=(n_fit * n_caps, 512)))
    val = (_unit(rng.normal(size=(n_val * n_caps, 512))), _unit(rng.normal(size=(n_val * n_caps, 512))))
    # fits per bridge in a default run: 04 fits each learned bridge once per seed (03 and 05 reuse them),
    # 06 cross-fits Diffusion-Link in `cross_fit_folds` folds per captioning seed, 07 fits its variants once
    variants_07 = 11
    fits = {
        "diffusion_link": seeds + prof.caption_seeds * prof.cross_fit_folds + variants_07,
        "diffusion_bridge": seeds,
        "conditional_prior": seeds,
        "mlp_regression": seeds,
    }
    for name, n in fits.items():
        cfg_b = dict(epochs=1, batch_size=prof.bridge_batch_size, seed=0, progress=False)
        sec = _timed(
            lambda cfg_b=cfg_b, name=name: make_bridge(name, **cfg_b).fit(a, t, val=val, device="cpu")
        )
        add(
            f"{name} fit ({n} fits x {prof.bridge_epochs} epochs at most)",
            "epoch",
            sec,
            n * prof.bridge_epochs,
        )

    caps_fit = (captions * (n_fit * n_caps // len(captions) + 1))[: n_fit * n_caps]
    x_cap = _unit(rng.normal(size=(len(caps_fit), 512)))
    ccfg = dict(lm=prof.lm, epochs=1, beams=prof.beams, seed=0)
    cap = train_captioner(x_cap, caps_fit, ccfg, device="cpu")
    t_cap = _timed(lambda: train_captioner(x_cap, caps_fit, ccfg, device="cpu"))
    # 05: one text captioner per seed, the noise sweep on seed 0, two noise variances on the other seeds;
    # 06: raw and out-of-fold Diffusion-Link captioners per seed (07 reuses 05's)
    cs = prof.caption_seeds
    n_captioners = cs + len(prof.noise_variances) + 2 * (cs - 1) + 2 * cs
    add(f"scratch captioner ({n_captioners} fits)", "epoch", t_cap, n_captioners * prof.captioner_epochs)

    refs = [list(c[1:]) for c in frame["captions"]][:n_test]
    preds = [c[0] for c in frame["captions"]][:n_test]
    reps = n_test // len(refs) + 1
    refs, preds = (refs * reps)[:n_test], (preds * reps)[:n_test]
    # 05: the noise sweep + per seed 8 bridges + oracle (generative and retrieval) + 2 noise rows = 20;
    # 06: 4 per seed; 07: raw + 17 fitted variants + 9 inference variants, on validation
    n_rows = len(prof.noise_variances) + 20 * cs + 4 * cs + 27
    n_generative = len(prof.noise_variances) + 11 * cs + 4 * cs + 27  # rows decoded by beam search
    x_test = _unit(rng.normal(size=(n_test, 512)))
    t_decode = _timed(lambda: cap.generate(x_test, beams=prof.beams)) / n_test
    add(
        f"beam search ({prof.beams} beams, {n_test} items per row)",
        "generative row",
        t_decode * n_test,
        n_generative,
    )
    # The first scoring call of a process starts the PTB and METEOR JVMs; later calls reuse METEOR's.
    # Notebooks 05, 06 and 07 each pay the start once.
    t_first = _timed(lambda: caption_metrics(preds, refs, per_item=True))
    t_score = _timed(lambda: caption_metrics(preds, refs, per_item=True), repeat=2)
    add("caption metrics: JVM start (METEOR paraphrase table)", "notebook", t_first - t_score, 3)
    add(
        f"caption metrics ({n_test} items; PTB, BLEU, METEOR, ROUGE-L, CIDEr-D)",
        "scored row",
        t_score,
        n_rows,
    )
    return rows


def table(rows: list[dict], profile_name: str) -> str:
    total = sum(r["min"] for r in rows)
    lines = [
        f"Cold-run cost model of the `{profile_name}` profile on this machine ({os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.1f} at the end of the measurement): {total:.0f} min in all, an upper "
        "bound (bridge and head fits at their maximum epochs; early stopping ends most sooner). Written by "
        "`benchmarks/stage_costs.py`.",
        "",
        "| stage | seconds per unit | units | minutes | share |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda r: -r["min"]):
        lines.append(
            f"| {r['stage']} | {r['s_per_unit']:.4f} per {r['unit']} | {r['units']:,} | {r['min']:.1f} | "
            f"{100 * r['min'] / total:.0f} % |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default", choices=sorted(PROFILES))
    ap.add_argument("--write", action="store_true", help="write results/stage_costs.md")
    args = ap.parse_args(argv)
    rows = measure(args.profile)
    md = table(rows, args.profile)
    print(md)
    if args.write:
        print("wrote", atomic_write_text(paths.RESULTS / "stage_costs.md", md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
