"""Which captioner decoder, and how many epochs, on VALIDATION only. Measured side by side in one run.

Every decoder of `dlink.PrefixCaptioner` is trained on the default profile's fit-scene TEXT
embeddings (the zero-shot setting) and scored with CIDEr-D against captions 2-5 of all validation
scenes (the test split never informs the choice), fed two inputs:
- "oracle": the validation captions' own text embeddings (caption 1; the text-oracle row);
- "no bridge": the validation AUDIO embeddings (the zero-shot row the tables score without a bridge).

Arms:
- epoch curve: the scratch decoder trained for `--curve-epochs` (8) epochs on all fit captions, once
  per caption seed of the profile (seed s: seed s's embeddings and captioner seed, as notebook 05),
  scored after every epoch. The scoring runs inside the training loop with torch's random state
  saved and restored, so the training computation is the same as without it. The learning-rate
  schedule (warm-up, cosine decay) spans the whole run, so epoch e of this curve is a checkpoint of
  an 8-epoch run, not a run trained with epochs=e;
- "scratch, all fit captions": the scratch decoder with the profile's epochs (its own schedule), seed 0;
- an LLM prefix (default "smollm2-135m", frozen): on `--llm-captions` captions (1,280, ~3 min here), 1 epoch;
- "scratch" on the same small budget, so the two are also compared at equal data.

Writes results/decoder_comparison.{json,md} (after every arm, so a stopped run keeps what it
measured) and figures/decoder_comparison.png (validation CIDEr-D per epoch; loss curves). Needs the
default profile's embeddings (run notebooks 01-02 first).

    python benchmarks/compare_decoders.py [--llm smollm2-135m] [--llm-captions 1280]
        [--curve-epochs 8] [--seeds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

INPUTS = ("oracle", "no bridge")


def _scored_captioner():
    """PrefixCaptioner that scores validation CIDEr-D each time `fit` logs an epoch's validation loss."""
    import torch

    from dlink.captioning.aac import evaluate
    from dlink.captioning.captioner import PrefixCaptioner

    class EpochScored(PrefixCaptioner):
        def __init__(self, config, device, inputs: dict, references):
            super().__init__(config, device=device)
            self.inputs, self.references, self.curve = inputs, references, []

        def evaluate_loss(self, embeddings, captions, batch_size=128):
            loss = super().evaluate_loss(embeddings, captions, batch_size)
            cuda = [self.device] if str(self.device).startswith("cuda") else []
            # decoding draws nothing at random today; the fork keeps training's stream intact regardless
            with torch.random.fork_rng(devices=cuda):
                row = {"epoch": len(self.history["val_loss"]) + 1, "val_loss": loss}
                for name, emb in self.inputs.items():
                    m, _ = evaluate(self, emb, self.references)
                    row[name] = m["CIDEr-D"]
                    row[f"{name} items"] = [float(v) for v in m["CIDEr-D_items"]]
                    row[f"{name} distinct"] = m["distinct"]
            self.curve.append(row)
            return loss

    return EpochScored


def summarize_curve(curves: dict[int, list[dict]], default_epochs: int) -> dict:
    """Per epoch: mean, sd, min, max over seeds of each input's CIDEr-D; the epoch each input's mean
    picks, and its paired seed x item bootstrap difference to the default epoch."""
    from dlink.evaluation.stats import paired_difference

    seeds = sorted(curves)
    epochs = [r["epoch"] for r in curves[seeds[0]]]
    rows = []
    for k, e in enumerate(epochs):
        row = {"epoch": e, "val_loss": float(np.mean([curves[s][k]["val_loss"] for s in seeds]))}
        for name in INPUTS:
            v = np.array([curves[s][k][name] for s in seeds])
            row[name] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
                         "min": float(v.min()), "max": float(v.max()), "per_seed": [float(x) for x in v]}  # fmt: skip
        rows.append(row)
    picks = {}
    for name in INPUTS:
        best = max(range(len(rows)), key=lambda k: rows[k][name]["mean"])
        entry = {"epoch": rows[best]["epoch"], "mean": rows[best][name]["mean"]}
        if default_epochs in epochs:
            d = epochs.index(default_epochs)
            per_seed = [curves[s][best][name] - curves[s][d][name] for s in seeds]
            diff, lo, hi = paired_difference(
                [curves[s][best][f"{name} items"] for s in seeds],
                [curves[s][d][f"{name} items"] for s in seeds],
            )
            entry |= {"versus_epoch": default_epochs, "difference": diff, "lo": lo, "hi": hi,
                      "per_seed_difference": per_seed}  # fmt: skip
        picks[name] = entry
    return {"seeds": seeds, "epochs": rows, "picks": picks}


def curve_markdown(summary: dict, n_epochs: int, default_epochs: int) -> list[str]:
    seeds = summary["seeds"]
    lines = [
        f"Scratch decoder, one {n_epochs}-epoch run per seed (seeds {', '.join(map(str, seeds))}), scored "
        f"after each epoch on all validation scenes (CIDEr-D, beams of the profile). Epoch e is a "
        f"checkpoint of the {n_epochs}-epoch schedule, not a run trained with epochs=e.",
        "",
        "| epoch | val loss | oracle CIDEr-D, mean (sd) [min, max] | no bridge CIDEr-D, mean (sd) [min, max] |",
        "| ---: | ---: | ---: | ---: |",
    ]

    def cell(c):
        sd = f" ({c['sd']:.3f})" if c["sd"] is not None else ""
        return f"{c['mean']:.3f}{sd} [{c['min']:.3f}, {c['max']:.3f}]"

    for r in summary["epochs"]:
        lines.append(f"| {r['epoch']} | {r['val_loss']:.3f} | {cell(r['oracle'])} | {cell(r['no bridge'])} |")
    lines.append("")
    for name, p in summary["picks"].items():
        text = f"- {name}: validation picks epoch {p['epoch']} (mean CIDEr-D {p['mean']:.3f})"
        if "difference" in p:
            per_seed = ", ".join(f"{v:+.3f}" for v in p["per_seed_difference"])
            text += (
                f"; minus epoch {p['versus_epoch']} (the default): {p['difference']:+.3f} "
                f"[{p['lo']:+.3f}, {p['hi']:+.3f}] (paired seed x item bootstrap, 95 %), per seed {per_seed}"
            )
        lines.append(text)
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--llm", default="smollm2-135m")
    p.add_argument("--llm-captions", type=int, default=1280)
    p.add_argument("--curve-epochs", type=int, default=8)
    p.add_argument(
        "--seeds", type=int, default=None, help="caption seeds of the curve (default: the profile's)"
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.curve_epochs < 1 or args.llm_captions < 2 or (args.seeds is not None and args.seeds < 1):
        p.error("--curve-epochs and --seeds must be >= 1, --llm-captions >= 2")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import dlink
    from dlink import experiment
    from dlink._io import atomic_write_text, write_json
    from dlink.captioning.aac import caption_pairs, evaluate, subsample
    from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner

    if args.threads:
        torch.set_num_threads(args.threads)
    params = dlink.resolve_params(profile="default", device=args.device)
    frame = experiment.splits(params)
    idx, refs = experiment.eval_subset(params, frame["val"])
    default_epochs = params.profile.captioner_epochs
    seeds = list(params.seeds[: args.seeds or params.caption_seeds])
    results, figures = experiment.results_dir(params), experiment.figures_dir(params)
    EpochScored = _scored_captioner()

    def data(seed):
        emb = experiment.embeddings(params, seed=seed)
        fit_text, caps = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
        val_text, cval = caption_pairs(emb["val"]["text"][:100], list(frame["val"]["captions"])[:100])
        inputs = {"oracle": emb["val"]["text"][idx, 0], "no bridge": emb["val"]["audio"][idx]}
        return fit_text, caps, (val_text, cval), inputs

    out = {"validation_scenes": len(idx), "default_epochs": default_epochs, "beams": params.profile.beams,
           "threads": torch.get_num_threads(), "curve": {}, "decoders": []}  # fmt: skip
    histories = {}  # arm -> (history, batch size, captions)

    def write():
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
        if out["curve"]:
            summary = out["curve_summary"] = summarize_curve(out["curve"], default_epochs)
            ep = [r["epoch"] for r in summary["epochs"]]
            for name, color in zip(INPUTS, ("tab:blue", "tab:orange"), strict=True):
                mean = [r[name]["mean"] for r in summary["epochs"]]
                lo, hi = (
                    [r[name]["min"] for r in summary["epochs"]],
                    [r[name]["max"] for r in summary["epochs"]],
                )
                a1.plot(ep, mean, "o-", color=color, label=f"{name} (mean of {len(summary['seeds'])} seeds)")
                a1.fill_between(ep, lo, hi, color=color, alpha=0.2, label=f"{name}: seed min-max")
            a1.axvline(default_epochs, color="grey", ls=":", label=f"default epochs ({default_epochs})")
            a1.set_xlabel(f"epoch of the {args.curve_epochs}-epoch run")
            a1.set_ylabel("validation CIDEr-D")
            a1.set_title("scratch decoder: validation CIDEr-D per epoch")
            a1.legend(fontsize=8)
        for name, (hist, batch, n) in histories.items():
            steps = np.arange(1, len(hist["train_loss"]) + 1) * batch
            a2.plot(steps, hist["train_loss"], lw=0.8, label=f"{name}: train")
            a2.plot(np.arange(1, len(hist["val_loss"]) + 1) * n, hist["val_loss"], "o", label=f"{name}: val")
        a2.set_xlabel("training captions seen")
        a2.set_ylabel("loss (nats / token)")
        a2.set_yscale("log")
        a2.set_title("loss curves (fit-scene text, zero-shot training)")
        a2.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(figures / "decoder_comparison.png", dpi=150)
        plt.close(fig)
        saved = {**out, "curve": {str(s): [{k: v for k, v in r.items() if not k.endswith(" items")} for r in c]
                                  for s, c in out["curve"].items()}}  # fmt: skip
        write_json(results / "decoder_comparison.json", saved)
        lines = [
            "Decoders trained on fit-scene text embeddings, scored on all validation scenes (CIDEr-D "
            "against captions 2-5); oracle = the captions' own text embeddings, no bridge = audio embeddings.",
            "",
            "| decoder | seed | epochs | train captions | fit s | final val loss | val oracle CIDEr-D | "
            "val no-bridge CIDEr-D | distinct (oracle) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in out["decoders"]:
            if "unavailable" in r:
                lines.append(f"| {r['decoder']} | | | | | unavailable: {r['unavailable']} | | | |")
                continue
            lines.append(
                f"| {r['decoder']} | {r['seed']} | {r['epochs']} | {r['train_captions']} | {r['fit_s']} | "
                f"{r['final_val_loss']} | {r['val_oracle_CIDEr-D']} | {r['val_no_bridge_CIDEr-D']} | "
                f"{100 * r['distinct']:.0f} % |"
            )
        if out["curve"]:
            lines += ["", *curve_markdown(out["curve_summary"], args.curve_epochs, default_epochs)]
        atomic_write_text(results / "decoder_comparison.md", "\n".join(lines) + "\n")
        return lines

    # the epoch curve, one training run per seed
    for seed in seeds:
        fit_text, caps, val, inputs = data(seed)
        t0 = time.perf_counter()
        cap = EpochScored(CaptionerConfig(beams=params.profile.beams, epochs=args.curve_epochs, seed=seed),
                          params.device, inputs, refs)  # fmt: skip
        cap.fit(fit_text, caps, val=val, progress=False)
        out["curve"][seed] = cap.curve
        print(json.dumps({"seed": seed, "s": round(time.perf_counter() - t0, 1),
                          "CIDEr-D": [{k: round(r[k], 3) for k in ("epoch", *INPUTS)} for r in cap.curve]}),
              flush=True)  # fmt: skip
        histories[f"scratch, {args.curve_epochs} epochs, seed {seed}"] = (
            cap.history,
            cap.config.batch_size,
            len(caps),
        )
        write()

    fit_text, caps, val, inputs = data(params.seeds[0])
    small = subsample(len(caps), args.llm_captions, seed=0)
    runs = [
        ("scratch, all fit captions", dict(lm="scratch", epochs=default_epochs), np.arange(len(caps))),
        (f"{args.llm}, {len(small)} captions", dict(lm=args.llm, epochs=1, batch_size=32), small),
        (f"scratch, {len(small)} captions", dict(lm="scratch", epochs=1), small),
    ]
    for name, cfg, sub in runs:
        t0 = time.perf_counter()
        try:
            cap = PrefixCaptioner(
                CaptionerConfig(beams=params.profile.beams, seed=params.seeds[0], **cfg), device=params.device
            )
            cap.fit(fit_text[sub], [caps[i] for i in sub], val=val, progress=False)
        except (RuntimeError, ValueError, OSError) as e:  # e.g. an LM that will not load or train here
            rec = {"decoder": name, "unavailable": f"{type(e).__name__}: {str(e)[:160]}"}
            print(json.dumps(rec), flush=True)
            out["decoders"].append(rec)
            write()
            continue
        fit_s = time.perf_counter() - t0
        scores = {k: evaluate(cap, v, refs) for k, v in inputs.items()}
        rec = {
            "decoder": name,
            "seed": params.seeds[0],
            "epochs": cap.config.epochs,
            "train_captions": int(len(sub)),
            "fit_s": round(fit_s, 1),
            "final_val_loss": round(cap.history["val_loss"][-1], 3),
            "val_oracle_CIDEr-D": round(scores["oracle"][0]["CIDEr-D"], 3),
            "val_no_bridge_CIDEr-D": round(scores["no bridge"][0]["CIDEr-D"], 3),
            "distinct": round(scores["oracle"][0]["distinct"], 3),
            "example": scores["oracle"][1][0],
        }
        print(json.dumps(rec), flush=True)
        out["decoders"].append(rec)
        histories[name] = (cap.history, cap.config.batch_size, len(sub))
        write()
    print("\n".join(write()))
    print("wrote", results / "decoder_comparison.json", results / "decoder_comparison.md",
          figures / "decoder_comparison.png")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
