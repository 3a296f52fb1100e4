"""Does a fresh default run reproduce the committed tables in results/? Run it before committing
new results.

    python scripts/reproduce_check.py --run /tmp/dlink-fresh   # clone this commit there, run
                                                               # ./run_all.sh (default profile), compare
    python scripts/reproduce_check.py /tmp/dlink-fresh/results # compare a finished run's results/
    OMP_NUM_THREADS=2 python scripts/reproduce_check.py --run /tmp/dlink-2t   # another thread count
                                                               # (a default run on 2 cores uses 1)

Training is not bitwise reproducible across machines and thread counts (round-off grows through
training), so a rerun is judged against the variance the tables state. Every table the default run
writes (results/*.csv, *.md, *.json and results/items/; other profiles' subfolders, figures and
NOT_FROM_RUN are not compared) is checked, and it exits 1 with a readable list of differences, 0
when they agree:

- headlines, within each other's interval: in the interval tables (INTERVAL_TABLES: the captioning
  tables' CIDEr-D means, gains and differences to diffusion_link; every gap column of
  gap_intervals.csv and its difference; the ablations' differences) every point estimate of each run
  must lie inside the other run's 95 % interval (seed x item bootstrap, dlink.evaluation.stats);
- exact where the run is deterministic: the data build and splits (EXACT files, character for
  character) and the count columns (COUNTS: seeds, items);
- structure elsewhere: the same files, columns, rows, JSON keys and markdown text with the numbers
  (and "(resolved)" marks) masked; generated captions and chosen settings (FREE_TEXT) only exist.
  Their numbers (means ± std without an interval, BLEU, distinct shares) are not headlines.

Files that the notebooks do not write (NOT_FROM_RUN: benchmark outputs) are skipped.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("*.csv", "*.md", "*.json")
# written by benchmarks (compare_decoders.py holds wall-clock times; split_unit.py), or by hand
# (STALE.md lists tables the last default run did not regenerate), not by a notebook
NOT_FROM_RUN = (
    "decoder_comparison.json",
    "decoder_comparison.md",
    "split_unit.md",
    "split_unit_recording.csv",
    "split_unit_series.csv",
    "stage_costs.md",
    "STALE.md",
)
EXACT = ("fit_split.md",)  # the data build and the splits: deterministic given the data
INTERVAL_TABLES = ("aac_*.csv", "gap_intervals.csv", "ablations.csv")
# a headline column whose interval columns are not <column>_lo / <column>_hi
INTERVAL_OF = {"CIDEr-D_mean": ("cider_lo", "cider_hi")}
COUNTS = ("n_seeds", "n_items")
FREE_TEXT = ("*_samples.md", "*_samples.csv", "bridge_settings.md")
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
ROUND_OFF = 1e-9


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _mask(text: str) -> str:
    return NUMBER.sub("#", text.replace(" (resolved)", ""))


# ---------------------------------------------------------------- per format


def _intervals(header: list[str]) -> dict[str, tuple[str, str]]:
    """{headline column: (lo column, hi column)} of a CSV header."""
    out = {c: (f"{c}_lo", f"{c}_hi") for c in header if f"{c}_lo" in header and f"{c}_hi" in header}
    return out | {c: lh for c, lh in INTERVAL_OF.items() if c in header and set(lh) <= set(header)}


def _inside(value: str, lo: str, hi: str) -> bool:
    """value within [lo, hi]; an empty value (a row without the statistic) needs an empty interval."""
    v, a, b = _num(value), _num(lo), _num(hi)
    if v is None:
        return a is None and b is None
    if a is None or b is None or math.isnan(a) or math.isnan(b) or math.isnan(v):
        return False  # no interval to judge by (one seed and a seeds-as-unit interval): not reproduced
    return a - ROUND_OFF <= v <= b + ROUND_OFF


def compare_csv(name: str, old: str, new: str) -> list[str]:
    a, b = list(csv.reader(io.StringIO(old))), list(csv.reader(io.StringIO(new)))
    if not a or not b or a[0] != b[0]:
        return [f"columns differ:\n    committed {a[0] if a else []}\n    fresh     {b[0] if b else []}"]
    header, diffs = a[0], []
    if len(a) != len(b):
        diffs.append(f"{len(a) - 1} rows committed, {len(b) - 1} fresh")
    if any(fnmatch.fnmatch(name, p) for p in FREE_TEXT):
        return diffs  # generated captions move with training round-off: same columns and rows only
    checked = _intervals(header) if any(fnmatch.fnmatch(name, p) for p in INTERVAL_TABLES) else {}
    at = {c: i for i, c in enumerate(header)}
    for i, (ra, rb) in enumerate(zip(a[1:], b[1:], strict=False), start=2):
        key = (
            " ".join(c for c in ra if _num(c) is None and c and c not in ("True", "False"))[:60]
            or f"line {i}"
        )
        for col, x, y in zip(header, ra, rb, strict=False):
            fx, fy = _num(x), _num(y)
            if col in COUNTS:
                if fx != fy:
                    diffs.append(f"row '{key}', {col}: committed {x}, fresh {y} (must be exact)")
            elif col in checked:
                lo, hi = (at[c] for c in checked[col])
                if not _inside(x, rb[lo], rb[hi]):
                    diffs.append(f"row '{key}', {col}: committed {x} outside the fresh run's interval "
                                 f"[{rb[lo]}, {rb[hi]}]")  # fmt: skip
                if not _inside(y, ra[lo], ra[hi]):
                    diffs.append(f"row '{key}', {col}: fresh {y} outside the committed interval "
                                 f"[{ra[lo]}, {ra[hi]}]")  # fmt: skip
            elif (fx is None) != (fy is None) or (fx is None and x != y and x not in ("True", "False")):
                diffs.append(f"row '{key}', {col}: committed {x!r}, fresh {y!r}")
    return diffs


def compare_json(name: str, old: str, new: str) -> list[str]:
    diffs: list[str] = []

    def walk(x, y, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if k not in x or k not in y:
                    diffs.append(f"{path}/{k}: only in {'fresh' if k in y else 'committed'}")
                else:
                    walk(x[k], y[k], f"{path}/{k}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=False)):
                walk(u, v, f"{path}[{i}]")
        elif isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            pass  # measured numbers: not headlines (no interval to judge them by)
        elif x != y:
            diffs.append(f"{path}: committed {x!r}, fresh {y!r}")

    walk(json.loads(old), json.loads(new), "")
    return diffs


def compare_md(name: str, old: str, new: str) -> list[str]:
    if any(fnmatch.fnmatch(name, p) for p in FREE_TEXT):
        return []  # generated captions and chosen settings move with training round-off
    a, b = old.splitlines(), new.splitlines()
    exact = name in EXACT
    diffs = []
    if len(a) != len(b):
        diffs.append(f"{len(a)} lines committed, {len(b)} fresh")
    for i, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y and (exact or _mask(x) != _mask(y)):
            how = "must be exact" if exact else "the text differs, not only its numbers"
            diffs.append(f"line {i}: committed {x!r}, fresh {y!r} ({how})")
    return diffs


COMPARE = {".csv": compare_csv, ".json": compare_json, ".md": compare_md}


# ---------------------------------------------------------------- folders


def compare_dirs(committed: Path, fresh: Path, limit: int = 20) -> tuple[list[str], int]:
    """(report lines, number of differences) between two results folders."""
    names = lambda d: {p.name for pat in PATTERNS for p in d.glob(pat)} - set(NOT_FROM_RUN)  # noqa: E731
    lines, total = [], 0
    for n in sorted(names(committed) - names(fresh)):
        lines.append(f"{n}: committed but not written by the fresh run")
        total += 1
    for n in sorted(names(fresh) - names(committed)):
        lines.append(f"{n}: written by the fresh run but not committed")
        total += 1
    items = lambda d: {p.name for p in (d / "items").glob("*.csv*")}  # noqa: E731
    for n in sorted(items(committed) ^ items(fresh)):
        where = (
            "committed but not written by the fresh run"
            if n in items(committed)
            else "written by the fresh run but not committed"
        )
        lines.append(f"items/{n}: {where}")
        total += 1
    for n in sorted(names(committed) & names(fresh)):
        old, new = (committed / n).read_text(), (fresh / n).read_text()
        diffs = [] if old == new else COMPARE[Path(n).suffix](n, old, new)
        total += len(diffs)
        if diffs:
            lines.append(f"{n}: {len(diffs)} difference(s)")
            lines += [f"  {d}" for d in diffs[:limit]]
            if len(diffs) > limit:
                lines.append(f"  ... and {len(diffs) - limit} more")
    return lines, total


def fresh_run(where: Path) -> Path:
    """Clone this repository's HEAD into `where` and run the default profile there."""
    if where.exists() and any(where.iterdir()):
        raise SystemExit(f"[reproduce] {where} exists and is not empty; give a new folder")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(where)], check=True)
    subprocess.run(["./run_all.sh", "--profile", "default"], cwd=where, check=True)
    return where / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compare results/ with a fresh default run's tables.")
    ap.add_argument("fresh", nargs="?", help="the fresh run's results folder")
    ap.add_argument("--run", metavar="DIR", help="clone HEAD into DIR, run the default profile, compare")
    ap.add_argument("--committed", default=str(ROOT / "results"), help="default: results/")
    args = ap.parse_args(argv)
    if bool(args.fresh) == bool(args.run):
        ap.error("give a fresh results folder or --run DIR (one of them)")
    fresh = fresh_run(Path(args.run)) if args.run else Path(args.fresh)
    committed = Path(args.committed)
    for d in (committed, fresh):
        if not d.is_dir():
            print(f"[reproduce] error: {d} is not a folder", file=sys.stderr)
            return 2
    lines, total = compare_dirs(committed, fresh)
    print("\n".join(lines))
    if total:
        print(f"[reproduce] {total} difference(s) between {committed} and {fresh}: not reproduced")
        return 1
    print(
        f"[reproduce] {fresh} reproduces {committed} (every headline inside the other's interval, exact where deterministic)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
