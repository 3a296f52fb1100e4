"""The UMAP embedding figure: files written, shared map deterministic, bad input rejected."""

from __future__ import annotations

import numpy as np
import pytest

from dlink.plots import _umap_2d, plot_embedding_map


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    text = _unit(rng.standard_normal((40, 16)))
    audio = _unit(text + 2.0 + 0.3 * rng.standard_normal((40, 16)))  # a gap along (1, ..., 1)
    shifted = _unit(audio - audio.mean(0) + text.mean(0))
    return text, audio, {"identity": audio, "mean_shift": shifted}


def test_writes_png_and_pdf(tmp_path, sets):
    text, audio, bridged = sets
    png, pdf = plot_embedding_map(
        text, audio, bridged, tmp_path / "map", n_pairs=3, n_epochs=50, progress=False
    )
    assert (png, pdf) == (tmp_path / "map.png", tmp_path / "map.pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.pdf", "map.png"]  # no temp files left


def test_relative_stem_goes_to_figures_and_no_methods_ok(tmp_path, sets, monkeypatch):
    from dlink import paths

    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figs")
    text, audio, _ = sets
    png, pdf = plot_embedding_map(text, audio, {}, "raw_only", n_epochs=20, progress=False)
    assert png == tmp_path / "figs" / "raw_only.png" and pdf.is_file()


def test_umap_is_deterministic_for_a_seed(sets):
    text, audio, _ = sets
    x = np.concatenate([text, audio])
    a = _umap_2d(x, 0, 50, 15, 0.1, 30, False)
    b = _umap_2d(x, 0, 50, 15, 0.1, 30, False)
    assert a.shape == (80, 2) and np.array_equal(a, b)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bridged": {"m": np.ones((39, 16))}}, r"bridged\['m'\] must have the shape"),
        ({"text": np.ones((40, 8))}, "text must have the shape"),
        ({"audio": np.full((40, 16), np.nan)}, "NaN/inf"),
        ({"bridged": [np.ones((40, 16))]}, "dict"),
        ({"n_pairs": -1}, "n_pairs"),
    ],
)
def test_bad_input_raises(tmp_path, sets, change, match):
    text, audio, bridged = sets
    kwargs = {"text": text, "audio": audio, "bridged": bridged, "out_stem": tmp_path / "x"} | change
    with pytest.raises(ValueError, match=match):
        plot_embedding_map(**kwargs)
