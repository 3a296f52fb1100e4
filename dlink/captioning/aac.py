"""Captioning evaluation: training pairs, a captioner fit, scoring, and the captioning result tables.

This is the captioning layer, not glue: it takes arrays and captions and knows nothing about runs,
profiles or caches. `dlink.experiment` is the one glue module (cached steps named as the notebooks'
verbs: `embeddings`, `fit_bridge`, `bridged`, `fit_captioner`, `caption_rows`), and calls this one.

Zero-shot: `caption_pairs(text_emb, captions)` -> `train_captioner` on TEXT embeddings, then
`evaluate` on audio embeddings (raw, or `bridge.transform(audio)` for each bridge).
Supervised: the same with AUDIO embeddings as training inputs. Bridges come from dlink.bridges.base /
dlink.bridges.baselines (`fit(audio, text)` / `transform(audio)`); nothing here knows about them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from dlink import paths
from dlink._io import atomic_write_text, write_csv_gz
from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner
from dlink.evaluation.metrics import caption_metrics
from dlink.evaluation.stats import bootstrap_ci, paired_difference, paired_relative_gain

SUMMARY_METRICS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")


def _check_captions(captions, n: int, name: str = "captions"):
    if isinstance(captions, str) or len(captions) != n:
        raise ValueError(f"{name} must hold {n} lists of captions (one list per embedding row)")
    for i, caps in enumerate(captions):
        if isinstance(caps, str) or len(caps) == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty list of strings, got {caps!r}")


def caption_pairs(emb, captions) -> tuple[np.ndarray, list[str]]:
    """Flatten a split into (embedding, caption) training pairs.

    emb: (N, D) one embedding per item (audio, or a per-item text embedding), repeated for each of
    its captions; or (N, C, D) one embedding per caption (text embeddings of the captions themselves).
    captions: N lists of captions. Returns the embeddings (sum of list lengths, D) float32 and the flat captions.
    """
    emb = np.asarray(emb, dtype=np.float32)
    _check_captions(captions, emb.shape[0] if emb.ndim in (2, 3) else -1)
    if emb.ndim == 2:
        rows = [i for i, caps in enumerate(captions) for _ in caps]
        return emb[rows], [c for caps in captions for c in caps]
    if emb.ndim == 3:
        xs, flat = [], []
        for i, caps in enumerate(captions):
            if len(caps) > emb.shape[1]:
                raise ValueError(f"item {i} has {len(caps)} captions but emb holds {emb.shape[1]} per item")
            xs.append(emb[i, : len(caps)])
            flat += list(caps)
        return np.concatenate(xs), flat
    raise ValueError(f"emb must be (N, D) or (N, C, D), got shape {emb.shape}")


def subsample(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of range(n) of `size` (all of them if size is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def train_captioner(
    embeddings,
    captions: list[str],
    config: CaptionerConfig | dict | None = None,
    device: str = "auto",
    val=None,
    checkpoint=None,
) -> PrefixCaptioner:
    """A fresh PrefixCaptioner trained on embeddings (N, D) with captions (N strings). val: (val_embeddings,
    val_captions).
    checkpoint: a folder for the per-epoch training state (resumed from when it holds one)."""
    if isinstance(config, dict):
        config = CaptionerConfig(**config)
    return PrefixCaptioner(config, device=device).fit(embeddings, captions, val=val, checkpoint=checkpoint)


def evaluate(
    captioner,
    emb,
    references,
    beams: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 64,
    sbert: bool = False,
):
    """Caption emb (M, D) and score against references (M lists). Returns (metrics dict, predictions).

    captioner: a PrefixCaptioner or a RetrievalCaptioner. The metrics include "CIDEr-D_items" (M
    per-item scores) and "distinct" (share of distinct captions among the M predictions).
    """
    emb = np.asarray(emb, dtype=np.float32)
    _check_captions(references, emb.shape[0], "references")
    preds = captioner.generate(emb, beams=beams, max_new_tokens=max_new_tokens, batch_size=batch_size)
    metrics = caption_metrics(preds, [list(r) for r in references], sbert=sbert, per_item=True)
    metrics["distinct"] = len(set(preds)) / len(preds)
    return metrics, preds


def mean_over_folds(records: list[dict], method: str) -> dict:
    """One record from the records of the same rows scored once per fold's bridge (K-fold
    cross-fitting): every number and the per-item CIDEr-D averaged over the folds, under `method`."""
    if not records:
        raise ValueError("mean_over_folds needs at least one record")
    out = dict(records[0], method=method)
    for key, value in records[0].items():
        if key == "seed" or isinstance(value, bool):
            continue
        if key == "CIDEr-D_items":
            out[key] = [float(v) for v in np.mean([r[key] for r in records], axis=0)]
        elif isinstance(value, (int, float)):
            out[key] = float(np.mean([r[key] for r in records]))
    out["n_folds"] = len(records)
    return out


def summarize(
    records, base: str = "identity", versus: str = "diffusion_link", level: float = 0.95
) -> list[dict]:
    """One summary per (decoder, method) over seeds, with seed x item bootstrap intervals.

    records: dicts with "decoder", "method", "seed", the SUMMARY_METRICS, "distinct" and
    "CIDEr-D_items" (per-item scores, the same items and seeds in every record of a decoder). Returns
    dicts with the mean and std over seeds of each metric; the CIDEr-D interval (cider_lo, cider_hi);
    for every method of a decoder that has a `base` row the relative CIDEr-D gain over it (gain,
    gain_lo, gain_hi); and for every method of a decoder that has a `versus` row its CIDEr-D minus
    that row's (d_CIDEr-D, d_CIDEr-D_lo, d_CIDEr-D_hi, and d_CIDEr-D_resolved: the interval excludes 0). All
    intervals resample seeds and items (dlink.evaluation.stats), with the same draws for every row, so the
    gains and differences are paired.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["decoder"], r["method"]), []).append(r)
    for g in groups.values():
        g.sort(key=lambda r: r["seed"])  # seed s of one row pairs with seed s of another
    items = {k: np.array([r["CIDEr-D_items"] for r in g]) for k, g in groups.items()}
    seeds = {k: [r["seed"] for r in g] for k, g in groups.items()}

    def paired(other: tuple) -> bool:  # scored on the same seeds and items as this row
        return other in items and seeds[other] == seeds[decoder, method] and items[other].shape == mine.shape

    out = []
    for (decoder, method), g in groups.items():
        rec = {"decoder": decoder, "method": method, "n_seeds": len(g)}
        for m in (*SUMMARY_METRICS, "distinct"):
            v = np.array([r[m] for r in g], dtype=float)
            rec[f"{m}_mean"], rec[f"{m}_std"] = (
                float(v.mean()),
                float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
            )
        mine = items[decoder, method]
        _, rec["cider_lo"], rec["cider_hi"] = bootstrap_ci(mine, level=level)
        if method != base and paired((decoder, base)) and items[decoder, base].mean() > 0:
            rec["gain"], rec["gain_lo"], rec["gain_hi"] = paired_relative_gain(
                mine, items[decoder, base], level=level
            )
        if method != versus and paired((decoder, versus)):
            d = paired_difference(mine, items[decoder, versus], level=level)
            rec["d_CIDEr-D"], rec["d_CIDEr-D_lo"], rec["d_CIDEr-D_hi"] = d
            rec["d_CIDEr-D_resolved"] = bool(d[1] > 0 or d[2] < 0)
        out.append(rec)
    return out


def item_rows(records, ids=None) -> list[dict]:
    """Per-item x per-seed scores in long form: seed, item, decoder, method, CIDEr-D (one row each).

    ids: the items' ids in the order of "CIDEr-D_items" (default: their position 0..N-1).
    """
    n = len(records[0]["CIDEr-D_items"])
    ids = list(range(n)) if ids is None else list(ids)
    if len(ids) != n:
        raise ValueError(f"ids holds {len(ids)} ids but the records score {n} items")
    rows = []
    for r in sorted(records, key=lambda r: (r["decoder"], r["method"], r["seed"])):
        if len(r["CIDEr-D_items"]) != n:
            raise ValueError(
                f"record {r['decoder']}/{r['method']}/seed {r['seed']} scores another number of items"
            )
        rows += [{"seed": r["seed"], "item": i, "decoder": r["decoder"], "method": r["method"],
                  "CIDEr-D": f"{v:.6g}"} for i, v in zip(ids, r["CIDEr-D_items"], strict=True)]  # fmt: skip
    return rows


def _extra_metrics_note(records) -> str:
    """Which of SPICE, SPIDEr, FENSE were computed (numbers in the records) and which were not."""
    extra = ("SPICE", "SPIDEr", "FENSE")
    missing = [m for m in extra if any(not isinstance(r.get(m), (int, float)) for r in records)]
    if not missing:
        return "SPICE, SPIDEr, FENSE: computed through aac-metrics (per-seed values in the records)."
    return (
        f"{', '.join(missing)}: unavailable (aac-metrics or its downloaded resources are not present here)."
    )


def write_results(
    records, stem, base: str = "identity", title: str = "", versus: str = "diffusion_link", ids=None
) -> tuple[Path, Path]:
    """Write <stem>.csv (every summary number), <stem>.md (the table the README shows) and
    <stem's folder>/items/<stem name>.csv.gz (per-item x per-seed CIDEr-D, `item_rows`; ids: the
    items' ids). Atomic. Returns (csv_path, md_path)."""
    summary = summarize(records, base=base, versus=versus)
    stem = Path(stem)
    write_csv_gz(stem.parent / "items" / f"{stem.name}.csv.gz", item_rows(records, ids))
    csv_path = atomic_write_text(stem.with_name(stem.name + ".csv"), _csv(summary))
    seeds = sorted({r["seed"] for r in records})
    n_items = len(records[0]["CIDEr-D_items"])
    lines = [f"# {title}".rstrip(), "", f"{n_items} test items x {len(seeds)} seed(s) {seeds}; references: captions 2-5 of each item.",
             "Metrics: mean ± std over seeds. 95 % CIs: percentile bootstrap resampling both training seeds and test items "
             "(one draw shared by every row of a decoder, so gains and differences are paired); they cover seed and item variance.",
             f"Gain: relative CIDEr-D gain over `{base}` with the same decoder. Minus {versus}: CIDEr-D difference to "
             f"`{versus}` with the same decoder, marked (resolved) when its interval excludes 0.",
             _extra_metrics_note(records), "",
             "| decoder | method | " + " | ".join(SUMMARY_METRICS)
             + f" | CIDEr-D [95 % CI] | distinct | gain [95 % CI] | minus {versus} [95 % CI] |",
             "| --- | --- |" + " ---: |" * (len(SUMMARY_METRICS) + 4)]  # fmt: skip
    for r in summary:
        cells = [
            f"{r[f'{m}_mean']:.3f}" + ("" if np.isnan(r[f"{m}_std"]) else f" ± {r[f'{m}_std']:.3f}")
            for m in SUMMARY_METRICS
        ]
        ci = f"{r['CIDEr-D_mean']:.3f} [{r['cider_lo']:.3f}, {r['cider_hi']:.3f}]"
        gain = (
            f"{100 * r['gain']:+.1f} % [{100 * r['gain_lo']:+.1f}, {100 * r['gain_hi']:+.1f}]"
            if "gain" in r
            else ""
        )
        diff = (
            f"{r['d_CIDEr-D']:+.3f} [{r['d_CIDEr-D_lo']:+.3f}, {r['d_CIDEr-D_hi']:+.3f}]"
            + (" (resolved)" if r["d_CIDEr-D_resolved"] else "")
            if "d_CIDEr-D" in r
            else ""
        )
        lines.append(
            f"| {r['decoder']} | {r['method']} | "
            + " | ".join(cells)
            + f" | {ci} | {100 * r['distinct_mean']:.0f} % | {gain} | {diff} |"
        )
    md_path = atomic_write_text(stem.with_name(stem.name + ".md"), "\n".join(lines) + "\n")
    return csv_path, md_path


def _csv(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_samples(
    name: str,
    ids: list[str],
    references,
    predictions: dict[str, list[str]],
    n: int | None = 20,
    folder: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write generated captions per method beside the references: <folder>/<name>.csv and .md.

    ids: M item ids; references: M lists; predictions: {method: M captions}. The markdown shows the
    first `n` items (all if None), the CSV all of them. Defaults to dlink.paths.RESULTS. Atomic writes.
    """
    m = len(ids)
    _check_captions(references, m, "references")
    for method, preds in predictions.items():
        if len(preds) != m:
            raise ValueError(f"predictions[{method!r}] has {len(preds)} captions, expected {m} (one per id)")
    folder = Path(folder) if folder is not None else paths.RESULTS
    methods = list(predictions)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", *methods, "references"])
    for i in range(m):
        w.writerow([ids[i], *[predictions[k][i] for k in methods], " | ".join(references[i])])
    csv_path = atomic_write_text(folder / f"{name}.csv", buf.getvalue())

    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = [f"# Generated captions: {name}", ""]
    for i in range(m if n is None else min(n, m)):
        lines += [f"## {ids[i]}", "", "| method | caption |", "| --- | --- |"]
        lines += [f"| {k} | {cell(predictions[k][i])} |" for k in methods]
        lines += [f"| reference {j + 1} | {cell(r)} |" for j, r in enumerate(references[i])] + [""]
    md_path = atomic_write_text(folder / f"{name}.md", "\n".join(lines))
    return csv_path, md_path
