"""dlink.aac: pairing captions with embeddings and writing sample tables."""

import numpy as np
import pandas as pd
import pytest

from dlink.aac import pairs_from_split, subsample, write_samples


def test_pairs_from_split_2d_and_3d():
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    caps = [["a", "b"], ["c"], ["d", "e", "f"]]
    x, flat = pairs_from_split(emb, caps)
    assert flat == list("abcdef") and x[:, 0].tolist() == [0, 0, 2, 4, 4, 4]
    emb3 = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    x3, flat3 = pairs_from_split(emb3, caps)
    assert flat3 == flat and x3[:, 0].tolist() == [0, 2, 6, 12, 14, 16]
    with pytest.raises(ValueError, match="3 lists"):
        pairs_from_split(emb, caps[:2])
    with pytest.raises(ValueError, match=r"\[1\]"):
        pairs_from_split(emb, [["a"], [], ["b"]])


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
