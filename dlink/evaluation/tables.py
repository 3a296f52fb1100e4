"""Result tables: mean +- std over seeds per method, best value per column in bold.

`write_table(rows, "gap_table")` turns long records (one per method x seed, metric columns) into
results/gap_table.csv (numbers, for code) and results/gap_table.md (for the paper / README).
A metric cell that is not a number (e.g. "unavailable" for SPICE without its jars) passes through
as text and is never ranked.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dlink import paths
from dlink._io import atomic_write_text, path_under
from dlink.evaluation.gap import GAP_DIRECTIONS, INTERVAL_COLUMNS

__all__ = ["GAP_DIRECTIONS", "write_table"]

# Columns that label a run rather than measure it; never treated as metrics.
_NOT_METRICS = {"seed"}


def direction_mark(direction) -> str:
    """A column header's mark of its direction: ↑ (higher is better), ↓ (lower), →target, or none."""
    if direction is None:
        return ""
    return {"higher": "↑", "lower": "↓"}[direction] if isinstance(direction, str) else f"→{direction:g}"


def _direction(value, metric: str) -> str | float | None:
    """Normalise a direction spec to "higher" | "lower" | float target | None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "higher" if value else "lower"
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ValueError(f"target for {metric!r} must be finite; got {value}")
        return float(value)
    if isinstance(value, str) and value.lower() in ("higher", "lower"):
        return value.lower()
    raise ValueError(
        f"direction for {metric!r} must be True/'higher', False/'lower', a number (target) or None; "
        f"got {value!r}"
    )


def _number(v) -> float | None:
    """A cell as a float, or None when it is text / missing (NaN counts as missing)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, numbers.Real):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _out_path(stem, suffix: str) -> Path:
    base = path_under(paths.RESULTS, stem, "stem")
    return base.parent / (base.name + suffix)  # not with_suffix: "k0.5" must stay whole


def _aggregate(df: pd.DataFrame, by: list[str], metrics: list[str]) -> list[dict]:
    """One dict per group: by-values, n_seeds, and per metric (mean, std, text)."""
    out = []
    for key, g in df.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rec: dict = dict(zip(by, key, strict=True))
        rec["n_seeds"] = len(g)
        rec["n_finite"] = {}
        for m in metrics:
            vals = [_number(v) for v in g[m]]
            nums = [v for v in vals if v is not None]
            rec["n_finite"][m] = len(nums)  # a NaN seed is left out of the mean: the cell says so
            if nums:
                s = pd.Series(nums, dtype=float)
                rec[m] = (float(s.mean()), float(s.std(ddof=1)) if len(nums) > 1 else math.nan, None)
            else:
                texts = [
                    str(v) for v in g[m] if v is not None and not (isinstance(v, float) and math.isnan(v))
                ]
                rec[m] = (math.nan, math.nan, "/".join(dict.fromkeys(texts)) or "n/a")
        out.append(rec)
    return out


def _best(
    groups: list[dict], metric: str, direction, decimals: int, skip: set[int] = frozenset()
) -> set[int]:
    """Indices of the groups holding the best displayed mean (ties at display precision all win);
    groups in `skip` (calibration rows) are never ranked."""
    if direction is None:
        return set()
    cand = {
        i: round(g[metric][0], decimals)
        for i, g in enumerate(groups)
        if g[metric][2] is None and i not in skip
    }
    if len(cand) < 2:  # a lone number is not "best" of anything
        return set()
    if direction == "higher":
        score = {i: v for i, v in cand.items()}
    elif direction == "lower":
        score = {i: -v for i, v in cand.items()}
    else:
        score = {i: -round(abs(v - direction), decimals) for i, v in cand.items()}
    top = max(score.values())
    return {i for i, s in score.items() if s == top}


def _md_escape(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def write_table(
    rows,
    stem: str | os.PathLike,
    by: str | list[str] = "method",
    metrics: list[str] | None = None,
    higher_is_better: bool | Mapping[str, object] | None = None,
    decimals: int = 3,
    reference: Iterable[str] = (),
) -> tuple[Path, Path]:
    """Write stem.csv and stem.md summarising `rows` over seeds; return (csv_path, md_path).

    rows: a DataFrame or an iterable of dicts, one per (method, seed), e.g. gap_report outputs
      with "method" and "seed" added. Group order follows first appearance.
    stem: file stem; relative stems go under dlink.paths.RESULTS, absolute ones are used as is.
    by: grouping column(s). metrics: metric columns (default: every column except `by` and "seed").
    higher_is_better: direction per metric, used to bold the best value. Either one bool for all
      or a dict metric -> True/"higher", False/"lower", a number (target: closest is best, e.g.
      0.5 for separability) or None (not ranked). Unlisted metrics use GAP_DIRECTIONS if named
      there, else "higher" (captioning metrics).
    decimals: digits shown in the markdown; the best is decided on the displayed (rounded) means.
    reference: values of the (first) `by` column naming calibration rows (a floor, an oracle): shown
      in italics, never ranked, so the bold marks the best method, not the oracle.

    CSV: by-columns, n_seeds, then <metric>_mean and <metric>_std (sample std, ddof=1; NaN with
    one seed). Markdown: "mean ± std" (just the mean with one seed), best in bold, a ↑/↓/→target
    marker in each header. Non-numeric cells pass through as text in both files.
    """
    df = _rows_frame(rows)
    _out_path(stem, ".csv")  # a bad stem fails now, not after the work
    by = [by] if isinstance(by, str) else list(by)
    metrics = _metric_columns(df, by, metrics)
    if not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals must be a non-negative int; got {decimals!r}")
    dirs = _directions(metrics, higher_is_better)
    groups = _aggregate(df, by, metrics)
    reference = {str(r) for r in reference}
    skip = {i for i, g in enumerate(groups) if str(g[by[0]]) in reference}
    if len(skip) != len(reference):
        found = {str(groups[i][by[0]]) for i in skip}
        raise ValueError(f"reference row(s) {sorted(reference - found)} are not values of column {by[0]!r}")
    csv_path = atomic_write_text(_out_path(stem, ".csv"), _csv(groups, by, metrics))
    md_path = atomic_write_text(_out_path(stem, ".md"), _markdown(groups, by, metrics, dirs, decimals, skip))
    return csv_path, md_path


def _rows_frame(rows) -> pd.DataFrame:
    """`rows` (a DataFrame or dicts, one per method x seed) as a new, non-empty DataFrame."""
    if isinstance(rows, pd.DataFrame):
        df = rows.copy()
    elif isinstance(rows, Iterable) and not isinstance(rows, str | bytes | Mapping):
        rows = list(rows)
        if not all(isinstance(r, Mapping) for r in rows):
            raise ValueError("rows must be a DataFrame or a list of dicts (one per method x seed)")
        df = pd.DataFrame(rows)
    else:
        raise ValueError(f"rows must be a DataFrame or a list of dicts; got {type(rows).__name__}")
    if df.empty:
        raise ValueError("rows is empty: nothing to tabulate")
    return df


def _metric_columns(df: pd.DataFrame, by: list[str], metrics) -> list[str]:
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"grouping column(s) {missing} not in rows (columns: {list(df.columns)}); pass by=")
    if metrics is None:
        metrics = [c for c in df.columns if c not in by and c not in _NOT_METRICS]
    else:
        metrics = list(metrics)
        absent = [m for m in metrics if m not in df.columns]
        if absent:
            raise ValueError(f"metric(s) {absent} not in rows (columns: {list(df.columns)})")
    if not metrics:
        raise ValueError("no metric columns to tabulate; pass metrics=[...]")
    return metrics


def _directions(metrics: list[str], higher_is_better) -> dict:
    """metric -> "higher" | "lower" | target float | None, from write_table's `higher_is_better`."""
    if isinstance(higher_is_better, bool):
        return {m: _direction(higher_is_better, m) for m in metrics}
    if higher_is_better is None or isinstance(higher_is_better, Mapping):
        spec = dict(higher_is_better or {})
        unknown = set(spec) - set(metrics)
        if unknown:
            raise ValueError(
                f"higher_is_better names unknown metric(s) {sorted(unknown)}; metrics: {metrics}"
            )
        return {m: _direction(spec[m], m) if m in spec else GAP_DIRECTIONS.get(m, "higher") for m in metrics}
    raise ValueError(
        f"higher_is_better must be a bool, a dict or None; got {type(higher_is_better).__name__}"
    )


def _csv(groups: list[dict], by: list[str], metrics: list[str]) -> str:
    csv_rows = []
    for g in groups:
        rec = {c: g[c] for c in by} | {"n_seeds": g["n_seeds"]}
        for m in metrics:
            mean, std, text = g[m]
            rec[f"{m}_mean"], rec[f"{m}_std"] = (text, "") if text is not None else (mean, std)
        csv_rows.append(rec)
    return pd.DataFrame(csv_rows).to_csv(index=False)


def _markdown(groups, by, metrics, dirs, decimals: int, skip: set[int]) -> str:
    """The table: "mean ± std" cells, the best displayed mean per column bold, `skip` rows in italics."""
    best = {m: _best(groups, m, dirs[m], decimals, skip) for m in metrics}

    def head(m):
        d = dirs[m]
        mark = direction_mark(d)
        return _md_escape(f"{m} {mark}".strip())

    def cell(i, m):
        mean, std, text = groups[i][m]
        if text is not None:
            return _md_escape(text)
        s = f"{mean:.{decimals}f}" + ("" if math.isnan(std) else f" ± {std:.{decimals}f}")
        n_ok, n = groups[i].get("n_finite", {}).get(m, groups[i]["n_seeds"]), groups[i]["n_seeds"]
        if n_ok < n:
            s += f" ({n_ok} of {n} seeds finite)"
        return f"**{s}**" if i in best[m] else s

    header = [*by, "n", *(head(m) for m in metrics)]
    lines = [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "| " + " | ".join(["---"] * len(by) + ["---:"] * (1 + len(metrics))) + " |",
    ]
    for i, g in enumerate(groups):
        cells = [_md_escape(g[c]) for c in by] + [str(g["n_seeds"])] + [cell(i, m) for m in metrics]
        if i in skip:
            cells[0] = f"*{cells[0]}*"
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Mean ± std over n seeds (sample std); bold = best per column "
        f"(↑ higher, ↓ lower, →x closest to x), decided at {decimals} decimals"
        + ("; rows in italics are calibration (floor / oracle), never ranked." if skip else "."),
    ]
    return "\n".join(lines) + "\n"


def write_intervals(
    rows: list[dict], stem: str | os.PathLike, versus: str, decimals: int = 3
) -> tuple[Path, Path]:
    """Write `dlink.evaluation.gap.gap_intervals` rows as stem.csv and stem.md; return (csv_path, md_path).

    The markdown shows, for every gap column the rows hold, each method's value with its 95 % interval
    and its difference to `versus` with the paired interval; a difference whose interval excludes 0
    is marked "(resolved)".
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: nothing to tabulate")
    cols = [c for c in INTERVAL_COLUMNS if c in rows[0]]
    if "method" not in rows[0] or not cols or any(f"d_{c}" not in rows[0] for c in cols):
        raise ValueError(
            f"rows lack method, a column of {INTERVAL_COLUMNS} or its d_ difference: "
            "pass the output of dlink.evaluation.gap.gap_intervals"
        )
    csv_path = atomic_write_text(_out_path(stem, ".csv"), pd.DataFrame(rows).to_csv(index=False))

    def ci(r, key, sign=""):
        lo, hi = r[key + "_lo"], r[key + "_hi"]
        bounds = "" if math.isnan(lo) else f" [{lo:{sign}.{decimals}f}, {hi:{sign}.{decimals}f}]"
        return f"{r[key]:{sign}.{decimals}f}{bounds}"

    def delta(r, key):
        if r["method"] == versus:
            return "-"
        resolved = r[key + "_lo"] > 0 or r[key + "_hi"] < 0
        return ci(r, key, "+") + (" (resolved)" if resolved else "")

    names = [f"{c} {direction_mark(GAP_DIRECTIONS[c])}".rstrip() for c in cols]
    lines = [
        "| method | " + " | ".join(f"{name} [95 % CI] | minus {versus}" for name in names) + " |",
        "| --- |" + " ---: | ---: |" * len(cols),
    ]
    lines += [
        f"| {_md_escape(r['method'])} | "
        + " | ".join(f"{ci(r, c)} | {delta(r, 'd_' + c)}" for c in cols)
        + " |"
        for r in rows
    ]
    r0 = rows[0]
    lines += [
        "",
        f"All {r0['n_items']} test items x {r0['n_seeds']} seed(s); 95 % percentile bootstrap intervals resampling "
        "training seeds and test items (one draw shared by all methods, so differences are paired): they cover "
        "seed and item variance. Per-item columns (paired cosine, kNN mixing, R@k, label-set AP) average each "
        "drawn item's value on the full set; centroid and Frechet distance are recomputed on each drawn item set "
        "(Frechet on the first replicates only; both intervals shifted by the bootstrap's bias, since a "
        "resampled distance is biased upwards)."
        + (
            " Separability (a classifier fit per replicate is too slow) takes seeds as the unit: a Student-t "
            "interval over the per-seed values, which covers seed variance only."
            if "separability" in cols
            else ""
        ),
    ]
    md_path = atomic_write_text(_out_path(stem, ".md"), "\n".join(lines) + "\n")
    return csv_path, md_path


def write_settings(chosen: Iterable[Mapping], path, methods: list[str], title: str = "") -> tuple[Path, Path]:
    """Write the inference settings chosen per method and seed as a markdown table, and every setting
    tried with its validation score as <path stem>_tried.csv beside it. Atomic.

    chosen: dicts with "method", "seed", "settings" (a dict; empty = nothing to choose) and "scores"
    (the list `experiment.bridged` returns: each setting tried with its validation score).
    """
    chosen = list(chosen)
    df = pd.DataFrame(chosen)
    seeds = sorted(df["seed"].unique())
    cell = {(r["method"], r["seed"]): r["settings"] for r in chosen}
    lines = [title, ""] if title else []
    lines += [
        "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- |" + " --- |" * len(seeds),
    ]
    lines += [f"| {m} | " + " | ".join(str(cell.get((m, s)) or "-") for s in seeds) + " |" for m in methods]
    path = Path(path)
    tried = pd.DataFrame(
        [{"method": r["method"], "seed": r["seed"], **t} for r in chosen for t in r.get("scores", [])]
    )
    tried_path = atomic_write_text(path.with_name(path.stem + "_tried.csv"), tried.to_csv(index=False))
    return atomic_write_text(path, "\n".join(lines) + "\n"), tried_path
