"""The `dlink` command and every module command line: --help answers with option help, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from dlink import paths
from dlink.__main__ import COMMANDS, main

HELPS = [
    ["dlink"],
    ["dlink", "build"],
    ["dlink", "embed"],
    ["dlink", "train-clap"],
    ["dlink", "train-captioner"],
    ["dlink", "run"],
    ["dlink", "lab"],
    ["dlink", "publish"],
    ["dlink", "strip"],
    ["dlink.data"],
    ["dlink.data", "build"],
    ["dlink.runner.pipeline"],
    ["dlink.runner.pipeline", "strip"],
    ["dlink.runner.pipeline", "publish"],
    ["dlink.runner.lab"],
    ["dlink.encoders.embedded_clap"],
    ["dlink.distributed", "extract"],
    ["dlink.distributed", "train-captioner"],
]


def undocumented_options(text: str) -> list[str]:
    """Options of an argparse help text listed without a description (own line or the next)."""
    lines = text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        m = re.match(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if not m or m.group(2):
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not re.match(r"^\s{6,}\S", nxt) or re.match(r"^  -", nxt):
            bare.append(m.group(1))
    return bare


def test_the_checker_finds_an_option_without_help():
    text = "options:\n  -h, --help  show help\n  --size SIZE\n  --seed SEED           the seed\n"
    assert undocumented_options(text) == ["--size SIZE"]


@pytest.mark.parametrize("cmd", HELPS, ids=" ".join)
def test_help_exits_0_with_every_option_described(cmd):
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT), "MPLBACKEND": "Agg"}
    r = subprocess.run(
        [sys.executable, "-m", *cmd, "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr and "usage:" in r.stdout
    assert undocumented_options(r.stdout) == [], f"{' '.join(cmd)} --help: options without help"
    if cmd == ["dlink"]:
        for name in ("build", "embed", "run", "lab", "strip", "publish"):
            assert re.search(rf"^  {name}\s", r.stdout, re.M), name


def test_every_dlink_command_has_its_help_tested():
    assert {c[1] for c in HELPS if c[0] == "dlink" and len(c) > 1} == set(COMMANDS)


def test_unknown_command_is_a_clear_error(capsys):
    assert main(["bild"]) == 2
    assert "unknown command 'bild'" in capsys.readouterr().err


def test_console_script_is_declared():
    import tomllib

    scripts = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dlink"] == "dlink.__main__:main"
