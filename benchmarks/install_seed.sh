#!/usr/bin/env bash
# The virtual environment of reference (s) of benchmarks/seed_workload.py: sits==0.8.0 with the
# versions pinned in benchmarks/seed-constraints.txt, in .venv-seed/ (or $SEED_VENV). Its own
# environment because sits' dependencies clash with sitsflow's constraints.txt. Idempotent:
# a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SEED_VENV=${SEED_VENV:-.venv-seed}
[ -x "$SEED_VENV/bin/python" ] || "$PYTHON" -m venv "$SEED_VENV"
# git ignores the environment by itself (as venv does from Python 3.13 on)
echo "*" > "$SEED_VENV/.gitignore"
"$SEED_VENV/bin/python" -m pip install --quiet -c benchmarks/seed-constraints.txt sits==0.8.0
"$SEED_VENV/bin/python" -c "import sits.sits, importlib.metadata as m; print('sits', m.version('sits'), 'in $SEED_VENV')"
