"""The project's figures: the embedding map, the ablation intervals and the loss curves.

Every figure is at most MAX_WIDTH_IN wide, so it stays legible at notebook and README width.

The embedding map is one UMAP of text, raw audio and each method's bridged audio. A single UMAP is fitted on the union of every set, so all panels share one 2-D map and one pair of
axis limits: a reader can compare where each method moves the audio cloud. The paper's claim to
see is "a collective migration of audio embeddings toward the text distribution".
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dlink import paths
from dlink._io import atomic_write_bytes, path_under
from dlink.arrays import as_embeddings, normalize_rows

_COLORS = {"text": "#1f77b4", "audio": "#9a9a9a", "bridged": "#d62728"}
_MIN_PAIRS = 5
MAX_WIDTH_IN = 10.0  # a figure wider than this is unreadable when a notebook or README shrinks it


def _check(x, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(N, D) float32, L2-normalised rows; the same checks as gap_report, plus an optional shape."""
    arr = as_embeddings(x, name)
    if shape is not None and arr.shape != shape:
        raise ValueError(
            f"{name} must have the shape of `audio` {shape} (row i = bridged audio i); got {arr.shape}"
        )
    try:
        return normalize_rows(arr).astype(np.float32)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from e


def _umap_2d(
    x: np.ndarray, seed: int, pca_dims: int, n_neighbors: int, min_dist: float, n_epochs, progress: bool
) -> np.ndarray:
    """(n, D) unit vectors -> (n, 2) UMAP coordinates; deterministic for a seed.

    PCA to `pca_dims` first: on unit vectors, Euclidean distance is a monotone function of cosine,
    and the PCA keeps the leading structure while making the neighbour search several times faster.
    The exact kNN graph comes from sklearn (BLAS brute force) and is handed to UMAP: that skips
    numba-compiling UMAP's own neighbour search (~15 s on a cold start, every new process).
    """
    import umap
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    if pca_dims and x.shape[1] > pca_dims and x.shape[0] > pca_dims:
        # sklearn's PCA solves a D x D eigenproblem here; threaded OpenBLAS on busy cores made
        # it 30x slower (9 s vs 0.3 s on 20,000 x 512, measured), so one thread
        with threadpool_limits(limits=1, user_api="blas"):
            x = PCA(n_components=pca_dims, random_state=seed).fit_transform(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = min(n_neighbors, x.shape[0] - 1)
    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(x)  # self first
    with warnings.catch_warnings():
        # a fixed random_state makes umap single-threaded and it warns about it: that is the point
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        # we never call .transform on new data, so the missing search index does not matter
        warnings.filterwarnings("ignore", message=".*knn_search_index.*", category=UserWarning)
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=k,
            precomputed_knn=(idx, dist.astype(np.float32), None),
            min_dist=min_dist,
            n_epochs=n_epochs,
            metric="euclidean",
            random_state=seed,
            tqdm_kwds={"disable": not progress, "desc": "UMAP epochs"},
        )
        return reducer.fit_transform(x).astype(np.float64)


def _out_stem(out_stem, arg: str = "out_stem") -> Path:
    return path_under(paths.FIGURES, out_stem, arg)


def save_figure(
    fig, stem: str | os.PathLike, formats=("png", "pdf"), dpi: int = 200, **savefig_kw
) -> list[Path]:
    """Write a matplotlib figure as <stem>.<ext> for each format, atomically; return the paths.

    stem: relative stems go under dlink.paths.FIGURES (they may not climb out of it), absolute ones
    are used as is. Each file is rendered in memory and renamed into place, so a reader or a killed
    run never sees half a figure; PDFs carry no creation date, so reruns give identical bytes.
    """
    out = _out_stem(stem, "stem")
    if isinstance(formats, str) or not formats or not all(isinstance(f, str) and f for f in formats):
        raise ValueError(f"formats must be a list of extensions such as ('png', 'pdf'); got {formats!r}")
    written = []
    for ext in formats:
        kw = {"dpi": dpi, **savefig_kw}
        if ext == "pdf":
            kw.setdefault("metadata", {"CreationDate": None})
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, **kw)
        written.append(atomic_write_bytes(out.parent / f"{out.name}.{ext}", buf.getvalue()))
    return written


def plot_gains(summary: list[dict], title: str = "", decoder: str = "generative"):
    """A forest plot of each row's relative CIDEr-D gain over no bridge with its 95 % interval.

    summary: `dlink.captioning.aac.summarize` rows (keys decoder, method, gain, gain_lo, gain_hi); rows of other
    decoders and rows without a gain are left out; Diffusion-Link is drawn in its own colour. The text
    oracle's gain is far off the scale of the bridges', so it is written in the title instead of drawn.
    With no gain to draw, the figure says so. Returns the figure (6.5 in wide: legible at notebook and README width)."""
    import matplotlib.pyplot as plt

    rows = [r for r in summary if r["decoder"] == decoder and np.isfinite(r.get("gain", np.nan))]
    oracle = [r for r in rows if r["method"] == "text_oracle"]
    rows = [r for r in rows if r["method"] != "text_oracle"][::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.38 * max(len(rows), 2) + 1.2))
    if not rows:  # e.g. no bridge scored above 0 without one (a smoke run): say so, draw nothing
        ax.text(
            0.5,
            0.5,
            f"no {decoder} row has a relative gain (its no-bridge CIDEr-D is 0)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    for i, r in enumerate(rows):
        colour = "#c44e52" if r["method"].startswith("diffusion_link") else "#4c72b0"
        g, lo, hi = (100 * r[k] for k in ("gain", "gain_lo", "gain_hi"))
        ax.errorbar(g, i, xerr=[[g - lo], [hi - g]], fmt="o", color=colour, capsize=3)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(rows)), [r["method"] for r in rows])
    ax.set_xlabel("relative CIDEr-D gain over no bridge, % (95 % CI)")
    note = f" (text oracle: {100 * oracle[0]['gain']:+.0f} %)" if oracle else ""
    ax.set_title((title or "Zero-shot captioning") + note, fontsize=10)
    fig.tight_layout()
    return fig


def plot_embedding_map(
    text,
    audio,
    bridged: Mapping[str, np.ndarray],
    out_stem: str | os.PathLike = "embedding_map",
    seed: int = 0,
    n_pairs: int = 6,
    max_points: int | None = None,
    ncols: int = 4,
    pca_dims: int = 50,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    n_epochs: int | None = 200,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Plot text, raw audio and bridged audio on one shared UMAP; write PNG + PDF.

    text, audio: (N, D) paired embeddings (row i of each is one pair). bridged: method name ->
    (N, D) bridged audio, row i = bridge(audio[i]); one panel per method, in dict order (an empty
    dict gives a single panel of text and raw audio). All rows are L2-normalised first.
    out_stem: relative stems go under dlink.paths.FIGURES; writes <stem>.png (200 dpi) and
    <stem>.pdf (points rasterised, text and lines vector) atomically.
    seed: picks the subsample and the highlighted pairs and seeds PCA and UMAP (same seed, same
    figure). n_pairs: pairs drawn as audio -> bridged (solid) and bridged -> paired text (dotted).
    max_points: pairs kept (seeded subsample; None = all, the caller sized it). The UMAP sees N * (2 + methods) points.
    Measured on the 2-core dev machine while other jobs loaded it (load 5-9): 2,000 pairs x 8
    methods (20,000 points, D = 512) took 30-33 s in a fresh process (numba JIT included) and
    19-21 s on a second call; the UMAP epochs dominate (n_epochs=100 roughly halves that part).
    Returns (png_path, pdf_path).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stem = _out_stem(out_stem)  # a bad stem fails before the UMAP, not after
    audio = _check(audio, "audio")
    text = _check(text, "text", audio.shape)
    if not isinstance(bridged, Mapping):
        raise ValueError(f"bridged must be a dict method name -> (N, D) array; got {type(bridged).__name__}")
    methods = {str(k): _check(v, f"bridged[{k!r}]", audio.shape) for k, v in bridged.items()}
    n = audio.shape[0]
    if n < _MIN_PAIRS:
        raise ValueError(f"need at least {_MIN_PAIRS} pairs to draw a map; got {n}")
    if max_points is not None and max_points < _MIN_PAIRS:
        raise ValueError(f"max_points must be >= {_MIN_PAIRS} or None; got {max_points}")
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0; got {n_pairs}")

    rng = np.random.default_rng(seed)
    keep = (
        np.arange(n)
        if max_points is None or n <= max_points
        else np.sort(rng.choice(n, max_points, replace=False))
    )
    m = len(keep)
    sets = [text[keep], audio[keep], *(v[keep] for v in methods.values())]
    xy = _umap_2d(np.concatenate(sets), seed, pca_dims, n_neighbors, min_dist, n_epochs, progress)
    xy_text, xy_audio = xy[:m], xy[m : 2 * m]
    xy_bridged = {name: xy[(2 + j) * m : (3 + j) * m] for j, name in enumerate(methods)}
    pairs = rng.choice(m, min(n_pairs, m), replace=False)

    panels = list(methods) or ["raw audio"]
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    side = min(3.0, MAX_WIDTH_IN / ncols)
    fig = Figure(figsize=(side * ncols, side * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    lo, hi = xy.min(0), xy.max(0)
    pad = 0.04 * (hi - lo)
    limits = (lo - pad, hi + pad)
    size = float(np.clip(3000.0 / m, 1.0, 12.0))  # dense clouds need small dots
    for idx, ax in enumerate(axes.flat):
        if idx >= len(panels):
            ax.set_axis_off()
            continue
        name = panels[idx]
        _draw_panel(ax, name, xy_text, xy_audio, xy_bridged.get(name), pairs, size, limits)
        if idx % ncols == 0:
            ax.set_ylabel("UMAP 2", fontsize=8)
        if idx // ncols == nrows - 1 or idx + ncols >= len(panels):
            ax.set_xlabel("UMAP 1", fontsize=8)
    handles = _legend_handles(bridged=bool(methods))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=8)
    return _write_png_pdf(fig, stem)


def _draw_panel(ax, name, xy_text, xy_audio, b, pairs, size, limits) -> None:
    """One method's panel: the text, raw-audio and bridged clouds (b: (m, 2) or None for raw audio
    alone) and the highlighted pairs audio -> bridged (solid) and bridged -> paired text (dotted)."""
    kw = dict(s=size, linewidths=0, rasterized=True)
    ax.scatter(*xy_audio.T, c=_COLORS["audio"], alpha=0.35, **kw)
    ax.scatter(*xy_text.T, c=_COLORS["text"], alpha=0.35, **kw)
    if b is not None:
        ax.scatter(*b.T, c=_COLORS["bridged"], alpha=0.45, **kw)
    edge = dict(edgecolors="black", linewidths=0.6, zorder=3)
    for i in pairs:
        end = b[i] if b is not None else xy_text[i]
        ax.plot(*np.c_[xy_audio[i], end], color="black", lw=0.8)
        if b is not None:
            ax.plot(*np.c_[b[i], xy_text[i]], color="black", lw=0.8, ls=":")
            ax.scatter(*b[i], marker="^", s=28, c=_COLORS["bridged"], **edge)
        ax.scatter(*xy_audio[i], marker="o", s=24, c=_COLORS["audio"], **edge)
        ax.scatter(*xy_text[i], marker="s", s=22, c=_COLORS["text"], **edge)
    (x0, y0), (x1, y1) = limits
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(name, fontsize=10)


def _legend_handles(bridged: bool) -> list:
    from matplotlib.lines import Line2D

    dot = dict(marker="o", ls="", markersize=6)
    text = Line2D([], [], color=_COLORS["text"], label="text", **dot)
    audio = Line2D([], [], color=_COLORS["audio"], label="audio (raw)", **dot)
    if not bridged:
        return [text, audio, Line2D([], [], color="black", lw=0.8, label="pair: audio → text")]
    return [
        text,
        audio,
        Line2D([], [], color=_COLORS["bridged"], label="audio (bridged)", **dot),
        Line2D([], [], color="black", lw=0.8, label="pair: audio → bridged"),
        Line2D([], [], color="black", lw=0.8, ls=":", label="bridged → paired text"),
    ]


def _write_png_pdf(fig, stem: Path) -> tuple[Path, Path]:
    """<stem>.png (200 dpi) and <stem>.pdf (no creation date, so reruns are byte-stable), atomically."""
    written = []
    for ext, extra in (("png", {"dpi": 200}), ("pdf", {"dpi": 300, "metadata": {"CreationDate": None}})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, **extra)
        written.append(atomic_write_bytes(stem.parent / f"{stem.name}.{ext}", buf.getvalue()))
    return written[0], written[1]


# ---------------------------------------------------------------- ablations and loss curves

# (absolute column, paired-difference prefix, axis label) of results/ablations.csv
_ABLATION_METRICS = (
    ("centroid_distance", "d_centroid_distance", "centroid distance (lower is better)"),
    ("a2t_R1", "d_a2t_R1", "audio→text R@1"),
    ("CIDEr-D", "d_CIDEr-D", "zero-shot CIDEr-D"),
)


def plot_ablations(df, out_stem: str | os.PathLike | None = None, metrics=_ABLATION_METRICS):
    """Each ablation variant's paired difference to the default variant, with its 95 % interval.

    df: the ablations table (results/ablations.csv): columns `ablation`, `value` and, per metric,
    the absolute value and `d_<m>`, `d_<m>_lo`, `d_<m>_hi` (variant minus default, paired over
    items). One panel per metric (at most three side by side, MAX_WIDTH_IN wide), one row per
    variant grouped by ablation in table order; an interval that excludes the dashed 0 line is a
    resolved difference (filled marker), one that covers it is not (hollow marker).
    out_stem: if given, also writes <stem>.png (200 dpi) and <stem>.pdf. Returns the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stem = _out_stem(out_stem) if out_stem is not None else None
    need = ["ablation", "value"] + [c for _, d, _ in metrics for c in (d, f"{d}_lo", f"{d}_hi")]
    missing = [c for c in need if c not in getattr(df, "columns", [])]
    if missing:
        raise ValueError(f"df (the ablations table) lacks columns {missing}; it needs {need}")
    if len(df) == 0:
        raise ValueError("df (the ablations table) has no rows")
    labels = [f"{a}: {v}" for a, v in zip(df["ablation"], df["value"], strict=True)]
    groups = list(df["ablation"])
    y = np.arange(len(df))[::-1].astype(float)
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    height = nrows * (0.9 + 0.2 * len(df))
    fig = Figure(figsize=(MAX_WIDTH_IN, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for k, ax in enumerate(axes.flat):
        if k >= len(metrics):
            ax.set_axis_off()
            continue
        _, d, label = metrics[k]
        mid, lo, hi = (np.asarray(df[c], dtype=float) for c in (d, f"{d}_lo", f"{d}_hi"))
        resolved = (lo > 0) | (hi < 0)
        for r in (True, False):
            m = resolved == r
            ax.errorbar(
                mid[m], y[m], xerr=np.vstack([mid[m] - lo[m], hi[m] - mid[m]]), fmt="o", ms=4, capsize=2,
                color="#1f4e99", mfc="#1f4e99" if r else "white", lw=1,
            )  # fmt: skip
        ax.axvline(0.0, color="grey", ls="--", lw=1)
        for i in range(1, len(groups)):  # a faint line between ablation groups
            if groups[i] != groups[i - 1]:
                ax.axhline((y[i] + y[i - 1]) / 2, color="#dddddd", lw=0.8)
        ax.set_xlabel(f"Δ {label}\nvs the default variant", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", color="#eeeeee", lw=0.6)
    axes[0, 0].set_yticks(y, labels, fontsize=7)
    axes[0, 0].set_ylim(y.min() - 0.7, y.max() + 0.7)
    fig.suptitle(
        "Ablations: paired difference to the default, 95 % interval (filled: excludes 0)", fontsize=9
    )
    if stem is not None:
        _write_png_pdf(fig, stem)
    return fig


def _train_val_pairs(history: Mapping[str, list]) -> list[tuple[str, str, str | None]]:
    """(label, train key, validation key or None): `val_X` pairs with `X` or `train_X`. In name order,
    so a model fitted now and the same model read from its cache (config.json keeps keys sorted) draw
    each curve in the same colour."""
    pairs = []
    for key in sorted(history):
        if key.startswith("val_") or key == "epoch":
            continue
        base = key.removeprefix("train_")
        val = f"val_{base}" if f"val_{base}" in history else None
        pairs.append((base, key, val))
    return pairs


def _epochs(n: int, n_val: int | None) -> np.ndarray:
    """x positions in epochs of n train values: one per epoch, or per step when there are more
    train values than validation ones (steps spread evenly over the epochs)."""
    if n_val and n > n_val:
        return np.arange(1, n + 1) * (n_val / n)
    return np.arange(1, n + 1, dtype=float)


def plot_loss_curves(
    histories, title: str = "", out_stem: str | os.PathLike | None = None, logy: bool = True
):
    """Training curves (solid) each with its validation curve (dashed) in the same colour.

    histories: one history (name -> list of per-epoch or per-step values, validation under
    `val_<name>`, e.g. DiffusionLink.history or PrefixCaptioner.history) or a dict label ->
    history (several models, one panel each, at most three side by side, MAX_WIDTH_IN wide).
    out_stem: if given, also writes <stem>.png (200 dpi) and <stem>.pdf. Returns the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stem = _out_stem(out_stem) if out_stem is not None else None
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError(
            f"histories must be a non-empty dict (a history or label -> history); got {histories!r:.80}"
        )
    if all(isinstance(v, Mapping) for v in histories.values()):
        panels = {str(k): v for k, v in histories.items()}
    else:
        panels = {"": histories}
    for name, h in panels.items():
        bad = [k for k, v in h.items() if isinstance(v, (str, bytes)) or not hasattr(v, "__len__")]
        if bad or not h:
            raise ValueError(
                f"history {name or '(single)'}: every entry must be a list of numbers; bad: {bad}"
            )
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    width = min(MAX_WIDTH_IN, 6.0 if ncols == 1 else 3.3 * ncols)
    fig = Figure(figsize=(width, 3.4 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = [f"C{i}" for i in range(10)]
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_axis_off()
            continue
        name, h = list(panels.items())[k]
        for j, (label, tkey, vkey) in enumerate(_train_val_pairs(h)):
            c = colours[j % len(colours)]
            train = np.asarray(h[tkey], dtype=float)
            n_val = len(h[vkey]) if vkey else None
            lw = 0.8 if n_val and len(train) > n_val else 1.4
            ax.plot(_epochs(len(train), n_val), train, color=c, lw=lw, label=f"{label} (train)")
            if vkey:
                val = np.asarray(h[vkey], dtype=float)
                ax.plot(
                    np.arange(1, len(val) + 1),
                    val,
                    color=c,
                    ls="--",
                    lw=1.4,
                    marker=".",
                    label=f"{label} (val)",
                )
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, ncols=2 if len(h) > 4 else 1)
    if title:
        fig.suptitle(title, fontsize=11)
    if stem is not None:
        _write_png_pdf(fig, stem)
    return fig
