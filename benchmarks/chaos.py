"""Chaos benchmark: kill -9 the whole workflow at random moments, resume, compare with a clean run.

    python benchmarks/chaos.py 30 [--seed 1] [--workdir DIR]

Builds a small demo archive (3 features, a few dates), runs the workflow once without
interruption (the reference), then, in a second working directory, N times: starts Snakemake in
a new session (process group), `kill -9`s the whole group after a random delay (seeded, a share
of the clean run's duration), and runs `snakemake --unlock` if a lock was left before the next
start (`rerun-incomplete` is on in the default profile). When a run ends before its kill, the
round is complete: its results are compared with the reference and deleted, and the next round
starts from scratch. A final run completes the last round. Every completed round must have every
cube open with the full time axis, value-for-value equal to the reference cube (all variables,
coordinates and attributes except `date_created`), an equal summary and no temporary file left
in results/. Prints one row per iteration: round, kill time, jobs started and finished, cubes.

`tests/test_chaos.py` runs the same harness (10 iterations, fixed seed) in `make test`.
Linux only (processes are found through /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from shapely.geometry import Point

REPO = Path(__file__).resolve().parent.parent
FEATURES = {"north": (25.0, 60.2), "centre": (8.491383, 49.854370), "south": (-1.25, 44.55)}
START, END = "2022-01-10", "2022-02-10"
# Kill times are drawn from this share of the clean run's duration (~30 s on 2 cores), so that
# on any machine the kills land in parsing, inside jobs and between jobs, and ten interrupted
# runs together get through most of the workflow.
KILL_WINDOW = (0.05, 0.25)
IGNORED_ATTRIBUTES = {"date_created"}
JOB_START = re.compile(r"^(?:local)?rule \w+:$", re.M)


@dataclass
class Iteration:
    """One interrupted run: when it was killed and how far it had come."""

    number: int
    kill_after_s: float
    killed: bool
    returncode: int | None
    jobs_started: int
    jobs_finished: int
    cubes: int
    round: int = 1


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]


def snakemake_env() -> dict[str, str]:
    """The environment of a Snakemake run: this interpreter's bin directory first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Snakemake to the end; raise with its output if it fails."""
    result = subprocess.run(
        snakemake_command(workdir, *args),
        capture_output=True,
        text=True,
        env=snakemake_env(),
        timeout=900,
    )
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-6000:]
        raise RuntimeError(f"snakemake {list(args)} failed:\n{output}")
    return result


def prepare_demo(root: Path) -> Path:
    """Write the demo archive under `root/archive`; return the config template path."""
    from sitsflow.demo import generate_archive

    features = [(fid, Point(lonlat)) for fid, lonlat in FEATURES.items()]
    items = generate_archive(
        features, root / "archive", START, END, revisit_days=5, seed=3, clear_fraction=0.6
    )
    vector = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": fid},
                "geometry": {"type": "Point", "coordinates": list(lonlat)},
            }
            for fid, lonlat in FEATURES.items()
        ],
    }
    (root / "points.geojson").write_text(json.dumps(vector))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        vector=str(root / "points.geojson"),
        catalog=str(items),
        start=START,
        end=END,
        crs="utm",
        resolution=20,
        buffer_m=300,
        query=None,
    )
    template = root / "config.yaml"
    template.write_text(yaml.safe_dump(config))
    return template


def new_workdir(root: Path, name: str, template: Path) -> Path:
    workdir = root / name
    workdir.mkdir()
    (workdir / "config.yaml").write_text(template.read_text())
    return workdir


def processes_in_session(session: int) -> list[int]:
    """Pids of live processes whose session id is `session` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == session:
            pids.append(int(entry.name))
    return pids


def kill_group(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGKILL the process group (and session) of `process` and wait until all of it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + timeout_s
    while remaining := processes_in_session(process.pid):
        for pid in remaining:  # a job that left the process group is still in the session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {remaining} survived kill -9")
        time.sleep(0.05)


def interrupted_run(workdir: Path, number: int, kill_after_s: float) -> Iteration:
    """Start Snakemake in a new session; kill -9 the whole group after `kill_after_s`."""
    log = workdir / f"chaos-{number:02d}.out"
    with open(log, "w") as output:
        process = subprocess.Popen(
            snakemake_command(workdir),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=snakemake_env(),
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=kill_after_s)
            killed = False
        except subprocess.TimeoutExpired:
            kill_group(process)
            returncode, killed = None, True
    text = log.read_text(errors="replace")
    return Iteration(
        number=number,
        kill_after_s=round(kill_after_s, 2),
        killed=killed,
        returncode=returncode,
        jobs_started=len(JOB_START.findall(text)),
        jobs_finished=text.count("Finished jobid"),
        cubes=len(list((workdir / "results" / "cubes").glob("*.nc"))),
    )


def unlock(workdir: Path) -> None:
    """Remove the lock a killed Snakemake left (what a user runs after a crash), if any."""
    locks = workdir / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        run_snakemake(workdir, "--unlock")


def timed_run(workdir: Path) -> float:
    """Run Snakemake to the end in `workdir`; return how long it took (seconds)."""
    started = time.perf_counter()
    run_snakemake(workdir)
    return time.perf_counter() - started


def chaos(
    workdir: Path, iterations: int, seed: int, clean_run_s: float, reference: Path
) -> tuple[list[Iteration], list[str]]:
    """`iterations` interrupted runs in `workdir`, then a run to completion; (history, problems).

    Each run is killed after a random share (KILL_WINDOW) of `clean_run_s`. A run that ends
    before its kill completes a *round*: its results are compared with `reference`, then
    results/ and logs/ are deleted so that the next kills land in a fresh workflow again.
    `problems` lists every difference found and every run that failed instead of being killed.
    """
    rng = random.Random(seed)
    low, high = (share * clean_run_s for share in KILL_WINDOW)
    history, problems, round_number = [], [], 1
    for number in range(1, iterations + 1):
        iteration = interrupted_run(workdir, number, rng.uniform(low, high))
        iteration.round = round_number
        history.append(iteration)
        if iteration.killed:
            unlock(workdir)
            continue
        if iteration.returncode != 0:
            problems.append(f"run {number} failed (exit {iteration.returncode}), see its output")
        problems += [f"round {round_number}: {p}" for p in compare_runs(reference, workdir)]
        for generated in ("results", "logs"):
            shutil.rmtree(workdir / generated, ignore_errors=True)
        round_number += 1
    run_snakemake(workdir)
    problems += [f"round {round_number}: {p}" for p in compare_runs(reference, workdir)]
    return history, problems


def cube_differences(reference: Path, candidate: Path) -> list[str]:
    """Why `candidate` is not value-for-value the `reference` cube (empty list: equal)."""
    with xr.open_dataset(reference) as expected, xr.open_dataset(candidate) as actual:
        expected.load()
        actual.load()
    problems = []
    if actual.sizes.get("time") != expected.sizes.get("time"):
        problems.append(f"time axis {actual.sizes.get('time')} != {expected.sizes.get('time')}")
    for attrs in (expected.attrs, actual.attrs):
        for name in IGNORED_ATTRIBUTES:
            attrs.pop(name, None)
    try:
        xr.testing.assert_identical(actual, expected)
    except AssertionError as exc:
        problems.append(str(exc)[:2000])
    return problems


def compare_runs(reference: Path, candidate: Path) -> list[str]:
    """Differences between two working directories' results (empty list: identical results)."""
    problems = []
    expected_cubes = sorted(p.name for p in (reference / "results" / "cubes").glob("*.nc"))
    actual_cubes = sorted(p.name for p in (candidate / "results" / "cubes").glob("*.nc"))
    if expected_cubes != actual_cubes or len(expected_cubes) != len(FEATURES):
        problems.append(f"cubes {actual_cubes} != {expected_cubes}")
    for name in expected_cubes:
        if name in actual_cubes:
            for problem in cube_differences(
                reference / "results" / "cubes" / name, candidate / "results" / "cubes" / name
            ):
                problems.append(f"{name}: {problem}")
    expected_summary = pd.read_csv(reference / "results" / "summary.csv")
    actual_summary = pd.read_csv(candidate / "results" / "summary.csv")
    if not expected_summary.equals(actual_summary):
        problems.append(f"summary differs:\n{actual_summary}\n!=\n{expected_summary}")
    leftovers = [str(p) for p in (candidate / "results").rglob("*.tmp-*")]
    if leftovers:
        problems.append(f"temporary files left in results/: {leftovers}")
    return problems


def check_reference(reference: Path) -> None:
    """The clean run must itself be complete: every cube has dates and observed pixels."""
    for fid in FEATURES:
        with xr.open_dataset(reference / "results" / "cubes" / f"{fid}.nc") as cube:
            if cube.sizes["time"] == 0 or not np.any(cube["observed"].values):
                raise RuntimeError(f"reference cube {fid} is empty")


def print_table(
    history: list[Iteration], problems: list[str], clean_run_s: float, elapsed_s: float
) -> None:
    print(
        f"{'iter':>4} {'round':>5} {'kill after s':>12} {'outcome':>8} {'jobs started':>12} "
        f"{'jobs done':>9} {'cubes':>5}"
    )
    for row in history:
        outcome = "killed" if row.killed else f"exit {row.returncode}"
        print(
            f"{row.number:>4} {row.round:>5} {row.kill_after_s:>12.2f} {outcome:>8} "
            f"{row.jobs_started:>12} {row.jobs_finished:>9} {row.cubes:>5}"
        )
    kills = sum(row.killed for row in history)
    rounds = sum(not row.killed for row in history) + 1  # the final run completes the last
    verdict = "identical to the clean run" if not problems else "DIFFERENT: " + "; ".join(problems)
    print(
        f"clean run {clean_run_s:.1f} s; {kills} kills in {len(history)} iterations over "
        f"{rounds} round(s), each resumed to completion; "
        f"{elapsed_s:.0f} s in all; final results {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("iterations", type=int, nargs="?", default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sitsflow-chaos-") as scratch:
        root = args.workdir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        template = prepare_demo(root)
        reference = new_workdir(root, "clean", template)
        clean_run_s = timed_run(reference)
        check_reference(reference)
        candidate = new_workdir(root, "chaos", template)
        history, problems = chaos(candidate, args.iterations, args.seed, clean_run_s, reference)
        print_table(history, problems, clean_run_s, time.perf_counter() - started)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
