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
    from dlink import experiment as X
    from dlink._io import atomic_write_text, write_json
    from dlink.captioning.aac import caption_pairs
    from dlink.evaluation.stats import bootstrap_ci

    P = dlink.resolve_params(profile=args.profile)
    seed = P.seeds[0]
    cached = [
        d for d in (X.run_dir(P) / "captioners").glob("zs-text-*") if not d.name.startswith("zs-text-noise")
    ]
    if not any((d / "config.json").is_file() for d in cached):
        print(f"no trained zero-shot captioner under {X.run_dir(P) / 'captioners'}: "
              f"run ./run_all.sh --profile {args.profile} first", file=sys.stderr)  # fmt: skip
        return 2
    frame = X.splits(P)
    emb = X.embeddings(P, seed=seed)
    Xfit, caps_fit = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
    Xval, caps_val = caption_pairs(emb["val"]["text"], list(frame["val"]["captions"]))
    # the same call as notebook 05's, so it finds the same cache entry
    cap = X.fit_captioner(P, "zs-text", Xfit, caps_fit, seed=seed, val=(Xval, caps_val))
    vidx, vrefs = X.eval_subset(P, frame["val"])
    inputs = {"text_oracle": emb["val"]["text"][vidx, 0], "identity": emb["val"]["audio"][vidx]}
    rows, preds = X.caption_rows(P, cap, inputs, vrefs, seed)
    out = {"profile": P.profile.name, "lm": P.profile.lm, "epochs": P.profile.captioner_epochs,
           "captioner": dict(P.profile.captioner),
           "beams": P.profile.beams, "seed": seed, "val_scenes": len(vidx),
           "val_loss_per_epoch": [float(v) for v in cap.history["val_loss"]]}  # fmt: skip
    for r in rows:
        items = r["CIDEr-D_items"]
        _, lo, hi = bootstrap_ci(items)
        out[r["method"]] = {"CIDEr-D": float(r["CIDEr-D"]), "lo": lo, "hi": hi,
                            "samples": preds[r["method"]][:5]}  # fmt: skip
    folder = X.results_dir(P)
    write_json(folder / "validation.json", out)
    md = [
        f"# {P.profile.lm} prefix captioner on validation ({len(vidx)} scenes, seed {seed}, "
        f"{P.profile.captioner_epochs} epochs, "
        + "".join(f"{k}={v}, " for k, v in P.profile.captioner)
        + f"beam {P.profile.beams})",
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
