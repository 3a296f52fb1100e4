"""Modality-gap metrics: how far apart audio and text embeddings sit, and whether meaning survives.

`gap_report(audio, text)` returns one flat dict of floats with the same keys on every call, so
rows from many methods and seeds stack into a table (`dlink.evaluation.tables.write_table`). Keys:

similarity (higher is better)
  paired_cos_mean, paired_cos_std   mean / std of cos(a_i, t_i) over pairs (paired only)
  knn_mixing                        share of a point's k nearest neighbours (cosine, pooled audio +
                                    text, self excluded) that come from the other modality; a perfect
                                    mix of two equal sets gives m / (2m - 1) ~ 0.5, far-apart sets 0
  knn_mixing_norm                   knn_mixing divided by that perfect-mix value: 1 = perfect mixing
  a2t_R1, a2t_R5, a2t_R10           audio -> text retrieval recall@k, cosine, gallery = all N texts
                                    (paired only): collapsing audio onto the text mean closes the gap
                                    but sends these to chance (k / N)
  a2t_mAP_labels                    audio -> text mean average precision where every text whose
                                    scene has the same label set counts as a hit (`labels=`; NaN
                                    without labels): meaning kept beyond the exact pair
geometry (lower is better, except separability)
  centroid_distance                 ||mean(a) - mean(t)||, the gap vector norm of Liang et al. 2022
  separability                      5-fold cross-validated logistic-regression accuracy of the
                                    modality label on balanced sets; 0.5 = inseparable (target)
  frechet                           Frechet distance of Gaussians fitted to each set
                                    ||mu_a - mu_t||^2 + tr(S_a + S_t - 2 (S_a S_t)^1/2)
  mmd2_rbf                          squared MMD, RBF kernel, median-heuristic bandwidth, unbiased
                                    estimator (can dip slightly below 0 for identical distributions)

`GAP_METRICS` declares each key's direction and whether (and how) it gets an interval; the tables
and gap_intervals read it, and `register_gap_metric` adds a per-item column to all of them.

Paired-only keys are NaN when `paired=False`. By default every embedding is L2-normalised first
(the encoders' and bridges' contract is the unit sphere; `normalize=False` measures the raw
vectors). Cosine-based metrics (paired cosine, kNN mixing, retrieval) always use unit vectors.

Cost: retrieval and the Gaussian fit use all points (retrieval in query chunks, O(N^2 D) once).
The O(N^2) or iterative parts (kNN mixing, MMD, separability) run on a seeded subsample of at
most `max_points` points per modality, the same rows for all three; with both sets subsampled to
the same size m, 0.5 stays the chance level for separability. With paired data the subsample
keeps pairs, and the separability folds never split a pair (see `separability`).
Measured on the 2-core dev machine, N = 10,000 x D = 512, defaults: ~4.3 s of CPU per call
(retrieval 1.5, MMD 0.9, Frechet 0.6, kNN 0.5, separability 0.4); ~3 s wall on idle cores,
~9 s when other jobs loaded them (load average 9).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dlink.arrays import as_embeddings, normalize_rows
from dlink.evaluation.stats import draws, interval, seed_t_interval, weights


@dataclass(frozen=True)
class GapMetric:
    """What the tables know of one gap column.

    direction: "higher" / "lower" is better, a number (closest to that target is best) or None (not
    ranked), in the form dlink.evaluation.tables.write_table takes.
    interval: how `gap_intervals` resamples the column, None for no interval: "item" (per-item values
    averaged over the drawn items), "set" (recomputed on each replicate's drawn items) or "seed"
    (seeds as the unit).
    per_item: (audio (N, D), text (N, D)) unit rows, paired -> (N,) per-item values whose mean is the
    column. The built-in columns leave it None: gap_report and item_scores compute them in shared
    passes (one ranking serves every R@k); a registered column brings it.
    """

    direction: str | float | None
    interval: str | None = None
    per_item: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


# Every gap_report key in report order; `register_gap_metric` appends to it.
GAP_METRICS: dict[str, GapMetric] = {
    "paired_cos_mean": GapMetric("higher", "item"),
    "paired_cos_std": GapMetric(None),
    "centroid_distance": GapMetric("lower", "set"),
    "separability": GapMetric(0.5, "seed"),  # a classifier fit per replicate is too slow
    "frechet": GapMetric("lower", "set"),
    "mmd2_rbf": GapMetric("lower"),
    "knn_mixing": GapMetric("higher"),
    "knn_mixing_norm": GapMetric("higher", "item"),
    "a2t_R1": GapMetric("higher", "item"),
    "a2t_R5": GapMetric("higher"),
    "a2t_R10": GapMetric("higher", "item"),
    "a2t_mAP_labels": GapMetric("higher", "item"),
}


def register_gap_metric(name: str, direction, per_item: Callable, interval: bool = False) -> GapMetric:
    """Add a paired per-item gap column: gap_report reports the mean of `per_item(audio, text)` (unit
    rows, (N,) values), item_scores the values; interval=True gives it seed x item intervals in
    gap_intervals; tables rank it by `direction` ("higher", "lower", a target number or None)."""
    if name in GAP_METRICS:
        raise ValueError(f"gap metric {name!r} is already registered")
    if not callable(per_item):
        raise ValueError(f"per_item for gap metric {name!r} must be a function (audio, text) -> (N,)")
    if not (direction is None or direction in ("higher", "lower") or isinstance(direction, (int, float))):
        raise ValueError(f"direction={direction!r} must be 'higher', 'lower', a number (target) or None")
    GAP_METRICS[name] = GapMetric(direction, "item" if interval else None, per_item)
    return GAP_METRICS[name]


class _Directions(Mapping):
    """metric -> direction, read from GAP_METRICS at each use, so a registered metric is included."""

    def __getitem__(self, name):
        return GAP_METRICS[name].direction

    def __iter__(self):
        return iter(GAP_METRICS)

    def __len__(self):
        return len(GAP_METRICS)

    def __repr__(self):
        return repr(dict(self))


class _IntervalColumns(Sequence):
    """The columns with an interval, in report order, read from GAP_METRICS at each use."""

    def _columns(self) -> tuple[str, ...]:
        return tuple(name for name, m in GAP_METRICS.items() if m.interval)

    def __getitem__(self, i):
        return self._columns()[i]

    def __len__(self):
        return len(self._columns())

    def __repr__(self):
        return repr(self._columns())


# Direction of "better" for each gap_report key (dlink.evaluation.tables.write_table ranks by it).
GAP_DIRECTIONS: Mapping[str, str | float | None] = _Directions()
# gap_intervals' columns; how each is resampled is its GapMetric.interval.
INTERVAL_COLUMNS: Sequence[str] = _IntervalColumns()

_MIN_POINTS = 10  # 5 folds of a balanced 2-class problem need >= 5 per class; 10 keeps folds sane
_CHUNK = 1024  # query rows per similarity block: 1024 x 10,000 float32 = 40 MB


def _validate_pair(audio, text, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    a, t = as_embeddings(audio, "audio"), as_embeddings(text, "text")
    if a.shape[1] != t.shape[1]:
        raise ValueError(
            f"audio and text must share the embedding dim D; got audio {a.shape}, text {t.shape}"
        )
    if paired and a.shape[0] != t.shape[0]:
        raise ValueError(
            f"paired=True needs one text row per audio row; got {a.shape[0]} audio vs {t.shape[0]} "
            "text. Pass paired=False for unpaired sets."
        )
    for arr, name in ((a, "audio"), (t, "text")):
        if arr.shape[0] < _MIN_POINTS:
            raise ValueError(f"{name} has {arr.shape[0]} rows; the gap metrics need at least {_MIN_POINTS}")
    return a, t


def retrieval_recall(
    query,
    gallery,
    ks: Sequence[int] = (1, 5, 10),
    gallery_ids=None,
) -> dict[str, float]:
    """Recall@k of cosine retrieval, e.g. audio -> text.

    query: (N, D); gallery: (M, D). Query i's correct items are the gallery rows j with
    gallery_ids[j] == i (default: row i, so M == N). This handles several captions per clip:
    gallery = (N*C, D) text, gallery_ids = np.repeat(np.arange(N), C).
    Returns {"R@k": share of queries whose rank (`retrieval_ranks`) is < k} for each k in ks.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers; got {ks}")
    ranks = retrieval_ranks(query, gallery, gallery_ids)
    return {f"R@{k}": float((ranks < k).mean()) for k in ks}


def retrieval_ranks(query, gallery, gallery_ids=None) -> np.ndarray:
    """(N,) int: each query's rank in cosine retrieval (0 = its correct item scores highest).

    A query's rank is the number of wrong gallery items scoring >= its best correct item, so ties
    count against the query (degenerate, all-equal embeddings cannot score well). Arguments as in
    `retrieval_recall`; per-item hits (rank < k) are what the bootstrap intervals resample.
    """
    q, g = normalize_rows(as_embeddings(query, "query")), normalize_rows(as_embeddings(gallery, "gallery"))
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery must share D; got {q.shape} and {g.shape}")
    if gallery_ids is None:
        if q.shape[0] != g.shape[0]:
            raise ValueError(
                f"without gallery_ids, query row i matches gallery row i, so sizes must agree; "
                f"got {q.shape[0]} queries and {g.shape[0]} gallery rows"
            )
        ids = np.arange(g.shape[0])
    else:
        ids = np.asarray(gallery_ids)
        if ids.shape != (g.shape[0],):
            raise ValueError(f"gallery_ids must have shape ({g.shape[0]},); got {ids.shape}")
        missing = np.setdiff1d(np.arange(q.shape[0]), ids)
        if missing.size:
            raise ValueError(f"queries {missing[:5].tolist()} have no correct gallery item in gallery_ids")
    q32, g32 = q.astype(np.float32), g.astype(np.float32)
    ranks = np.empty(q.shape[0], dtype=np.int64)
    for s in range(0, q.shape[0], _CHUNK):
        sims = q32[s : s + _CHUNK] @ g32.T  # (b, M)
        rows = np.arange(sims.shape[0])
        if gallery_ids is None:  # one correct item per query: skip the (b, M) mask
            best = sims[rows, s + rows]
            ranks[s + rows] = (sims >= best[:, None]).sum(axis=1) - 1
        else:
            correct = ids[None, :] == (s + rows)[:, None]
            best = np.where(correct, sims, -np.inf).max(axis=1)
            ranks[s + rows] = ((sims >= best[:, None]) & ~correct).sum(axis=1)
    return ranks


def label_set_map(query, gallery, labels) -> float:
    """Mean average precision of cosine retrieval query -> gallery (N, D) each, where gallery row j
    is relevant to query i when labels[j] == labels[i] (e.g. a scene's sorted label set as a string;
    every query has at least its own pair). Returns the mean over queries of AP in [0, 1]."""
    return float(label_set_ap(query, gallery, labels).mean())


def label_set_ap(query, gallery, labels) -> np.ndarray:
    """(N,) each query's average precision in `label_set_map` (arguments as there)."""
    q, g = normalize_rows(as_embeddings(query, "query")), normalize_rows(as_embeddings(gallery, "gallery"))
    lab = np.asarray([str(x) for x in labels])
    if not (q.shape == g.shape and lab.shape == (q.shape[0],)):
        raise ValueError(
            f"label_set_map needs query, gallery (N, D) and N labels; got {q.shape}, {g.shape}, {lab.shape[0]} labels"
        )
    _, codes = np.unique(lab, return_inverse=True)
    aps = np.empty(q.shape[0])
    for s in range(0, q.shape[0], _CHUNK):
        sims = q[s : s + _CHUNK].astype(np.float32) @ g.astype(np.float32).T
        order = np.argsort(-sims, axis=1, kind="stable")
        rel = codes[order] == codes[s : s + _CHUNK, None]  # (b, N) hits in rank order
        hits = np.cumsum(rel, axis=1)
        prec = hits / np.arange(1, rel.shape[1] + 1)
        aps[s : s + rel.shape[0]] = (prec * rel).sum(1) / rel.sum(1)
    return aps


def _two_sets(x, y, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate two embedding sets (N, D) and (M, D) for a distribution distance."""
    a, b = as_embeddings(x, "x"), as_embeddings(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must share the embedding dim D; got x {a.shape}, y {b.shape}")
    if min(len(a), len(b)) < min_rows:
        raise ValueError(f"x and y need >= {min_rows} rows each; got {len(a)} and {len(b)}")
    return a, b


def frechet_distance(x, y) -> float:
    """Frechet distance between Gaussians fitted to x (N, D) and y (M, D).

    ||mu_x - mu_y||^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^1/2), with the trace of the matrix
    square root taken as sum(sqrt(eig(S_x^1/2 S_y S_x^1/2))): that matrix is symmetric PSD, so
    eigh is stable where scipy.linalg.sqrtm on the non-symmetric product can go complex.
    """
    x, y = _two_sets(x, y, 2)
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    from threadpoolctl import threadpool_limits

    # One BLAS thread: a threaded 512 x 512 eigh gains nothing and, on busy cores, OpenBLAS's
    # spinning threads made it 100x slower (8 s instead of 0.08 s, measured).
    with threadpool_limits(limits=1, user_api="blas"):
        w, v = np.linalg.eigh(s_x)
        root_x = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
        mid = root_x @ s_y @ root_x
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((mid + mid.T) / 2), 0.0, None)).sum()
    fd = float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x) + np.trace(s_y) - 2.0 * tr_sqrt)
    return max(fd, 0.0)  # round-off can leave -1e-12 for identical sets


def mmd2_rbf(x, y, bandwidth: float | None = None, unbiased: bool = True) -> float:
    """Squared MMD between samples x (n, D) and y (m, D), k(u, v) = exp(-||u-v||^2 / (2 h^2)).

    h defaults to the median pairwise distance of the pooled sample (median heuristic). The
    unbiased estimator drops the k(x_i, x_i) diagonals, so it is ~0 (possibly slightly negative)
    for samples of one distribution; `unbiased=False` gives the biased V-statistic (>= 0).
    O((n+m)^2 D): subsample large sets first (gap_report does).
    """
    x, y = _two_sets(x, y, 2)
    if bandwidth is not None and not (
        isinstance(bandwidth, (int, float, np.floating)) and math.isfinite(bandwidth) and bandwidth > 0
    ):
        raise ValueError(f"bandwidth must be a number > 0 or None (median heuristic); got {bandwidth!r}")
    # float32 Gram: the kernel values need ~1e-6, not 1e-15, and it halves the time
    z = np.concatenate([x, y]).astype(np.float64)
    peak = float(np.abs(z).max())
    if peak > 1e15:  # squared distances would overflow float32: the kernel is scale-free given h, so rescale
        z = z / peak
        bandwidth = None if bandwidth is None else bandwidth / peak
    z = z.astype(np.float32)
    sq = (z * z).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0, None)
    if bandwidth is None:
        off = d2[np.triu_indices_from(d2, k=1)]
        off = off[off > 0]
        h2 = float(np.median(off)) if off.size else 1.0  # median of d^2 = (median distance)^2
    else:
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0; got {bandwidth}")
        h2 = float(bandwidth) ** 2
    k = np.exp(d2 / np.float32(-2.0 * h2), dtype=np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs >= 2 points per sample; got {n} and {m}")
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    if unbiased:
        exx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        eyy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    else:
        exx, eyy = kxx.mean(), kyy.mean()
    return float(exx + eyy - 2.0 * kxy.mean())


def knn_mixing(x, y, k: int = 10) -> tuple[float, float]:
    """Cross-modal kNN mixing of x (n, D) and y (m, D), cosine, self excluded.

    Returns (share, normalised): share = mean over all n + m points of the fraction of its k
    nearest neighbours from the other set; normalised = share / its value under perfect mixing,
    where a point's neighbours are a random draw from the others: (2 n m / (n + m - 1)) / (n + m).
    """
    other, expected = knn_other(x, y, k)
    share = float(other.mean())
    return share, share / expected


def knn_other(x, y, k: int = 10) -> tuple[np.ndarray, float]:
    """(per-point fractions (n + m,), perfect-mix share): x's points first, then y's (see knn_mixing)."""
    x, y = _two_sets(x, y, 1)
    xu, yu = normalize_rows(x), normalize_rows(y)
    z = np.concatenate([xu, yu]).astype(np.float32)
    label = np.r_[np.zeros(len(xu), bool), np.ones(len(yu), bool)]
    total = len(z)
    if not 1 <= k < total:
        raise ValueError(f"k must be in [1, {total - 1}] for {total} pooled points; got {k}")
    other = np.empty(total)
    for s in range(0, total, _CHUNK):
        sims = z[s : s + _CHUNK] @ z.T
        rows = np.arange(sims.shape[0])
        sims[rows, s + rows] = -np.inf  # a point is not its own neighbour
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        other[s : s + len(rows)] = (label[nn] != label[s : s + len(rows), None]).mean(1)
    n, m = len(xu), len(yu)
    return other, 2.0 * n * m / (total - 1) / total


def separability(x, y, folds: int = 5, seed: int = 0, paired: bool = False) -> float:
    """Cross-validated accuracy of a logistic regression telling x (n, D) from y (m, D).

    0.5 = inseparable when n == m (gap_report balances the sets). Features are standardised so
    the L2 penalty treats every dimension alike. paired=True (needs n == m, row i of x paired
    with row i of y) keeps both members of a pair in the same fold: otherwise a test point's
    partner sits in training with the other label, and near-identical pairs drive the accuracy
    BELOW 0.5 (identical sets scored ~0.3 that way).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _two_sets(x, y, 2)
    if not (isinstance(folds, (int, np.integer)) and 2 <= folds <= min(len(x), len(y))):
        raise ValueError(
            f"folds must be an int in 2..{min(len(x), len(y))} (rows of the smaller set); got {folds!r}"
        )
    z = np.concatenate([x, y]).astype(np.float32)
    lab = np.r_[np.zeros(len(x), int), np.ones(len(y), int)]
    if paired:
        if len(x) != len(y):
            raise ValueError(f"paired separability needs equal sizes; got {len(x)} and {len(y)}")
        fold_of_pair = np.random.default_rng(seed).permutation(len(x)) % folds
        fold = np.r_[fold_of_pair, fold_of_pair]
        cv = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(folds)]
    else:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # liblinear: same optimum as lbfgs here, 2-5x faster and steadier on 4,000 x 512
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="liblinear", max_iter=500))
    return float(cross_val_score(clf, z, lab, cv=cv).mean())


def gap_report(
    audio,
    text,
    paired: bool = True,
    k: int = 10,
    seed: int = 0,
    max_points: int = 2000,
    normalize: bool = True,
    mmd_bandwidth: float | None = None,
    labels=None,
) -> dict[str, float]:
    """Similarity and geometry criteria of the audio-text gap (keys: see the module docstring).

    audio: (N, D); text: (N, D) with row i the pair of audio row i when paired=True, else (M, D).
    k: neighbours for kNN mixing. seed: picks the subsample for kNN mixing, MMD and separability
    and the CV folds. max_points: subsample size per modality for those O(N^2) parts.
    normalize: L2-normalise rows first. mmd_bandwidth: fixed RBF bandwidth (None: median
    heuristic per call; fix it to compare MMD across methods on one scale). labels: N hashables
    (paired only), one per pair, for the label-set retrieval mAP.
    Returns dict[str, float] with the keys of GAP_METRICS, in that order.
    """
    a, t = _validate_pair(audio, text, paired)
    if int(max_points) < _MIN_POINTS:
        raise ValueError(f"max_points must be >= {_MIN_POINTS}; got {max_points}")
    if normalize:
        a, t = normalize_rows(a), normalize_rows(t)
    nan = float("nan")
    out: dict[str, float] = dict.fromkeys(GAP_METRICS, nan)

    if paired:
        cos = (normalize_rows(a) * normalize_rows(t)).sum(1)
        out["paired_cos_mean"], out["paired_cos_std"] = float(cos.mean()), float(cos.std())
    out["centroid_distance"] = float(np.linalg.norm(a.mean(0) - t.mean(0)))
    out["frechet"] = frechet_distance(a, t)

    # One balanced subsample for the O(N^2) / iterative parts: same m per side keeps 0.5 = chance.
    rng = np.random.default_rng(seed)
    m = min(a.shape[0], t.shape[0], int(max_points))
    if not 1 <= int(k) < 2 * m:
        raise ValueError(f"k must be in [1, {2 * m - 1}] for {2 * m} pooled points; got {k}")
    if paired:  # keep pairs together, so separability can group folds by pair
        idx = np.sort(rng.choice(a.shape[0], m, replace=False))
        a_s, t_s = a[idx], t[idx]
    else:
        a_s = a[np.sort(rng.choice(a.shape[0], m, replace=False))]
        t_s = t[np.sort(rng.choice(t.shape[0], m, replace=False))]
    out["separability"] = separability(a_s, t_s, seed=seed, paired=paired)
    out["mmd2_rbf"] = mmd2_rbf(a_s, t_s, bandwidth=mmd_bandwidth)
    out["knn_mixing"], out["knn_mixing_norm"] = knn_mixing(a_s, t_s, k=k)

    if paired:
        r = retrieval_recall(a, t, ks=(1, 5, 10))
        out["a2t_R1"], out["a2t_R5"], out["a2t_R10"] = r["R@1"], r["R@5"], r["R@10"]
        if labels is not None:
            out["a2t_mAP_labels"] = label_set_map(a, t, labels)
        for name, metric in GAP_METRICS.items():
            if metric.per_item is not None:
                out[name] = float(np.mean(metric.per_item(normalize_rows(a), normalize_rows(t))))
    assert all(isinstance(v, float) and not math.isinf(v) for v in out.values())
    return out


def item_scores(audio, text, labels=None, k: int = 10) -> dict[str, np.ndarray]:
    """Per-item gap values (N,) of paired audio, text (N, D) whose mean over items is gap_report's
    column (for N <= its max_points): paired_cos_mean (cosine), knn_mixing_norm (the mean of the
    item's audio and text point's other-modality neighbour share, / the perfect-mix share), a2t_R1,
    a2t_R10 (hit: rank < k against all N texts) and, with labels, a2t_mAP_labels (the item's AP)."""
    a, t = _validate_pair(audio, text, True)
    a, t = normalize_rows(a), normalize_rows(t)
    n = a.shape[0]
    other, expected = knn_other(a, t, k)
    ranks = retrieval_ranks(a, t)
    out = {
        "paired_cos_mean": (a * t).sum(1),
        "knn_mixing_norm": (other[:n] + other[n:]) / 2.0 / expected,
        "a2t_R1": (ranks < 1).astype(np.float64),
        "a2t_R10": (ranks < 10).astype(np.float64),
    }
    if labels is not None:
        out["a2t_mAP_labels"] = label_set_ap(a, t, labels)
    for name, metric in GAP_METRICS.items():
        if metric.per_item is not None:
            out[name] = np.asarray(metric.per_item(a, t), dtype=np.float64)
    return out


def _check_outputs(outputs: dict[str, list], text: list) -> tuple[list[np.ndarray], int]:
    texts = [normalize_rows(as_embeddings(t, f"text[{s}]")) for s, t in enumerate(text)]
    if not texts:
        raise ValueError("text is empty: give one (N, D) array per seed")
    n = texts[0].shape[0]
    if any(t.shape[0] != n for t in texts):
        raise ValueError("every seed's text must hold the same N test items")
    for method, per_seed in outputs.items():
        if len(per_seed) != len(texts):
            raise ValueError(f"{method}: {len(per_seed)} seeds of outputs but {len(texts)} of text")
        for s, t in enumerate(texts):
            if np.shape(per_seed[s]) != t.shape:
                raise ValueError(
                    f"outputs[{method!r}][{s}] has shape {np.shape(per_seed[s])}, text[{s}] {t.shape}"
                )
    return texts, n


def gap_item_rows(outputs: dict[str, list], text: list, labels=None, seeds=None, ids=None) -> list[dict]:
    """Per-item x per-seed gap values in long form (seed, item, method, `item_scores` keys), for
    results/items/gap.csv.gz. Arguments as in gap_intervals; ids: the N items' ids (default 0..N-1)."""
    texts, n = _check_outputs(outputs, text)
    seeds = list(range(len(texts))) if seeds is None else list(seeds)
    ids = list(range(n)) if ids is None else list(ids)
    if len(seeds) != len(texts) or len(ids) != n:
        raise ValueError(
            f"seeds must name {len(texts)} seeds and ids {n} items; got {len(seeds)} and {len(ids)}"
        )
    rows = []
    for method, per_seed in outputs.items():
        for s, t in enumerate(texts):
            sc = item_scores(per_seed[s], t, labels)
            rows += [{"seed": seeds[s], "item": ids[i], "method": method,
                      **{key: f"{v[i]:.6g}" for key, v in sc.items()}} for i in range(n)]  # fmt: skip
    return rows


def _frechet_counts(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> float:
    """frechet_distance of the rows drawn `counts` times each (paired: the same draw for x and y),
    from the drawn rows only: tr((S_x S_y)^1/2) is the nuclear norm of A B^T for S_x = A^T A,
    S_y = B^T B, a (u, u) matrix for u distinct drawn rows instead of a (D, D) square root."""
    keep = counts > 0
    c, xs, ys = counts[keep].astype(np.float64), x[keep], y[keep]
    total = c.sum()
    mu_x, mu_y = c @ xs / total, c @ ys / total
    xa = np.sqrt(c / (total - 1))[:, None] * (xs - mu_x)
    ya = np.sqrt(c / (total - 1))[:, None] * (ys - mu_y)
    tr_sqrt = np.linalg.svd(xa @ ya.T, compute_uv=False).sum()
    fd = float(((mu_x - mu_y) ** 2).sum() + (xa**2).sum() + (ya**2).sum() - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def gap_intervals(
    outputs: dict[str, list],
    text: list,
    versus: str,
    labels=None,
    seeds=None,
    columns: Sequence[str] = INTERVAL_COLUMNS,
    level: float = 0.95,
    n_boot: int = 2000,
    n_boot_sets: int = 300,
    seed: int = 0,
) -> list[dict]:
    """Seed x item bootstrap intervals of the gap columns and of each method's difference to `versus`.

    outputs: {method: [ (N, D) bridged test audio of seed s, ... ]}; text: [ (N, D) paired test text of
    seed s, ... ] (row i pairs with row i; the same items, in the same order, for every seed). labels:
    N label-set strings for a2t_mAP_labels (without them that column is left out). seeds: the training
    seed of each entry, separability's fold seed as in gap_report(seed=...) (default 0, 1, ...).
    columns: a subset of INTERVAL_COLUMNS (each resampled as its GAP_METRICS entry's `interval` says).

    A replicate draws seeds and items with replacement (dlink.evaluation.stats.draws; one draw shared by every
    method, so differences are paired) and averages over the drawn seeds:
    - per-item columns (`item_scores`: paired cosine, kNN mixing, R@1, R@10, label-set AP) average the
      drawn items' values, computed once on all N items (a query ranked against the full gallery);
    - centroid distance (all n_boot replicates) and Frechet distance (the first n_boot_sets, a
      (u, u) SVD each) are recomputed on the drawn items; both are biased upwards under resampling,
      so their percentile intervals are shifted by the bootstrap's bias (mean of replicates - estimate);
    - separability (a cross-validated classifier fit) is too slow per replicate: its interval takes
      seeds as the unit (dlink.evaluation.stats.seed_t_interval; NaN with one seed) and covers no item sampling.
    Returns one dict per method: n_seeds, n_items, and for each column its value (mean over seeds on
    all items), _lo, _hi, and d_<column> = method - versus with _lo, _hi.
    """
    if versus not in outputs:
        raise ValueError(f"versus={versus!r} is not one of the methods {list(outputs)}")
    unknown = set(columns) - set(INTERVAL_COLUMNS)
    if unknown:
        raise ValueError(f"columns {sorted(unknown)} are not among {INTERVAL_COLUMNS}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    columns = [c for c in columns if labels is not None or c != "a2t_mAP_labels"]
    texts, n = _check_outputs(outputs, text)
    n_seeds = len(texts)
    seeds = list(range(n_seeds)) if seeds is None else list(seeds)
    if len(seeds) != n_seeds:
        raise ValueError(f"seeds names {len(seeds)} seeds for {n_seeds} entries of text")
    s_idx, i_idx = draws(n_seeds, n, n_boot=int(n_boot), seed=seed)
    ws, wi = weights(s_idx, n_seeds), weights(i_idx, n)
    n_sets = min(int(n_boot_sets), int(n_boot))
    # per method and column: (estimate, replicates); separability: (estimate, per-seed values)
    stats: dict[str, dict[str, tuple[float, np.ndarray]]] = {}
    for method, per_seed in outputs.items():
        audio = [
            normalize_rows(as_embeddings(a, f"outputs[{method!r}][{s}]")) for s, a in enumerate(per_seed)
        ]
        st: dict[str, tuple[float, np.ndarray]] = {}
        per_item = [item_scores(a, t, labels) for a, t in zip(audio, texts, strict=True)]
        for c in columns:
            if c in per_item[0]:
                x = np.stack([p[c] for p in per_item])  # (seeds, items)
                st[c] = (float(x.mean()), ((ws @ x) * wi).sum(1))
        if "centroid_distance" in columns:  # the norm of the mean paired difference, per (replicate, seed)
            per = np.stack(
                [np.linalg.norm(wi @ (a - t), axis=1) for a, t in zip(audio, texts, strict=True)], 1
            )
            full = np.mean([np.linalg.norm((a - t).mean(0)) for a, t in zip(audio, texts, strict=True)])
            st["centroid_distance"] = (float(full), (ws * per).sum(1))
        if "frechet" in columns:
            counts = np.rint(wi[:n_sets] * n).astype(np.int64)
            per = np.zeros((n_sets, n_seeds))
            for b in range(n_sets):
                for s in np.flatnonzero(ws[b] > 0):  # only the drawn seeds count
                    per[b, s] = _frechet_counts(audio[s], texts[s], counts[b])
            full = np.mean([frechet_distance(a, t) for a, t in zip(audio, texts, strict=True)])
            st["frechet"] = (float(full), (ws[:n_sets] * per).sum(1))
        if "separability" in columns:
            v = np.array(
                [
                    separability(a, t, seed=sd, paired=True)
                    for a, t, sd in zip(audio, texts, seeds, strict=True)
                ]
            )
            st["separability"] = (float(v.mean()), v)
        stats[method] = st
    rows = []
    for method, st in stats.items():
        row: dict = {"method": method, "n_seeds": n_seeds, "n_items": n}
        for c in columns:
            value, boots = st[c]
            ref_value, ref_boots = stats[versus][c]
            if GAP_METRICS[c].interval == "seed":
                _, lo, hi = seed_t_interval(boots, level)
                _, dlo, dhi = seed_t_interval(boots - ref_boots, level)
            else:
                shift = GAP_METRICS[c].interval == "set"
                lo, hi = _shifted(boots, value, level, shift)
                dlo, dhi = _shifted(boots - ref_boots, value - ref_value, level, shift)
            row |= {c: value, f"{c}_lo": lo, f"{c}_hi": hi,
                    f"d_{c}": value - ref_value, f"d_{c}_lo": dlo, f"d_{c}_hi": dhi}  # fmt: skip
        rows.append(row)
    return rows


def _shifted(boots: np.ndarray, estimate: float, level: float, shift: bool) -> tuple[float, float]:
    """Percentile interval of `boots`; with shift, moved by the bootstrap's bias (mean - estimate)."""
    lo, hi = interval(boots, level)
    bias = float(boots.mean() - estimate) if shift else 0.0
    return lo - bias, hi - bias


FLOOR, ORACLE = "floor: another scene's caption", "oracle: 2nd caption"


def gap_calibration(text: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Calibration rows for the gap table, judged against caption 0 of each test scene.

    text: (N, C, D) test captions. Floor: item i gets caption 1 (0 if C = 1) of ANOTHER scene (a
    seeded derangement): in the text distribution, no information about item i. Oracle (C >= 2):
    item i's own caption 1, what a perfect bridge could give. Returns {name: (N, D)}.
    """
    n, c = text.shape[0], text.shape[1]
    order = np.random.default_rng(seed).permutation(n)
    other = np.empty(n, dtype=np.int64)
    other[order] = np.roll(order, -1)  # a cycle through a random order: no item keeps its own scene
    out = {FLOOR: text[other, min(1, c - 1)]}
    if c >= 2:
        out[ORACLE] = text[:, 1]
    return out
