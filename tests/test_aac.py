"""dlink.captioning.aac: pairing captions with embeddings and writing sample tables."""

import numpy as np
import pandas as pd
import pytest

from dlink.captioning.aac import caption_pairs, subsample, write_samples


def test_caption_pairs_2d_and_3d():
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    caps = [["a", "b"], ["c"], ["d", "e", "f"]]
    x, flat = caption_pairs(emb, caps)
    assert flat == list("abcdef") and x[:, 0].tolist() == [0, 0, 2, 4, 4, 4]
    emb3 = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    x3, flat3 = caption_pairs(emb3, caps)
    assert flat3 == flat and x3[:, 0].tolist() == [0, 2, 6, 12, 14, 16]
    with pytest.raises(ValueError, match="3 lists"):
        caption_pairs(emb, caps[:2])
    with pytest.raises(ValueError, match=r"\[1\]"):
        caption_pairs(emb, [["a"], [], ["b"]])


def test_subsample_is_seeded():
    a, b = subsample(100, 10, seed=3), subsample(100, 10, seed=3)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10
    assert subsample(5, None).tolist() == [0, 1, 2, 3, 4]


def test_write_samples(tmp_path):
    refs = [["a dog barks", "dog | barking"], ["rain falls"]]
    preds = {"none": ["a cat", "wind"], "diffusion_link": ["a dog barks", "rain"]}
    csv_path, md_path = write_samples("zs", ["x1", "x2"], refs, preds, folder=tmp_path)
    df = pd.read_csv(csv_path)
    assert df.columns.tolist() == ["id", "none", "diffusion_link", "references"]
    assert df["diffusion_link"].tolist() == ["a dog barks", "rain"]
    assert "dog \\| barking" in md_path.read_text()
    with pytest.raises(ValueError, match="none"):
        write_samples("zs", ["x1", "x2"], refs, {"none": ["only one"]}, folder=tmp_path)


def test_summarize_gives_intervals_and_paired_gains(tmp_path):
    from dlink.captioning.aac import summarize, write_results

    rng = np.random.default_rng(0)
    base = rng.exponential(0.5, size=(3, 120))  # 3 seeds x 120 items
    metrics = {"BLEU-1": 0.5, "BLEU-4": 0.1, "METEOR": 0.2, "ROUGE-L": 0.4, "distinct": 1.0}
    records = []
    for method, scale in (("identity", 1.0), ("diffusion_link", 1.5)):
        for seed in range(3):
            items = base[seed] * scale
            records.append({"decoder": "generative", "method": method, "seed": seed, **metrics,
                            "CIDEr-D": items.mean(), "CIDEr-D_items": items.tolist()})  # fmt: skip
    s = {r["method"]: r for r in summarize(records)}
    assert s["diffusion_link"]["gain"] == pytest.approx(0.5)
    assert s["diffusion_link"]["gain_lo"] == pytest.approx(0.5)  # exact scaling: a zero-width interval
    assert "gain" not in s["identity"] and s["identity"]["n_seeds"] == 3
    assert s["identity"]["cider_lo"] < base.mean() < s["identity"]["cider_hi"]
    csv_path, md_path = write_results(records, tmp_path / "aac", title="t")
    text = md_path.read_text()
    assert "120 test items x 3 seed(s)" in text and "+50.0 % [+50.0, +50.0]" in text
    assert pd.read_csv(csv_path).shape[0] == 2

    assert (
        s["identity"]["d_CIDEr-D"] == pytest.approx(-0.5 * base.mean())
        and s["identity"]["d_CIDEr-D_resolved"]
    )
    assert "d_CIDEr-D" not in s["diffusion_link"] and "seeds and test items" in text and "(resolved)" in text
    items = pd.read_csv(tmp_path / "items" / "aac.csv.gz")
    assert items.shape == (2 * 3 * 120, 5) and list(items.columns) == [
        "seed",
        "item",
        "decoder",
        "method",
        "CIDEr-D",
    ]
    one = items[(items["method"] == "identity") & (items["seed"] == 1)]["CIDEr-D"].to_numpy()
    assert np.allclose(one, base[1], rtol=1e-5)
    with pytest.raises(ValueError, match="ids"):
        write_results(records, tmp_path / "aac", ids=["a"])
    other = [r | {"seed": r["seed"] + 3} if r["method"] == "diffusion_link" else r for r in records]
    s = {r["method"]: r for r in summarize(other)}  # other seeds: no pairing, no gain or difference
    assert "gain" not in s["diffusion_link"] and "d_CIDEr-D" not in s["identity"]


def test_mean_over_folds_averages_every_score_and_the_items():
    from dlink.captioning.aac import mean_over_folds

    r = [
        {"decoder": "generative", "method": "fold 0", "seed": 1, "CIDEr-D": 0.2, "CIDEr-D_items": [0.0, 0.4]},
        {"decoder": "generative", "method": "fold 1", "seed": 1, "CIDEr-D": 0.6, "CIDEr-D_items": [1.0, 0.2]},
    ]
    out = mean_over_folds(r, method="diffusion_link")
    assert out["method"] == "diffusion_link" and out["seed"] == 1 and out["n_folds"] == 2
    assert out["CIDEr-D"] == pytest.approx(0.4)
    assert out["CIDEr-D_items"] == pytest.approx([0.5, 0.3])
    with pytest.raises(ValueError, match="at least one"):
        mean_over_folds([], method="x")
