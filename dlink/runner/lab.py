"""Open the notebooks in JupyterLab, in this environment, with a registered "dlink" kernel.

    ./run_all.sh --lab                      # installs JupyterLab into .venv once, then starts it
    ./run_all.sh --lab --port 8899 --no-browser   # further options go to JupyterLab
    python -m dlink.runner.lab --kernel-only       # only register the kernel (in this environment)
    python -m dlink.runner.lab --kernel-only --user  # ... for your own Jupyter or VS Code as well

The "dlink" kernel is this interpreter (the project's .venv when started by run_all.sh) with its
bin/ first on PATH, as `run_all.sh` runs the notebooks. It is written into this environment's
share/jupyter/kernels/ (or the user's Jupyter folder with --user), JupyterLab opens on
notebooks/01_data.ipynb from the project root with the same bin/ first on PATH (so notebooks on
their own "python3" kernel use this environment too), new notebooks start on the dlink kernel,
and kernels use local IPC sockets (no unencrypted-TCP warning at each start). ipywidgets comes
with the lab extra, so tqdm's bars render as widgets.

JupyterLab is an extra (requirements-lab.txt): neither the tests nor CI install it. Without
it, `main` says how to install it and returns 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from dlink import paths

KERNEL_NAME = "dlink"
FIRST_NOTEBOOK = "notebooks/01_data.ipynb"
INSTALL_HINT = (
    "JupyterLab is not installed in this environment ({python}).\n"
    "  ./run_all.sh --lab installs it into .venv (requirements-lab.txt) and starts it; or by hand:\n"
    "  {python} -m pip install -r requirements-lab.txt -c requirements.txt"
)


def kernel_env(python: str | os.PathLike = sys.executable) -> dict[str, str]:
    """The kernel's environment additions: the interpreter's bin/ first on PATH (Jupyter
    substitutes ${PATH} from the server's environment when it starts the kernel)."""
    return {"PATH": f"{Path(python).parent}{os.pathsep}${{PATH}}"}


def install_kernel(prefix: str | os.PathLike | None = None, user: bool = False) -> Path:
    """Register this interpreter as the Jupyter kernel "dlink"; returns the kernel's folder.

    prefix: an environment root (default: this interpreter's, sys.prefix), so that Jupyter
    running in that environment finds it; user=True writes to the user's Jupyter folder instead.
    """
    from ipykernel.kernelspec import install

    where = install(
        user=user,
        prefix=None if user else str(prefix or sys.prefix),
        kernel_name=KERNEL_NAME,
        display_name=f"dlink (Python {sys.version_info.major}.{sys.version_info.minor}, {Path(sys.prefix).name})",
        env=kernel_env(),
    )
    return Path(where)


def read_kernel_spec(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / "kernel.json").read_text())


def ipc_prefix() -> Path:
    """Where local kernels' sockets go: the user's Jupyter runtime folder, not the project."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / "dlink-kernel"


def lab_env(python: str | os.PathLike = sys.executable) -> dict[str, str]:
    """JupyterLab's environment: the interpreter's bin/ first on PATH, so that notebooks opened on
    their own "python3" kernel (and their `!` commands) run in this environment too."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def lab_command(extra: list[str] | None = None) -> list[str]:
    """The JupyterLab command line: served from the project root, opening the first notebook,
    new notebooks on the dlink kernel; `extra` (e.g. --port 8899 --no-browser) goes last.

    Kernels talk to the server over local IPC sockets, not TCP: the server and its kernels share
    this machine, and ipykernel warns on every TCP start that the traffic is unencrypted."""
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={paths.ROOT}",
        f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
        "--KernelManager.transport=ipc",
        f"--KernelManager.ip={ipc_prefix()}",
        # JupyterLab refuses to start as root unless told; containers often run as root
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        *(extra or []),
        str(paths.ROOT / FIRST_NOTEBOOK),
    ]


def jupyterlab_installed() -> bool:
    return importlib.util.find_spec("jupyterlab") is not None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="./run_all.sh --lab",
        description="Start JupyterLab on the notebooks with the registered 'dlink' kernel. "
        "Options not listed here (--port, --no-browser, --ip, ...) go to JupyterLab.",
    )
    ap.add_argument("--kernel-only", action="store_true", help="register the kernel and exit")
    ap.add_argument("--user", action="store_true", help="register the kernel in your user Jupyter folder too")
    ap.add_argument(
        "--dry-run", action="store_true", help="print the JupyterLab command instead of running it"
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.kernel_only and not jupyterlab_installed():
        print("[lab] error: " + INSTALL_HINT.format(python=sys.executable), file=sys.stderr)
        return 2
    folder = install_kernel()
    print(f"[lab] kernel {KERNEL_NAME!r} -> {sys.executable} ({folder})")
    if args.user:
        print(f"[lab] kernel {KERNEL_NAME!r} also in your user Jupyter folder ({install_kernel(user=True)})")
    if args.kernel_only:
        return 0
    cmd = lab_command(extra)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    print(f"[lab] starting JupyterLab in {paths.ROOT} (Ctrl-C twice stops it)")
    try:
        ipc_prefix().parent.mkdir(parents=True, exist_ok=True)
        return subprocess.call(cmd, cwd=paths.ROOT, env=lab_env())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
