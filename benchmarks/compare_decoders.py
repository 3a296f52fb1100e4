"""Which captioner decoder learns within the CPU budget? Measured side by side in one run.

Both decoders of `dlink.PrefixCaptioner` are trained on the default profile's fit-scene TEXT
embeddings (the zero-shot setting) and fed the VALIDATION captions' own text embeddings (the oracle
row of notebook 05, on validation: the decoder is a choice, so the test split never informs it),
scored against captions 2-5 of all validation scenes:
- "scratch": the small GPT-2-style decoder trained from scratch, on all fit captions (default epochs);
- an LLM prefix (default "smollm2-135m", frozen): on as many captions as `--llm-captions` (1,280 = the
  old default profile's budget, ~3 min here), 1 epoch;
- "scratch" on the same small budget, so the two are also compared at equal data.

Prints and writes results/decoder_comparison.{json,md} and figures/decoder_comparison.png (train and
validation loss curves). Needs the default profile's embeddings (run notebooks 01-02 first).

    python benchmarks/compare_decoders.py [--llm smollm2-135m] [--llm-captions 1280] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--llm", default="smollm2-135m")
    p.add_argument("--llm-captions", type=int, default=1280)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import dlink
    from dlink import experiment as X
    from dlink._io import atomic_write_text, write_json
    from dlink.aac import caption_pairs, evaluate, subsample
    from dlink.captioner import CaptionerConfig, PrefixCaptioner

    if args.threads:
        torch.set_num_threads(args.threads)
    P = dlink.resolve_params(profile="default", device=args.device)
    emb, frame = X.embeddings(P), X.splits(P)
    idx, refs = X.eval_subset(P, frame["val"])
    Xfit, caps = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
    Xval, cval = caption_pairs(emb["val"]["text"][:100], list(frame["val"]["captions"])[:100])
    small = subsample(len(caps), args.llm_captions, seed=0)
    runs = [
        (
            "scratch, all fit captions",
            dict(lm="scratch", epochs=P.profile.captioner_epochs),
            np.arange(len(caps)),
        ),
        (f"{args.llm}, {len(small)} captions", dict(lm=args.llm, epochs=1, batch_size=32), small),
        (f"scratch, {len(small)} captions", dict(lm="scratch", epochs=1), small),
    ]
    out, fig = [], plt.figure(figsize=(7, 4))
    ax = fig.gca()
    for name, cfg, sub in runs:
        t0 = time.perf_counter()
        cap = PrefixCaptioner(CaptionerConfig(beams=P.profile.beams, **cfg), device=P.device)
        cap.fit(Xfit[sub], [caps[i] for i in sub], val=(Xval, cval), progress=False)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        m, preds = evaluate(cap, emb["val"]["text"][idx, 0], refs)
        rec = {
            "decoder": name,
            "train_captions": int(len(sub)),
            "fit_s": round(fit_s, 1),
            "decode_and_score_s": round(time.perf_counter() - t0, 1),
            "final_val_loss": round(cap.history["val_loss"][-1], 3),
            "val_oracle_CIDEr-D": round(m["CIDEr-D"], 3),
            "distinct": round(m["distinct"], 3),
            "example": preds[0],
        }
        print(json.dumps(rec), flush=True)
        out.append(rec)
        steps = np.arange(1, len(cap.history["train_loss"]) + 1) * cap.config.batch_size
        ax.plot(steps, cap.history["train_loss"], lw=0.8, label=f"{name}: train")
        per_epoch = np.arange(1, len(cap.history["val_loss"]) + 1) * len(sub)
        ax.plot(per_epoch, cap.history["val_loss"], "o", label=f"{name}: val")
    ax.set_xlabel("training captions seen")
    ax.set_ylabel("nats / token")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("captioner decoders on fit-scene text (zero-shot training)")
    fig.tight_layout()
    results, figures = X.results_dir(P), X.figures_dir(P)
    fig.savefig(figures / "decoder_comparison.png", dpi=150)
    write_json(results / "decoder_comparison.json", out)
    lines = ["| decoder | train captions | fit s | decode+score s | final val loss | val oracle CIDEr-D | distinct |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    lines += [
        f"| {r['decoder']} | {r['train_captions']} | {r['fit_s']} | {r['decode_and_score_s']} | "
        f"{r['final_val_loss']} | {r['val_oracle_CIDEr-D']} | {100 * r['distinct']:.0f} % |"
        for r in out
    ]
    atomic_write_text(results / "decoder_comparison.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print("wrote", results / "decoder_comparison.json", figures / "decoder_comparison.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
