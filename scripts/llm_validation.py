"""The LLM decoder's calibration on VALIDATION, after `./run_all.sh --profile llm`.

Notebook 05 in the llm profile trains the SmolLM2-135M prefix captioner on the fit scenes' caption
text and scores the test split; this script loads that same captioner from the run's cache (it
never trains: without the cached fit it stops and says which command makes it) and scores, on all
validation scenes against captions 2-5, the text oracle (caption 1's text embedding) and raw audio,
the two ends of the table, beside its per-epoch loss curve. The scratch decoder's numbers on the
same inputs are in results/decoder_comparison.md. Writes results/llm/validation.{json,md}.

    python scripts/llm_validation.py [--profile llm]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's dlink, from any working directory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="llm", help="the profile whose notebook 05 trained the captioner")
    args = p.parse_args(argv)

    import dlink
    from dlink import experiment
    from dlink._io import atomic_write_text, write_json
    from dlink.captioning.aac import caption_pairs
    from dlink.evaluation.stats import bootstrap_ci

    params = dlink.resolve_params(profile=args.profile)
    seed = params.seeds[0]
    cached = [
        d
        for d in (experiment.run_dir(params) / "captioners").glob("zs-text-*")
        if not d.name.startswith("zs-text-noise")
    ]
    if not any((d / "config.json").is_file() for d in cached):
        print(f"no trained zero-shot captioner under {experiment.run_dir(params) / 'captioners'}: "
              f"run ./run_all.sh --profile {args.profile} first", file=sys.stderr)  # fmt: skip
        return 2
    frame = experiment.splits(params)
    emb = experiment.embeddings(params, seed=seed)
    fit_text, caps_fit = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
    val_text, caps_val = caption_pairs(emb["val"]["text"], list(frame["val"]["captions"]))
    # the same call as notebook 05's, so it finds the same cache entry
    cap = experiment.fit_captioner(params, "zs-text", fit_text, caps_fit, seed=seed, val=(val_text, caps_val))
    vidx, vrefs = experiment.eval_subset(params, frame["val"])
    inputs = {"text_oracle": emb["val"]["text"][vidx, 0], "identity": emb["val"]["audio"][vidx]}
    rows, preds = experiment.caption_rows(params, cap, inputs, vrefs, seed=seed)
    out = {"profile": params.profile.name, "lm": params.profile.lm, "epochs": params.profile.captioner_epochs,
           "captioner": dict(params.profile.captioner),
           "beams": params.profile.beams, "seed": seed, "val_scenes": len(vidx),
           "val_loss_per_epoch": [float(v) for v in cap.history["val_loss"]]}  # fmt: skip
    for r in rows:
        items = r["CIDEr-D_items"]
        _, lo, hi = bootstrap_ci(items)
        out[r["method"]] = {"CIDEr-D": float(r["CIDEr-D"]), "lo": lo, "hi": hi,
                            "samples": preds[r["method"]][:5]}  # fmt: skip
    folder = experiment.results_dir(params)
    write_json(folder / "validation.json", out)
    md = [
        f"# {params.profile.lm} prefix captioner on validation ({len(vidx)} scenes, seed {seed}, "
        f"{params.profile.captioner_epochs} epochs, "
        + "".join(f"{k}={v}, " for k, v in params.profile.captioner)
        + f"beam {params.profile.beams})",
        "",
        "| input | CIDEr-D [95 % CI, items] |",
        "| --- | ---: |",
        *(f"| {m} | {out[m]['CIDEr-D']:.3f} [{out[m]['lo']:.3f}, {out[m]['hi']:.3f}] |" for m in inputs),
        "",
        "Validation loss per epoch (nats / token): "
        + ", ".join(f"{v:.3f}" for v in out["val_loss_per_epoch"]),
        "",
        "First oracle captions: " + " / ".join(out["text_oracle"]["samples"]),
        "",
    ]
    atomic_write_text(folder / "validation.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
