#!/usr/bin/env bash
# Stop the test cluster that tests/slurm/start_slurm.sh started in the state directory
# (default /tmp/sitsflow-slurm): slurmd, slurmctld, and munged if that script started it.
# Only the processes recorded in the state directory's pid files are signalled; the link
# /etc/slurm/slurm.conf is removed only if it points to this state directory's slurm.conf.
#   bash tests/slurm/stop_slurm.sh /tmp/sitsflow-slurm
set -uo pipefail

STATE_DIR="$(realpath -m "${1:-${SLURM_STATE_DIR:-/tmp/sitsflow-slurm}}")"

stop_pid_file() {
    local pid_file="$1" pid
    [ -f "$pid_file" ] || return 0
    pid="$(cat "$pid_file")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stop_slurm: stopped $(basename "$pid_file" .pid) ($pid)" >&2
    fi
    rm -f "$pid_file"
}

# slurmd first, so that it does not keep retrying to register with a stopped slurmctld.
stop_pid_file "$STATE_DIR/slurmd.pid"
stop_pid_file "$STATE_DIR/slurmctld.pid"
stop_pid_file "$STATE_DIR/munged.pid"

if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$STATE_DIR/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
