"""Packaging and distribution: pyproject.toml agrees with the pinned requirements, `pip install .`
gives a working package, the licence and citation files say what they must, the repository URL
has one source, and the Colab set-up installs only what it may."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from dlink import paths

ROOT = paths.ROOT
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
    """{normalised name: pinned version} of a requirements file (comments and -r lines skipped)."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{name}: {line} is not an exact pin"
            pins[req.name.lower()] = spec.version
    return pins


def test_dependencies_are_the_runtime_set_with_ranges_holding_each_pin():
    runtime = _pins("requirements.txt")
    deps = {Requirement(d).name.lower(): Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    assert set(deps) == set(runtime), (
        f"pyproject only: {sorted(set(deps) - set(runtime))}; requirements.txt only: {sorted(set(runtime) - set(deps))}"
    )
    for name, pin in runtime.items():
        assert Version(pin) in deps[name].specifier, f"{deps[name]} does not allow the pin {name}=={pin}"
    # test and lint tools are not runtime; JupyterLab is an extra
    dev = _pins("requirements-dev.txt")
    assert {"pytest", "nbval", "ruff"} <= set(dev) and not {"pytest", "nbval", "ruff"} & set(runtime)
    assert "jupyterlab" not in runtime and "jupyterlab" not in dev
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra, file in (("dev", "requirements-dev.txt"), ("lab", "requirements-lab.txt")):
        for d in map(Requirement, extras[extra]):
            assert Version(_pins(file)[d.name.lower()]) in d.specifier, f"extra {extra}: {d}"


def test_requires_python_is_what_every_pin_supports():
    """The lowest Python that requires-python allows is one every pinned package declares it
    supports (read from the installed distributions' Requires-Python)."""
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    lowest = Version(next(s.version for s in requires if s.operator == ">="))
    assert Version(f"{sys.version_info.major}.{sys.version_info.minor}") in requires
    pins = {**_pins("requirements.txt"), **_pins("requirements-dev.txt"), **_pins("requirements-nodeps.txt")}
    too_new = {}
    for name, pin in pins.items():
        installed = Version(metadata.version(name))  # 2.13.0+cpu is torch 2.13.0's CPU build
        assert installed.public == Version(pin).public, f"{name}: installed {installed}, pinned {pin}"
        declared = metadata.metadata(name).get("Requires-Python")
        if declared and lowest not in SpecifierSet(declared):
            too_new[name] = declared
    assert not too_new, f"requires-python allows {lowest}, which these pins do not support: {too_new}"
    # and it is not needlessly strict: some pin really needs that version
    assert any(
        Version(f"{lowest.major}.{lowest.minor - 1}")
        not in SpecifierSet(metadata.metadata(n)["Requires-Python"])
        for n in pins
        if metadata.metadata(n).get("Requires-Python")
    )


def test_licence_and_citation():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PYPROJECT["project"]["license"] == "MIT"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    assert cff["version"] == PYPROJECT["project"]["version"]
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("Diffusion-Link: Diffusion Probabilistic Model for Bridging")
    # the paper's order on arXiv, and the authors' own code
    assert [f"{a['given-names']} {a['family-names']}" for a in paper["authors"]] == [
        "KiHyun Nam", "Jongmin Choi", "Hyeongkeun Lee", "Jungwoo Heo", "Joon Son Chung"
    ]  # fmt: skip
    assert paper["repository-code"] == "https://github.com/DevKiHyun/Diffusion-Link"
    readme = (ROOT / "README.md").read_text()
    assert "KiHyun Nam, Jongmin Choi, Hyeongkeun Lee, Jungwoo Heo" in readme.replace("\n", " ")
    assert "https://github.com/DevKiHyun/Diffusion-Link" in readme
    assert "2510.11330" in paper["url"] and paper["year"] == 2025
    assert all(a.get("name") or a.get("family-names") for a in cff["authors"])


def test_pip_install_into_a_clean_environment_imports_and_fits(tmp_path):
    """`pip install .` into a new virtual environment, then a tiny DiffusionLink fit in it.

    Offline and fast by design (< 60 s): the new environment is created bare (`venv
    --without-pip`) and sees the project's .venv packages (torch, numpy, ...) through a .pth
    file, so nothing is downloaded; pip (the .venv's, pointed at the new interpreter with
    `--python`) installs dlink with `--no-deps --no-build-isolation`, i.e. it builds a wheel
    from pyproject.toml with the installed setuptools and installs that. The .pth adds the
    .venv's site-packages as a plain path, so its editable-install hook is NOT loaded: the
    `dlink` imported below must be the installed copy, which the test asserts, along with every
    file of the package being in it. Dependency resolution itself is checked by
    test_dependencies_are_the_runtime_set_with_ranges_holding_each_pin, not here.
    """
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    py = env / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    build = tmp_path / "src"  # a copy, so the build leaves no build/ or *.egg-info in the repository
    shutil.copytree(ROOT / "dlink", build / "dlink", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / f, build / f)
    pip = [sys.executable, "-m", "pip", "--python", str(py), "--disable-pip-version-check"]
    r = subprocess.run(
        pip + ["install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(build)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    script = """
import pathlib, sys
import numpy as np
import dlink
from dlink import DiffusionLink, synthetic_gap_pairs
here = pathlib.Path(dlink.__file__).resolve().parent
assert here.is_relative_to(pathlib.Path(sys.prefix).resolve()), f"dlink imported from {here}, not the new venv"
print("PKG", here)
a, t = synthetic_gap_pairs(256, 32, seed=0)
m = DiffusionLink(epochs=2, progress=False).fit(a, t, device="cpu")
b = m.transform(a[:64])
gap = lambda x: float(np.linalg.norm(x.mean(0) - t.mean(0)))
assert b.shape == (64, 32) and np.isfinite(b).all()
print("GAP", gap(a[:64]), gap(b))
"""
    r = subprocess.run([py, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = Path(r.stdout.split("PKG ")[1].split()[0])
    shipped = {p.relative_to(ROOT / "dlink") for p in (ROOT / "dlink").rglob("*") if p.is_file()}
    shipped = {p for p in shipped if "__pycache__" not in p.parts}
    missing = sorted(str(p) for p in shipped if not (installed / p).is_file())
    assert not missing, f"pip install . leaves out package files: {missing}"
    before, after = map(float, r.stdout.split("GAP ")[1].split())
    assert after < before, (
        f"two epochs of Diffusion-Link did not move audio toward text ({before} -> {after})"
    )


# ---------------------------------------------------------------- one repository URL


def test_repository_url_has_one_source_and_current_copies(tmp_path):
    repo_url = runpy.run_path(str(ROOT / "scripts" / "repo_url.py"))
    assert repo_url["main"]([]) == 0, "run: python scripts/repo_url.py --write"
    url = PYPROJECT["project"]["urls"]["Repository"]
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = nb.read_text()
        assert text.count(url) == 1, f"{nb.name}: the URL should appear once, in the set-up cell"
    # --set rewrites pyproject.toml and every copy (on a copy of the files)
    for f in ["pyproject.toml", "README.md"] + [
        str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    ]:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text((ROOT / f).read_text())
    new = "https://github.com/someone/dlink-fork"
    assert repo_url["main"](["--set", new, "--root", str(tmp_path)]) == 0
    assert repo_url["main"](["--root", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "mybinder.org/v2/gh/someone/dlink-fork/" in readme
    assert "colab.research.google.com/github/someone/dlink-fork/" in readme
    assert new in (tmp_path / "notebooks" / "01_data.ipynb").read_text()
    assert repo_url["main"](["--set", "http://example.org/x", "--root", str(tmp_path)]) == 2


def test_each_notebook_opens_with_a_short_parameters_cell_and_the_one_set_up_cell():
    import nbformat

    from dlink.runner.pipeline import notebook_parameters

    repo_url = runpy.run_path(str(ROOT / "scripts" / "repo_url.py"))
    setup = repo_url["SETUP_CELL"].format(url=repo_url["repo_url"]())
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = [c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), (
            f"{path.name}: the first code cell is not the parameters cell"
        )
        assert len(notebook_parameters(path)) <= 6, f"{path.name}: more than a handful of parameters"
        assert code[1].source == setup, (
            f"{path.name}: the set-up cell differs from scripts/repo_url.py's SETUP_CELL"
        )
        assert "binder/colab_cell.py" in code[1].source and "smoke" in code[1].source
        for cell in code[2:]:  # nothing else resolves the parameters or touches Colab
            assert "resolve_params" not in cell.source and "COLAB" not in cell.source, path.name


# ---------------------------------------------------------------- Colab and Binder


@pytest.fixture
def colab():
    return runpy.run_path(str(ROOT / "binder" / "colab_cell.py"))  # google.colab absent: defines only


def test_colab_installs_only_what_it_lacks_and_holds_everything_installed(colab):
    installed = {
        "numpy": "2.0.2",
        "pandas": "2.2.2",
        "torch": "2.8.0+cu126",
        "tornado": "6.4.2",
        "google-colab": "1.0.0",
    }
    ranges = PYPROJECT["project"]["dependencies"]
    lacking = colab["colab_requirements"](ranges, installed)
    names = {Requirement(r).name.lower() for r in lacking}
    assert names == {Requirement(r).name.lower() for r in ranges} - {
        "numpy",
        "pandas",
        "torch",
        "tornado",
    } - {"ipykernel", "papermill", "nbclient", "nbformat"}
    assert all(Requirement(r).specifier for r in lacking)  # ranges, not the exact pins
    # every installed distribution is held: pip fails rather than replace numpy, pandas, torch, ...
    assert colab["held_constraints"](installed) == [
        "google-colab==1.0.0", "numpy==2.0.2", "pandas==2.2.2", "torch==2.8.0+cu126", "tornado==6.4.2"
    ]  # fmt: skip
    assert colab["pin_differences"](["numpy==2.4.6", "torch==2.8.0"], installed) == [
        "numpy 2.0.2 (tested 2.4.6)"
    ]
    # a restart only when a package that was imported changed
    after = {**installed, "umap-learn": "0.5.12"}
    assert colab["changed_imports"](installed, after, {"numpy", "pandas"}) == []
    assert colab["changed_imports"](installed, {**after, "numpy": "2.4.6"}, {"numpy"}) == ["numpy"]
    assert colab["changed_imports"](installed, {**after, "numpy": "2.4.6"}, {"pandas"}) == []


def test_colab_cell_reports_the_placeholder_and_an_uploaded_copy(colab, monkeypatch, tmp_path):
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    cells = nbformat.read(str(ROOT / "notebooks" / "01_data.ipynb"), as_version=4).cells
    cell = [c for c in cells if c.cell_type == "code"][1]  # the set-up cell, after the parameters
    code = TransformerManager().transform_cell(cell.source)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    if not os.path.isdir(
        "/content/dlink"
    ):  # the placeholder URL is never cloned; the reader is told what to do
        with pytest.raises(SystemExit, match="OWNER placeholder.*upload the repository folder"):
            exec(
                compile(
                    code.replace(
                        PYPROJECT["project"]["urls"]["Repository"], "https://github.com/OWNER/dlink"
                    ),
                    "cell",
                    "exec",
                ),
                {},
            )
    assert "uploaded copy" in colab["_source"](tmp_path)


def _absent():
    raise metadata.PackageNotFoundError


def test_binder_runs_the_smoke_profile_and_apt_names_are_known(colab):
    start = (ROOT / "binder" / "start").read_text()
    assert (
        os.access(ROOT / "binder" / "start", os.X_OK) and 'DLINK_PROFILE="${DLINK_PROFILE:-smoke}"' in start
    )
    assert start.rstrip().endswith('exec "$@"')
    apt = (ROOT / "binder" / "apt.txt").read_text().split()
    assert set(apt) == set(colab["APT_ROLE"]), "every apt package needs a line saying what it is for"
    # Binder keeps the server's Jupyter packages: environment.yml installs no pip packages, postBuild
    # installs requirements.txt without them, holding them at the server's versions
    env = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    assert not any(isinstance(d, dict) for d in env["dependencies"])
    assert "python binder/colab_cell.py --binder" in (ROOT / "binder" / "postBuild").read_text()
    for name in ("ipykernel", "jupyter-client", "tornado", "jupyter-server"):
        assert name in colab["BINDER_HELD"]
