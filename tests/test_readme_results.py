"""The generated README / docs sections: the LLM decoder's table appears beside the scratch decoder's
only when an llm run left one, and the LLM validation script never trains on its own."""

import importlib.util
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def results(tmp_path):
    if not (ROOT / "results" / "aac_zero_shot.csv").is_file():
        pytest.skip("needs the committed default run's results/")
    folder = tmp_path / "results"
    shutil.copytree(ROOT / "results", folder, ignore=shutil.ignore_patterns("llm", "smoke", "default-*"))
    return folder


def test_two_decoders_only_with_an_llm_run(results):
    readme = _script("readme_results")
    assert "Two decoders" not in readme.headline(results)
    assert "paper's kind of decoder" not in readme.section(results)

    llm = results / "llm"
    llm.mkdir()
    df = pd.read_csv(results / "aac_zero_shot.csv")
    df["n_seeds"] = 1
    df.loc[df["method"] == "diffusion_link", ["gain", "gain_lo", "gain_hi"]] = [0.5, 0.25, 0.75]
    df.to_csv(llm / "aac_zero_shot.csv", index=False)
    shutil.copy(results / "aac_zero_shot.md", llm / "aac_zero_shot.md")
    (llm / "validation.md").write_text(
        "# LLM on validation\n\n| input | CIDEr-D |\n| --- | ---: |\n| text_oracle | 1.1 |\n"
    )

    head = readme.headline(results)
    rows = [line for line in head.splitlines() if line.startswith("| ") and "(`results/" in line]
    assert len(rows) == 2
    scratch, smol = rows
    assert "aac_zero_shot.md`) | 3 |" in scratch and "SmolLM2" in smol and "| 1 |" in smol
    assert smol.endswith("| +50.0 % [+25.0, +75.0] |")
    section = readme.section(results)
    assert "paper's kind of decoder" in section and "1 seed)" in section and "**reproduced**" in section
    assert "| text_oracle | 1.1 |" in section


def test_llm_validation_refuses_without_a_trained_captioner(tmp_path, monkeypatch, capsys):
    from dlink import experiment

    monkeypatch.setattr(experiment, "run_dir", lambda params: tmp_path)
    script = _script("llm_validation")
    assert script.main(["--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "no trained zero-shot captioner" in err and "./run_all.sh --profile smoke" in err
