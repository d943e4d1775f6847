#!/usr/bin/env bash
# The virtual environment of benchmarks/rasteret_reference.py: rasteret==0.4.1 with the versions
# pinned in benchmarks/rasteret-constraints.txt, in .venv-rasteret/ (or $RASTERET_VENV). Its own
# environment because rasteret needs Python >= 3.12: $PYTHON, else python3.12 on the PATH, else
# pyenv's newest 3.12. Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
RASTERET_VENV=${RASTERET_VENV:-.venv-rasteret}
is_312() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
if [ -z "${PYTHON:-}" ]; then
    # a pyenv shim on the PATH fails unless 3.12 is selected: try the interpreter itself next
    PYTHON=$(command -v python3.12 || true)
    if ! { [ -n "$PYTHON" ] && is_312 "$PYTHON"; } && command -v pyenv >/dev/null; then
        version=$(pyenv versions --bare | grep -E '^3\.12(\.[0-9]+)?$' | sort -V | tail -n 1 || true)
        PYTHON="$(pyenv root)/versions/${version:-none}/bin/python3.12"
    fi
fi
if [ ! -x "$RASTERET_VENV/bin/python" ]; then
    is_312 "${PYTHON:-}" || { echo "no Python 3.12 found: set PYTHON=/path/to/python3.12" >&2; exit 1; }
    "$PYTHON" -m venv "$RASTERET_VENV"
fi
# git ignores the environment by itself (as venv does from Python 3.13 on)
echo "*" > "$RASTERET_VENV/.gitignore"
"$RASTERET_VENV/bin/python" -m pip install --quiet -c benchmarks/rasteret-constraints.txt rasteret==0.4.1
"$RASTERET_VENV/bin/python" -c "import rasteret, importlib.metadata as m; print('rasteret', m.version('rasteret'), 'in $RASTERET_VENV')"
