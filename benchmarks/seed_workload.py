"""Benchmark the seed's job over HTTP: sitsflow against the notebook way (stackstac, odc-stac).

    .venv/bin/python benchmarks/seed_workload.py --latency-ms 0 20 80 [--repeat 2]
        [--tools sitsflow sitsflow-http notebook odc] [--out results/benchmarks/seed_workload.json]
        [--merge EARLIER.json ...]

The references need the `bench` extra: `pip install -c constraints.txt -e ".[bench]"`.

The job: the 24 points of data/rand_pts.geojson, buffer 1 km, 2024, eo:cloud_cover < 10,
B03 B04 B08 + SCL at 20 m in EPSG:3035 (image mode), SCL mask and linear gap-fill, 2 cores.
The demo archive (resources/demo/sentinel-2-l2a when `make demo` wrote it, otherwise generated
once into results/benchmarks/archive) is served by `python -m sitsflow.testing.stac_server` in a
separate process (GDAL reading from a server in the same process can deadlock on the GIL),
with an injected latency per request. For every latency and repetition each tool runs in a
fresh working directory:

* sitsflow: `snakemake --cores 2` on the cube files (bbox, search and cube jobs), with
  `s3_endpoint` set to the server, whose /data/ is an S3-compatible bucket: the COGs are read
  through GDAL's S3 client, as sitsflow reads Earth Search's S3-hosted COGs by itself;
* sitsflow-http: the same with `s3_access: http` (GDAL's HTTP client, as for any other host);
* notebook: benchmarks/notebook_reference.py with stackstac (reference a);
* odc: the same loop with odc-stac as the loader (reference b).

Measured per run: wall time, CPU seconds of the tool's processes (and per kind of job), the
server's counters (`/_stats`: data requests, bytes, API requests), the 1-minute load average
before the run, and the peak RSS of every Python process (each Snakemake job, the Snakemake
main process, the notebook loop). Peak RSS is the kernel's
high-water mark `VmHWM` of the process's own address space, read from /proc/self/status when
the process exits: a `sitecustomize` module put on PYTHONPATH for the run only registers an
`atexit` hook that appends it to a log. It is exact (no sampling) and does not depend on
Snakemake's `benchmark:` directive; `ru_maxrss` is not used because Linux carries it over
`execve`, so a job spawned from the Snakemake process can inherit that process's peak.

The lower bound of bytes and the number of distinct byte ranges needed are computed from the
archive's COGs (`benchmarks.cogbytes`): for each feature, each item the search finds and each
band, the COG header plus the tiles at the right overview level under the cube's pixels.

Timings are noisy on a shared 2-core machine: the table shows the best run of each tool and
the load average before it, and CPU seconds, which depend much less on the load; the JSON has
every run (written after each run, so an interrupted benchmark keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VECTOR = REPO / "data" / "rand_pts.geojson"
DEMO_ARCHIVE = REPO / "resources" / "demo" / "sentinel-2-l2a"
CACHED_ARCHIVE = REPO / "results" / "benchmarks" / "archive" / "sentinel-2-l2a"
DEFAULT_OUT = REPO / "results" / "benchmarks" / "seed_workload.json"
TOOLS = ("sitsflow", "sitsflow-http", "notebook", "odc")
TOOL_LABELS = {
    "sitsflow": "sitsflow (snakemake --cores 2)",
    "sitsflow-http": "sitsflow, s3_access: http",
    "notebook": "(a) notebook, stackstac",
    "odc": "(b) notebook, odc-stac",
}
RSS_LOG_VARIABLE = "SITSFLOW_BENCH_RSS_LOG"
# Imported by every Python process of a run (PYTHONPATH): log the process's peak RSS at exit.
SITECUSTOMIZE = f'''
import atexit, json, os, sys

def _log_peak_rss(log=os.environ.get("{RSS_LOG_VARIABLE}")):
    if not log:
        return
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    times = os.times()
    entry = {{"pid": os.getpid(), "argv": sys.argv, "peak_rss": kib * 1024,
             "cpu_s": times.user + times.system}}
    with open(log, "a") as out:
        out.write(json.dumps(entry))
        out.write("\\n")

atexit.register(_log_peak_rss)
'''
SCRIPT_JOB = re.compile(r"\.(?P<rule>[A-Za-z_]\w*)\.py$")  # snakemake's tmpXXXX.<rule>.py


# ---- the archive and the lower bound ----------------------------------------------------------


def ensure_archive(archive: Path | None) -> Path:
    """The archive directory to serve: given, `make demo`'s, or generated once into a cache."""
    if archive is not None:
        return archive
    if (DEMO_ARCHIVE / "items.json").exists():
        return DEMO_ARCHIVE
    command = [
        sys.executable, str(REPO / "scripts" / "make_demo_archive.py"),
        "--configfile", str(REPO / "config" / "config.yaml"),
        "--vector", str(VECTOR), "--out", str(CACHED_ARCHIVE), "--workers", "2",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO)  # incremental: a no-op once generated
    return CACHED_ARCHIVE


def workload_config() -> dict:
    """The workflow's default configuration: the seed's job (vector overridden per run)."""
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def cached_lower_bound(archive: Path, cache: Path) -> dict:
    """`lower_bound`, reused from `cache` while the archive's items.json and the config match."""
    items = (archive / "items.json").stat()
    key = {
        "archive": str(archive.resolve()),
        "items_json": [items.st_size, items.st_mtime_ns],
        "config": workload_config(),
        "version": 2,
    }
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["lower_bound"]
    bound = lower_bound(archive)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "lower_bound": bound}, indent=1))
    return bound


def lower_bound(archive: Path) -> dict:
    """Fewest bytes and byte ranges the seed's job needs from the archive (benchmarks.cogbytes)."""
    from benchmarks.cogbytes import needed_ranges, needed_tile_ranges, read_layout, total_bytes
    from sitsflow.catalog.search import search
    from sitsflow.workflow.aoi import grid_of, make_aoi_record
    from sitsflow.workflow.features import load_features

    config = workload_config()
    bands = list(config["bands"]) + [config["mask"]["band"]]
    totals = dict.fromkeys(
        ("features", "items", "files", "ranges", "header_first_requests", "bytes", "file_bytes"), 0
    )
    header_bytes = 0
    for feature in load_features(VECTOR, config["id_column"]):
        record = make_aoi_record(
            feature,
            buffer_m=config["buffer_m"],
            crs=config["crs"],
            resolution=config["resolution"],
            mode=config["mode"],
        )
        grid = grid_of(record)
        items = search(
            str(archive / "items.json"),
            collection=config["collection"],
            bbox=record["bbox"],
            start=config["start"],
            end=config["end"],
            query=config["query"],
        )
        totals["features"] += 1
        totals["items"] += len(items)
        for item in items:
            for band in bands:
                layout = read_layout(item["assets"][band]["href"])
                on_grid = (grid.transform, grid.width, grid.height, grid.epsg)
                ranges = needed_ranges(layout, *on_grid)
                totals["files"] += 1
                totals["ranges"] += len(ranges)
                # a reader that cannot know the tile offsets before the header: 1 + tile runs
                totals["header_first_requests"] += 1 + len(needed_tile_ranges(layout, *on_grid))
                totals["bytes"] += total_bytes(ranges)
                totals["file_bytes"] += layout.size
                header_bytes += layout.header_bytes
    totals["header_bytes"] = header_bytes
    return totals


# ---- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One tool run at one latency."""

    tool: str
    latency_ms: float
    repeat: int
    wall_s: float
    load_before: float
    load_after: float
    ok: bool
    cpu_s: float
    stats: dict
    peak_rss_by_job: dict[str, int] = field(default_factory=dict)
    cpu_s_by_job: dict[str, float] = field(default_factory=dict)
    n_processes: int = 0
    error: str = ""

    @property
    def peak_rss_per_job(self) -> int:
        """Largest peak RSS of one job (a Snakemake job, or the whole notebook loop)."""
        jobs = {k: v for k, v in self.peak_rss_by_job.items() if k != "snakemake (main)"}
        return max(jobs.values(), default=0)


class StatsServer:
    """`python -m sitsflow.testing.stac_server` in its own process, with its counters."""

    def __init__(self, archive: Path, latency_ms: float) -> None:
        command = [
            sys.executable, "-m", "sitsflow.testing.stac_server", str(archive),
            "--port", "0", "--latency-ms", str(latency_ms),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith("STAC API:"):
            self.stop()
            raise RuntimeError(f"stac_server did not start: {first!r}")
        self.url = first.split(":", 1)[1].strip()

    def reset(self) -> dict:
        from sitsflow.testing.stac_server import remote_stats

        return remote_stats(self.url, reset=True)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def tool_command(tool: str, url: str, workdir: Path, cores: int) -> list[str]:
    """The command line of one tool run in `workdir`."""
    if tool in ("sitsflow", "sitsflow-http"):
        config = workload_config()
        config.update(vector=str(VECTOR), catalog=url)
        if tool == "sitsflow":  # the server's /data/ is an S3-compatible bucket (path style)
            config.update(s3_endpoint=url.removesuffix("/api"))
        else:
            config.update(s3_access="http")
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        from sitsflow.workflow.features import load_features

        cubes = [f"results/cubes/{f.fid}.nc" for f in load_features(VECTOR, config["id_column"])]
        return [
            sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", str(cores), *cubes, "--quiet", "all",
        ]  # fmt: skip
    loader = {"notebook": "stackstac", "odc": "odc"}[tool]
    return [
        sys.executable, str(REPO / "benchmarks" / "notebook_reference.py"),
        "--catalog", url, "--vector", str(VECTOR), "--out", str(workdir / "cubes"),
        "--loader", loader,
    ]  # fmt: skip


def job_name(argv: list[str]) -> str:
    """What a logged process was: a Snakemake rule's job, Snakemake itself, the notebook."""
    first = Path(argv[0]) if argv else Path("?")
    match = SCRIPT_JOB.search(first.name)
    if match:
        return match["rule"]
    if "snakemake" in first.parts or first.name == "snakemake":
        return "snakemake (main)"
    return first.name.removesuffix(".py")


def peak_rss_by_job(log: Path) -> tuple[dict[str, int], dict[str, float], int]:
    """Largest peak RSS and total CPU seconds per kind of job, and how many processes ran."""
    peaks: dict[str, int] = {}
    cpu: dict[str, float] = {}
    count = 0
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            name = job_name(entry["argv"])
            peaks[name] = max(peaks.get(name, 0), entry["peak_rss"])
            cpu[name] = round(cpu.get(name, 0.0) + entry.get("cpu_s", 0.0), 2)
            count += 1
    return peaks, cpu, count


def children_cpu_s() -> float:
    """User + system CPU seconds of all finished child processes (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_to_end(command: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Run `command` in its own session; if interrupted, end its whole process tree."""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_tool(tool: str, server: StatsServer, latency_ms: float, repeat: int, cores: int) -> Run:
    """Run `tool` once against `server` in a fresh directory; measure it."""
    with tempfile.TemporaryDirectory(prefix=f"seed-{tool}-") as tmp:
        workdir = Path(tmp)
        probe = workdir / "rss-probe"
        probe.mkdir()
        (probe / "sitecustomize.py").write_text(SITECUSTOMIZE)
        rss_log = workdir / "rss.jsonl"
        python_path = os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")]))
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": python_path,
            RSS_LOG_VARIABLE: str(rss_log),
        }
        command = tool_command(tool, server.url, workdir, cores)
        server.reset()
        load_before = os.getloadavg()[0]
        cpu_before = children_cpu_s()
        started = time.perf_counter()
        result = run_to_end(command, env, workdir)
        wall = time.perf_counter() - started
        cpu = children_cpu_s() - cpu_before
        stats = server.reset()
        peaks, cpu_by_job, count = peak_rss_by_job(rss_log)
        error = "" if result.returncode == 0 else (result.stdout[-2000:] + result.stderr[-4000:])
        return Run(
            tool=tool,
            latency_ms=latency_ms,
            repeat=repeat,
            wall_s=round(wall, 2),
            load_before=round(load_before, 2),
            load_after=round(os.getloadavg()[0], 2),
            ok=result.returncode == 0,
            cpu_s=round(cpu, 1),
            stats=stats,
            peak_rss_by_job=peaks,
            cpu_s_by_job=cpu_by_job,
            n_processes=count,
            error=error,
        )


# ---- report -----------------------------------------------------------------------------------


def best_runs(runs: list[Run]) -> dict[tuple[float, str], Run]:
    """The fastest successful run of each (latency, tool)."""
    best: dict[tuple[float, str], Run] = {}
    for run in runs:
        key = (run.latency_ms, run.tool)
        if run.ok and (key not in best or run.wall_s < best[key].wall_s):
            best[key] = run
    return best


def table(runs: list[Run], bound: dict) -> str:
    """The benchmark table (best run per latency and tool) and the targets."""
    best = best_runs(runs)
    header = (
        f"{'latency':>7}  {'tool':<32} {'wall s':>7} {'CPU s':>6} {'load':>5} {'x (a)':>6} "
        f"{'requests':>8} "
        f"{'req/rng':>7} {'MB':>7} {'B/LB':>5} {'api':>5} {'RSS/job MB':>10}"
    )
    lines = [header, "-" * len(header)]
    order = sorted(best, key=lambda key: (key[0], TOOLS.index(key[1])))
    for latency, tool in order:
        run = best[(latency, tool)]
        reference = best.get((latency, "notebook"))
        speedup = f"{reference.wall_s / run.wall_s:6.2f}" if reference else f"{'':>6}"
        stats = run.stats
        lines.append(
            f"{latency:>5g}ms  {TOOL_LABELS[tool]:<32} {run.wall_s:7.1f} {run.cpu_s:6.1f} "
            f"{run.load_before:5.2f} "
            f"{speedup} {stats['data_requests']:8d} "
            f"{stats['data_requests'] / bound['ranges']:7.2f} {stats['data_bytes'] / 1e6:7.2f} "
            f"{stats['data_bytes'] / bound['bytes']:5.2f} {stats['api_requests']:5d} "
            f"{run.peak_rss_per_job / 1e6:10.0f}"
        )
    failed = [run for run in runs if not run.ok]
    lines.append(
        f"lower bound: {bound['files']} files ({bound['items']} items x bands, "
        f"{bound['features']} features), {bound['ranges']} distinct byte ranges "
        f"({bound['header_first_requests']} requests if the header is read first), "
        f"{bound['bytes'] / 1e6:.2f} MB (headers {bound['header_bytes'] / 1e6:.2f} MB; the whole "
        f"files are {bound['file_bytes'] / 1e6:.2f} MB)"
    )
    lines.append(
        "columns: best of the repetitions; CPU s = user + system time of the tool's processes "
        "(not the server's); load = 1-min load average before that run; x (a) = "
        "speed-up over the notebook way; req/rng = data requests / distinct ranges needed; "
        "B/LB = bytes / lower bound; api = STAC API requests; RSS/job = largest peak RSS of a "
        "job (sitsflow: one Snakemake job; references: the whole loop)"
    )
    lines.extend(f"FAILED: {run.tool} at {run.latency_ms} ms: {run.error[-500:]}" for run in failed)
    return "\n".join(lines)


def targets(runs: list[Run], bound: dict) -> dict[str, bool]:
    """The issue's targets, checked on the best runs."""
    best = best_runs(runs)
    latencies = sorted({latency for latency, _ in best})
    checks: dict[str, bool] = {}
    for latency in latencies:
        ours = best.get((latency, "sitsflow"))
        if ours is None:
            continue
        others = [best[(latency, t)] for t in ("notebook", "odc") if (latency, t) in best]
        checks[f"{latency:g} ms: not slower than (a) and (b)"] = all(
            ours.wall_s <= other.wall_s for other in others
        )
        if latency >= 80 and (latency, "notebook") in best:
            checks[f"{latency:g} ms: wall <= 1/3 of (a)"] = (
                ours.wall_s * 3 <= best[(latency, "notebook")].wall_s
            )
        checks[f"{latency:g} ms: bytes <= 1.3 x lower bound"] = (
            ours.stats["data_bytes"] <= 1.3 * bound["bytes"]
        )
        checks[f"{latency:g} ms: requests <= 1.5 x ranges"] = (
            ours.stats["data_requests"] <= 1.5 * bound["ranges"]
        )
        checks[f"{latency:g} ms: peak RSS per job <= 500 MB"] = ours.peak_rss_per_job <= 500e6
    return checks


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-ms", type=float, nargs="*", default=[0.0, 20.0, 80.0])
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and latency")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--archive", type=Path, help="demo archive directory (with items.json)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=[],
        help="earlier results files whose runs join the table (best of all); "
        "`--latency-ms` with no value then only merges",
    )
    return parser.parse_args(argv)


def load_runs(path: Path) -> list[Run]:
    """The runs recorded in an earlier results file."""
    fields = set(Run.__dataclass_fields__)
    return [
        Run(**{key: value for key, value in run.items() if key in fields})
        for run in json.loads(path.read_text())["runs"]
    ]


def write_results(out: Path, archive: Path, bound: dict, runs: list[Run]) -> str:
    """Write the results file (every run, the table, the targets); return the table."""
    report = table(runs, bound)
    document = {
        "archive": str(archive),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "lower_bound": bound,
        "targets": targets(runs, bound),
        "runs": [{**asdict(run), "peak_rss_per_job": run.peak_rss_per_job} for run in runs],
        "table": report,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on kill, as on Ctrl-C
    archive = ensure_archive(args.archive)
    bound = cached_lower_bound(archive, args.out.with_name("lower_bound_cache.json"))
    runs: list[Run] = [run for path in args.merge for run in load_runs(path)]
    for latency in args.latency_ms:
        server = StatsServer(archive, latency)
        try:
            for repeat in range(args.repeat):
                for tool in args.tools:
                    run = run_tool(tool, server, latency, repeat, args.cores)
                    runs.append(run)
                    write_results(args.out, archive, bound, runs)  # kept if a later run dies
                    print(
                        f"{latency:g} ms  {tool:<9} #{repeat}: {run.wall_s:7.1f} s  "
                        f"CPU {run.cpu_s:6.1f} s  "
                        f"load {run.load_before:.2f}  requests {run.stats['data_requests']}  "
                        f"{'ok' if run.ok else 'FAILED'}",
                        flush=True,
                    )
        finally:
            server.stop()
    report = write_results(args.out, archive, bound, runs)
    print("\n" + report + "\n")
    for name, met in targets(runs, bound).items():
        print(f"  [{'x' if met else ' '}] {name}")
    print(f"\nwrote {args.out}")
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
