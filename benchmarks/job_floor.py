"""The cost of the workflow's shape alone: N features, two `script:` jobs each, doing nothing.

    python benchmarks/job_floor.py [--features 24] [--cores 2] [--repeat 3]

A Snakefile with sitsflow's per-feature shape (a `bbox` job and a `cube` job per feature, each a
Python `script:` that imports NumPy, as every sitsflow job does, and writes one small file) is
run with `snakemake --cores C` in a fresh directory: the wall time and CPU seconds of Snakemake
and its jobs are what any workflow of this shape pays before reading a single pixel (process
start, Snakemake's script preamble, NumPy, Snakemake's scheduling and bookkeeping). Issue 13's
0 ms demo targets are measured against that: the seed's job runs in one process.

Prints one line per run and the best. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """
FEATURES = [str(i) for i in range({features})]


rule all:
    input:
        expand("results/cubes/{{fid}}.txt", fid=FEATURES),


rule bbox:
    output:
        "results/bbox/{{fid}}.txt",
    log:
        "logs/bbox/{{fid}}.log",
    threads: 1
    script:
        "job.py"


rule cube:
    input:
        "results/bbox/{{fid}}.txt",
    output:
        "results/cubes/{{fid}}.txt",
    log:
        "logs/cube/{{fid}}.log",
    threads: 1
    script:
        "job.py"
"""

JOB = """
import numpy  # every sitsflow job imports NumPy (shapely, pyproj and the cube code need it)

with open(snakemake.output[0], "w") as out:  # noqa: F821 (injected by Snakemake)
    out.write("done")
"""


def children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


def run_once(features: int, cores: int) -> tuple[float, float]:
    """Wall and CPU seconds of one complete run in a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="job-floor-") as tmp:
        workdir = Path(tmp)
        (workdir / "Snakefile").write_text(SNAKEFILE.format(features=features))
        (workdir / "job.py").write_text(JOB)
        command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all"]
        cpu_before = children_cpu_s()
        started = time.perf_counter()
        subprocess.run(command, cwd=workdir, check=True, capture_output=True)
        wall = time.perf_counter() - started
        return wall, children_cpu_s() - cpu_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=24)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    runs = []
    for number in range(1, args.repeat + 1):
        wall, cpu = run_once(args.features, args.cores)
        runs.append((wall, cpu))
        print(
            f"run {number}: {args.features} features x 2 jobs, --cores {args.cores}: "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU ({1000 * cpu / (2 * args.features):.0f} ms "
            "CPU per job)",
            flush=True,
        )
    wall, cpu = min(runs)
    print(f"best: {wall:.2f} s wall, {cpu:.2f} s CPU; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
