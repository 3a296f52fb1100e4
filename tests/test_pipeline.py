"""dlink.runner.pipeline on tiny generated notebooks: order, resume, --force, failures, -p checks,
and nbval (the notebook test command) with the sanitize file, in the venv's kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dlink import paths
from dlink.runner.pipeline import (
    PUBLISHED_KEY,
    NotebookFailed,
    main,
    notebook_parameters,
    parse_value,
    publish,
    run_pipeline,
    strip_outputs,
)

PARAMS = 'profile = None  # smoke | default | full\nout_dir = "."; scale = 1; seeds = None\n'
# Each notebook appends its name to a log, so the test sees the order notebooks really ran in,
# and writes one file whose content depends on a parameter and the profile the kernel saw.
BODY = """import os, sys, pathlib
out = pathlib.Path(out_dir)
with open(out / "order.log", "a") as f:
    f.write("{name}\\n")
(out / "{name}.txt").write_text(f"{{scale}} {{profile}} {{os.environ['DLINK_PROFILE']}} {{sys.prefix}}")
"""


def _nb(path: Path, cells: list[str], params: str = PARAMS) -> Path:
    nb = nbformat.v4.new_notebook()
    pcell = nbformat.v4.new_code_cell(params)
    pcell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), pcell] + [
        nbformat.v4.new_code_cell(c) for c in cells
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def project(tmp_path):
    nbs, out = tmp_path / "notebooks", tmp_path / "results"
    nbs.mkdir()
    out.mkdir()
    for name in ("01_data", "02_bridge", "03_eval"):
        _nb(nbs / f"{name}.ipynb", [BODY.format(name=name)])
    # a notebook with no parameter `scale`: -p scale must reach 01-03 only
    _nb(
        nbs / "04_plain.ipynb",
        [BODY.format(name="04_plain").replace("{scale}", "-")],
        'profile = None\nout_dir = "."\n',
    )
    sources = {p: p.read_bytes() for p in nbs.iterdir()}
    kw = dict(notebooks_dir=nbs, runs_dir=tmp_path / "runs", watch=(out,), progress=False, log=lambda m: None)
    return nbs, out, sources, kw


def _order(out: Path) -> list[str]:
    return (out / "order.log").read_text().split()


def test_runs_in_order_resumes_and_forces(project):
    nbs, out, sources, kw = project
    res = run_pipeline(profile="smoke", params={"out_dir": str(out), "scale": 7}, **kw)
    assert [s.status for s in res.steps] == ["ran"] * 4
    assert _order(out) == ["01_data", "02_bridge", "03_eval", "04_plain"]
    scale, profile, env_profile, prefix = (out / "02_bridge.txt").read_text().split()
    assert (scale, profile, env_profile) == ("7", "smoke", "smoke")
    assert prefix == sys.prefix  # the kernel is this interpreter's environment (the venv under run_all.sh)
    assert (out / "04_plain.txt").read_text().startswith("- smoke")
    assert sorted(p.name for p in res.written) == sorted(
        ["order.log", "01_data.txt", "02_bridge.txt", "03_eval.txt", "04_plain.txt"]
    )
    run_dir = kw["runs_dir"] / "smoke"
    assert sorted(p.name for p in run_dir.glob("*.ipynb")) == sorted(p.name for p in nbs.glob("*.ipynb"))
    assert not list(run_dir.glob(".*partial*"))
    executed = nbformat.read(str(run_dir / "01_data.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

    # resume: same key -> nothing reruns, nothing is written
    res = run_pipeline(profile="smoke", params={"out_dir": str(out), "scale": 7}, **kw)
    assert [s.status for s in res.steps] == ["skipped"] * 4 and res.written == []
    assert len(_order(out)) == 4

    # a deleted output file reruns its notebook (and, its marker being new, those after it)
    (out / "04_plain.txt").unlink()
    res = run_pipeline(profile="smoke", params={"out_dir": str(out), "scale": 7}, **kw)
    assert [s.status for s in res.steps] == ["skipped"] * 3 + ["ran"] and (out / "04_plain.txt").is_file()

    # rerunning 02 alone (--force) invalidates 03 and 04 (their upstream marker changed), not 01
    run_pipeline(profile="smoke", only=["02"], params={"out_dir": str(out), "scale": 7}, force=True, **kw)
    res = run_pipeline(profile="smoke", params={"out_dir": str(out), "scale": 7}, **kw)
    assert [s.status for s in res.steps] == ["skipped", "skipped", "ran", "ran"]
    assert _order(out)[5:] == ["02_bridge", "03_eval", "04_plain"]

    # a changed parameter reruns the notebook that takes it, and so everything after it
    res = run_pipeline(profile="smoke", only=["01"], params={"out_dir": str(out), "scale": 8}, **kw)
    assert [s.status for s in res.steps] == ["ran"] and (out / "01_data.txt").read_text().startswith("8 ")
    assert all(p.read_bytes() == b for p, b in sources.items())  # sources never touched


def test_a_profile_that_names_its_notebooks_runs_those_unless_only_says_otherwise(project):
    import dataclasses

    from dlink.profiles import PROFILES

    nbs, out, sources, kw = project
    prof = dataclasses.replace(PROFILES["smoke"], notebooks=("01", "03"))  # as the llm profile does
    res = run_pipeline(profile=prof, params={"out_dir": str(out)}, **kw)
    assert [s.notebook for s in res.steps] == ["01_data", "03_eval"]
    assert _order(out) == ["01_data", "03_eval"]
    run_pipeline(profile=prof, only=["02"], params={"out_dir": str(out)}, **kw)
    assert _order(out)[-1] == "02_bridge"


def test_a_truncated_output_is_not_up_to_date(project):
    nbs, out, sources, kw = project
    params = {"out_dir": str(out), "scale": 7}
    run_pipeline(profile="smoke", only=["01", "02"], params=params, **kw)
    f = out / "02_bridge.txt"
    f.write_text(f.read_text()[:2])  # still there, but not what the notebook wrote
    res = run_pipeline(profile="smoke", only=["01", "02"], params=params, **kw)
    # 01 also wrote order.log, which 02 appended to since: 02's recorded hash vouches for it
    assert [s.status for s in res.steps] == ["skipped", "ran"]
    assert f.read_text().startswith("7 smoke")


def test_failure_names_notebook_and_cell(project):
    nbs, out, sources, kw = project
    bad = _nb(nbs / "02_bridge.ipynb", ["x = 1", "raise ValueError('bridge exploded')", "y = 2"])
    with pytest.raises(NotebookFailed) as e:
        run_pipeline(profile="smoke", params={"out_dir": str(out)}, **kw)
    err = e.value
    # cells: markdown, parameters, x = 1, raise, y = 2 -> the 4th of 5 in the source notebook
    assert (err.notebook, err.cell, err.ename) == ("02_bridge.ipynb", 4, "ValueError")
    assert "02_bridge.ipynb failed in cell 4 of 5" in str(err) and "bridge exploded" in str(err)
    assert err.exec_count == 4  # parameters, injected parameters, x = 1, raise
    run_dir = kw["runs_dir"] / "smoke"
    assert _order(out) == ["01_data"]  # stopped: 03 and 04 never ran
    assert not (run_dir / "02_bridge.ipynb").exists() and (run_dir / "02_bridge.failed.ipynb").is_file()
    assert all(p.read_bytes() == b for p, b in sources.items() if p != bad)


def test_unknown_parameter_errors_before_running(project, capsys):
    nbs, out, sources, kw = project
    with pytest.raises(
        ValueError, match=r"-p sacle: not a parameter.*01_data: profile, out_dir, scale, seeds"
    ):
        run_pipeline(profile="smoke", params={"out_dir": str(out), "sacle": 3}, **kw)
    with pytest.raises(ValueError, match=r"seeds must be None .* got 'zero'"):
        run_pipeline(profile="smoke", params={"out_dir": str(out), "seeds": "zero"}, **kw)
    with pytest.raises(ValueError, match="--profile"):
        run_pipeline(params={"profile": "full"}, **kw)
    with pytest.raises(ValueError, match="--only 09: no such notebook; have 01_data"):
        run_pipeline(profile="smoke", only=["09"], **kw)
    with pytest.raises(ValueError, match="'huge' is not a profile; valid: smoke, default, full"):
        run_pipeline(profile="huge", **kw)
    # the command line turns these into exit code 2 with the message, still before running
    rc = main(
        ["--notebooks", str(nbs), "--runs", str(kw["runs_dir"]), "--profile", "smoke", "-p", "sacle", "3"]
    )
    assert rc == 2 and "sacle" in capsys.readouterr().err
    assert not (out / "order.log").exists() and not kw["runs_dir"].exists()


def test_parameters_cell_parsing_and_values(tmp_path):
    nb = _nb(
        tmp_path / "01_x.ipynb",
        [],
        'profile = None  # c\ndataset = "embedded"; encoder = "embedded"\nseeds: list | None = None\n',
    )
    assert notebook_parameters(nb) == ["profile", "dataset", "encoder", "seeds"]
    assert [parse_value(v) for v in ["3", "[0, 1]", "None", "False", "cpu", "1e-3"]] == [
        3,
        [0, 1],
        None,
        False,
        "cpu",
        0.001,
    ]


def test_strip_keeps_only_strict_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    loose, strict = (
        nbformat.v4.new_code_cell("print(1)"),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2)"),
    )
    for c, n in ((loose, 1), (strict, 2)):
        c.outputs, c.execution_count = [nbformat.v4.new_output("stream", name="stdout", text=f"{n}\n")], n
    nb.cells = [loose, strict]
    path = tmp_path / "01_s.ipynb"
    nbformat.write(nb, str(path))
    assert strip_outputs(path) is True and strip_outputs(path) is False
    cells = nbformat.read(str(path), as_version=4).cells
    assert cells[0].outputs == [] and cells[1].outputs[0]["text"] == "2\n"


def _executed_copy(source: Path, run_dir: Path) -> Path:
    """What papermill writes: an injected-parameters cell after `parameters`, outputs (text, a PNG,
    a widget view), execution counts from a long session and papermill metadata."""
    nb = nbformat.read(str(source), as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell('profile = "default"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, injected)
    for n, c in enumerate(nb.cells, 40):
        if c.cell_type == "code":
            c.execution_count = n
            c.metadata["papermill"] = {"duration": 1.5}
            c.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00"}
            c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"cell {n}\n")]
    nb.cells[-1].outputs[0]["text"] += f"wrote {run_dir.resolve().parents[1]}/results/x.csv\n"
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    nb.cells[-1].outputs.append(
        nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})
    )
    nb.cells[-1].outputs.append(
        nbformat.v4.new_output(
            "display_data",
            data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "bar"},
        )
    )
    nb.metadata["papermill"] = {"parameters": {"profile": "default"}}
    run_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(run_dir / source.name))
    return run_dir / source.name


def test_publish_keeps_sources_and_outputs_and_passes_nbval(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    src = _nb(nbs / "01_a.ipynb", [], "profile = None\n")
    nb = nbformat.read(str(src), as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells += [nbformat.v4.new_markdown_cell("**What we see**"), nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, str(src))
    sources_before = [(c.cell_type, c.source) for c in nb.cells]
    _executed_copy(src, tmp_path / "runs" / "default")

    assert [p.name for p in publish("default", tmp_path / "runs", nbs)] == ["01_a.ipynb"]
    out = nbformat.read(str(src), as_version=4)
    assert [(c.cell_type, c.source) for c in out.cells] == sources_before  # no injected cell
    code = [c for c in out.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert all(c.outputs for c in code) and "papermill" not in out.metadata
    assert not any("papermill" in c.metadata or "execution" in c.metadata for c in code)
    last = code[-1].outputs
    assert last[0]["text"].endswith("\nwrote results/x.csv\n")  # paths relative to the run's checkout
    assert last[1]["data"]["image/png"].startswith("iVBOR")
    assert "application/vnd.jupyter.widget-view+json" not in last[2]["data"]
    assert out.metadata[PUBLISHED_KEY]["profile"] == "default"
    assert publish("default", tmp_path / "runs", nbs) == []  # idempotent
    assert "NBVAL_CHECK_OUTPUT" not in src.read_text()
    # the committed notebook passes the lax nbval check although its outputs differ from a rerun
    r = _nbval(src, tmp_path)
    assert r.returncode == 0 and "passed" in r.stdout, r.stdout + r.stderr

    # a run whose cells differ from the sources is refused, and nothing is written
    nb.cells[-1].source = "print(43)"
    nbformat.write(nb, str(src))
    text = src.read_text()
    with pytest.raises(ValueError, match="does not match"):
        publish("default", tmp_path / "runs", nbs)
    assert src.read_text() == text
    assert main(["publish", "--runs", str(tmp_path / "none"), "--notebooks", str(nbs)]) == 2


@pytest.mark.parametrize("cmd", ["strip", "publish"])
def test_subcommand_help_is_help_not_a_traceback(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and f"dlink.runner.pipeline {cmd}" in capsys.readouterr().out


# ---------------------------------------------------------------- nbval


def _nbval(nb: Path, tmp: Path) -> subprocess.CompletedProcess:
    cfg = paths.ROOT / "tests" / "nbval_sanitize.cfg"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp),
           "--nbval-lax", "--sanitize-with", str(cfg), str(nb)]  # fmt: skip
    env = {**os.environ, "DLINK_PROFILE": "smoke"}
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=120)


def _stored(cell, text: str, count: int):
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    cell.execution_count = count  # nbval refuses stored outputs of a cell that never ran
    return cell


def test_nbval_lax_with_sanitize_in_venv_kernel(tmp_path):
    """The exact notebook test command passes on a notebook whose strict cell output differs
    from the stored one only in a timing, a path, a memory address and a tqdm bar; loose cells
    are not compared; the kernel runs in this environment with DLINK_PROFILE=smoke."""
    code = (
        "# NBVAL_CHECK_OUTPUT\nimport os, sys, time\n"
        f"print('gap', round(0.1 + 0.2, 3), 'profile', os.environ['DLINK_PROFILE'], 'venv', sys.prefix == {sys.prefix!r})\n"
        "print(f'took {time.perf_counter() % 50 + 1:.2f} s, wrote {os.getcwd()}/results/x.csv')\n"
        "print(object())\n"
        "print(f'100%|##########| 10/10 [00:0{int(time.time()) % 10}<00:00, {time.time() % 90 + 1:.2f}it/s]')\n"
    )
    stored = (
        "gap 0.3 profile smoke venv True\n"
        "took 123.45 s, wrote /somewhere/else/results/x.csv\n"
        "<object object at 0x7f00deadbeef>\n"
        "100%|##########| 10/10 [00:42<00:00, 3.21it/s]\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        _stored(nbformat.v4.new_code_cell(code), stored, 1),
        _stored(nbformat.v4.new_code_cell("print(42)"), "7\n", 2),
    ]
    good = tmp_path / "good.ipynb"
    nbformat.write(nb, str(good))
    r = _nbval(good, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout

    # a real change in a strict cell's value fails
    nb.cells[0] = _stored(nbformat.v4.new_code_cell(code), stored.replace("gap 0.3", "gap 0.31"), 1)
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, str(bad))
    r = _nbval(bad, tmp_path)
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout + r.stderr


def test_run_all_script_is_executable_and_calls_bootstrap():
    script = paths.ROOT / "run_all.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "scripts/bootstrap.sh" in text and "-m dlink.runner.pipeline" in text
    postbuild = paths.ROOT / "binder" / "postBuild"
    assert os.access(postbuild, os.X_OK)


def test_colab_cell_is_a_no_op_outside_colab(monkeypatch):
    src = (paths.ROOT / "binder" / "colab_cell.py").read_text()
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    before = (list(sys.path), os.getcwd())
    exec(compile(src, "colab_cell.py", "exec"), {})
    assert (list(sys.path), os.getcwd()) == before


def test_lead_notebooks_follow_the_contract():
    """Every numbered notebook in notebooks/ has a parameters cell declaring `profile`, runs
    on the python3 kernel, and stores outputs only for NBVAL_CHECK_OUTPUT cells."""
    notebooks = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks yet")
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        names = notebook_parameters(path)
        assert names, f"{path.name}: no code cell tagged 'parameters'"
        assert "profile" in names, (
            f"{path.name}: the parameters cell must declare profile (run_all.sh sets it)"
        )
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
            f"{path.name}: kernelspec must be python3"
        )
        # outputs come only from `publish` (it marks the notebook) or are NBVAL_CHECK_OUTPUT's
        published = PUBLISHED_KEY in nb.metadata
        assert "papermill" not in nb.metadata, f"{path.name}: papermill metadata; publish or strip it"
        for i, c in enumerate(nb.cells, 1):
            if c.cell_type == "code" and c.outputs and "NBVAL_CHECK_OUTPUT" not in c.source:
                assert published, (
                    f"{path.name} cell {i} has outputs not written by publish; run "
                    f"python -m dlink.runner.pipeline publish (after a default run) or strip {path}"
                )
            assert "injected-parameters" not in c.metadata.get("tags", []), f"{path.name} cell {i}"


def test_published_streams_show_progress_bars_in_their_final_state():
    from dlink.runner.pipeline import _published_outputs

    outs = [
        nbformat.v4.new_output("stream", name="stderr", text="bar  10%\rbar  50%\r"),
        nbformat.v4.new_output("stream", name="stderr", text="bar 100%\ndone\n"),
        nbformat.v4.new_output("stream", name="stdout", text="x\n"),
    ]
    got = _published_outputs(outs)
    assert [o["text"] for o in got] == ["bar 100%\ndone\n", "x\n"]


def test_empty_only_is_an_error_not_a_run_of_nothing(project, capsys):
    nbs, out, sources, kw = project
    with pytest.raises(ValueError, match="names no notebook; give one or more of 01, 02, 03, 04"):
        run_pipeline(profile="smoke", only=[""], params={"out_dir": str(out)}, **kw)
    rc = main(["--profile", "smoke", "--only", "", "--notebooks", str(nbs), "--runs", str(kw["runs_dir"])])
    assert rc == 2 and "--only '' names no notebook" in capsys.readouterr().err
    assert not (out / "order.log").exists()


def test_a_second_run_of_one_checkout_stops_naming_the_first(project):
    from dlink.runner.pipeline import PipelineBusy, _run_lock

    nbs, out, sources, kw = project
    with _run_lock(kw["runs_dir"]):
        with pytest.raises(
            PipelineBusy, match=rf"another run of this checkout is in progress \(pid {os.getpid()}"
        ):
            run_pipeline(profile="smoke", params={"out_dir": str(out)}, **kw)
    assert not (out / "order.log").exists() and not (kw["runs_dir"] / "smoke" / ".done").exists()
    res = run_pipeline(profile="smoke", only=["01"], params={"out_dir": str(out)}, **kw)  # lock released
    assert [s.status for s in res.steps] == ["ran"]


def test_a_run_started_from_another_checkout_is_refused(tmp_path, monkeypatch, capsys):
    from dlink.runner.pipeline import check_checkout

    check_checkout(paths.ROOT)  # the checkout this dlink belongs to
    copy = tmp_path / "dlink2"
    copy.mkdir()
    with pytest.raises(ValueError, match=rf"started from {copy}, but it would read and write {paths.ROOT}"):
        check_checkout(copy)
    monkeypatch.setenv("DLINK_CHECKOUT", str(copy))
    assert main(["--profile", "smoke", "--only", "01"]) == 2
    err = capsys.readouterr().err
    assert str(copy) in err and str(paths.ROOT) in err and "pip install --no-deps -e" in err


def test_the_kernel_imports_the_runners_dlink(tmp_path, monkeypatch):
    import dlink

    # without PYTHONPATH the kernel (cwd notebooks/) would import whatever the venv's editable install names
    monkeypatch.delenv("PYTHONPATH", raising=False)
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _nb(
        nbs / "01_where.ipynb",
        ["import dlink, pathlib\npathlib.Path(out_dir, 'where.txt').write_text(dlink.__file__)"],
    )
    kw = dict(notebooks_dir=nbs, runs_dir=tmp_path / "runs", watch=(), progress=False, log=lambda m: None)
    run_pipeline(profile="smoke", params={"out_dir": str(tmp_path)}, **kw)
    assert (tmp_path / "where.txt").read_text() == dlink.__file__


THREADS_BODY = """import json, os, pathlib
import numpy, torch
from dlink.device import set_torch_threads
set_torch_threads()  # as resolve_params does where every notebook starts
try:
    from threadpoolctl import threadpool_info
    blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
except ImportError:
    blas = None
seen = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
pathlib.Path(out_dir, "threads.json").write_text(json.dumps({"env": seen, "torch": torch.get_num_threads(), "blas": blas}))
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # nothing set on a 2-core machine: one thread everywhere, the environment of an OMP_NUM_THREADS=1 run
        ({}, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
        # not set: the pipeline exports one count (here DLINK_THREADS's) to all three
        (
            {"DLINK_THREADS": "2"},
            {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
        ),
        # set by the user: kept, nothing added; torch and OpenBLAS fall back to it
        (
            {"OMP_NUM_THREADS": "1"},
            {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": None, "OPENBLAS_NUM_THREADS": None},
        ),
    ],
)
def test_kernels_get_one_thread_count(tmp_path, monkeypatch, env, expected):
    for k in ("DLINK_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("dlink.device.usable_cpus", lambda: 2)
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _nb(nbs / "01_threads.ipynb", [THREADS_BODY])
    logs = []
    kw = dict(notebooks_dir=nbs, runs_dir=tmp_path / "runs", watch=(), progress=False, log=logs.append)
    run_pipeline(profile="smoke", params={"out_dir": str(tmp_path)}, **kw)
    seen = json.loads((tmp_path / "threads.json").read_text())
    n = int(expected["OMP_NUM_THREADS"])
    assert seen["env"] == expected and seen["torch"] == n
    assert seen["blas"] in (None, [min(n, os.cpu_count())])  # OpenBLAS caps its count at the cores
    marker = json.loads((tmp_path / "runs" / "smoke" / ".done" / "01_threads.json").read_text())
    assert marker["threads"] == expected
    assert any(f"OMP_NUM_THREADS={n}" in m for m in logs)
    for k in expected:  # the pipeline's own process is left as it was
        assert os.environ.get(k) == env.get(k)
