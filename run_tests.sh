#!/usr/bin/env bash
# The test command: set up (once), then the unit tests and every notebook under nbval in
# the smoke profile. Usage: ./run_tests.sh [extra pytest args for the unit tests]
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
start=$SECONDS
echo "[tests] unit tests"
.venv/bin/python -m pytest tests "$@"
echo "[tests] notebooks (nbval, smoke profile)"
DLINK_PROFILE=smoke .venv/bin/python -m pytest -p no:cacheprovider --nbval-lax \
  --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks
echo "[tests] all passed in $((SECONDS - start)) s"
