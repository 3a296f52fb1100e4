"""The measurements behind notebooks 04 and 07, as functions: the gap table over every seed and the
one-seed sweep of Diffusion-Link's variants. The notebooks call these and write, print and plot what
comes back; everything they fit is cached by dlink.experiment, so a rerun only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        ("loss terms", "all terms", {}),
        ("loss terms", "no prior", {"use_prior": False}),
        ("loss terms", "no cross", {"lambda_cross": 0.0}),
        ("loss terms", "no topology", {"lambda_topo": 0.0}),
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


def ablation_sweep(params, seed: int, captioner) -> list[dict]:
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
        m, _ = experiment.caption_rows(params, captioner, {value: bridged[idx]}, refs, seed)
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
        for short, column in (("centroid", "centroid_distance"), ("R1", "a2t_R1")):
            row |= {f"d_{short}{s}": gap[key][f"d_{column}{s}"] for s in ("", "_lo", "_hi")}
        row |= {"d_CIDEr-D": d[0], "d_CIDEr-D_lo": d[1], "d_CIDEr-D_hi": d[2]}
    return rows


# --------------------------------------------------------------------------- shared by notebooks 05-07


def zero_shot_captioner(params, seed: int):
    """Seed `seed`'s zero-shot captioner: trained on the fit scenes' caption text embeddings, validated on
    the validation scenes' (notebook 05 fits it; notebooks 06 and 07 read it from the cache)."""
    from dlink.captioning.aac import caption_pairs

    emb, frame = experiment.embeddings(params, seed=seed), experiment.splits(params)
    fit = caption_pairs(emb["fit"]["text"], list(frame["fit"]["captions"]))
    val = caption_pairs(emb["val"]["text"], list(frame["val"]["captions"]))
    return experiment.fit_captioner(params, "zs-text", *fit, seed=seed, val=val)
