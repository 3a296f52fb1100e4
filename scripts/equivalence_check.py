"""Does a refactor leave the numbers alone? Run a few deterministic stages of the default profile
with one checkout's code, save what they produce, and compare two such saves bitwise.

A full default run (scripts/reproduce_check.py) takes hours on 2 cores; this takes minutes and
catches any change in what the code computes: it trains seed 0's embedded-CLAP heads (the full
early-stopped fit), fits every learned bridge for 2 epochs plus ridge and projection on seed 0's
embeddings and bridges the test audio, and trains a scratch captioner for one epoch on 300 fit
scenes and scores 50 test scenes. It needs the default dataset and its frozen-tower features
(a default run's data/, e.g. DLINK_ROOT=/path/to/that/checkout).

    PYTHONPATH=/old/checkout python scripts/equivalence_check.py run /tmp/old.npz
    PYTHONPATH=/new/checkout python scripts/equivalence_check.py run /tmp/new.npz
    python scripts/equivalence_check.py compare /tmp/old.npz /tmp/new.npz   # exit 1 on any difference
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def run(out: Path) -> None:
    from safetensors.numpy import load_file

    import dlink
    import dlink.encoders.embedded_clap as ec
    from dlink import experiment
    from dlink.bridges.baselines import make_bridge
    from dlink.captioning import aac

    arrays: dict[str, np.ndarray] = {}
    params = dlink.resolve_params(profile="default")
    frame = experiment.splits(params)
    with tempfile.TemporaryDirectory() as d:
        ec.train_embedded_clap(
            frame["enc"], frame["val"], out=d, seed=0, max_epochs=params.clap_epochs, progress=False
        )
        arrays |= {f"heads/{k}": v for k, v in load_file(f"{d}/model.safetensors").items()}
    emb = experiment.embeddings(params, seed=0)
    for name in ("diffusion_link", "diffusion_bridge", "conditional_prior", "mlp_regression"):
        bridge = make_bridge(name, **experiment.bridge_config(params, name, seed=0, epochs=2, progress=False))
        bridge.fit(
            *experiment.bridge_pairs(emb["fit"]), val=experiment.bridge_pairs(emb["val"]), device="cpu"
        )
        arrays[f"bridge/{name}"] = bridge.transform(emb["test"]["audio"])
    for name in ("ridge", "projection"):
        bridge = make_bridge(name).fit(
            *experiment.bridge_pairs(emb["fit"]), val=experiment.bridge_pairs(emb["val"]), device="cpu"
        )
        arrays[f"bridge/{name}"] = bridge.transform(emb["test"]["audio"])
    x, caps = aac.caption_pairs(emb["fit"]["text"][:300], list(frame["fit"]["captions"])[:300])
    cap = aac.train_captioner(x, caps, dict(lm="scratch", epochs=1, beams=3, seed=0), device="cpu")
    metrics, preds = aac.evaluate(
        cap, emb["test"]["audio"][:50], list(frame["test"]["captions"])[:50], beams=3
    )
    arrays["captioner/cider_items"] = np.asarray(metrics["CIDEr-D_items"])
    arrays["captioner/predictions"] = np.asarray(json.dumps(preds))
    np.savez(out, **arrays)
    print(f"saved {len(arrays)} arrays to {out}")


def compare(a_path: Path, b_path: Path) -> int:
    a, b = np.load(a_path), np.load(b_path)
    differ = sorted(set(a.files) ^ set(b.files))
    for k in differ:
        print(f"only in one file: {k}")
    for k in sorted(set(a.files) & set(b.files)):
        same = np.array_equal(a[k], b[k])
        print(f"{'bitwise equal' if same else 'DIFFERENT'}  {k}")
        differ += [] if same else [k]
    print(f"[equivalence] {'no difference' if not differ else f'{len(differ)} difference(s)'}")
    return 1 if differ else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run").add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
