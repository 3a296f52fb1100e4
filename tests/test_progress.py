"""dlink.runner.progress: what ./run_all.sh prints while a notebook runs (cell lines, the kernel's
output relayed, a heartbeat when quiet), on a fake clock; and once end to end through papermill."""

from __future__ import annotations

import io

import nbformat

from dlink.runner.pipeline import run_pipeline
from dlink.runner.progress import CellProgress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _cells():
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell('profile = "smoke"')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("profile = None"),
        injected,
        nbformat.v4.new_code_cell("# a comment\nfor i in range(3):\n    work(i)"),
    ]
    return nb.cells


def _progress(tty: bool, **kw):
    out, clock = io.StringIO(), Clock()
    p = CellProgress("04_gap", out, tty=tty, clock=clock, **kw)
    p.start(_cells())
    return p, out, clock


def test_cells_are_numbered_as_in_the_source_and_named_by_their_first_code_line():
    p, out, _ = _progress(tty=False)
    for i, cell in enumerate(_cells()):
        p.cell_start(cell, i)
    # markdown and papermill's injected parameters cell print nothing; numbers count the source
    assert out.getvalue().splitlines() == ["[04_gap 2/3] profile = None", "[04_gap 3/3] for i in range(3):"]


def test_heartbeat_only_after_a_quiet_spell():
    p, out, clock = _progress(tty=False, heartbeat=30)
    assert not p.beat()  # no cell started yet
    p.cell_start(_cells()[3], 3)
    clock.t = 29
    assert not p.beat()
    clock.t = 45
    p.stdout.write("a line\n")  # output resets the quiet spell
    clock.t = 74
    assert not p.beat()
    clock.t = 75
    assert p.beat()
    clock.t = 150
    assert p.beat()
    lines = out.getvalue().splitlines()
    assert lines[-2:] == [
        "[04_gap 3/3] still running (75 s in this cell)",
        "[04_gap 3/3] still running (2.5 min in this cell)",
    ]


def test_log_keeps_a_bar_to_one_line_per_interval_and_its_final_state():
    p, out, clock = _progress(tty=False, bar_interval=10)
    for k in range(101):  # a tqdm bar redrawn 101 times over 50 s
        clock.t = k / 2
        p.stderr.write(f"\rfeatures: {k:3d}%")
    p.stderr.write("\n")
    lines = out.getvalue().splitlines()
    assert lines == [f"features: {k:3d}%" for k in (0, 20, 40, 60, 80, 100)]
    assert "\r" not in out.getvalue()


def test_log_never_glues_one_stream_to_the_others_unfinished_line():
    p, out, clock = _progress(tty=False)
    p.stderr.write("\rwork: 100%")  # the bar's last redraw, its newline still to come
    p.stdout.write("done loop\n")  # ... but stdout's message arrives first
    p.stderr.write("\n")
    assert out.getvalue().splitlines() == ["work: 100%", "done loop"]


def test_terminal_gets_the_raw_redraws_and_our_lines_start_on_a_new_line():
    p, out, clock = _progress(tty=True, heartbeat=30)
    p.cell_start(_cells()[3], 3)
    p.stderr.write("\rwork:  50%")
    p.stderr.write("\rwork: 100%")
    p.stdout.write("printed\n")  # the other stream: begins on a fresh line
    p.stderr.write("\rnext: 10%")
    clock.t = 31
    assert p.beat()
    p.__exit__(None, None, None)
    assert out.getvalue() == (
        "[04_gap 3/3] for i in range(3):\n"
        "\rwork:  50%\rwork: 100%\nprinted\n"
        "\rnext: 10%\n[04_gap 3/3] still running (31 s in this cell)\n"
    )


def test_pipeline_relays_a_notebooks_output_live(tmp_path, capsys):
    """End to end: run_all.sh's runner prints each cell and the kernel's output as it runs."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(nbs / "01_live.ipynb"))
    run_pipeline(profile="smoke", notebooks_dir=nbs, runs_dir=tmp_path / "runs", watch=(), progress=True)
    out = capsys.readouterr().out.splitlines()
    assert out.index("[01_live 1/2] profile = None") < out.index("[01_live 2/2] import sys")
    assert out.index("[01_live 2/2] import sys") < out.index("to stdout") < out.index("to stderr")


def test_importing_dlink_silences_the_missing_ipywidgets_warning():
    # papermill kernels have no ipywidgets: tqdm.auto falls back to the text bar and warns once per
    # kernel, printing a site-packages path into every committed notebook.
    import subprocess
    import sys

    code = (
        "import warnings, dlink\n"
        "from tqdm import TqdmWarning\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.warn('IProgress not found. Please update jupyter and ipywidgets.', TqdmWarning)\n"
        "    warnings.warn('another tqdm warning', TqdmWarning)\n"
        "print([str(w.message) for w in seen])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['another tqdm warning']"
