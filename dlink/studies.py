"""The measurements behind notebooks 04-07, as functions: the gap table over every seed, the zero-shot
and supervised captioning tables, and the one-seed sweep of Diffusion-Link's variants. Notebook 07's two tables
are `term_ablation_study` (which training term carries each result, over seeds) and `ablation_sweep`
(every reconstructed choice on one seed's validation split). The notebooks
call these and write, print and plot what comes back; everything they fit is cached by
dlink.experiment, so a rerun only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlink import experiment


def label_sets(frame) -> list[str] | None:
    """Each scene's sound labels as one sorted ";"-joined string (label-set mAP's relevance), or None
    for a data set without labels (AudioCaps, Clotho)."""
    if "labels" not in frame:
        return None
    return list(frame["labels"].map(lambda s: ";".join(sorted(s.split(";")))))


def verdict(lo: float, hi: float) -> str:
    """What a 95 % interval of a gain says about the paper's direction (a positive gain)."""
    if lo > 0:
        return "reproduced (the interval excludes 0)"
    if hi < 0:
        return "reversed (the interval is below 0)"
    return "not resolved (the interval covers 0)"


# --------------------------------------------------------------------------- the encoder's own gap


def encoder_gap(params, test: dict) -> dict:
    """Notebook 02's summary of the frozen encoder on the test split (`test`: {"audio": (N, D),
    "text": (N, C, D)}, first caption paired): retrieval against its chance level, and the gap
    between raw audio and text."""
    from dlink.evaluation.gap import gap_report

    gap = gap_report(test["audio"], test["text"][:, 0], paired=True, seed=0)
    n = len(test["audio"])
    return {
        "encoder": params.encoder,
        "test_items": n,
        "R@1": gap["a2t_R1"],
        "R@10": gap["a2t_R10"],
        "R@1_chance": 1 / n,
        "R@10_chance": min(1.0, 10 / n),
        "centroid_distance": gap["centroid_distance"],
        "paired_cos_mean": gap["paired_cos_mean"],
        "linear_separability": gap["separability"],
        "frechet": gap["frechet"],
    }


# --------------------------------------------------------------------------- the gap table


@dataclass
class GapStudy:
    """The test split's gap metrics for every bridge and calibration row, for every seed."""

    rows: list[dict]  # one per method and seed: "method", "seed" and gap_report's metrics
    settings: list[dict]  # one per bridge and seed: the inference settings chosen on validation, their scores
    outputs: dict[str, list[np.ndarray]]  # method -> its (N, D) test embeddings, one per seed
    texts: list[np.ndarray]  # the paired (N, D) test text of each seed
    calibration: list[str]  # the calibration rows' names (floor and oracle)
    labels: list[str] | None  # label_sets of the test scenes
    ids: list[str]  # the test scenes' ids, in row order of every array
    map_points: dict[str, np.ndarray]  # the first seed's "text", "audio" and each bridge's test embeddings


def gap_study(params) -> GapStudy:
    """Every seed: its own encoder heads, bridges and validation-tuned settings; every bridge's bridged test
    audio and the two calibration rows scored by gap_report against the paired text."""
    from scipy.spatial.distance import pdist

    from dlink.bridges.baselines import BRIDGES
    from dlink.evaluation.gap import gap_calibration, gap_report

    test_frame = experiment.splits(params)["test"]
    labels = label_sets(test_frame)
    rows, settings, outputs, texts, map_points = [], [], {}, [], {}
    for seed in params.seeds:
        emb = experiment.embeddings(params, seed=seed)
        test = emb["test"]
        text = test["text"][:, 0]
        # one MMD bandwidth for every method (median text-text distance), so MMD is on one scale
        bandwidth = float(np.median(pdist(test["text"][:1000, 0])))
        out = experiment.bridged(params, emb, seed=seed)
        for method in BRIDGES:
            r = gap_report(
                out[method]["test"], text, paired=True, seed=seed, mmd_bandwidth=bandwidth, labels=labels
            )
            rows.append({"method": method, "seed": seed, **r})
            settings.append(
                {
                    "method": method,
                    "seed": seed,
                    "settings": out[method]["settings"],
                    "scores": out[method]["scores"],
                }
            )
        # the floor is text with no information about the audio (each item gets ANOTHER scene's caption:
        # in the text distribution, unpaired); the ceiling is the scene's own second caption
        calibration = gap_calibration(test["text"], seed=seed)
        for name, x in calibration.items():
            r = gap_report(x, text, paired=True, seed=seed, mmd_bandwidth=bandwidth, labels=labels)
            rows.append({"method": name, "seed": seed, **r})
        for name, x in {**{m: out[m]["test"] for m in BRIDGES}, **calibration}.items():
            outputs.setdefault(name, []).append(x)
        texts.append(text)
        if seed == params.seeds[0]:
            map_points = {"text": text, "audio": test["audio"]}
            map_points |= {m: out[m]["test"] for m in BRIDGES if m != "identity"}
    return GapStudy(
        rows, settings, outputs, texts, list(calibration), labels, list(test_frame["id"]), map_points
    )


# --------------------------------------------------------------------------- the variant sweep

ABLATION_REFERENCE = "loss terms: all terms"  # the default model, which every other variant is compared to


def ablation_variants(params) -> tuple[list, list]:
    """(trained, inference) variants of Diffusion-Link as (group, value, overrides): `trained` are fitted with
    DiffusionLinkConfig overrides, `inference` reuse the default model with transform() overrides. The
    profile gives the block counts, start steps and DDIM step counts to try."""
    from dlink.bridges.diffusion_link import DiffusionLinkConfig

    trained = [
        ("loss terms", name, TERM_VARIANTS[name])
        for name in ("all terms", "no text prior", "no cross-sample", "no topology")
    ]
    default_blocks = DiffusionLinkConfig().n_blocks  # its variant is the cached default model
    trained += [
        ("blocks", str(n), {"n_blocks": n} if n != default_blocks else {}) for n in params.profile.n_blocks
    ]
    trained += [
        ("centring", "modality (default)", {}),
        ("centring", "text", {"centre": "text"}),
        ("centring", "none", {"centre": "none"}),
        ("epochs", "2", {"epochs": 2}),
        ("epochs", "5", {"epochs": 5}),
        ("epochs", "early-stopped", {}),
        ("EMA", "off (default)", {}),
        ("EMA", "0.99", {"ema_decay": 0.99}),
    ]
    inference = [("start step k*", str(k), {"start_step": k}) for k in params.profile.start_steps]
    inference += [("DDIM steps", str(s), {"steps": s}) for s in params.profile.ddim_steps]
    inference += [
        ("start noise", "on (default)", {"start_noise": True}),
        ("start noise", "off", {"start_noise": False}),
    ]
    return trained, inference


def ablation_sweep(params, captioner, *, seed: int) -> list[dict]:
    """One row per variant of `ablation_variants` (after a raw-audio row and the fit-split rows), scored on
    the validation split of seed `seed`: centroid distance, separability, R@1 and the zero-shot `captioner`'s
    CIDEr-D, each with its paired difference to ABLATION_REFERENCE and a 95 % interval over the validation
    items (one seed: items only, paired, dlink.evaluation.stats)."""
    from dlink.evaluation.gap import gap_intervals, gap_report
    from dlink.evaluation.stats import paired_difference

    emb, frame = experiment.embeddings(params, seed=seed), experiment.splits(params)
    idx, refs = experiment.eval_subset(params, frame["val"])
    val = emb["val"]
    text = val["text"][:, 0]
    rows, outputs, items = [], {}, []

    def score(group: str, value: str, bridged: np.ndarray) -> None:
        g = gap_report(bridged, text, seed=seed)
        m, _ = experiment.caption_rows(params, captioner, {value: bridged[idx]}, refs, seed=seed)
        rows.append(
            {"ablation": group, "value": value, "centroid_distance": g["centroid_distance"],
             "separability": g["separability"], "a2t_R1": g["a2t_R1"], "CIDEr-D": m[0]["CIDEr-D"]}
        )  # fmt: skip
        outputs[f"{group}: {value}"] = [bridged]
        items.append(m[0]["CIDEr-D_items"])

    score("raw audio (no bridge)", "-", val["audio"])
    trained, inference = ablation_variants(params)
    for group, value, overrides in trained:
        link = experiment.fit_bridge(params, "diffusion_link", emb, seed=seed, **overrides)
        score(group, value, link.transform(val["audio"]))
    # the fit scenes (the encoder heads never saw them) against all train scenes (half of them are the
    # scenes the heads were trained on, where audio already sits on its text)
    default = experiment.fit_bridge(params, "diffusion_link", emb, seed=seed)
    score("fit split", "fit scenes (default)", default.transform(val["audio"]))
    if len(emb["enc"]["audio"]):
        all_train = experiment.fit_bridge(params, "diffusion_link", emb, seed=seed, split="train")
        score("fit split", "all train", all_train.transform(val["audio"]))
    for group, value, overrides in inference:
        score(group, value, default.transform(val["audio"], **overrides))

    gap = gap_intervals(outputs, [text], versus=ABLATION_REFERENCE, columns=("centroid_distance", "a2t_R1"))
    gap = {r["method"]: r for r in gap}
    reference_items = items[list(outputs).index(ABLATION_REFERENCE)]
    for row, key, its in zip(rows, outputs, items, strict=True):
        d = paired_difference(its, reference_items)
        for column in ("centroid_distance", "a2t_R1"):
            row |= {f"d_{column}{s}": gap[key][f"d_{column}{s}"] for s in ("", "_lo", "_hi")}
        row |= {"d_CIDEr-D": d[0], "d_CIDEr-D_lo": d[1], "d_CIDEr-D_hi": d[2]}
    return rows


# --------------------------------------------------------------------------- which term carries a claim

# Diffusion-Link's training terms switched off in turn: the two the paper names (cross-sample
# prediction, topology) and the text prior, the diffusion loss on text that our reconstruction adds
# (docs/METHOD.md). "all terms" is the model every table reports.
TERM_VARIANTS: dict[str, dict] = {
    "all terms": {},
    "no cross-sample": {"lambda_cross": 0.0},
    "no topology": {"lambda_topo": 0.0},
    "neither named term": {"lambda_cross": 0.0, "lambda_topo": 0.0},
    "no text prior": {"use_prior": False},
}


def term_ablation(params, emb: dict, captioner, settings: dict, idx, refs, *, seed: int) -> dict:
    """Test outputs of Diffusion-Link fitted with each of TERM_VARIANTS (seed `seed`'s encoder heads).

    Every variant is fitted on the fit scenes and bridges with the same inference `settings` (those the
    captioning tables use), so only the training terms differ. `captioner`: the zero-shot captioner;
    idx, refs: the scored test items (`eval_subset`).
    Returns {variant: {"bridged": (N, D) bridged test audio, "CIDEr-D_items": (len(idx),)}}.
    """
    from dlink.evaluation.metrics import cider_d_items

    out, preds = {}, {}
    for name, overrides in TERM_VARIANTS.items():
        bridge = experiment.fit_bridge(params, "diffusion_link", emb, seed=seed, **overrides)
        x = (bridge.configured(**settings) if settings else bridge).transform(emb["test"]["audio"])
        out[name] = {"bridged": x}
        preds[name] = captioner.generate(x[idx], beams=params.profile.beams)
    for name, items in cider_d_items(preds, refs).items():
        out[name]["CIDEr-D_items"] = items
    return out


TERM_COLUMNS = ("centroid_distance", "a2t_R1", "a2t_mAP_labels", "CIDEr-D")


def term_ablation_rows(
    per_seed: list[dict], texts: list, seeds, labels=None, versus: str = "all terms"
) -> list[dict]:
    """One row per variant of `term_ablation` over seeds: centroid distance, R@1, label mAP (with
    labels) and CIDEr-D (means over seeds and items) with 95 % intervals, and each one's paired
    difference to `versus` with its interval. Intervals resample seeds and items (dlink.evaluation.stats).

    per_seed: [term_ablation(...) of seed s]; texts: [(N, D) paired test text of seed s]; seeds: the
    training seeds; labels: N label-set strings or None.
    """
    from dlink.evaluation.gap import gap_intervals
    from dlink.evaluation.stats import bootstrap_ci, paired_difference

    names = list(per_seed[0])
    outputs = {n: [s[n]["bridged"] for s in per_seed] for n in names}
    gap = gap_intervals(
        outputs, texts, versus=versus, labels=labels, seeds=list(seeds), columns=TERM_COLUMNS[:3]
    )
    rows = []
    for name, g in zip(names, gap, strict=True):
        row = {"variant": name} | {k: v for k, v in g.items() if k != "method"}
        items = np.array([s[name]["CIDEr-D_items"] for s in per_seed])
        ref = np.array([s[versus]["CIDEr-D_items"] for s in per_seed])
        row |= dict(zip(("CIDEr-D", "CIDEr-D_lo", "CIDEr-D_hi"), bootstrap_ci(items), strict=True))
        row |= dict(
            zip(("d_CIDEr-D", "d_CIDEr-D_lo", "d_CIDEr-D_hi"), paired_difference(items, ref), strict=True)
        )
        rows.append(row)
    return rows


def term_ablation_study(params, versus: str = "all terms") -> list[dict]:
    """`term_ablation_rows` over the run's seeds: each seed's encoder heads, zero-shot captioner
    (notebook 05's, cached) and Diffusion-Link's inference settings chosen with it, then every
    TERM_VARIANTS fit; scored on the test items `experiment.eval_subset` picks."""
    test_frame = experiment.splits(params)["test"]
    idx, refs = experiment.eval_subset(params, test_frame)
    per_seed, texts = [], []
    for seed in params.seeds:
        emb = experiment.embeddings(params, seed=seed)
        captioner = zero_shot_captioner(params, seed=seed)
        chosen = experiment.bridged(params, emb, seed=seed, methods=["diffusion_link"], captioner=captioner)
        settings = chosen["diffusion_link"]["settings"]
        per_seed.append(term_ablation(params, emb, captioner, settings, idx, refs, seed=seed))
        texts.append(emb["test"]["text"][:, 0])
    return term_ablation_rows(
        per_seed, texts, seeds=params.seeds, labels=label_sets(test_frame), versus=versus
    )


def write_term_ablation(rows: list[dict], stem: Path, versus: str = "all terms") -> tuple[Path, Path]:
    """<stem>.csv (every number) and <stem>.md (value [CI] and difference to `versus` [CI]). Atomic."""
    import pandas as pd

    from dlink._io import atomic_write_text

    stem = Path(stem)
    csv_path = atomic_write_text(stem.with_name(stem.name + ".csv"), pd.DataFrame(rows).to_csv(index=False))
    from dlink.evaluation.gap import GAP_DIRECTIONS
    from dlink.evaluation.tables import direction_mark

    keys = [k for k in TERM_COLUMNS if k in rows[0]]
    names = {"centroid_distance": "centroid distance", "a2t_R1": "a2t R@1", "a2t_mAP_labels": "label mAP"}
    # CIDEr-D is no gap metric: higher is better
    head = {k: f"{names.get(k, k)} {direction_mark(GAP_DIRECTIONS.get(k, 'higher'))}" for k in keys}
    lines = [
        f"Diffusion-Link trained with each loss term switched off; test split, {rows[0]['n_seeds']} seed(s) x "
        f"{rows[0]['n_items']} items. Value [95 % CI] and the paired difference to `{versus}` [95 % CI]; "
        "(resolved) when that interval excludes 0. Same inference settings for every variant.",
        "",
        "| variant | " + " | ".join(f"{head[k]} | minus {versus}" for k in keys) + " |",
        "| --- |" + " ---: | ---: |" * len(keys),
    ]
    for r in rows:
        cells = []
        for k in keys:
            cells.append(f"{r[k]:.3f} [{r[f'{k}_lo']:.3f}, {r[f'{k}_hi']:.3f}]")
            if r["variant"] == versus:
                cells.append("-")
            else:
                resolved = " (resolved)" if r[f"d_{k}_lo"] > 0 or r[f"d_{k}_hi"] < 0 else ""
                cells.append(f"{r[f'd_{k}']:+.3f} [{r[f'd_{k}_lo']:+.3f}, {r[f'd_{k}_hi']:+.3f}]{resolved}")
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    md_path = atomic_write_text(stem.with_name(stem.name + ".md"), "\n".join(lines) + "\n")
    return csv_path, md_path


def resolved_differences(rows, versus: str, metrics=("centroid_distance", "a2t_R1", "CIDEr-D")) -> list[str]:
    """One line per ablation row: each paired difference to `versus` whose 95 % interval excludes 0
    ("resolved"), or "nothing resolved". rows: dicts (or a DataFrame's records) holding "ablation",
    "value" and d_<metric> / d_<metric>_lo / d_<metric>_hi, as `ablation_sweep` writes them."""
    lines = []
    for r in rows:
        name = f"{r['ablation']}: {r['value']}"
        if name == versus:
            continue
        moved = []
        for m in metrics:
            d, lo, hi = (r[f"d_{m}{s}"] for s in ("", "_lo", "_hi"))
            if lo > 0 or hi < 0:
                moved.append(f"{m} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        lines.append(f"{name}: " + ("; ".join(moved) if moved else "nothing resolved"))
    return lines


# --------------------------------------------------------------------------- shared by notebooks 05-07


def zero_shot_captioner(params, *, seed: int):
    """Seed `seed`'s zero-shot captioner: trained on the fit scenes' caption text embeddings, validated on
    the validation scenes' (notebook 05 fits it; notebooks 06 and 07 read it from the cache)."""
    from dlink.captioning.aac import caption_pairs

    emb, frame = experiment.embeddings(params, seed=seed), experiment.splits(params)
    fit = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
    val = caption_pairs(emb["val"]["text"], list(frame["val"]["captions"]))
    return experiment.fit_captioner(params, "zs-text", *fit, seed=seed, val=val)


# --------------------------------------------------------------------------- the captioning tables


@dataclass
class CaptioningStudy:
    """A captioning table's scores over seeds, as notebooks 05 and 06 write them."""

    records: list[dict]  # caption_rows' rows: one per decoder, method and seed (the supervised: fold means)
    samples: dict[str, list[str]]  # "decoder:method" -> the first seed's captions of the scored items
    settings: list[dict]  # zero-shot: each bridge's inference settings chosen on validation CIDEr-D, per seed
    captioner: object | None  # zero-shot: the last seed's text-trained captioner (its loss curves)


def capdec_noise_sweep(params) -> list[dict]:
    """CapDec's noise variance on validation: one captioner per `params.noise_variances` entry, trained on
    the first seed's noised fit text and fed its raw validation audio; rows of variance and val CIDEr-D."""
    import math

    from dlink.captioning.aac import caption_pairs

    seed = params.seeds[0]
    emb, frame = experiment.embeddings(params, seed=seed), experiment.splits(params)
    fit = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
    idx, refs = experiment.eval_subset(params, frame["val"])
    rows = []
    for variance in params.noise_variances:
        noisy = experiment.fit_captioner(
            params, "zs-text-noise", *fit, seed=seed, noise_std=math.sqrt(variance)
        )
        m, _ = experiment.caption_rows(
            params, noisy, {"noise_injection": emb["val"]["audio"][idx]}, refs, seed=seed
        )
        rows.append({"variance": variance, "val CIDEr-D": m[0]["CIDEr-D"]})
    return rows


def zero_shot_study(params, idx, refs, noise_variance: float) -> CaptioningStudy:
    """Zero-shot captioning of the test items `idx` (references `refs`), every captioning seed: the
    text-trained captioner fed each bridge's output and the text oracle, CapDec's noise-trained captioners
    (the published variance and `noise_variance`, chosen on validation) fed raw audio, and nearest-caption
    retrieval fed the same inputs as the captioner. Each bridge's inference settings are chosen on that
    seed's captioner's validation CIDEr-D."""
    import math

    from dlink.bridges.baselines import BRIDGES
    from dlink.captioning.aac import caption_pairs
    from dlink.captioning.captioner import RetrievalCaptioner

    frame = experiment.splits(params)
    variances = {"noise_injection": experiment.CAPDEC_NOISE_VARIANCE, "noise_injection_val": noise_variance}
    records, samples, settings, captioner = [], {}, [], None
    for seed in params.seeds[: params.caption_seeds]:
        emb = experiment.embeddings(params, seed=seed)
        fit = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
        captioner = zero_shot_captioner(params, seed=seed)
        nearest = RetrievalCaptioner().fit(*fit)
        out = experiment.bridged(params, emb, seed=seed, captioner=captioner)
        settings += [
            {"method": m, "seed": seed, "settings": out[m]["settings"], "scores": out[m]["scores"]}
            for m in BRIDGES
        ]
        inputs = {m: out[m]["test"][idx] for m in BRIDGES} | {"text_oracle": emb["test"]["text"][idx, 0]}
        runs = [("generative", captioner, inputs)]
        for row, variance in variances.items():  # CapDec: trained on noised text, fed raw audio
            noisy = experiment.fit_captioner(
                params, "zs-text-noise", *fit, seed=seed, noise_std=math.sqrt(variance)
            )
            runs.append(("generative", noisy, {row: emb["test"]["audio"][idx]}))
        runs.append(("retrieval", nearest, inputs))
        for decoder, model, model_inputs in runs:
            rows, preds = experiment.caption_rows(
                params, model, model_inputs, refs, seed=seed, decoder=decoder
            )
            records += rows
            if seed == params.seeds[0]:
                samples |= {f"{decoder}:{k}": v for k, v in preds.items()}
    return CaptioningStudy(records, samples, settings, captioner)


def supervised_study(params, idx, refs) -> CaptioningStudy:
    """Supervised captioning of the test items `idx`, every captioning seed: one captioner per arm, trained
    on the fit scenes' raw audio (identity) or their cross-fitted Diffusion-Link output (each scene bridged by
    the fold bridge that did not see it; the test audio by every fold bridge in turn, scores averaged over
    the folds), with Diffusion-Link's inference settings from its zero-shot captioner's validation choice;
    nearest-caption retrieval over the same inputs beside each."""
    from dlink.captioning.aac import caption_pairs, mean_over_folds
    from dlink.captioning.captioner import RetrievalCaptioner

    frame = experiment.splits(params)
    captions = list(frame["fit"]["captions"])
    first_captions = [c[0] for c in captions]
    records, samples = [], {}
    for seed in params.seeds[: params.caption_seeds]:
        emb = experiment.embeddings(params, seed=seed)
        zero_shot = zero_shot_captioner(params, seed=seed)
        bridged = experiment.bridged(params, emb, seed=seed, methods=["diffusion_link"], captioner=zero_shot)
        settings = bridged["diffusion_link"]["settings"]
        arms = [("identity", emb["fit"]["audio"], emb["test"]["audio"][None])]
        for k, folds in enumerate((params.cross_fit_folds, *params.extra_cross_fit_folds)):
            link = experiment.cross_fitted(
                params, "diffusion_link", emb, seed=seed, folds=folds, settings=settings
            )
            arms.append(
                ("diffusion_link" if k == 0 else f"diffusion_link ({folds}-fold)", link["fit"], link["test"])
            )
        for name, train, tests in arms:
            captioner = experiment.fit_captioner(
                params, f"sup-{name}", *caption_pairs(train, captions), seed=seed
            )
            nearest = RetrievalCaptioner().fit(train, first_captions)
            for decoder, model in [("generative", captioner), ("retrieval", nearest)]:
                folds_in = {f"fold {f}": test[idx] for f, test in enumerate(tests)}
                rows, preds = experiment.caption_rows(
                    params, model, folds_in, refs, seed=seed, decoder=decoder
                )
                records.append(mean_over_folds(rows, method=name))
                if seed == params.seeds[0]:
                    samples[f"{decoder}:{name}"] = preds["fold 0"]
    return CaptioningStudy(records, samples, [], None)
