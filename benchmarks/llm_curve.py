"""The LLM decoder's validation curve: CIDEr-D after every epoch of a longer run (not a test).

Trains the llm profile's zero-shot captioner (the frozen SmolLM2-135M with a learned prefix, on the
caption text of every fit scene, seed 0's embeddings, as notebook 05 trains it) for `--epochs`
epochs and scores after each epoch, on all validation scenes against captions 2-5, the text oracle
(caption 1's text embedding) and raw audio, the two ends of the zero-shot table, beside the
validation loss. It says whether more epochs than the profile's would lift the oracle, and how far.
Epoch e is a checkpoint of the `--epochs` schedule (warm-up and cosine decay span the whole run),
not a run trained with epochs=e. Validation only: the test split informs nothing here.

Writes results/llm/curve.{json,md} after every epoch (a stopped run keeps what it measured) and
figures/llm/curve.png. Needs notebooks 01-02 of the llm profile (`./run_all.sh --profile llm`).

    python benchmarks/llm_curve.py [--epochs 4] [--lm smollm2-135m] [--batch-size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=4, help="epochs of the run, scored after each (default 4)")
    p.add_argument("--lm", default=None, help="decoder (default: the llm profile's, smollm2-135m)")
    p.add_argument("--profile", default="llm", help="profile whose data, seed and beams are used")
    p.add_argument(
        "--batch-size", type=int, default=None, help="captions per step (default: CaptionerConfig's)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: dlink's policy)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a CaptionerConfig field, e.g. --set lora=true --set lm_dtype=bfloat16 (repeatable)",
    )
    p.add_argument(
        "--name", default="curve", help="output stem in results/llm and figures/llm (default curve)"
    )
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    for name in ("batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")

    from dlink.captioning.captioner import config_overrides

    try:
        overrides = config_overrides(args.set, lm=args.lm or "smollm2-135m")
    except ValueError as e:
        p.error(f"--set: {e}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.name):
        p.error(f"--name must be letters, digits, _ or -, got {args.name!r}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import dlink
    from dlink import experiment
    from dlink._io import atomic_write_text, write_json
    from dlink.captioning.aac import caption_pairs
    from dlink.captioning.captioner import CaptionerConfig
    from dlink.evaluation.plots import save_figure

    # the epoch-scoring captioner of benchmarks/compare_decoders.py (scores inside training with
    # torch's random state forked, so training computes what it computes unscored)
    spec = importlib.util.spec_from_file_location(
        "compare_decoders", Path(__file__).with_name("compare_decoders.py")
    )
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)

    if args.threads:
        torch.set_num_threads(args.threads)
    params = dlink.resolve_params(profile=args.profile)
    lm = args.lm or params.profile.lm
    seed = params.seeds[0]
    frame = experiment.splits(params)
    emb = experiment.embeddings(params, seed=seed)
    fit_text, caps_fit = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
    val_text, caps_val = caption_pairs(emb["val"]["text"], list(frame["val"]["captions"]))
    idx, refs = experiment.eval_subset(params, frame["val"])
    inputs = {"oracle": emb["val"]["text"][idx, 0], "no bridge": emb["val"]["audio"][idx]}
    results, figures = experiment.results_dir(params), experiment.figures_dir(params)
    batch = {"batch_size": args.batch_size} if args.batch_size else {}
    cfg = CaptionerConfig(
        lm=lm, epochs=args.epochs, beams=params.profile.beams, seed=seed, **batch | overrides
    )
    cap = compare._scored_captioner()(cfg, params.device, inputs, refs)
    out = {"lm": lm, "profile": params.profile.name, "profile_epochs": params.profile.captioner_epochs,
           "epochs": args.epochs, "batch_size": cfg.batch_size, "seed": seed, "beams": params.profile.beams, "train_captions": len(caps_fit),
           "validation_scenes": len(idx), "threads": torch.get_num_threads(), "overrides": overrides, "curve": []}  # fmt: skip
    t0 = time.perf_counter()

    def write():
        curve = [{k: v for k, v in r.items() if not k.endswith(" items")} for r in cap.curve]
        out["curve"], out["s"] = curve, round(time.perf_counter() - t0, 1)
        write_json(results / f"{args.name}.json", out)
        lines = [
            f"{lm} prefix captioner ({', '.join(f'{k}={v}' for k, v in overrides.items()) or 'frozen LM'}), one {args.epochs}-epoch run on {len(caps_fit)} fit captions, "
            f"{cfg.batch_size} per step "
            f"(seed {seed}, {out['threads']} threads, {out['s'] / 60:.0f} min so far), scored after each epoch "
            f"on all {len(idx)} validation scenes (CIDEr-D against captions 2-5, beam {params.profile.beams}). "
            f"Epoch e is a checkpoint of the {args.epochs}-epoch schedule; the {params.profile.name} profile trains "
            f"{params.profile.captioner_epochs} epochs on its own schedule.",
            "",
            "| epoch | val loss (nats / token) | oracle CIDEr-D | no bridge CIDEr-D | distinct (oracle) |",
            "| ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {r['epoch']} | {r['val_loss']:.3f} | {r['oracle']:.3f} | {r['no bridge']:.3f} | "
                f"{100 * r['oracle distinct']:.0f} % |"
                for r in curve
            ),  # fmt: skip
        ]
        atomic_write_text(results / f"{args.name}.md", "\n".join(lines) + "\n")
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
        ep = [r["epoch"] for r in curve]
        for name, color in zip(compare.INPUTS, ("tab:blue", "tab:orange"), strict=True):
            a1.plot(ep, [r[name] for r in curve], "o-", color=color, label=name)
        a1.axvline(
            params.profile.captioner_epochs,
            color="grey",
            ls=":",
            label=f"the {params.profile.name} profile's epochs",
        )
        a1.set(
            xlabel=f"epoch of the {args.epochs}-epoch run",
            ylabel="validation CIDEr-D",
            title=f"{lm}: CIDEr-D",
        )
        a1.legend(fontsize=8)
        a2.plot(ep, [r["val_loss"] for r in curve], "o-", color="tab:green")
        a2.set(xlabel=f"epoch of the {args.epochs}-epoch run", ylabel="nats / token", title="validation loss")
        fig.tight_layout()
        save_figure(fig, figures / args.name)
        plt.close(fig)
        return lines

    class Written(list):  # write the files after every scored epoch
        def append(self, row):
            super().append(row)
            write()
            print(json.dumps({k: round(v, 3) for k, v in row.items() if isinstance(v, float)}), flush=True)

    cap.curve = Written()
    cap.fit(fit_text, caps_fit, val=(val_text, caps_val))
    print("\n".join(write()))
    print("wrote", *(results / f"{args.name}.{x}" for x in ("json", "md")), figures / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
