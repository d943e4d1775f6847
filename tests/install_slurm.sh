#!/usr/bin/env bash
# Install what tests/test_slurm.py needs, idempotently (a no-op when everything is there):
#   - Debian packages slurm-wlm (slurmctld, slurmd, client commands) and munge (apt-get; root
#     or password-less sudo),
#   - the `slurm` extra of pyproject.toml (snakemake-executor-plugin-slurm) into the Python of
#     $PYTHON (default .venv/bin/python), pinned by constraints.txt.
# The test starts its own single-node cluster (tests/slurm/start_slurm.sh); no system service
# is configured or started. Never fails the caller: what cannot be installed is reported on
# stderr, and tests/test_slurm.py is then skipped with that reason.
#   bash tests/install_slurm.sh        (the Makefile's `test` target calls it)
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

say() { echo "install_slurm.sh: $*" >&2; }

have_slurm() {
    [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ] &&
        command -v sbatch >/dev/null 2>&1 && command -v squeue >/dev/null 2>&1
}

install_debian_packages() {
    local as_root
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no apt-get here: install SLURM (slurmctld, slurmd, munge) yourself"
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        say "not root and no password-less sudo: run as root: apt-get install slurm-wlm munge"
        return 1
    fi
    say "installing slurm-wlm and munge (apt-get)"
    "${as_root[@]}" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq \
            --no-install-recommends slurm-wlm munge >/dev/null
}

if ! have_slurm; then
    install_debian_packages && have_slurm || say "SLURM is not installed"
fi

if ! "$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
    say "installing the slurm extra into $PYTHON"
    "$PYTHON" -m pip install --quiet -c constraints.txt -e ".[slurm]" ||
        say "could not install snakemake-executor-plugin-slurm"
fi
exit 0
