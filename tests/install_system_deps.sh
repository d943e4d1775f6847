#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Debian's `chromium`, with which
# tests/test_report.py checks that the Snakemake HTML report renders (it is skipped without it).
# Idempotent, non-interactive and quiet: does nothing when chromium is already there.
#   bash tests/install_system_deps.sh        (the Makefile's `test` target calls it)
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: no apt-get here; install chromium yourself" \
        "(tests/test_report.py is skipped without it)" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "install_system_deps: not root and no password-less sudo; run as root:" \
        "apt-get install chromium (tests/test_report.py is skipped without it)" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_system_deps: installing chromium with apt-get" >&2
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
command -v chromium >/dev/null 2>&1
