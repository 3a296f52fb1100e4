"""Does a fresh default run reproduce the committed tables in results/? Run it before committing
new results.

    python scripts/reproduce_check.py --run /tmp/dlink-fresh   # clone this commit there, run
                                                               # ./run_all.sh (default profile), compare
    python scripts/reproduce_check.py /tmp/dlink-fresh/results # compare a finished run's results/

It compares every table the default run writes (results/*.csv, *.md, *.json; other profiles'
subfolders and figures are not compared) with the committed ones and exits 1 with a readable
list of differences, 0 when they agree:

- exact where the run is deterministic: text must match character for character; numbers in
  CSV and JSON files may differ only by float round-off (1e-9, relative), numbers in markdown
  must print the same;
- within a stated tolerance where it is not: the bootstrap intervals of CIDEr-D and the relative
  gains (and their intervals) of the captioning tables move a little with thread scheduling, so
  they may differ by TOLERANCES below (0.01 CIDEr-D; 1 percentage point of gain).

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
from dataclasses import dataclass
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
ROUND_OFF = 1e-9


@dataclass(frozen=True)
class Tolerance:
    files: str  # glob on the file name
    field: str  # regex on the CSV column, markdown column header, JSON key path, or (markdown
    #             text outside tables) the line itself
    atol: float
    why: str


TOLERANCES = (
    Tolerance("aac_*.csv", r"^cider_(lo|hi)$", 0.01, "bootstrap 95 % interval of CIDEr-D"),
    Tolerance("aac_*.csv", r"^gain(_lo|_hi)?$", 0.01, "relative gain and its interval (fractions)"),
    Tolerance("aac_*.md", r"^CIDEr-D \[95 % CI\]$", 0.01, "bootstrap 95 % interval of CIDEr-D"),
    Tolerance("aac_*.md", r"^gain \[95 % CI\]$", 1.0, "relative gain in %, and its interval"),
    Tolerance("aac_*.md", r"(?i)relative CIDEr-D gain", 1.0, "the gain quoted in the text, in %"),
    # the Frechet distance takes a matrix square root (scipy.linalg.sqrtm) of a product of two
    # covariances, which turns last-bit differences of its inputs (a reordered normalisation) into
    # ~1e-8 differences; seen between 1b1c46e and dc64227 while every other gap column was bitwise equal
    Tolerance("*.csv", r"^frechet", 1e-6, "matrix square root amplifies round-off of its inputs"),
    Tolerance("*.json", r"frechet", 1e-6, "matrix square root amplifies round-off of its inputs"),
)
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _tolerance(name: str, field: str) -> Tolerance | None:
    for t in TOLERANCES:
        if fnmatch.fnmatch(name, t.files) and re.search(t.field, field):
            return t
    return None


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _close(a: float, b: float, tol: Tolerance | None) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if tol is not None:
        return abs(a - b) <= tol.atol + ROUND_OFF
    return abs(a - b) <= ROUND_OFF * max(1.0, abs(a), abs(b))


def _say(tol: Tolerance | None) -> str:
    return f"tolerance {tol.atol:g}: {tol.why}" if tol else "must be exact"


# ---------------------------------------------------------------- per format


def compare_csv(name: str, old: str, new: str) -> list[str]:
    a, b = list(csv.reader(io.StringIO(old))), list(csv.reader(io.StringIO(new)))
    if not a or not b or a[0] != b[0]:
        return [f"columns differ:\n    committed {a[0] if a else []}\n    fresh     {b[0] if b else []}"]
    header, diffs = a[0], []
    if len(a) != len(b):
        diffs.append(f"{len(a) - 1} rows committed, {len(b) - 1} fresh")
    for i, (ra, rb) in enumerate(zip(a[1:], b[1:], strict=False), start=2):
        key = " ".join(c for c in ra if _num(c) is None and c)[:60] or f"line {i}"
        for col, x, y in zip(header, ra, rb, strict=False):
            fx, fy = _num(x), _num(y)
            tol = _tolerance(name, col)
            if fx is not None and fy is not None:
                if not _close(fx, fy, tol):
                    diffs.append(f"row '{key}', {col}: committed {x}, fresh {y} ({_say(tol)})")
            elif x != y:
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
            tol = _tolerance(name, path)
            if not _close(float(x), float(y), tol):
                diffs.append(f"{path}: committed {x}, fresh {y} ({_say(tol)})")
        elif x != y:
            diffs.append(f"{path}: committed {x!r}, fresh {y!r}")

    walk(json.loads(old), json.loads(new), "")
    return diffs


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _compare_text(name: str, field: str, x: str, y: str, where: str) -> str | None:
    """Same words, and numbers equal (or within the field's tolerance)."""
    if x == y:
        return None
    tol = _tolerance(name, field)
    nx, ny = NUMBER.findall(x), NUMBER.findall(y)
    if tol is None or NUMBER.sub("#", x) != NUMBER.sub("#", y) or len(nx) != len(ny):
        return f"{where}: committed {x!r}, fresh {y!r} ({_say(tol)})"
    worst = max(abs(float(u) - float(v)) for u, v in zip(nx, ny, strict=False))
    if worst > tol.atol + ROUND_OFF:
        return f"{where}: committed {x!r}, fresh {y!r} (off by {worst:g}; {_say(tol)})"
    return None


def compare_md(name: str, old: str, new: str) -> list[str]:
    a, b = old.splitlines(), new.splitlines()
    diffs = []
    if len(a) != len(b):
        diffs.append(f"{len(a)} lines committed, {len(b)} fresh")
    header: list[str] = []
    for i, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        is_row = x.lstrip().startswith("|") and y.lstrip().startswith("|")
        if is_row and i < len(a) and re.fullmatch(r"\s*\|[\s:|-]+\|\s*", a[i]):
            header = _cells(x)  # the next line is the separator: this is a header
        if not is_row:
            header = [] if not x.strip() else header
            d = _compare_text(name, x, x, y, f"line {i}")
            if d:
                diffs.append(d)
            continue
        cx, cy = _cells(x), _cells(y)
        if len(cx) != len(cy):
            diffs.append(f"line {i}: committed {x!r}, fresh {y!r}")
            continue
        row = cx[1] if len(cx) > 1 else cx[0]
        for j, (u, v) in enumerate(zip(cx, cy, strict=False)):
            col = header[j] if j < len(header) else f"column {j + 1}"
            d = _compare_text(name, col, u, v, f"line {i} ({cx[0]} {row}), {col}")
            if d:
                diffs.append(d)
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
        f"[reproduce] {fresh} reproduces {committed} (exact where deterministic, within TOLERANCES elsewhere)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
