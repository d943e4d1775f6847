"""Scale benchmark: how the workflow's own overhead grows with the number of features.

    python benchmarks/scale.py --n 100 1000 10000 [--batch-size auto] [--cores 2]
        [--workdir DIR] [--keep]

A tiny demo archive (a few 4 km tiles, two dates) and, for each N, N random points inside
those tiles (100 m buffer, 20 m pixels: 11 x 11 pixel cubes), read from the archive's local
items.json. For each N, in a fresh working directory:

* `dry-run`: wall time of `snakemake -n` before anything exists (parse, DAG, job listing);
* `run`: wall time of the complete run with `--cores N`; `rss`: peak resident memory of the
  Snakemake process itself (VmHWM, sampled), `cpu`: CPU seconds of Snakemake and all its jobs;
* `noop`: wall time of `snakemake -n` once everything is done (must find nothing to do);
* `+1`: one feature appended to the vector file: the jobs Snakemake runs, their wall time,
  and how many features' files were (re)written (must be exactly 1);
* `loop`: wall time of the same per-feature work (bbox, search, cube, quicklook, time series)
  and the same summary, time series table and overview, done in one Python loop in one
  process with sitsflow's functions (imports excluded). With `--loop-sample S` and N > S the
  loop runs over S of the features and its times are scaled by N / S (marked `~` in the
  table): the per-feature work is the same for every feature;
* `overhead/feature`: (run - loop) / N, the issue's definition (with 2 cores the workflow
  runs jobs in parallel, which the loop does not, so this can be below zero), and
  `cpu overhead/feature`: (cpu - loop cpu) / N, what the orchestration costs in CPU time.

`--batch-size` sets the config key `batch_size` (0: one job per feature and stage).
`--dry-run-only` measures only the first dry run (wall time and Snakemake's peak RSS) and
where its time goes: a profile of the same dry run, summed by step (reading the vector
file, grouping, batches, the rest of the parse, the DAG), for N like 100 000 whose full run
does not fit a benchmark.
The table goes to stdout; progress to stderr. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from shapely.geometry import Point, mapping

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Tile centres (lon, lat) far apart; each tile covers +-TILE_MARGIN_M around its centre.
TILE_CENTRES = [(8.49, 49.85), (11.18, 50.01), (-1.25, 44.55), (25.0, 60.2)]
TILE_MARGIN_M = 2000.0
SCATTER_DEGREES = 0.012  # points within ~1 km of a tile centre: buffer and grid stay inside
START, END = "2022-06-01", "2022-06-06"  # two acquisitions (revisit 5 days)
BUFFER_M, RESOLUTION = 100, 20
BANDS = ["B04", "B08"]


@dataclass
class RunResult:
    """One Snakemake invocation: wall seconds, peak RSS (MB), CPU seconds, return code, output."""

    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    returncode: int
    output: str


@dataclass
class Row:
    """One line of the table."""

    n: int
    batch_size: str
    dry_run: float = float("nan")
    jobs: int = 0
    run: float = float("nan")
    rss_mb: float = float("nan")
    cpu: float = float("nan")
    noop: float = float("nan")
    append_jobs: int = 0
    append_seconds: float = float("nan")
    append_rewritten: int = -1
    loop: float = float("nan")
    loop_cpu: float = float("nan")
    loop_scaled: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def overhead(self) -> float:
        return (self.run - self.loop) / self.n

    @property
    def cpu_overhead(self) -> float:
        return (self.cpu - self.loop_cpu) / self.n


def say(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Inputs


def make_archive(root: Path) -> Path:
    """The demo archive (one 4 km tile per centre, two dates); incremental across calls."""
    from sitsflow.demo import generate_archive

    tiles = [(f"tile{i}", Point(lon, lat)) for i, (lon, lat) in enumerate(TILE_CENTRES)]
    return generate_archive(
        tiles,
        root / "archive",
        START,
        END,
        revisit_days=5,
        margin_m=TILE_MARGIN_M,
        seed=5,
        clear_fraction=1.0,
        workers=2,
    )


def scatter_points(n: int, seed: int = 0) -> dict[str, Point]:
    """`n` points, spread over the tiles, each well inside its tile."""
    rng = random.Random(seed)
    points = {}
    for index in range(n):
        lon, lat = TILE_CENTRES[index % len(TILE_CENTRES)]
        dx = rng.uniform(-SCATTER_DEGREES, SCATTER_DEGREES)
        dy = rng.uniform(-SCATTER_DEGREES, SCATTER_DEGREES)
        points[f"p{index:06d}"] = Point(round(lon + dx, 6), round(lat + dy, 6))
    return points


def write_vector(path: Path, points: dict[str, Point]) -> None:
    features = [
        {"type": "Feature", "properties": {"id": fid}, "geometry": mapping(point)}
        for fid, point in points.items()
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def write_config(workdir: Path, items: Path, batch_size: str) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        vector="features.geojson",
        catalog=str(items),
        start=START,
        end=END,
        crs="utm",
        resolution=RESOLUTION,
        buffer_m=BUFFER_M,
        bands=BANDS,
        indices=[],
        query=None,
        batch_size=batch_size if batch_size == "auto" else int(batch_size),
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


# --------------------------------------------------------------------------------------------
# Measuring Snakemake


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set size) of a live process, in MB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snakemake(workdir: Path, *args: str, cores: int = 2, profile: Path | None = None) -> RunResult:
    """Run the workflow in `workdir`; sample the Snakemake process's peak RSS while it runs
    (with `profile`, under cProfile, which writes its statistics there)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    profiling = ["-m", "cProfile", "-o", str(profile)] if profile else []
    command = [
        sys.executable, *profiling, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", str(cores), *args,
    ]  # fmt: skip
    cpu_before = children_cpu_seconds()
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, peak_rss_mb(process.pid) or 0.0)
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    return RunResult(seconds, peak, children_cpu_seconds() - cpu_before, process.returncode, text)


def job_count(output: str) -> int:
    """Total of Snakemake's "Job stats" table (0 when there is nothing to do)."""
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "total" and fields[1].isdigit():
            return int(fields[1])
    return 0


def check(result: RunResult, what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"{what} failed (exit {result.returncode}):\n{result.output[-6000:]}")


def feature_file_times(workdir: Path) -> dict[str, float]:
    """Per-feature files -> modification time."""
    times = {}
    for folder in ("bbox", "items", "cubes", "quicklooks", "timeseries"):
        for path in (workdir / "results" / folder).glob("*"):
            times[str(path.relative_to(workdir))] = path.stat().st_mtime
    return times


def rewritten_features(before: dict[str, float], after: dict[str, float]) -> set[str]:
    """Ids of the features with a file that is new or newer."""
    return {
        Path(path).stem for path, when in after.items() if path not in before or when > before[path]
    }


# --------------------------------------------------------------------------------------------
# The same work in one Python loop


def baseline(workdir: Path) -> dict[str, float]:
    """The group searches, every stage of every feature, then the summary, time series table
    and overview, with sitsflow's functions in this process (what the rule scripts call).
    Imports excluded."""
    import importlib

    from sitsflow.catalog.groups import plan_groups
    from sitsflow.core.features import load_features
    from sitsflow.core.layout import SUMMARY, Layout
    from sitsflow.core.pipeline import STAGE_NAMES
    from sitsflow.core.settings import Settings
    from sitsflow.outputs.overview import overview_table, render_overview
    from sitsflow.outputs.summary import summarise, write_summary
    from sitsflow.outputs.timeseries import combine_timeseries
    from sitsflow.workflow.batch import run_stage
    from sitsflow.workflow.config import load_config
    from sitsflow.workflow.context import BatchContext, BatchSettings
    from sitsflow.workflow.stages import search_groups

    modules = (
        "sitsflow.core.bbox",
        "sitsflow.pixels.cube",
        "sitsflow.catalog.search",
        "sitsflow.outputs.write",
    )
    for module in modules:
        importlib.import_module(module)  # the loop below pays no import
    os.chdir(workdir)
    run = Settings.from_config(load_config(yaml.safe_load(Path("config.yaml").read_text())))
    settings, layout = BatchSettings.from_settings(run, batch_mode=True), Layout(run.cube_extension)
    cpu_before = time.process_time()
    started = time.perf_counter()
    features = load_features(run.vector, run.id_column)
    groups = plan_groups(features, run.stac.group_degrees)
    group_of = {fid: group for group, members in groups.items() for fid in members}
    by_id = {feature.fid: feature for feature in features}
    search_groups(by_id, groups, run.grid, run.search, run.stac, 0, layout)
    for feature in features:
        context = BatchContext(settings, group_search=layout.group_search(group_of[feature.fid]))
        for stage in STAGE_NAMES:
            run_stage(stage, feature, context)
    fids = [feature.fid for feature in features]
    write_summary(summarise(layout.paths("cube", fids)), SUMMARY)
    combine_timeseries(layout.paths("timeseries", fids)).to_parquet(
        "results/timeseries.parquet", index=False
    )
    render_overview(overview_table(SUMMARY, layout), "results/overview.png")
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_before,
    }


def run_baseline(workdir: Path) -> dict[str, float]:
    """`baseline` in a fresh Python process (so that the loop's memory and imports are its own)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--baseline-for", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"baseline failed:\n{result.stderr[-6000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# One N


def measure_loop(row: Row, root: Path, items: Path, points: dict, sample: int | None) -> None:
    """The loop's times for `points` (or a sample of them, scaled up) into `row`."""
    loop_dir = root / f"n{row.n}-loop"
    shutil.rmtree(loop_dir, ignore_errors=True)
    loop_dir.mkdir(parents=True)
    if sample and len(points) > sample:
        points = dict(list(points.items())[:sample])
        row.loop_scaled = True
    write_vector(loop_dir / "features.geojson", points)
    write_config(loop_dir, items, row.batch_size)
    timing = run_baseline(loop_dir)
    factor = row.n / len(points)
    row.loop, row.loop_cpu = timing["seconds"] * factor, timing["cpu_seconds"] * factor
    shutil.rmtree(loop_dir, ignore_errors=True)


def measure(
    n: int,
    root: Path,
    items: Path,
    batch_size: str,
    cores: int,
    loop_sample: int | None,
    skip_loop: bool = False,
) -> Row:
    row = Row(n=n, batch_size=batch_size)
    workdir = root / f"n{n}-batch{batch_size}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    points = scatter_points(n + 1)
    extra_id = list(points)[-1]
    extra = points.pop(extra_id)
    write_vector(workdir / "features.geojson", points)
    write_config(workdir, items, batch_size)

    say(f"N={n}: dry run")
    dry = snakemake(workdir, "--dry-run", "--quiet", "rules", cores=cores)
    check(dry, "dry run")
    row.dry_run, row.jobs = dry.seconds, job_count(dry.output)

    say(f"N={n}: run ({row.jobs} jobs)")
    full = snakemake(workdir, cores=cores)
    check(full, "run")
    row.run, row.rss_mb, row.cpu = full.seconds, full.peak_rss_mb, full.cpu_seconds

    say(f"N={n}: no-op dry run")
    noop = snakemake(workdir, "--dry-run", "--quiet", "rules", cores=cores)
    check(noop, "no-op dry run")
    row.noop = noop.seconds
    if "Nothing to be done" not in noop.output:
        row.notes.append("second run is not a no-op")

    say(f"N={n}: append one feature")
    write_vector(workdir / "features.geojson", {**points, extra_id: extra})
    before = feature_file_times(workdir)
    time.sleep(1.0)  # mtime resolution
    appended = snakemake(workdir, "--quiet", "rules", cores=cores)
    check(appended, "appending one feature")
    row.append_jobs, row.append_seconds = job_count(appended.output), appended.seconds
    rewritten = rewritten_features(before, feature_file_times(workdir))
    row.append_rewritten = len(rewritten)
    if rewritten != {extra_id}:
        row.notes.append(f"+1 rewrote {sorted(rewritten)[:5]}")

    if not skip_loop:
        say(f"N={n}: the same work in one Python loop")
        measure_loop(row, root, items, points, loop_sample)
    say(f"N={n}: done")
    return row


# Where a dry run's time goes: profile entries (file, function) summed under a step's name.
PARSE_STEPS = {
    "read the vector file": ("features.py", "load_features"),
    "group features": ("groups.py", "plan_groups"),
    "plan batches": ("batch.py", "plan_batches"),
    "check batch manifests": ("batch.py", "batch_generations"),
    "validate config": ("utils.py", "validate"),
    "build the DAG": ("dag.py", "init"),
    "update the DAG (needrun)": ("dag.py", "update_needrun"),
}


def measure_dry_run(n: int, root: Path, items: Path, batch_size: str, cores: int) -> None:
    """The first dry run of N features: wall time, peak RSS, jobs; then its profile by step."""
    import pstats

    workdir = root / f"n{n}-batch{batch_size}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    write_vector(workdir / "features.geojson", scatter_points(n))
    write_config(workdir, items, batch_size)
    say(f"N={n}: dry run")
    dry = snakemake(workdir, "--dry-run", "--quiet", "rules", cores=cores)
    check(dry, "dry run")
    print(f"# dry run of {n} features (batch_size {batch_size}): {dry.seconds:.1f} s, "
          f"Snakemake peak RSS {dry.peak_rss_mb:.0f} MB, {job_count(dry.output)} jobs")  # fmt: skip
    profile = workdir / "dry-run.prof"
    say(f"N={n}: profiled dry run")
    profiled = snakemake(workdir, "--dry-run", "--quiet", "rules", cores=cores, profile=profile)
    check(profiled, "profiled dry run")
    stats = pstats.Stats(str(profile))
    entries = stats.stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in entries.values())
    print(f"# where the profiled dry run's {profiled.seconds:.1f} s go (cumulative, overlapping):")
    for step, (filename, function) in PARSE_STEPS.items():
        seconds = sum(
            entry[3]
            for (path, _, name), entry in entries.items()
            if path.endswith(filename) and name == function
        )
        print(f"  {step:<28} {seconds:6.2f} s")
    print(f"  {'everything profiled':<28} {total:6.2f} s")
    if not (root / "keep").exists():
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(rows: list[Row], cores: int) -> None:
    header = (
        f"{'N':>6} {'batch':>5} {'jobs':>6} {'dry-run s':>9} {'run s':>8} {'rss MB':>7} "
        f"{'noop s':>7} {'+1 jobs':>7} {'+1 s':>6} {'+1 feat':>7} {'loop s':>8} "
        f"{'ovh s/f':>8} {'cpu ovh s/f':>11}"
    )
    print(f"# sitsflow scale benchmark, --cores {cores}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(header)
    for row in rows:
        print(
            f"{row.n:>6} {row.batch_size:>5} {row.jobs:>6} {row.dry_run:>9.1f} {row.run:>8.1f} "
            f"{row.rss_mb:>7.0f} {row.noop:>7.1f} {row.append_jobs:>7} "
            f"{row.append_seconds:>6.1f} {row.append_rewritten:>7} "
            f"{'~' if row.loop_scaled else ' '}{row.loop:>7.1f} "
            f"{row.overhead:>8.3f} {row.cpu_overhead:>11.3f}"
            + (f"  ({'; '.join(row.notes)})" if row.notes else "")
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--batch-size", default="auto", help="config batch_size (default auto)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="where to work (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the working directories")
    parser.add_argument("--skip-loop", action="store_true", help="do not run the Python loop")
    parser.add_argument(
        "--dry-run-only", action="store_true", help="only the first dry run, and its profile"
    )
    parser.add_argument(
        "--loop-sample",
        type=int,
        default=1000,
        help="run the loop over at most this many features, scaled up (default 1000; 0: all)",
    )
    parser.add_argument("--baseline-for", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_for:
        print(json.dumps(baseline(args.baseline_for)))
        return 0
    root = args.workdir or Path(tempfile.mkdtemp(prefix="sitsflow-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    say(f"working in {root}")
    items = make_archive(root)
    if args.dry_run_only:
        for n in args.n:
            measure_dry_run(n, root, items, args.batch_size, args.cores)
        return 0
    rows = []
    try:
        for n in args.n:
            rows.append(
                measure(
                    n, root, items, args.batch_size, args.cores, args.loop_sample, args.skip_loop
                )
            )
            print_table(rows[-1:], args.cores)  # progress: each row as soon as it is measured
    finally:
        if not args.keep:
            for row in rows:
                shutil.rmtree(root / f"n{row.n}-batch{row.batch_size}", ignore_errors=True)
    print()
    print_table(rows, args.cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
