"""The UMAP embedding figure: files written, shared map deterministic, bad input rejected."""

from __future__ import annotations

import numpy as np
import pytest

from dlink.evaluation.plots import _umap_2d, plot_embedding_map


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


def test_save_figure_writes_each_format_atomically_and_stays_in_figures(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from dlink import paths
    from dlink.evaluation.plots import save_figure

    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figs")
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    png, pdf = save_figure(fig, "losses")
    assert (png, pdf) == (tmp_path / "figs" / "losses.png", tmp_path / "figs" / "losses.pdf")
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    assert save_figure(fig, "losses")[1].read_bytes() == pdf.read_bytes()  # no creation date inside
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "losses.pdf",
        "losses.png",
    ]  # no temp files
    for bad in ("../losses", "a/../../losses"):
        with pytest.raises(ValueError, match="stem"):
            save_figure(fig, bad)
    with pytest.raises(ValueError, match="formats"):
        save_figure(fig, "x", formats="png")
    assert not (tmp_path / "losses.png").exists()


def test_out_stem_may_not_leave_figures(tmp_path, sets, monkeypatch):
    from dlink import paths

    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figs")
    text, audio, bridged = sets
    with pytest.raises(ValueError, match="out_stem"):
        plot_embedding_map(text, audio, bridged, "../escaped", n_epochs=10, progress=False)
    assert not list(tmp_path.rglob("*.png"))


def test_plot_gains_draws_each_row_with_its_interval_and_says_when_there_is_none():
    from dlink.evaluation.plots import plot_gains

    rows = [
        {"decoder": "generative", "method": "identity"},
        {"decoder": "generative", "method": "ridge", "gain": 0.1, "gain_lo": 0.0, "gain_hi": 0.2},
        {"decoder": "generative", "method": "diffusion_link", "gain": 0.2, "gain_lo": 0.1, "gain_hi": 0.3},
        {"decoder": "generative", "method": "text_oracle", "gain": 1.7, "gain_lo": 1.4, "gain_hi": 2.0},
        {"decoder": "retrieval", "method": "ridge", "gain": 0.05, "gain_lo": -0.1, "gain_hi": 0.2},
    ]
    fig = plot_gains(rows)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["diffusion_link", "ridge"]
    assert "+170 %" in ax.get_title()  # the oracle is named, not drawn
    assert fig.get_size_inches()[0] <= 10
    empty = plot_gains([{"decoder": "generative", "method": "identity"}])
    assert "no generative row" in empty.axes[0].texts[0].get_text()


# ---------------------------------------------------------------- ablations, loss curves, sizes


def _ablations_table(n_groups=3):
    import pandas as pd

    rows = []
    for g in range(n_groups):
        for v, shift in (("default", 0.0), ("other", 0.05 * (g + 1))):
            row = {"ablation": f"group {g}", "value": v, "centroid_distance": 0.2 + shift}
            for d in ("d_centroid_distance", "d_a2t_R1", "d_CIDEr-D"):
                row.update({d: shift, f"{d}_lo": shift - 0.01 - 0.1 * (g == 0), f"{d}_hi": shift + 0.01})
            rows.append(row)
    return pd.DataFrame(rows)


def test_ablations_are_a_narrow_grid_with_every_interval(tmp_path):
    from dlink.evaluation.plots import MAX_WIDTH_IN, plot_ablations

    df = _ablations_table()
    fig = plot_ablations(df, tmp_path / "abl")
    assert fig.get_size_inches()[0] <= MAX_WIDTH_IN
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 3  # one per metric, side by side
    for ax in panels:
        # every variant's interval is drawn: error-bar segments span exactly [lo, hi]
        segs = [s for c in ax.collections for s in c.get_segments()]
        spans = sorted((round(s[:, 0].min(), 6), round(s[:, 0].max(), 6)) for s in segs)
        want = sorted(
            (round(lo, 6), round(hi, 6)) for lo, hi in zip(df["d_a2t_R1_lo"], df["d_a2t_R1_hi"], strict=True)
        )
        assert spans == want
        assert ax.get_xlabel().startswith("Δ")
    assert [t.get_text() for t in panels[0].get_yticklabels()][0] == "group 0: default"
    assert (tmp_path / "abl.png").is_file() and (tmp_path / "abl.pdf").is_file()
    with pytest.raises(ValueError, match="d_a2t_R1_lo"):
        plot_ablations(df.drop(columns="d_a2t_R1_lo"))


def test_loss_curves_pair_train_and_validation_by_colour():
    from dlink.evaluation.plots import plot_loss_curves

    h = {"total": [3.0, 2.0, 1.0], "val_total": [3.5, 2.5, 1.5], "topo": [0.3, 0.2, 0.1]}
    cap = {"train_loss": list(np.linspace(3, 1, 12)), "val_loss": [2.5, 2.0, 1.6]}
    fig = plot_loss_curves({"bridge": h, "captioner": cap})
    ax_b, ax_c = [ax for ax in fig.axes if ax.axison]
    lines = {ln.get_label(): ln for ln in ax_b.get_lines()}
    assert lines["total (train)"].get_color() == lines["total (val)"].get_color()
    assert lines["total (train)"].get_color() != lines["topo (train)"].get_color()
    assert lines["total (train)"].get_linestyle() == "-" and lines["total (val)"].get_linestyle() == "--"
    assert ax_b.get_xlabel() == "epoch" and ax_b.get_ylabel() == "loss"
    # 12 steps over 3 epochs: the per-step curve ends at epoch 3, where the last validation point is
    train = {ln.get_label(): ln for ln in ax_c.get_lines()}["loss (train)"]
    assert train.get_xdata()[-1] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="histories"):
        plot_loss_curves({})
    # a history in another key order (as read back from a cache) draws the same figure
    again = plot_loss_curves({"bridge": dict(reversed(h.items())), "captioner": cap})
    colours = [(ln.get_label(), ln.get_color()) for ln in ax_b.get_lines()]
    assert [(ln.get_label(), ln.get_color()) for ln in again.axes[0].get_lines()] == colours


def _png_width_in(path):
    from PIL import Image

    with Image.open(path) as im:
        dpi = im.info.get("dpi", (200, 200))[0]  # save_figure and _write_png_pdf write pHYs
        return im.size[0] / dpi


@pytest.mark.parametrize(
    "png", sorted((__import__("dlink").paths.FIGURES).glob("*.png")), ids=lambda p: p.name
)
def test_committed_figures_fit_notebook_width(png):
    from dlink.evaluation.plots import MAX_WIDTH_IN

    width = _png_width_in(png)
    assert width <= MAX_WIDTH_IN + 0.01, (
        f"{png.name} is {width:.1f} in wide (> {MAX_WIDTH_IN}); redraw it with dlink.evaluation.plots' functions"
    )
