#!/usr/bin/env bash
# Reproduce everything: set up the environment (once), then run the numbered notebooks in
# order into runs/<profile>/, skipping those already done with the same inputs.
#
#   ./run_all.sh                          # profile from $DLINK_PROFILE, else "default"
#   ./run_all.sh --profile smoke          # minutes, proves everything runs
#   ./run_all.sh --profile full --force   # rerun every notebook
#   ./run_all.sh --only 03 -p seeds "[0, 1, 2]"
#   ./run_all.sh --lab                    # open the notebooks in JupyterLab (installed once)
#
# Options are those of `python -m dlink.runner.pipeline --help` (and `python -m dlink.runner.lab --help`).
set -euo pipefail
# relative paths in -p values are the user's: dlink.runner.pipeline resolves them against this folder
export DLINK_USER_CWD="$PWD"
cd "$(dirname "$0")"
# this checkout's dlink, also where the venv's editable install points at another checkout (a copy);
# dlink.runner.pipeline refuses to run if it would still write elsewhere
export DLINK_CHECKOUT="$(pwd -P)"
export PYTHONPATH="$DLINK_CHECKOUT${PYTHONPATH:+:$PYTHONPATH}"

# the Debian sound packages only build the embedded dataset: not needed for AudioCaps / Clotho
args=" $* "
case "$args" in *" dataset audiocaps "*|*" dataset clotho "*) export DLINK_SOUNDS=0 ;; esac
if [ "${1:-}" = "--lab" ]; then
  scripts/bootstrap.sh --lab  # JupyterLab is an extra: only this command installs it
else
  scripts/bootstrap.sh
fi
exec .venv/bin/python -m dlink.runner.pipeline "$@"
