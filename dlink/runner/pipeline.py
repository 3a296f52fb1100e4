"""Run the numbered notebooks in order with papermill, resumably.

    ./run_all.sh [--force] [--profile smoke|default|full|llm] [--only 03] [-p NAME VALUE ...]
    python -m dlink.runner.pipeline --profile smoke --only 03 -p seeds "[0, 1]"
    python -m dlink.runner.pipeline publish                      # a finished default run's outputs -> notebooks/
    python -m dlink.runner.pipeline strip notebooks/*.ipynb      # clear outputs instead
    ./run_all.sh --lab [--port N ...]     # open the notebooks in JupyterLab instead (dlink.runner.lab)

What a run does:
- executes notebooks/[0-9][0-9]_*.ipynb in order (those the profile names in `notebooks`, or
  --only's), each into runs/<profile>/NN_name.ipynb
  (git-ignored; the sources are never written). Execution goes to a hidden temp file that is
  renamed when the notebook finishes, so runs/ holds finished notebooks only; a failed one is
  kept as runs/<profile>/NN_name.failed.ipynb with the traceback in place.
- the kernel is "python3" resolved to the interpreter running this module (the project's
  .venv when started by run_all.sh), with that interpreter's bin/ first on PATH, and
  DLINK_PROFILE=<profile> in its environment (so `profile = None` in a notebook means this run's).
- threads: unless OMP_NUM_THREADS is set, the kernel gets OMP_NUM_THREADS, MKL_NUM_THREADS and
  OPENBLAS_NUM_THREADS = dlink.device.torch_threads() (usable CPUs less one, or $DLINK_THREADS),
  so torch and numpy's BLAS use one count and a default run computes what a run under
  OMP_NUM_THREADS=<that count> computes; each done marker records the three values.
- `-p NAME VALUE` is checked against each notebook's parameters cell before anything runs
  (papermill alone only warns about unknown names), and values of resolve_params' arguments
  (dataset, encoder, seeds, ...) are validated by it up front; a name goes only to the
  notebooks that declare it, and a resolve_params argument that the parameters cell does not name
  (clap_ckpt, lm, max_missing, ...) goes into the notebook's `options` dict. VALUE is read like YAML: 3 -> int, [0, 1] -> list, None/null -> None, text -> str.
- paths (clap_ckpt, data_root, clap_tokenizer, a local lm folder) are made absolute against the
  directory the command was run from ($DLINK_USER_CWD, set by run_all.sh) before anything runs.
- resume: after a notebook succeeds, runs/<profile>/.done/NN_name.json records a key: the hash
  of the notebook's cell sources, its parameters, the profile and the hashes of every earlier
  notebook's done marker, plus the files it wrote under figures/ and results/ with their sha256.
  A notebook whose key is unchanged and whose files still hold what it (or a later step) wrote
  is skipped (a deleted, truncated or edited output reruns it); rerunning an earlier notebook
  changes its marker and so reruns everything after it. --force reruns regardless.
  The key also holds the profile's fields and a hash of the dlink package's source, so a
  changed profile or code reruns the notebooks (cached bridges and captioners are keyed by
  their own config and code, so an unaffected one is reused, not retrained).
- live progress (unless --no-progress): a line when each code cell starts, the kernel's output
  (its prints and tqdm bars) relayed as it comes, and a heartbeat line after 30 s of silence
  (dlink.runner.progress), so no step runs a silent minute.
- it stops at the first failure, naming the notebook, the cell (1-based, counted in the source
  notebook), its execution count and the exception; prints each notebook's time; and ends by
  listing the files under figures/ and results/ that the run created or changed.

Testing the notebooks with nbval (scripts/run_tests.sh):

    DLINK_PROFILE=smoke pytest --nbval-lax --sanitize-with tests/nbval_sanitize.cfg notebooks/

Under --nbval-lax every cell must run without error, but outputs are NOT compared, except in
cells whose source contains the comment `# NBVAL_CHECK_OUTPUT`: their stored outputs are
compared strictly, after tests/nbval_sanitize.cfg has replaced timings, absolute paths, memory
addresses and tqdm bars on both sides. So a strict cell must print deterministic, rounded
values (e.g. `print(round(gap["paired_cosine"], 3))` under fixed seeds and the smoke
profile), and its output must be kept in the committed notebook: `strip` below clears every
output except those of NBVAL_CHECK_OUTPUT cells.

Committed notebooks carry outputs only from `publish`: after a finished default run it copies
each executed runs/default/NN_name.ipynb into notebooks/ so that a reader sees the figures and
tables unrun. The source cells are kept exactly (publish refuses a run whose cells differ from
the sources), papermill's injected-parameters cell and metadata are dropped, execution counts
are renumbered 1, 2, ... (nbval rejects outputs of a cell without one), and NBVAL_CHECK_OUTPUT
cells keep their committed smoke-profile outputs, since nbval compares those. Other markers nbval knows: `# NBVAL_SKIP`
(do not run the cell), `# NBVAL_RAISES_EXCEPTION` (the cell must raise).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dlink import paths
from dlink._io import atomic_write_text, read_json, write_json
from dlink.cache import code_hash
from dlink.device import THREAD_VARS, thread_env
from dlink.runner import progress as live_progress

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
KERNEL_NAME = "python3"
STRICT_MARKER = "NBVAL_CHECK_OUTPUT"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the exception."""

    def __init__(
        self, notebook: str, cell: int, n_cells: int, exec_count, ename: str, evalue: str, kept: Path
    ):
        self.notebook, self.cell, self.exec_count, self.ename, self.evalue, self.kept = (
            notebook,
            cell,
            exec_count,
            ename,
            evalue,
            kept,
        )
        super().__init__(
            f"{notebook} failed in cell {cell} of {n_cells} (In [{exec_count}]): {ename}: {evalue}\n"
            f"  the executed notebook with the traceback is kept at {kept}"
        )


@dataclass
class StepResult:
    notebook: str
    status: str  # "ran" | "skipped" | "FAILED"
    seconds: float = 0.0
    output: Path | None = None


@dataclass
class PipelineResult:
    steps: list[StepResult] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # new or changed files under the watched folders


# ---------------------------------------------------------------- notebook inspection


def find_notebooks(notebooks_dir: str | os.PathLike = paths.NOTEBOOKS) -> list[Path]:
    """The numbered notebooks NN_name.ipynb in run order."""
    folder = Path(notebooks_dir)
    found = sorted(folder.glob(NOTEBOOK_GLOB))
    if not found:
        raise FileNotFoundError(f"no notebooks matching {NOTEBOOK_GLOB} in {folder}")
    return found


def _read_nb(path: Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def notebook_parameters(path: str | os.PathLike) -> list[str]:
    """Names assigned in the notebook's cell tagged `parameters` ([] if it has none).

    Parsed with `ast`, so `a = 1; b = 2` on one line counts both (papermill's own inspection
    reads one name per line).
    """
    nb = _read_nb(Path(path))
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "\n".join(
                line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
            )
            try:
                tree = ast.parse(src)
            except SyntaxError as e:
                raise ValueError(f"{path}: the parameters cell is not valid Python ({e})") from e
            names: list[str] = []
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for t in targets:
                    if isinstance(t, ast.Name) and t.id not in names:
                        names.append(t.id)
            return names
    return []


def _source_hash(path: Path) -> str:
    """Hash of the cells' types and sources only: outputs, counts and metadata do not matter."""
    nb = _read_nb(path)
    cells = [[c.cell_type, c.source] for c in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def _source_cell_number(path: Path, error) -> tuple[int, int]:
    """(1-based cell number in the SOURCE notebook, number of cells) for a papermill error.

    papermill's cell_index counts the 'injected-parameters' cell it adds; match by source
    first, and fall back to removing that offset.
    """
    cells = _read_nb(path).cells
    matches = [i for i, c in enumerate(cells) if c.source == error.source]
    if len(matches) == 1:
        return matches[0] + 1, len(cells)
    injected_at = next(
        (i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None
    )
    idx = error.cell_index
    if injected_at is not None and idx > injected_at + 1:
        idx -= 1
    return idx + 1, len(cells)


# ---------------------------------------------------------------- parameters


def parse_value(text: str) -> Any:
    """A -p VALUE as papermill would read it, plus YAML lists: '3'->3, '[0, 1]'->[0, 1]."""
    if text in ("None", "null"):
        return None
    if text in ("True", "False"):
        return text == "True"
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 as text
        except ValueError:
            return value
    return value if isinstance(value, (int, float, bool, list, dict, type(None))) else text


def _select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    if only is None:
        return notebooks
    wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
    if not wanted:  # `--only ""` (an empty shell variable) would run nothing and report success
        raise ValueError(
            f"--only {' '.join(repr(o) for o in only) or '(empty)'} names no notebook; "
            f"give one or more of {', '.join(nb.stem.split('_', 1)[0] for nb in notebooks)}, or drop --only"
        )
    chosen = []
    for w in wanted:
        key = f"{int(w):02d}" if w.isdigit() else w.removesuffix(".ipynb")
        hits = [nb for nb in notebooks if nb.stem == key or nb.stem.split("_", 1)[0] == key]
        if not hits:
            raise ValueError(f"--only {w}: no such notebook; have {', '.join(nb.stem for nb in notebooks)}")
        chosen += [h for h in hits if h not in chosen]
    return [nb for nb in notebooks if nb in chosen]


def _resolve_params_names() -> set[str]:
    import inspect

    from dlink.encoders.registry import option_params
    from dlink.profiles import resolve_params

    # an encoder's options reach resolve_params through **unknown when not in its signature
    return (set(inspect.signature(resolve_params).parameters) | set(option_params())) - {"profile", "unknown"}


def _expand_options(params: dict[str, Any]) -> dict[str, Any]:
    """`-p options {...}` (the notebooks' dict of further resolve_params arguments) as single names, so
    both spellings route, resolve paths and validate alike."""
    if "options" not in params:
        return params
    options = params["options"]
    if not isinstance(options, dict):
        raise ValueError(f"-p options {options!r}: give a mapping, e.g. -p options '{{lm: scratch}}'")
    clash = sorted(set(options) & (set(params) - {"options"}))
    if clash:
        raise ValueError(f"-p {', '.join(clash)} given twice (alone and inside -p options); give it once")
    return {k: v for k, v in params.items() if k != "options"} | options


def _route_parameters(selected: list[Path], params: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Per-notebook parameters; raises before anything runs if a name is declared nowhere.

    A resolve_params argument that a notebook does not declare by name goes into its `options` dict."""
    if "profile" in params:
        raise ValueError("set the profile with --profile NAME, not -p profile NAME")
    declared = {nb: notebook_parameters(nb) for nb in selected}
    accepted = _resolve_params_names()

    def takes(names: list[str], name: str) -> bool:
        return name in names or ("options" in names and name in accepted)

    unknown = [n for n in params if not any(takes(names, n) for names in declared.values())]
    if unknown:
        listing = "; ".join(
            f"{nb.stem}: {', '.join(names) or '(no parameters cell)'}" for nb, names in declared.items()
        )
        raise ValueError(
            f"-p {', '.join(unknown)}: not a parameter of any selected notebook. Parameters cells declare: {listing}"
            f" (and `options` takes any of {', '.join(sorted(accepted))})"
        )
    routed = {}
    for nb, names in declared.items():
        mine = {k: v for k, v in params.items() if k in names}
        options = {k: v for k, v in params.items() if k not in names and takes(names, k)}
        routed[nb] = mine | ({"options": options} if options else {})
    return routed


def _precheck(profile: str, params: dict[str, Any]) -> str:
    """Validate the -p values that the notebooks hand to resolve_params now, not in notebook 01.
    Returns the run's label (`Params.label`): the folder its executed notebooks go to under runs/."""
    from dlink.profiles import resolve_params

    accepted = _resolve_params_names()
    return resolve_params(profile=profile, **{k: v for k, v in params.items() if k in accepted}).label


# ---------------------------------------------------------------- bookkeeping


def _marker_path(run_dir: Path, nb: Path) -> Path:
    return run_dir / ".done" / f"{nb.stem}.json"


def _file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _changed_outputs(recorded, run_dir: Path) -> list[str]:
    """Recorded output files that are missing or whose content no finished step wrote.

    A file counts as intact when its sha256 is the one this step recorded or one that another
    step's marker recorded (two notebooks may write the same file; the later one's content is
    then current). A marker that predates the hashes lists names only: all count as changed.
    """
    if not isinstance(recorded, dict):
        return [str(f) for f in recorded or []] or ["(marker without content hashes)"]
    known: dict[str, set] = {}
    for m in (run_dir / ".done").glob("*.json"):
        try:
            outs = read_json(m).get("outputs")
        except (ValueError, AttributeError):
            continue
        if isinstance(outs, dict):
            for f, h in outs.items():
                known.setdefault(f, set()).add(h)
    changed = []
    for f, h in recorded.items():
        now = _file_hash(Path(f))
        if now is None or (now != h and now not in known.get(f, ())):
            changed.append(f)
    return changed


def _step_key(nb: Path, params: dict, profile: str, upstream: list[Path], run_dir: Path) -> str:
    payload = {
        "notebook": _source_hash(nb),
        "parameters": params,
        "profile": profile,
        # what the profile holds and the package's code: changing either reruns the notebooks
        "profile_fields": _profile_fields(profile),
        "code": code_hash(),
        # whole marker files (they hold the finish time), so rerunning a step invalidates the rest
        "upstream": [_file_hash(_marker_path(run_dir, u)) for u in upstream],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _profile_fields(profile: str) -> dict | None:
    from dlink.profiles import get_profile

    try:
        return get_profile(profile).as_dict()
    except ValueError:
        return None


def _snapshot(folders) -> dict[Path, tuple[int, int]]:
    state = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            for p in folder.rglob("*"):
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts):
                    st = p.stat()
                    state[p] = (st.st_size, st.st_mtime_ns)
    return state


class PipelineBusy(RuntimeError):
    """Another run holds this checkout's run lock."""


@contextlib.contextmanager
def _run_lock(runs_dir: Path):
    """One run per runs folder (per checkout) at a time: a second one stops at once, naming the first,
    instead of running every notebook again and recording the other run's files as its own."""
    import fcntl

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    lock = runs_dir / ".pipeline.lock"
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes, also on a crash
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise PipelineBusy(
                f"another run of this checkout is in progress ({holder}; lock {lock}); wait for it to "
                "finish or stop it, then run again"
            ) from None
        f.seek(0)
        f.truncate()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        f.write(f"pid {os.getpid()}, started {started}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def check_checkout(started_from: str | os.PathLike | None = None) -> None:
    """Refuse a run whose dlink (and so data/, results/, figures/) is not in the checkout it was started
    from: a copied checkout whose venv's editable install still points at the original would write
    the original's files. `started_from` defaults to $DLINK_CHECKOUT (set by run_all.sh)."""
    started_from = started_from or os.environ.get("DLINK_CHECKOUT")
    if not started_from:
        return
    here = Path(started_from).resolve()
    package = Path(paths.__file__).resolve().parent.parent  # the checkout holding dlink/
    if here != paths.ROOT or here != package:
        via = (
            f"DLINK_ROOT={os.environ['DLINK_ROOT']}" if os.environ.get("DLINK_ROOT") else "its dlink package"
        )
        raise ValueError(
            f"this run was started from {here}, but it would read and write {paths.ROOT} ({via}; "
            f"dlink imported from {package}): refusing to write another checkout's data/, results/ "
            f"and figures/. Run {paths.ROOT}/run_all.sh there, or make this checkout's venv use its own "
            f"code: {here}/.venv/bin/pip install --no-deps -e {here}"
        )


@contextlib.contextmanager
def _kernel_env(profile: str):
    """Environment the kernel inherits: this interpreter first on PATH, DLINK_PROFILE set, this
    dlink first on PYTHONPATH (the kernel runs in notebooks/, where an editable install of another
    checkout would otherwise win), and one thread count for torch and numpy's BLAS
    (`dlink.device.thread_env`: set only where OMP_NUM_THREADS is not), so a default run computes
    what a run under OMP_NUM_THREADS=<that count> computes."""
    threads = thread_env()
    saved = {k: os.environ.get(k) for k in ("PATH", "DLINK_PROFILE", "PYTHONPATH", *threads)}
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ["DLINK_PROFILE"] = profile
    package_parent = str(Path(paths.__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, saved["PYTHONPATH"]) if p)
    os.environ.update(threads)
    try:
        yield threads
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------- running


def run_pipeline(
    profile: str | None = None,
    only: list[str] | None = None,
    params: dict[str, Any] | None = None,
    force: bool = False,
    notebooks_dir: str | os.PathLike = paths.NOTEBOOKS,
    runs_dir: str | os.PathLike = paths.ROOT / "runs",
    watch: tuple[str | os.PathLike, ...] = (paths.FIGURES, paths.RESULTS),
    progress: bool = True,
    log=print,
) -> PipelineResult:
    """Execute the numbered notebooks in order; see the module docstring.

    Raises ValueError (bad profile, --only or -p, before anything runs) or NotebookFailed.
    """
    from dlink.profiles import get_profile, resolve_user_paths

    prof = get_profile(profile)
    profile = prof.name
    # notebooks run inside notebooks/: a relative path means the user's directory, so fix it now
    params = resolve_user_paths(_expand_options(dict(params or {})))
    notebooks = find_notebooks(notebooks_dir)
    selected = _select(
        notebooks, only if only is not None or prof.notebooks is None else list(prof.notebooks)
    )
    routed = _route_parameters(selected, params)
    label = _precheck(profile, params)
    run_dir = Path(runs_dir) / label
    notebooks_dir = Path(notebooks_dir).resolve()
    if run_dir.resolve() == notebooks_dir or notebooks_dir in run_dir.resolve().parents:
        raise ValueError(
            f"runs_dir {runs_dir} is inside the notebooks folder; executed copies never go there"
        )

    result = PipelineResult()
    before = _snapshot(watch)
    try:
        with _run_lock(Path(runs_dir)), _kernel_env(profile) as exported:
            n, how = os.environ["OMP_NUM_THREADS"], "set for the kernels" if exported else "as set"
            log(f"[pipeline] CPU threads for torch and BLAS: OMP_NUM_THREADS={n} ({how})")
            for nb in selected:
                _run_step(nb, notebooks, routed[nb], profile, run_dir, force, progress, watch, log, result)
    except NotebookFailed as e:
        e.result = result  # so the caller can still report what ran and what was written
        raise
    finally:
        after = _snapshot(watch)
        result.written = sorted(p for p, st in after.items() if before.get(p) != st)
    return result


def _run_step(nb, notebooks, nb_params, profile, run_dir, force, progress, watch, log, result) -> None:
    upstream = notebooks[: notebooks.index(nb)]
    nb_params = dict(nb_params)
    if "profile" in notebook_parameters(nb):
        nb_params["profile"] = profile
    key = _step_key(nb, nb_params, profile, upstream, run_dir)
    marker, out = _marker_path(run_dir, nb), run_dir / nb.name
    if not force and marker.is_file() and out.is_file():
        done = read_json(marker)
        gone = _changed_outputs(done.get("outputs"), run_dir)
        if done.get("key") == key and not gone:
            log(f"[pipeline] {nb.stem}: up to date, skipped (--force reruns it)")
            result.steps.append(StepResult(nb.stem, "skipped", 0.0, out))
            return
        if done.get("key") == key:
            log(
                f"[pipeline] {nb.stem}: {len(gone)} of its output files are gone or changed since it ran "
                f"(e.g. {gone[0]}); rerunning"
            )
    missing = [u.stem for u in upstream if not _marker_path(run_dir, u).is_file()]
    if missing:
        log(
            f"[pipeline] warning: {', '.join(missing)} not run yet for profile {profile}; {nb.stem} may lack inputs"
        )
    # A step that starts is not done until it finishes: a failure or Ctrl-C half way through
    # (its outputs possibly half rewritten) must not be skipped next time.
    marker.unlink(missing_ok=True)
    shown = ", ".join(f"{k}={v!r}" for k, v in nb_params.items())
    log(f"[pipeline] {nb.stem}: running ({shown})")
    t0, before = time.perf_counter(), _snapshot(watch)
    try:
        seconds = _execute(nb, out, nb_params, progress)
    except NotebookFailed:
        result.steps.append(StepResult(nb.stem, "FAILED", time.perf_counter() - t0, None))
        raise
    done_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # content hashes, not names: a truncated or hand-edited result must not count as up to date
    outputs = {str(p): _file_hash(p) for p, st in sorted(_snapshot(watch).items()) if before.get(p) != st}
    write_json(marker, {"notebook": nb.name, "key": key, "profile": profile, "parameters": nb_params,
                        "seconds": round(seconds, 2), "completed_at": done_at, "outputs": outputs,
                        "threads": {k: os.environ.get(k) for k in THREAD_VARS}})  # fmt: skip
    log(f"[pipeline] {nb.stem}: done in {_fmt_time(seconds)} -> {out}")
    result.steps.append(StepResult(nb.stem, "ran", seconds, out))


class _QuietPapermill(logging.Filter):
    """Drop papermill's warnings about parameters: names were checked with `ast` already, and
    papermill misreads `a = 1; b = 2` lines that are valid Python."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not msg.startswith(("Passed unknown parameter", "Unable to parse line"))


def _execute(nb: Path, out: Path, parameters: dict, progress: bool) -> float:
    import papermill as pm

    for name in ("papermill", "papermill.translators"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietPapermill) for f in logger.filters):
            logger.addFilter(_QuietPapermill())

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial.ipynb")
    t0 = time.perf_counter()
    # progress: each cell's first line, the kernel's output as it comes, a heartbeat when quiet
    # (dlink.runner.progress); papermill's own bar would fight the relayed bars for the line
    live = live_progress.CellProgress(nb.stem, sys.stdout) if progress else contextlib.nullcontext()
    engine = {"engine_name": live_progress.register_engine(), "progress": live} if progress else {}
    try:
        with live:
            pm.execute_notebook(
                str(nb),
                str(tmp),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                language="python",
                progress_bar=False,
                cwd=str(nb.parent),  # as when a reader opens it in Jupyter
                **engine,
            )
    except pm.PapermillExecutionError as e:
        kept = out.with_name(f"{out.stem}.failed.ipynb")
        if tmp.is_file():
            os.replace(tmp, kept)
        cell, n_cells = _source_cell_number(nb, e)
        raise NotebookFailed(nb.name, cell, n_cells, e.exec_count, e.ename, e.evalue, kept) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    out.with_name(f"{out.stem}.failed.ipynb").unlink(missing_ok=True)
    return time.perf_counter() - t0


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------- stripping outputs


def strip_outputs(path: str | os.PathLike) -> bool:
    """Clear outputs and execution counts, keeping the outputs of NBVAL_CHECK_OUTPUT cells
    (nbval compares those). Returns True if the file changed; writes atomically."""
    import nbformat

    path = Path(path)
    nb = _read_nb(path)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if STRICT_MARKER not in cell.source:
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop(PUBLISHED_KEY, None)
    after = nbformat.writes(nb)
    if after != before:
        atomic_write_text(path, after if after.endswith("\n") else after + "\n")
        return True
    return False


# ---------------------------------------------------------------- publishing a run's outputs

PUBLISHED_KEY = "dlink"  # notebook metadata that marks outputs written by publish
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # needs the run's live widget state


def _as_shown(text: str) -> str:
    """Stream text as a terminal shows it: of a line rewritten with carriage returns (a progress
    bar), only its last state."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def _published_outputs(outputs: list, checkout: str | None = None) -> list:
    """Outputs as a reader would see them: consecutive streams merged, progress bars in their
    final state, widget views dropped (kept where a text form exists), paths inside the run's
    `checkout` written relative to it (a reader's clone lives elsewhere)."""
    kept = []
    for out in outputs:
        if out.get("output_type") == "stream":
            if kept and kept[-1].get("output_type") == "stream" and kept[-1]["name"] == out["name"]:
                kept[-1]["text"] += out["text"]
            else:
                kept.append(out)
            continue
        data = out.get("data")
        if data and _WIDGET_VIEW in data:
            data.pop(_WIDGET_VIEW)
            if not data:
                continue
        kept.append(out)
    for out in kept:
        if out.get("output_type") == "stream":
            out["text"] = _as_shown(out["text"])
            if checkout:
                out["text"] = out["text"].replace(checkout.rstrip("/") + "/", "")
    return kept


def _check_same_cells(run, src, executed: Path, source: Path, profile: str) -> list:
    """The executed notebook's cells without papermill's injected-parameters cell; ValueError if
    their types or sources differ from the source notebook's (the run is stale)."""
    cells = [c for c in run.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    ran = [(c.cell_type, c.source) for c in cells]
    want = [(c.cell_type, c.source) for c in src.cells]
    if ran != want:
        i = next(
            (i for i, (a, b) in enumerate(zip(ran, want, strict=False)) if a != b), min(len(ran), len(want))
        )
        raise ValueError(
            f"{executed} does not match {source} (first difference at cell {i + 1}; {len(ran)} vs "
            f"{len(want)} cells): rerun it (./run_all.sh --profile {profile} --only {source.stem[:2]}) "
            "before publishing"
        )
    return cells


def publish_notebook(
    executed: str | os.PathLike, source: str | os.PathLike, profile: str = "default"
) -> bool:
    """Write `executed`'s outputs into the notebook `source`, keeping source's cells exactly.

    Raises ValueError if the executed copy's cells (without papermill's injected-parameters cell)
    differ from the source's: the run is stale and must be redone first. Returns True if the
    source file changed; writes atomically."""
    import nbformat

    executed, source = Path(executed), Path(source)
    run, src = _read_nb(executed), _read_nb(source)
    cells = _check_same_cells(run, src, executed, source, profile)
    checkout = str(executed.resolve().parents[2])  # <checkout>/runs/<profile>/<notebook>
    before = nbformat.writes(src)
    count = 0
    for cell, done in zip(src.cells, cells, strict=True):
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if STRICT_MARKER in cell.source:
            continue  # nbval compares these against the smoke profile: keep the committed ones
        count += 1
        cell.execution_count = count
        cell.outputs = _published_outputs(done.get("outputs", []), checkout)
        for out in cell.outputs:
            if "execution_count" in out:
                out["execution_count"] = count
    src.metadata.pop("papermill", None)
    src.metadata.pop("widgets", None)
    src.metadata[PUBLISHED_KEY] = {"outputs_from": f"runs/{profile}/{executed.name}", "profile": profile}
    after = nbformat.writes(src)
    if after == before:
        return False
    atomic_write_text(source, after if after.endswith("\n") else after + "\n")
    return True


def publish(
    profile: str = "default",
    runs_dir: str | os.PathLike = paths.ROOT / "runs",
    notebooks_dir: str | os.PathLike = paths.NOTEBOOKS,
) -> list[Path]:
    """Publish every executed notebook of a finished run into notebooks/ (see publish_notebook).

    Checks all notebooks before writing any, so a stale or missing one leaves notebooks/ as it
    was. Returns the notebooks that changed."""
    sources = find_notebooks(notebooks_dir)
    run_dir = Path(runs_dir) / profile
    missing = [nb.name for nb in sources if not (run_dir / nb.name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{run_dir} lacks executed notebooks {missing}: finish the run first (./run_all.sh --profile {profile})"
        )
    for nb in sources:  # the check publish_notebook makes, on all of them before any write
        _check_same_cells(_read_nb(run_dir / nb.name), _read_nb(nb), run_dir / nb.name, nb, profile)
    return [nb for nb in sources if publish_notebook(run_dir / nb.name, nb, profile)]


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dlink.runner.pipeline",
        description="Run the numbered notebooks in order (resumable).",
        epilog="Other commands: `strip NOTEBOOK...` clears outputs, `publish` copies a finished run's outputs "
        "into notebooks/ (each has --help); `--lab [OPTIONS]` opens JupyterLab (python -m dlink.runner.lab --help).",
    )
    ap.add_argument(
        "--profile", default=None, help="smoke | default | full | llm (default: $DLINK_PROFILE or default)"
    )
    ap.add_argument(
        "--only", action="append", metavar="NN", help="run only these notebooks (03, 03_bridge, 03,05)"
    )
    ap.add_argument("--force", action="store_true", help="rerun notebooks even if up to date")
    ap.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="set a notebook parameter (repeatable); VALUE is read as YAML: 3, [0, 1], None, text",
    )  # fmt: skip
    ap.add_argument("--notebooks", default=str(paths.NOTEBOOKS), help="notebooks folder (default notebooks/)")
    ap.add_argument(
        "--runs", default=str(paths.ROOT / "runs"), help="where executed notebooks go (default runs/)"
    )
    ap.add_argument(
        "--no-progress", action="store_true",
        help="print only each notebook's start and end (not its cells, output and heartbeat)",
    )  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["strip"]:
        ap = argparse.ArgumentParser(
            prog="python -m dlink.runner.pipeline strip",
            description="Clear notebooks' outputs and execution counts (NBVAL_CHECK_OUTPUT cells keep theirs).",
        )
        ap.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="the .ipynb files to strip in place")
        files = ap.parse_args(argv[1:]).notebooks
        bad = [f for f in files if not Path(f).is_file()]
        if bad:
            print(f"[pipeline] error: no such notebook file(s): {bad}", file=sys.stderr)
            return 2
        changed = [p for p in files if strip_outputs(p)]
        print(f"[pipeline] stripped outputs of {len(changed)} of {len(files)} notebook(s)")
        return 0
    if argv[:1] == ["publish"]:
        ap = argparse.ArgumentParser(
            prog="python -m dlink.runner.pipeline publish",
            description="Copy a finished run's outputs (figures, tables, text) into the committed notebooks; "
            "source cells stay exactly as they are.",
        )
        ap.add_argument("--profile", default="default", help="whose run to publish (default: default)")
        ap.add_argument("--runs", default=str(paths.ROOT / "runs"), help="runs folder (default runs/)")
        ap.add_argument(
            "--notebooks", default=str(paths.NOTEBOOKS), help="notebooks folder (default notebooks/)"
        )
        a = ap.parse_args(argv[1:])
        try:
            changed = publish(a.profile, a.runs, a.notebooks)
        except (ValueError, FileNotFoundError) as e:
            print(f"[pipeline] error: {e}", file=sys.stderr)
            return 2
        print(f"[pipeline] published runs/{a.profile} outputs into {len(changed)} notebook(s): "
              + ", ".join(p.name for p in changed))  # fmt: skip
        return 0
    if argv[:1] == ["--lab"]:
        from dlink.runner import lab

        return lab.main(argv[1:])
    args = _parser().parse_args(argv)
    params = {}
    for name, value in args.parameter:
        if name in params:
            print(f"[pipeline] error: -p {name} given twice", file=sys.stderr)
            return 2
        params[name] = parse_value(value)
    t0 = time.perf_counter()
    try:
        check_checkout()
        res = run_pipeline(
            profile=args.profile,
            only=args.only,
            params=params,
            force=args.force,
            notebooks_dir=args.notebooks,
            runs_dir=args.runs,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError, PipelineBusy) as e:
        print(f"[pipeline] error: {e}", file=sys.stderr)
        return 2
    except NotebookFailed as e:
        _summary(e.result, time.perf_counter() - t0)
        print(f"[pipeline] FAILED: {e}", file=sys.stderr)
        return 1
    _summary(res, time.perf_counter() - t0)
    return 0


def _summary(res: PipelineResult, seconds: float) -> None:
    ran = [s for s in res.steps if s.status == "ran"]
    print(
        f"[pipeline] {len(ran)} notebook(s) ran, {len(res.steps) - len(ran)} skipped, {_fmt_time(seconds)} in all"
    )
    for s in res.steps:
        print(f"  {s.notebook:<28} {s.status:<8} {_fmt_time(s.seconds) if s.status != 'skipped' else ''}")
    if res.written:
        print("[pipeline] files written (new or changed):")
        for p in res.written:
            print(f"  {p.relative_to(paths.ROOT) if p.is_relative_to(paths.ROOT) else p}")
    else:
        print("[pipeline] no files under figures/ or results/ were created or changed")


if __name__ == "__main__":
    sys.exit(main())
