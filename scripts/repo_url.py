"""The repository URL, stated once (pyproject.toml, [project.urls] Repository), and its copies.

Colab runs a notebook's set-up cell before any file of the repository exists, so that cell must
carry the clone URL itself; the README's Binder and Colab badges carry it too. This script
writes those copies from the one place and checks that none has drifted (a test runs the check):

    python scripts/repo_url.py                    # check; exit 1 naming each stale copy
    python scripts/repo_url.py --write            # rewrite the copies from pyproject.toml
    python scripts/repo_url.py --set https://github.com/you/dlink   # change the URL, then --write

The notebooks' set-up cell (the code cell after the parameters cell) is written whole from SETUP_CELL (one source for all seven);
other cells and the rest of the README are left as they are.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
GITHUB = re.compile(r"^https://github\.com/(?P<slug>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$")
FIRST_NOTEBOOK = "notebooks/01_data.ipynb"
SETUP_CELL = """\
# Set-up. Colab: clone REPO (or upload the repository folder as /content/dlink); binder/colab_cell.py installs what Colab lacks. Elsewhere the Colab lines do nothing (Binder: smoke profile).
import os, sys; REPO, HOME, COLAB = "{url}", "/content/dlink", "google.colab" in sys.modules  # REPO: scripts/repo_url.py
if COLAB and not os.path.isdir(HOME) and ("/OWNER/" in REPO or os.system(f"GIT_TERMINAL_PROMPT=0 git clone -q --depth 1 {{REPO}} {{HOME}}")):
    raise SystemExit(f"[dlink] no repository at {{HOME}}: " + ("REPO is still the OWNER placeholder" if "/OWNER/" in REPO else f"could not clone {{REPO}}") + f"; set REPO to your copy's URL or upload the repository folder as {{HOME}}, then run this cell again")
if COLAB: exec(open(f"{{HOME}}/binder/colab_cell.py").read(), {{"__name__": "colab_cell"}})
import dlink
from dlink import experiment

params = dlink.resolve_params(profile=profile, dataset=dataset, encoder=encoder, data_root=data_root, seeds=seeds, **options)
RESULTS, FIGURES = experiment.results_dir(params), experiment.figures_dir(params)
print(f"profile={{params.profile.name}} dataset={{params.dataset}} encoder={{params.encoder}} device={{params.device}} seeds={{list(params.seeds)}}")"""
BADGES = {  # README link prefix -> how it is built from "owner/name"
    re.compile(r"https://mybinder\.org/v2/gh/[^/\s)]+/[^/\s)]+/"): "https://mybinder.org/v2/gh/{slug}/",
    re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/"): (
        "https://colab.research.google.com/github/{slug}/"
    ),
}


def repo_url(root: Path = ROOT) -> str:
    """The URL in pyproject.toml, checked to be a GitHub repository (Colab and Binder need one)."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    url = data.get("project", {}).get("urls", {}).get("Repository")
    if not url or not GITHUB.match(url):
        raise ValueError(
            f"pyproject.toml [project.urls] Repository must be https://github.com/OWNER/NAME; got {url!r}"
        )
    return url.removesuffix(".git").rstrip("/")


def _notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def setup_cell(nb: dict) -> dict:
    """The code cell after the one tagged `parameters`: it reads the parameters, so it comes second."""
    cells = nb["cells"]
    i = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    return next(c for c in cells[i + 1 :] if c["cell_type"] == "code")


def _dump(nb: dict) -> str:  # the notebooks' own formatting (what nbformat writes)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files(root: Path = ROOT, url: str | None = None) -> dict[Path, str]:
    """Every file holding a copy of the URL, as it should read."""
    url = url or repo_url(root)
    slug = GITHUB.match(url)["slug"]
    out: dict[Path, str] = {}
    for path in _notebooks(root):
        nb = json.loads(path.read_text())
        cell = setup_cell(nb)
        cell["source"] = SETUP_CELL.format(url=url).splitlines(keepends=True)
        out[path] = _dump(nb)
    readme = root / "README.md"
    text = readme.read_text()
    for pattern, template in BADGES.items():
        text = pattern.sub(template.format(slug=slug), text)
    out[readme] = text
    return out


def stale(root: Path = ROOT) -> list[Path]:
    return [p for p, text in expected_files(root).items() if p.read_text() != text]


def set_url(url: str, root: Path = ROOT) -> None:
    if not GITHUB.match(url):
        raise ValueError(f"{url!r} is not https://github.com/OWNER/NAME")
    path = root / "pyproject.toml"
    text, n = re.subn(r'(?m)^Repository = ".*"$', f'Repository = "{url}"', path.read_text())
    if n != 1:
        raise ValueError(f"{path}: expected one 'Repository = \"...\"' line under [project.urls]")
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the copies from pyproject.toml")
    ap.add_argument("--set", metavar="URL", help="set the URL in pyproject.toml, then rewrite the copies")
    ap.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = Path(args.root)
    try:
        if args.set:
            set_url(args.set, root)
        if args.set or args.write:
            for path, text in expected_files(root).items():
                if path.read_text() != text:
                    path.write_text(text)
                    print(f"[repo_url] wrote {path.relative_to(root)}")
            return 0
        bad = stale(root)
    except ValueError as e:
        print(f"[repo_url] error: {e}", file=sys.stderr)
        return 2
    for path in bad:
        print(
            f"[repo_url] {path.relative_to(root)} does not match {repo_url(root)} (or the set-up cell changed)"
        )
    if bad:
        print("[repo_url] fix with: python scripts/repo_url.py --write", file=sys.stderr)
        return 1
    print(f"[repo_url] every copy of {repo_url(root)} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
