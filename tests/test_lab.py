"""dlink.runner.lab (`./run_all.sh --lab`): the "dlink" kernel spec and the JupyterLab command line,
tested without JupyterLab (CI does not install it): the kernel is started with jupyter_client,
as JupyterLab would start it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from dlink import paths
from dlink.runner import lab
from dlink.runner.pipeline import main as pipeline_main


def test_kernel_spec_is_this_interpreter_with_its_bin_first_on_path(tmp_path):
    folder = lab.install_kernel(prefix=tmp_path)
    assert folder == tmp_path / "share" / "jupyter" / "kernels" / "dlink"
    spec = lab.read_kernel_spec(folder)
    assert spec["argv"][0] == sys.executable and "ipykernel_launcher" in spec["argv"]
    assert "{connection_file}" in spec["argv"]
    assert spec["language"] == "python" and spec["display_name"].startswith("dlink")
    assert spec["env"]["PATH"] == f"{os.path.dirname(sys.executable)}{os.pathsep}${{PATH}}"


def test_registered_kernel_starts_and_runs_dlink(tmp_path, monkeypatch):
    """What JupyterLab does with the spec: find "dlink" on the Jupyter path, start it, run code."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    lab.install_kernel(prefix=tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    assert "dlink" in KernelSpecManager().find_kernel_specs()
    km, kc = start_new_kernel(kernel_name="dlink", startup_timeout=60)
    try:
        code = "import os, sys, dlink; print(sys.executable, os.environ['PATH'].split(os.pathsep)[0], dlink.__version__)"
        out = []
        reply = kc.execute_interactive(
            code,
            timeout=60,
            output_hook=lambda m: (
                out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
            ),
        )
        assert reply["content"]["status"] == "ok"
        exe, first_on_path, version = "".join(out).split()
        assert exe == sys.executable and first_on_path == os.path.dirname(sys.executable)
        assert version == __import__("dlink").__version__
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_lab_command_serves_the_project_on_the_first_notebook():
    cmd = lab.lab_command(["--port", "8899", "--no-browser"])
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={paths.ROOT}" in cmd
    assert "--MappingKernelManager.default_kernel_name=dlink" in cmd
    assert cmd[-1] == str(paths.ROOT / "notebooks" / "01_data.ipynb")  # JupyterLab opens it
    assert cmd[-4:-1] == ["--port", "8899", "--no-browser"]
    assert (paths.ROOT / lab.FIRST_NOTEBOOK).is_file()


def test_without_jupyterlab_run_all_lab_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setattr(lab, "jupyterlab_installed", lambda: False)
    monkeypatch.setattr(lab, "install_kernel", lambda **kw: pytest.fail("nothing is registered first"))
    assert pipeline_main(["--lab", "--no-browser"]) == 2  # run_all.sh --lab lands here
    err = capsys.readouterr().err
    assert (
        "JupyterLab is not installed" in err and "requirements-lab.txt" in err and "./run_all.sh --lab" in err
    )


def test_lab_dry_run_and_kernel_only(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(lab, "jupyterlab_installed", lambda: True)
    real = lab.install_kernel
    monkeypatch.setattr(lab, "install_kernel", lambda **kw: real(prefix=tmp_path))
    assert pipeline_main(["--lab", "--dry-run", "--port", "8899"]) == 0
    out = capsys.readouterr().out
    assert "-m jupyterlab" in out and "--port 8899" in out and "kernel 'dlink'" in out
    monkeypatch.setattr(lab, "jupyterlab_installed", lambda: False)  # --kernel-only needs no JupyterLab
    assert lab.main(["--kernel-only"]) == 0
    assert (tmp_path / "share" / "jupyter" / "kernels" / "dlink" / "kernel.json").is_file()


def test_run_all_sh_installs_the_lab_extra_only_for_lab():
    script = (paths.ROOT / "run_all.sh").read_text()
    assert 'if [ "${1:-}" = "--lab" ]; then\n  scripts/bootstrap.sh --lab' in script
    boot = subprocess.run(
        ["bash", str(paths.ROOT / "scripts" / "bootstrap.sh"), "--nonsense"], capture_output=True, text=True
    )
    assert boot.returncode == 2 and "usage: scripts/bootstrap.sh [--lab]" in boot.stderr
    assert "requirements-lab.txt" not in (paths.ROOT / "run_tests.sh").read_text()


def test_lab_runs_kernels_over_ipc_with_this_environment_first_on_path():
    cmd = lab.lab_command([])
    assert "--KernelManager.transport=ipc" in cmd
    assert f"--KernelManager.ip={lab.ipc_prefix()}" in cmd and not str(lab.ipc_prefix()).startswith(
        str(paths.ROOT)
    )  # the sockets do not land in the project
    assert lab.lab_env()["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_ipc_kernels_start_without_the_unencrypted_tcp_warning(transport, tmp_path):
    """What JupyterLab started by lab_command does: an IPC kernel runs code and logs no warning
    (the TCP case shows that the check sees the warning when it is there)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3", transport=transport)
    if transport == "ipc":
        km.ip = str(tmp_path / "kernel")
    with open(tmp_path / "stderr.txt", "w") as err:
        km.start_kernel(stderr=err)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            assert kc.execute_interactive("1 + 1", timeout=60)["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    warned = "without encryption" in (tmp_path / "stderr.txt").read_text()
    assert warned == (transport == "tcp")


def test_lab_extra_brings_ipywidgets_for_progress_bars():
    text = (paths.ROOT / "requirements-lab.txt").read_text()
    assert re.search(r"^ipywidgets==", text, re.M) and re.search(r"^jupyterlab==", text, re.M)
