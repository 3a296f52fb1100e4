#!/usr/bin/env bash
# Set up everything dlink needs, once: Debian packages (Java for the captioning metrics,
# the sound packages the embedded dataset is built from), then a virtual environment in
# .venv with the pinned Python packages. A second run finds everything and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[bootstrap] %s\n' "$*"; }

APT_PACKAGES=(openjdk-17-jre-headless ufoai-sound sound-theme-freedesktop wordwarvi-sound)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing Debian packages: ${missing[*]}"
    say "install them with: sudo apt-get install ${missing[*]}"
    exit 1
  fi
else
  say "Debian packages present"
fi

PY=${PYTHON:-python3}
stamp=.venv/.dlink-installed
want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "virtual environment .venv up to date"
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
say "installing pinned Python packages into .venv (a few minutes the first time)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# torch first and alone, so nothing below can pull a multi-GB CUDA build instead
.venv/bin/python -m pip install -q --disable-pip-version-check "$(grep '^torch==' requirements.txt)" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, dlink; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
  || { say "the environment in .venv does not import; delete .venv and rerun"; exit 1; }
echo "$want" > "$stamp"
say "done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
