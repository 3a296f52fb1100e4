"""dlink.evaluation.metrics: the wrapper reproduces pycocoevalcap / aac-metrics numbers and rejects bad input."""

from pathlib import Path

import pandas as pd
import pytest

from dlink.evaluation import metrics
from dlink.evaluation.metrics import UNAVAILABLE, caption_metrics, relative_gain

FIXTURE = Path(__file__).parent / "fixtures" / "aac_metrics_example_1_head50.csv"


@pytest.fixture(scope="module")
def example():
    df = pd.read_csv(FIXTURE)
    return df["caption_predicted"].tolist(), df[[f"caption_{i}" for i in range(1, 6)]].values.tolist()


@pytest.fixture(scope="module")
def scores(example):
    return caption_metrics(*example)


def test_matches_published_numbers(scores):
    # aac-metrics 0.6.0 and pycocoevalcap 1.2 both give these on the first 50 items of example_1.csv.
    expected = {"BLEU-1": 0.504, "BLEU-4": 0.163, "METEOR": 0.189, "ROUGE-L": 0.396, "CIDEr-D": 0.424}
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-3), key
    assert scores["n_items"] == 50


def test_matches_direct_pycocoevalcap(example, scores):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    preds, refs = example
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    assert scores["BLEU-2"] == pytest.approx(Bleu(4).compute_score(gts, res, verbose=0)[0][1], abs=1e-12)
    assert scores["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    assert scores["CIDEr-D"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)


def test_unavailable_metrics_are_labelled_not_faked(scores):
    for key in ("SPICE", "SPIDEr", "FENSE"):
        assert scores[key] == UNAVAILABLE
        assert scores["notes"][key]
    assert "CoreNLP 3.6.0" in scores["notes"]["SPICE"]


def test_perfect_and_empty_predictions(example):
    preds, refs = example
    perfect = caption_metrics([r[0] for r in refs[:10]], refs[:10])
    assert perfect["BLEU-1"] > 0.99 and perfect["CIDEr-D"] > 1.0
    # An empty caption scores 0 on its own and must not shift the alignment of the others.
    one = caption_metrics(["", preds[1]], refs[:2])
    assert 0.0 <= one["CIDEr-D"] < 10


@pytest.mark.parametrize(
    "preds, refs, match",
    [
        (["a dog"], [[]], r"references\[0\] is empty"),
        (["a dog", 3], [["a dog"], ["a cat"]], r"predictions\[1\] is int"),
        (["a dog"], [["a dog"], ["a cat"]], "1 items but references has 2"),
        (["a dog"], [["a dog", None]], r"references\[0\]\[1\]"),
        ("a dog", [["a dog"]], "list of strings"),
        ([], [], "empty"),
    ],
)
def test_bad_inputs(preds, refs, match):
    with pytest.raises(ValueError, match=match):
        caption_metrics(preds, refs)


def test_missing_java_names_the_package(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install openjdk-17-jre-headless"):
        caption_metrics(["a dog"], [["a dog barks"]])


def test_relative_gain():
    assert relative_gain(0.305, 0.2) == pytest.approx(0.525)
    assert relative_gain(0.2, 0.2) == 0.0
    with pytest.raises(ValueError, match="without"):
        relative_gain(0.3, 0.0)
    with pytest.raises(ValueError, match="with_"):
        relative_gain("unavailable", 0.2)
