"""Colab and Binder set-up. Every notebook's set-up cell fetches the repository to /content/dlink
(a clone of its REPO, or a folder the reader uploaded there) and runs this file, so its Colab part
stays five lines; outside Colab those lines do nothing. Binder's postBuild runs
`python binder/colab_cell.py --binder`.

Colab, once per runtime:
- the Debian packages of binder/apt.txt, one at a time, so that one Colab's Ubuntu lacks is
  reported (with what it disables), not fatal;
- only the packages Colab lacks, in the ranges of pyproject.toml (the tested pin up to the next
  major version), with every installed distribution held at its installed version by a
  constraints file: pip fails rather than replace Colab's numpy, pandas, torch, google-colab or
  its Jupyter stack (Colab warns that such changes can crash the runtime). A package Colab has
  stays at Colab's version, which may differ from the tested pin: this is said, not changed;
- requirements-nodeps.txt without dependencies, and dlink itself (editable, no dependencies);
then it restarts the runtime only if a package that was already imported changed on disk.
Every run it says where the code came from, puts the repository on sys.path and changes to
notebooks/.

Binder: the same held install of requirements.txt, minus ipykernel and the packages the
notebook server runs on (BINDER_HELD): the server's own versions stay.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HOME = Path("/content/dlink")
# never installed on Colab: its own torch and kernel, and run_all.sh's notebook runner
NOT_ON_COLAB = {"torch", "ipykernel", "papermill", "nbclient", "nbformat"}
# what a Binder notebook server and kernel run on: the server's versions stay
BINDER_HELD = (
    "ipykernel", "ipython", "jupyter-client", "jupyter-core", "jupyter-server", "jupyterlab", "notebook",
    "nbclient", "nbformat", "tornado", "pyzmq", "traitlets",
)  # fmt: skip
# what each Debian package is for, said when one cannot be installed
APT_ROLE = {
    "openjdk-17-jre-headless": "Java: the captioning metrics (notebooks 05-07) cannot be scored",
    "ufoai-sound": "recordings of the embedded dataset: notebook 01 cannot build it",
    "sound-theme-freedesktop": "recordings of the embedded dataset: notebook 01 cannot build it",
    "wordwarvi-sound": "recordings of the embedded dataset: notebook 01 cannot build it",
}
PIP = [sys.executable, "-m", "pip", "install", "-q"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement line."""
    for sep in ";[=<>!~ ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower().replace("_", "-")


def _installed() -> dict[str, str]:
    """Every installed distribution, normalised name -> version."""
    return {_name(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file or list (comments and blanks dropped)."""
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln]


def colab_requirements(ranges: list[str], installed: dict[str, str]) -> list[str]:
    """The pyproject.toml ranges of the packages Colab lacks (NOT_ON_COLAB never)."""
    return [r for r in ranges if _name(r) not in NOT_ON_COLAB and _name(r) not in installed]


def held_constraints(installed: dict[str, str], names=None) -> list[str]:
    """`name==version` for each installed distribution (or for those of `names` installed)."""
    keep = installed if names is None else {n: installed[n] for n in names if n in installed}
    return [f"{n}=={v}" for n, v in sorted(keep.items())]


def pin_differences(pins: list[str], installed: dict[str, str]) -> list[str]:
    """`name installed (tested pin)` for each `name==pin` installed at another version."""
    out = []
    for line in pins:
        name, _, pin = line.partition("==")
        have = installed.get(_name(name))
        if pin and have and have.split("+")[0] != pin.strip():
            out.append(f"{_name(name)} {have} (tested {pin.strip()})")
    return out


def changed_imports(before: dict[str, str], after: dict[str, str], imported: set[str]) -> list[str]:
    """Distributions already imported (top-level module names) whose version changed."""
    return sorted(n for n, v in before.items() if after.get(n) != v and n.replace("-", "_") in imported)


def install_apt(packages: list[str]) -> list[str]:
    """apt-get install each package; returns those that could not be installed."""
    subprocess.run(["apt-get", "-qq", "update"], check=False)
    absent = []
    for p in packages:
        r = subprocess.run(
            ["apt-get", "-qq", "install", "-y", "--no-install-recommends", p], capture_output=True, text=True
        )
        if r.returncode != 0:
            absent.append(p)
    return absent


def _pip_held(requirements: list[str], constraints: list[str], tag: str, extra=()) -> None:
    req, con = Path(f"/tmp/dlink-{tag}-requirements.txt"), Path(f"/tmp/dlink-{tag}-constraints.txt")
    req.write_text("\n".join(requirements) + "\n")
    con.write_text("\n".join(constraints) + "\n")
    r = subprocess.run(PIP + [*extra, "-r", str(req), "-c", str(con)])
    if r.returncode != 0:
        raise SystemExit(
            f"[dlink] pip could not install {requirements} without replacing an installed package "
            f"(held: {con}); see pip's message above"
        )


def _pyproject_ranges(home: Path) -> list[str]:
    import tomllib

    return tomllib.loads((home / "pyproject.toml").read_text())["project"]["dependencies"]


def install(home: Path = HOME) -> list[str]:
    """The Colab install; returns the already-imported packages it changed (normally none)."""
    absent = install_apt((home / "binder" / "apt.txt").read_text().split())
    for p in absent:
        print(f"[dlink] Debian package {p} is not available here: {APT_ROLE.get(p, 'unknown role')}")
    before = _installed()
    lacking = colab_requirements(_pyproject_ranges(home), before)
    if lacking:
        print(f"[dlink] installing what Colab lacks: {', '.join(_name(r) for r in lacking)}")
        _pip_held(lacking, held_constraints(before), "colab")
    subprocess.run(PIP + ["--no-deps", "-r", str(home / "requirements-nodeps.txt")], check=True)
    subprocess.run(PIP + ["--no-deps", "-e", str(home)], check=True)
    differ = pin_differences(requirement_lines((home / "requirements.txt").read_text()), _installed())
    if differ:
        print("[dlink] kept Colab's versions (numbers may differ from the README's in the last digits): "
              + "; ".join(differ))  # fmt: skip
    (home / ".colab-installed").write_text("\n".join(absent))
    return changed_imports(before, _installed(), {m.split(".")[0] for m in sys.modules})


def _source(home: Path) -> str:
    if (home / ".git").exists():
        r = subprocess.run(
            ["git", "-C", str(home), "log", "-1", "--format=%h %cs"], capture_output=True, text=True
        )
        return f"a git clone ({r.stdout.strip() or 'unknown commit'})"
    return "an uploaded copy (not a git clone: upload the folder again to update it)"


def main(home: Path = HOME) -> None:
    print(f"[dlink] the repository at {home} is {_source(home)}")
    if not (home / ".colab-installed").exists():
        changed = install(home)
        if changed:
            print(
                f"[dlink] {', '.join(changed)} changed after import: the runtime restarts now; run all cells again"
            )
            os.kill(os.getpid(), 9)
        print("[dlink] installed; no restart needed")
    for p in (home / ".colab-installed").read_text().split():
        print(f"[dlink] absent here: {p} ({APT_ROLE.get(p, 'unknown role')})")
    if shutil.which("java") is None:
        print("[dlink] no java on PATH: the captioning metrics cannot be scored")
    if str(home) not in sys.path:  # the editable install is seen only by a fresh interpreter
        sys.path.insert(0, str(home))
    os.chdir(home / "notebooks")


def binder_install(root: Path) -> None:
    """requirements.txt without the server's packages, which stay at the server's versions."""
    installed = _installed()
    lines = [
        ln
        for ln in requirement_lines((root / "requirements.txt").read_text())
        if _name(ln) not in BINDER_HELD
    ]
    extra = [
        "--no-cache-dir",
        "--extra-index-url",
        "https://download.pytorch.org/whl/cpu",
    ]  # no GPU on Binder
    _pip_held(lines, held_constraints(installed, BINDER_HELD), "binder", extra)


if __name__ == "__main__" and sys.argv[1:] == ["--binder"]:
    binder_install(Path(__file__).resolve().parent.parent)
elif "google.colab" in sys.modules:
    main()
