"""The paper's setting end to end on faithful fixtures: LAION-CLAP (HTSAT-tiny + roberta, random
weights, saved in the training script's checkpoint layout) + AudioCaps / Clotho folders in the
aac-datasets layouts, run by `python -m dlink.runner.pipeline` from a directory that is not the repository,
with RELATIVE paths, as a user would type them. Outputs go to a scratch project root (DLINK_ROOT).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlink import paths

pytest.importorskip("dlink.encoders.laion")  # (importing laion_clap itself would reach for the hub)
import paper_fixtures as fixtures  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A user's folder: tok/ (roberta-style tokenizer), clap.pt (LAION-CLAP checkpoint)."""
    d = tmp_path_factory.mktemp("user")
    vocab = fixtures.make_roberta_tokenizer(d / "tok")
    fixtures.make_laion_checkpoint(d / "clap.pt", vocab, position_ids=False)
    return d


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    """`python -m dlink.runner.pipeline` (smoke profile) started in `cwd`, its project root cwd/project.

    One thread per process: the AudioCaps and Clotho runs go side by side on the 2 cores."""
    env = dict(os.environ, DLINK_ROOT=str(cwd / "project"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", OMP_NUM_THREADS="1")  # fmt: skip
    env.pop("DLINK_USER_CWD", None)
    cmd = [sys.executable, "-m", "dlink.runner.pipeline", "--profile", "smoke", "--no-progress",
           "--notebooks", str(paths.NOTEBOOKS), "--runs", "runs", *args]  # fmt: skip
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _pipeline(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return _finish(_start(cwd, *args))


@pytest.fixture(scope="module")
def runs(work):
    """The AudioCaps runs (v2 layout through notebook 02, then v1, every notebook) beside the Clotho
    run (every notebook, from a subfolder with ../ paths): {"v2", "v2_01", "v1", "clotho": result}."""
    fixtures.make_audiocaps(work / "ac_v2", layout="v2")
    fixtures.make_audiocaps(work / "ac_v1", layout="v1")
    fixtures.make_clotho(work / "clotho")
    sub = work / "sub"
    sub.mkdir()
    rel = os.path.relpath(work / "clotho", sub)
    clotho = _start(sub, "-p", "dataset", "clotho", "-p", "data_root", rel, "-p", "encoder", "laion-clap",
                    "-p", "clap_ckpt", "../clap.pt", "-p", "clap_tokenizer", "../tok")  # fmt: skip
    try:
        args = ["-p", "encoder", "laion-clap", "-p", "clap_ckpt", "clap.pt", "-p", "clap_tokenizer", "tok"]
        out = {
            "v2": _pipeline(
                work, "--only", "01,02", "-p", "dataset", "audiocaps", "-p", "data_root", "ac_v2", *args
            )
        }
        done = work / "runs" / "smoke-audiocaps-laion-clap" / ".done"
        out["v2_done"] = sorted(p.name for p in done.glob("*.json"))
        out["v2_params"] = _flat(json.loads((done / f"{NOTEBOOKS[1]}.json").read_text())["parameters"])
        out["v2_01"] = (work / "runs" / "smoke-audiocaps-laion-clap" / "01_data.ipynb").read_text()
        out["v1"] = _pipeline(work, "-p", "dataset", "audiocaps", "-p", "data_root", "ac_v1", *args)
    finally:
        out["clotho"] = _finish(clotho)
    return out


def _flat(parameters: dict) -> dict:
    """A notebook's recorded parameters with its `options` dict (where -p clap_ckpt etc. go) merged in."""
    return {k: v for k, v in parameters.items() if k != "options"} | parameters.get("options", {})


def _check_run(
    cwd: Path, res, dataset: str, root: str, notebooks: list[str], user: Path | None = None
) -> None:
    """The run from `cwd` finished `notebooks`; paths the user typed relative to `cwd` are absolute
    against `user` (the folder holding clap.pt, tok/ and `root`; default `cwd`)."""
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    user = user or cwd
    done = {
        p.stem: json.loads(p.read_text())
        for p in (cwd / "runs" / f"smoke-{dataset}-laion-clap" / ".done").glob("*.json")
    }
    assert sorted(done) == notebooks
    params = _flat(done[notebooks[-1]]["parameters"])
    # every relative path was made absolute against the user's folder before any notebook ran
    assert params["clap_ckpt"] == str(user / "clap.pt") and params["clap_tokenizer"] == str(user / "tok")
    assert params["data_root"] == str(user / root) and params["dataset"] == dataset
    gap = json.loads(
        (cwd / "project" / "results" / f"smoke-{dataset}-laion-clap" / "encoder_gap.json").read_text()
    )
    assert gap["encoder"] == "laion-clap" and gap["test_items"] == 12  # every fixture test clip was embedded
    out = (cwd / "runs" / f"smoke-{dataset}-laion-clap" / "02_embeddings.ipynb").read_text()
    assert f"dataset={dataset}" in out and "encoder=laion-clap" in out


NOTEBOOKS = sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
def test_audiocaps_v1_all_notebooks_and_v2_through_the_embeddings_from_another_directory(work, runs):
    # AudioCaps 2.0's CSV layout through the loader and LAION-CLAP (notebooks 01-02); its clips and
    # captions are the v1 fixture's, so the v1 run finds their embeddings in the cache
    assert runs["v2"].returncode == 0, runs["v2"].stdout[-3000:] + runs["v2"].stderr[-3000:]
    assert runs["v2_done"] == [f"{n}.json" for n in NOTEBOOKS[:2]]
    assert "tev2Yt000_30" in runs["v2_01"]  # read from csv_files_v2
    assert (
        runs["v2_params"]["data_root"] == str(work / "ac_v2") and runs["v2_params"]["dataset"] == "audiocaps"
    )
    assert runs["v2_params"]["clap_ckpt"] == str(work / "clap.pt")
    # aac-datasets' default layout (v1), every notebook
    _check_run(work, runs["v1"], "audiocaps", "ac_v1", NOTEBOOKS)
    results = work / "project" / "results" / "smoke-audiocaps-laion-clap"
    table = (results / "aac_zero_shot.md").read_text()
    assert "diffusion_link" in table and "unavailable" in table  # SPICE/SPIDEr/FENSE: no resources here
    assert (results / "gap_metrics.csv").is_file() and (results / "aac_supervised.csv").is_file()
    assert (results / "ablations.csv").is_file()


@pytest.mark.slow
def test_clotho_all_notebooks_from_another_directory(work, runs):
    sub = work / "sub"
    _check_run(sub, runs["clotho"], "clotho", "clotho", NOTEBOOKS, user=work)
    results = sub / "project" / "results" / "smoke-clotho-laion-clap"
    assert "diffusion_link" in (results / "aac_zero_shot.md").read_text()
    assert (results / "aac_supervised.csv").is_file() and (results / "ablations.csv").is_file()


def test_relative_path_errors_show_the_absolute_path_tried(tmp_path, capsys, monkeypatch):
    from dlink.runner.pipeline import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLINK_USER_CWD", raising=False)
    code = main(["--profile", "smoke", "--notebooks", str(paths.NOTEBOOKS), "--runs", str(tmp_path / "runs"),
                 "-p", "encoder", "laion-clap", "-p", "clap_ckpt", "weights/630k-audioset-best.pt"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "weights" / "630k-audioset-best.pt") in err
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_run_all_passes_the_callers_directory():
    text = (paths.ROOT / "run_all.sh").read_text()
    assert text.index('export DLINK_USER_CWD="$PWD"') < text.index('cd "$(dirname "$0")"')


def test_bootstrap_needs_no_apt_for_audiocaps(tmp_path):
    import shutil

    bin_dir = tmp_path / "bin"  # a machine without apt-get, dpkg or Java
    bin_dir.mkdir()
    for tool in ("bash", "cat", "sha256sum", "cut", "grep", "dirname", "python3", "id"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHON": os.path.realpath(sys.executable)}
    script = str(paths.ROOT / "scripts" / "bootstrap.sh")
    res = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "openjdk-17-jre-headless ufoai-sound" in res.stdout
    assert "conda-forge openjdk=17" in res.stdout and "DLINK_SOUNDS=0" in res.stdout
    java = bin_dir / "java"  # e.g. conda-forge's openjdk from environment.yml
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    res = subprocess.run(
        ["bash", script], env={**env, "DLINK_SOUNDS": "0"}, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and "virtual environment .venv up to date" in res.stdout, (
        res.stdout + res.stderr
    )
    text = (paths.ROOT / "run_all.sh").read_text()
    assert '" dataset audiocaps "' in text and "DLINK_SOUNDS=0" in text
