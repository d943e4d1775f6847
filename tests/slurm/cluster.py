"""A throw-away single-node SLURM cluster for the tests (tests/slurm/start_slurm.sh).

There can be only one per machine: job steps find the cluster's configuration at the fixed
path /etc/slurm/slurm.conf (see start_slurm.sh), and the daemons listen on fixed ports. So the
cluster is shared: `shared_cluster()` registers the calling process as a user (under a file
lock), starts the cluster if it is not running yet, and when the last user leaves, stops it.
Two test sessions on the same machine (two engineers, or CI jobs) then share one cluster
instead of breaking each other's.

`SlurmUnavailable` (with the reason) is raised when SLURM is not installed or cannot start; the
tests are then skipped with that reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
START_SCRIPT = HERE / "start_slurm.sh"
STOP_SCRIPT = HERE / "stop_slurm.sh"
STATE_DIR = Path(os.environ.get("SITSFLOW_SLURM_STATE_DIR", "/tmp/sitsflow-slurm"))
REQUIRED_PROGRAMS = ("sbatch", "squeue", "scontrol", "sinfo")
DAEMONS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
INSTALL_HINT = "run `bash tests/install_slurm.sh` (Debian packages slurm-wlm and munge)"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster: its state directory and the environment its clients need."""

    state_dir: Path

    @property
    def slurm_conf(self) -> Path:
        return self.state_dir / "slurm.conf"

    def env(self) -> dict[str, str]:
        """This process's environment plus SLURM_CONF (sbatch, squeue and the plugin use it)."""
        return {**os.environ, "SLURM_CONF": str(self.slurm_conf)}

    def jobs(self, name: str | None = None) -> list[dict[str, str]]:
        """Jobs the controller knows (finished ones stay for MinJobAge): id, name, state,
        comment (the executor plugin writes the rule or group there), node."""
        command = ["squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k|%N"]
        if name:
            command.append(f"--name={name}")
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.env(), check=True, timeout=60
        )
        keys = ("id", "name", "state", "comment", "node")
        return [
            dict(zip(keys, (part.strip() for part in line.split("|")), strict=True))
            for line in result.stdout.splitlines()
            if line.strip()
        ]

    def controller_log(self) -> str:
        return (self.state_dir / "slurmctld.log").read_text(errors="replace")


def missing_software() -> str | None:
    """Why SLURM cannot run here, or None if everything needed is installed."""
    missing = [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]
    missing += [path for path in DAEMONS if not os.access(path, os.X_OK)]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): {INSTALL_HINT}"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return f"snakemake-executor-plugin-slurm is not installed: {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root (SlurmUser=root): run the tests as root"
    return None


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Hold the cluster's lock file (one starter or stopper at a time)."""
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(state_dir.parent / f".{state_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_users(users: Path) -> list[Path]:
    """Registered users whose process still runs (files of dead ones are removed)."""
    alive = []
    for entry in users.glob("*"):
        if entry.name.isdigit() and _alive(int(entry.name)):
            alive.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return alive


def _run_script(script: Path, state_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), str(state_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@contextlib.contextmanager
def shared_cluster(state_dir: Path = STATE_DIR) -> Iterator[SlurmCluster]:
    """The machine's test cluster, started if needed, stopped after its last user."""
    reason = missing_software()
    if reason:
        raise SlurmUnavailable(reason)
    users = state_dir / "users"
    me = users / str(os.getpid())
    with _locked(state_dir):
        users.mkdir(parents=True, exist_ok=True)
        me.touch()
        started = _run_script(START_SCRIPT, state_dir)
        if started.returncode != 0 or "SLURM_CONF=" not in started.stdout:
            me.unlink(missing_ok=True)
            if not _live_users(users):
                _run_script(STOP_SCRIPT, state_dir)
            raise SlurmUnavailable(
                f"the test SLURM cluster did not start (exit {started.returncode}):\n"
                f"{started.stderr[-3000:]}"
            )
    try:
        yield SlurmCluster(state_dir)
    finally:
        with _locked(state_dir):
            me.unlink(missing_ok=True)
            if not _live_users(users):
                _run_script(STOP_SCRIPT, state_dir)
