"""Colab set-up shared by every notebook: their first cell clones the repository to
/content/dlink and `%run`s this file, so that cell stays five lines. Outside Colab it does nothing
(Binder is set up by binder/; elsewhere run ./run_all.sh or ./run_all.sh --lab).

Once per runtime it installs
- the Debian packages of binder/apt.txt, one at a time, so that one Colab's Ubuntu lacks is
  reported (with what it disables), not fatal;
- the runtime set, requirements.txt, without the packages Colab's runtime owns: torch (Colab's
  CUDA build stays), ipykernel, and ./run_all.sh's notebook runner (papermill, nbclient,
  nbformat), which Colab's kernel does not need. The packages Colab's Jupyter server and kernel
  run on are held at their installed versions by a constraints file, so pip fails rather than
  upgrade one of them (Colab warns that such upgrades can crash the runtime);
- requirements-nodeps.txt without dependencies, and dlink itself (editable, no dependencies);
then restarts the runtime once, because numpy and pandas changed under the running interpreter.
Every run it puts the repository on sys.path and changes to notebooks/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HOME = Path("/content/dlink")
# requirements.txt lines Colab does not get: its own torch and kernel, and run_all.sh's runner
NOT_ON_COLAB = {"torch", "ipykernel", "papermill", "nbclient", "nbformat"}
# what Colab's notebook server and kernel run on: pinned to the installed versions
HELD = (
    "torch", "torchvision", "torchaudio", "ipykernel", "ipython", "jupyter-client", "jupyter-core",
    "jupyter-server", "notebook", "tornado", "pyzmq", "traitlets", "google-colab",
)  # fmt: skip
# what each Debian package is for, said when one cannot be installed
APT_ROLE = {
    "openjdk-17-jre-headless": "Java: the captioning metrics (notebooks 05-07) cannot be scored",
    "ufoai-sound": "recordings of the embedded dataset: notebook 01 cannot build it",
    "sound-theme-freedesktop": "recordings of the embedded dataset: notebook 01 cannot build it",
    "wordwarvi-sound": "recordings of the embedded dataset: notebook 01 cannot build it",
}


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()


def colab_requirements(text: str) -> list[str]:
    """The requirement lines of requirements.txt that Colab installs (comments dropped)."""
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln and _name(ln) not in NOT_ON_COLAB]


def held_constraints(version=metadata.version) -> list[str]:
    """`name==installed version` for each HELD package that is installed."""
    out = []
    for name in HELD:
        try:
            out.append(f"{name}=={version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return out


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


def install(home: Path = HOME) -> None:
    apt = (home / "binder" / "apt.txt").read_text().split()
    absent = install_apt(apt)
    for p in absent:
        print(f"[dlink] Debian package {p} is not available here: {APT_ROLE.get(p, 'unknown role')}")
    req, con = Path("/tmp/dlink-colab-requirements.txt"), Path("/tmp/dlink-colab-constraints.txt")
    req.write_text("\n".join(colab_requirements((home / "requirements.txt").read_text())) + "\n")
    con.write_text("\n".join(held_constraints()) + "\n")
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    # eager: pip also upgrades what the pins need (numba for numpy 2.x), never a held package
    subprocess.run(pip + ["--upgrade-strategy", "eager", "-r", req, "-c", con], check=True)
    subprocess.run(pip + ["--no-deps", "-r", home / "requirements-nodeps.txt"], check=True)
    subprocess.run(pip + ["--no-deps", "-e", home], check=True)
    (home / ".colab-installed").write_text("\n".join(absent))


def main() -> None:
    if not (HOME / ".colab-installed").exists():
        install()
        print("[dlink] installed; the runtime restarts now (numpy changed): run all cells again")
        os.kill(os.getpid(), 9)
    for p in (HOME / ".colab-installed").read_text().split():
        print(f"[dlink] absent here: {p} ({APT_ROLE.get(p, 'unknown role')})")
    if shutil.which("java") is None:
        print("[dlink] no java on PATH: the captioning metrics cannot be scored")
    if str(HOME) not in sys.path:  # the editable install is seen only by a fresh interpreter
        sys.path.insert(0, str(HOME))
    os.chdir(HOME / "notebooks")


if "google.colab" in sys.modules:
    main()
