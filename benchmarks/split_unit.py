"""How the numbers move when the splits are made by recording GROUP instead of by recording.

Takes of one recording session (footsteps/carpet1..4, door1-open / door1-close, bullet-smg-5x /
15x) and near-copies (linoleum = tile1) split one recording at a time let a test scene hold
carpet4 while train holds carpet1-3, so `dlink.data` splits by group (session keys and audio
matches, `dlink.sessions`; arm "series", the name the grouping is reported under). This script builds
the default dataset both ways (the group build is the one the notebooks use; the recording build
goes to its own folder),
and for each seed trains the embedded CLAP's heads on the first half of train, fits Diffusion-Link
(default config and profile training settings) and ridge on the other half, and reports test
metrics for raw audio, ridge and Diffusion-Link, mean +- std over seeds.

    .venv/bin/python benchmarks/split_unit.py                    # both arms, then the table
    .venv/bin/python benchmarks/split_unit.py --unit recording   # one arm -> results/split_unit_<unit>.csv
    .venv/bin/python benchmarks/split_unit.py --report           # the table from both CSVs

Output: results/split_unit.md. Frozen-tower features are content-cached, so an arm whose scenes were
embedded before (by the notebooks) costs only the heads and bridge fits (~10 min per arm on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dlink import data, paths
from dlink._io import atomic_write_text
from dlink.bridges.baselines import make_bridge
from dlink.encoders.embedded_clap import train_embedded_clap
from dlink.encoders.registry import load_encoder
from dlink.evaluation.gap import gap_report
from dlink.experiment import bridge_pairs
from dlink.profiles import PROFILES

SHARED = "test scenes sharing a train group"


def _by_recording(clips, rng, group_of=None) -> dict[str, str]:
    """The former rule: recordings (not groups) of a label group shared out 65/15/20."""
    groups: dict[str, list[str]] = {}
    for c in clips:
        groups.setdefault(c.label, []).append(c.rid)
    out = {}
    for label in sorted(groups):
        rids = [groups[label][i] for i in rng.permutation(len(groups[label]))]
        n = len(rids)
        if n >= 3:
            n_test, n_val = max(1, round(0.2 * n)), max(1, round(0.15 * n))
            parts = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
        else:
            parts = ["train", "val" if rng.random() < 0.5 else "test"][:n]
        out.update(zip(rids, parts, strict=True))
    return out


def build(unit: str):
    root = paths.DATA / "embedded" / ("default-seed0" if unit == "series" else "default-seed0-by-recording")
    series_rule = data._assign_splits
    if unit == "recording":
        data._assign_splits = _by_recording
    try:
        data.build_embedded_dataset("default", seed=0, root=root)
    finally:
        data._assign_splits = series_rule
    return {s: data.load_split(s, size="default", root=root) for s in data.SPLITS}, root


def shared_groups(frames, group_of: dict[str, str]) -> float:
    """Share of test scenes holding a recording whose group (`group_of`: recording id -> group, from
    `data.source_groups`) also appears in train."""
    train = {group_of[r] for rs in frames["train"]["recordings"] for r in rs.split(";")}
    return float(
        np.mean([any(group_of[r] in train for r in rs.split(";")) for rs in frames["test"]["recordings"]])
    )


def run_arm(unit: str, seeds=(0, 1, 2)) -> Path:
    prof = PROFILES["default"]
    rows = []
    frames, root = build(unit)
    n_enc = len(frames["train"]) // 2
    enc_df = frames["train"].iloc[:n_enc]
    labels = list(frames["test"]["labels"].map(lambda s: ";".join(sorted(s.split(";")))))
    leak = shared_groups(frames, data.source_groups(data.source_clips()[1])[0])
    for seed in seeds:
        t0 = time.perf_counter()
        heads = root.parent / f"{root.name}-heads-seed{seed}"
        if not (heads / "config.json").is_file():
            train_embedded_clap(enc_df, frames["val"], out=heads, seed=seed, max_epochs=prof.clap_epochs)
        enc = load_encoder("embedded", checkpoint=heads)
        emb = {s: enc.embed_split_fast(df, progress=False) for s, df in frames.items()}
        emb["fit"] = {k: v[n_enc:] for k, v in emb["train"].items()}  # as dlink.experiment slices it
        test = emb["test"]
        val = bridge_pairs(emb["val"])
        train_cfg = dict(epochs=prof.bridge_epochs, batch_size=prof.bridge_batch_size,
                         patience=prof.bridge_patience, seed=seed, progress=False)  # fmt: skip
        outs = {
            "raw audio": test["audio"],
            "ridge": make_bridge("ridge").fit(*bridge_pairs(emb["fit"]), val=val).transform(test["audio"]),
            "diffusion_link": make_bridge("diffusion_link", **train_cfg)
            .fit(*bridge_pairs(emb["fit"]), val=val)
            .transform(test["audio"]),
        }
        for method, x in outs.items():
            g = gap_report(x, test["text"][:, 0], seed=seed, labels=labels)
            rows.append({"split unit": unit, "seed": seed, "method": method, SHARED: leak, **g})
        print(f"{unit} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    path = paths.RESULTS / f"split_unit_{unit}.csv"
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))
    print("wrote", path)
    return path


def report(out=paths.RESULTS / "split_unit.md") -> int:
    df = pd.concat([pd.read_csv(paths.RESULTS / f"split_unit_{u}.csv") for u in ("recording", "series")])
    seeds = sorted(df["seed"].unique().tolist())
    keys = ["a2t_R1", "a2t_mAP_labels", "paired_cos_mean", "centroid_distance", "separability"]
    agg = df.groupby(["split unit", "method"], sort=False)[keys].agg(["mean", "std"])
    lines = [
        f"Test metrics, mean +- std over seeds {seeds} (each seed: its own encoder heads and bridges).",
        "Share of test scenes holding a recording whose group is also in train: "
        + ", ".join(
            f"{u} split {df.loc[df['split unit'] == u, SHARED].iloc[0]:.2f}" for u in ("recording", "series")
        ),
        "",
        "| split unit | method | " + " | ".join(keys) + " |",
        "| --- | --- |" + " ---: |" * len(keys),
    ]
    for (unit, method), r in agg.iterrows():
        cells = [f"{r[(k, 'mean')]:.3f} +- {r[(k, 'std')]:.3f}" for k in keys]
        lines.append(f"| {unit} | {method} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    print("wrote", atomic_write_text(out, text))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--unit", choices=("recording", "series"), help="run one arm only")
    p.add_argument("--report", action="store_true", help="only write the table from both arms' CSVs")
    args = p.parse_args(argv)
    if not args.report:
        for unit in [args.unit] if args.unit else ["recording", "series"]:
            run_arm(unit)
    return report() if args.report or not args.unit else 0


if __name__ == "__main__":
    sys.exit(main())
