"""Benchmark the seed's job over HTTP: sitsflow against the seed (sits), two notebook loops and
the floor.

    .venv/bin/python benchmarks/seed_workload.py [--latency-ms 0 80] [--repeat 2]
        [--tools sitsflow seed notebook odc floor] [--out results/benchmarks/seed_workload.json]
        [--merge EARLIER.json ...] [--timeout-s S]
    .venv/bin/python benchmarks/seed_workload.py --archive-layout full [--latency-ms 50]
        [--features rand_pts clustered] [--tools sitsflow floor]

The references need the `bench` extra (`pip install -c constraints.txt -e ".[bench]"`), and
the seed its own environment (`bash benchmarks/install_seed.sh`, `.venv-seed/`).

The job (issue 13): the points of a vector file, buffer 1 km, 2024, eo:cloud_cover < 10,
B03 B04 B08 + SCL at 20 m in EPSG:3035 (image mode), SCL mask and linear gap-fill, 2 cores.
The archive is served by `python -m sitsflow.testing.stac_server` in a separate process (GDAL
reading from a server in the same process can deadlock on the GIL), with an injected latency
per request:

* `--archive-layout demo` (default): the demo archive (resources/demo/sentinel-2-l2a when
  `make demo` wrote it, otherwise generated once into results/benchmarks/archive), small tiles
  around each of the 24 points of data/rand_pts.geojson;
* `--archive-layout full`: full-size tiles with Earth Search's COG layout
  (`benchmarks/full_archive.py`, generated once into results/benchmarks/full), for two feature
  sets: `rand_pts` (the 24 points, one tile each) and `clustered` (1000 points in two tiles).

For every feature set, latency and repetition each tool runs in a fresh working directory:

* sitsflow: `snakemake --cores 2` with every default target, the default configuration and
  only `vector` and `catalog` set (`--config`), as a user runs it;
* seed: reference (s), the sits tutorial's own code (benchmarks/seed_reference.py) in the seed
  environment, only its STAC URL patched;
* notebook: benchmarks/notebook_reference.py with stackstac (reference a);
* odc: the same loop with odc-stac as the loader (reference b);
* floor: reference (f), benchmarks/floor_reference.py: the needed tiles fetched with async_tiff
  and obstore, 32 files in flight, and decoded; nothing else.

Measured per run: wall time, CPU seconds of the tool's processes (and per kind of job), the
server's counters (`/_stats`: data requests, bytes, API requests), the 1-minute load average
before the run, the peak RSS of every Python process (each Snakemake job, the Snakemake main
process, the reference loops and the seed's worker processes) and what the tool wrote (number
of cubes, their dates and pixels, the share of missing values). Peak RSS is the kernel's
high-water mark `VmHWM` of the process's own address space, read from /proc/self/status when
the process exits: a `sitecustomize` module put on PYTHONPATH for the run only registers an
`atexit` hook that appends it to a log. It is exact (no sampling) and does not depend on
Snakemake's `benchmark:` directive; `ru_maxrss` is not used because Linux carries it over
`execve`, so a job spawned from the Snakemake process can inherit that process's peak.

The lower bound of bytes, of the distinct byte ranges and of the blocks needed is computed from
the archive's COGs (`benchmarks.bound`): for each feature, each item the search finds and each
band, the COG header plus the tiles at the right overview level under the cube's pixels, also
counted once per distinct block and date within sitsflow's batches and over all features. On
the full-size archive the benchmark also measures the loopback throughput of the server (large
ranges, 16 at a time) and the CPU time to decode the needed blocks; the floor of the wall time
is the larger of bound bytes / throughput and decode CPU / cores.

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
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import CONFIG, default_config  # noqa: E402
from sitsflow.testing.stac_server import ServerProcess as StatsServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VECTOR = REPO / "data" / "rand_pts.geojson"
DEMO_ARCHIVE = REPO / "resources" / "demo" / "sentinel-2-l2a"
CACHED_ARCHIVE = REPO / "results" / "benchmarks" / "archive" / "sentinel-2-l2a"
FULL_ARCHIVE = REPO / "results" / "benchmarks" / "full" / "sentinel-2-l2a"
DEFAULT_OUT = {
    "demo": REPO / "results" / "benchmarks" / "seed_workload.json",
    "full": REPO / "results" / "benchmarks" / "seed_workload_full.json",
}
SEED_PYTHON = REPO / ".venv-seed" / "bin" / "python"
TOOLS = ("sitsflow", "seed", "notebook", "odc", "floor")
# sitsflow runs: the default config, or another setting (`tile_aware.py --tools sitsflow-zstd`)
SITSFLOW_RUNS: dict[str, tuple[str, ...]] = {"sitsflow": (), "sitsflow-zstd": ("compression=zstd",)}
TOOL_LABELS = {
    "sitsflow": "sitsflow (snakemake --cores 2)",
    "seed": "(s) seed, sits 0.8.0 tutorial",
    "notebook": "(a) notebook, stackstac",
    "odc": "(b) notebook, odc-stac",
    "floor": "(f) floor, async_tiff",
}
FEATURE_SETS = ("rand_pts", "clustered")
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


def ensure_archive(archive: Path | None, layout: str = "demo") -> Path:
    """The archive directory to serve: given, `make demo`'s, or generated once into a cache."""
    if archive is not None:
        return archive
    if layout == "full":
        command = [sys.executable, "-m", "benchmarks.full_archive", "--out", str(FULL_ARCHIVE)]
        subprocess.run(command, check=True, cwd=REPO)  # keeps the files already written
        return FULL_ARCHIVE
    if (DEMO_ARCHIVE / "items.json").exists():
        return DEMO_ARCHIVE
    command = [
        sys.executable, str(REPO / "tools" / "make_demo_archive.py"),
        "--configfile", str(CONFIG),
        "--vector", str(VECTOR), "--out", str(CACHED_ARCHIVE), "--workers", "2",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO)  # incremental: a no-op once generated
    return CACHED_ARCHIVE


def feature_vector(archive: Path, features: str) -> Path:
    """The vector file of a feature set: rand_pts, or the full archive's clustered points."""
    if features == "rand_pts":
        return VECTOR
    from benchmarks.full_archive import CLUSTERED_VECTOR

    return archive / CLUSTERED_VECTOR


def cached_lower_bound(archive: Path, vector: Path, cache: Path, *, decode: bool) -> dict:
    """`benchmarks.bound.lower_bound` (+ decode CPU with `decode`), reused from `cache`
    while the archive's items.json, the vector file and the config match."""
    from benchmarks.bound import BOUND_VERSION, decode_seconds, lower_bound
    from sitsflow.workflow.batch import AUTO_BATCH_SIZE, AUTO_PER_FEATURE

    items, points = (archive / "items.json").stat(), vector.stat()
    key = {
        "archive": str(archive.resolve()),
        "items_json": [items.st_size, items.st_mtime_ns],
        "vector": [str(vector.resolve()), points.st_size, points.st_mtime_ns],
        "config": default_config(),
        "decode": decode,
        "version": BOUND_VERSION,
        "batching": [AUTO_PER_FEATURE, AUTO_BATCH_SIZE],  # the bound's batches are sitsflow's
    }
    stored = json.loads(cache.read_text()) if cache.exists() else {}
    entries = [entry for entry in stored.get("entries", []) if entry["key"] != key]
    for entry in stored.get("entries", []):
        if entry["key"] == key:
            return entry["lower_bound"]
    bound = lower_bound(archive, vector, default_config())
    if decode:
        bound.update(decode_seconds(archive, bound))
    cache.parent.mkdir(parents=True, exist_ok=True)
    entries.append({"key": key, "lower_bound": bound})
    cache.write_text(json.dumps({"entries": entries}, indent=1))
    return bound


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
    features: str = "rand_pts"
    layout: str = "demo"
    outputs: dict = field(default_factory=dict)
    throughput: float = 0.0  # full-size archive: the loopback bytes/s of this run's server
    read_cpu_ms_per_file: float | None = None  # sitsflow: from its reader's log lines
    tiles_decoded: int | None = None  # sitsflow: from its reader's log lines; floor: printed
    cache_peak_mb: float | None = None  # sitsflow: the run-wide range cache's largest size
    # floor: the process's CPU in each phase ("search", "read": fetch, open and decode)
    phase_cpu_s: dict[str, float] | None = None

    @property
    def peak_rss_per_job(self) -> int:
        """Largest peak RSS of one job (a Snakemake job, a reference loop or a seed worker)."""
        jobs = {k: v for k, v in self.peak_rss_by_job.items() if k != "snakemake (main)"}
        return max(jobs.values(), default=0)


# Both benchmarks' target for the largest peak RSS of one job (issues 13 and 21).
RSS_BOUND_BYTES = 500e6


def rss_target_met(peak_bytes: float) -> bool:
    """Peak RSS per job within RSS_BOUND_BYTES; 0 means no job recorded its peak (its atexit
    hook did not run), which is not a pass."""
    return 0 < peak_bytes <= RSS_BOUND_BYTES


def loopback_throughput(
    server: StatsServer,
    path: str,
    *,
    seconds: float = 4.0,
    chunk: int = 8 << 20,
    parallel: int = 16,
) -> dict[str, float]:
    """Bytes per second the server delivers over loopback: `chunk`-byte ranges of the file at
    `path` (relative to /data), `parallel` at a time with obstore, for about `seconds`; the
    latency per request is paid once per range, so large ranges measure the throughput."""
    import asyncio

    from obstore.store import HTTPStore

    store = HTTPStore.from_url(server.data_url, client_options={"allow_http": True})

    async def measure() -> tuple[int, float]:
        size = (await store.head_async(path))["size"]
        starts = list(range(0, max(size - chunk, 1), chunk))
        received, index = 0, 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            batch = [starts[(index + k) % len(starts)] for k in range(parallel)]
            index += parallel
            pieces = await asyncio.gather(
                *(store.get_range_async(path, start=s, length=min(chunk, size - s)) for s in batch)
            )
            received += sum(len(memoryview(piece)) for piece in pieces)
        return received, time.perf_counter() - started

    received, wall = asyncio.run(measure())
    server.reset()  # not part of any run
    return {"bytes": received, "seconds": round(wall, 2), "bytes_per_s": received / wall}


def tool_command(
    tool: str, url: str, workdir: Path, cores: int, vector: Path, seed_python: Path
) -> list[str]:
    """The command line of one tool run in `workdir`."""
    if tool in SITSFLOW_RUNS:  # as a user runs it: the default config, vector and catalog set
        (workdir / "config").mkdir()
        (workdir / "config" / "config.yaml").write_text(CONFIG.read_text())
        return [
            sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--cores", str(cores),
            "--config", f"vector={vector}", f"catalog={url}", *SITSFLOW_RUNS[tool],
            "--quiet", "all",
        ]  # fmt: skip
    if tool == "seed":
        return [
            str(seed_python), str(REPO / "benchmarks" / "seed_reference.py"),
            "--catalog", url, "--vector", str(vector), "--out", str(workdir / "cubes"),
            "--workers", str(cores),
        ]  # fmt: skip
    if tool == "floor":
        return [
            sys.executable, str(REPO / "benchmarks" / "floor_reference.py"),
            "--catalog", url, "--vector", str(vector), "--threads", str(cores),
        ]  # fmt: skip
    loader = {"notebook": "stackstac", "odc": "odc"}[tool]
    return [
        sys.executable, str(REPO / "benchmarks" / "notebook_reference.py"),
        "--catalog", url, "--vector", str(vector), "--out", str(workdir / "cubes"),
        "--loader", loader,
    ]  # fmt: skip


def job_name(argv: list[str]) -> str:
    """What a logged process was: a Snakemake rule's job, Snakemake itself, a reference loop,
    a multiprocessing worker (the seed's dask processes)."""
    if "--multiprocessing-fork" in argv:
        return "worker (multiprocessing)"
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


def run_to_end(
    command: list[str], env: dict, cwd: Path, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run `command` in its own session; if interrupted or past `timeout`, end its whole
    process tree (return code -9 for a timeout)."""
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
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stderr += f"\ntimed out after {timeout} s"
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


OUTPUT_DIRS = {
    **dict.fromkeys(SITSFLOW_RUNS, "results/cubes"),
    **dict.fromkeys(("seed", "notebook", "odc"), "cubes"),
}


def check_outputs(tool: str, workdir: Path, sample: int = 60) -> dict[str, Any]:
    """What a tool wrote: the number of cube files, and over up to `sample` of them the mean
    number of dates and of pixels per band and date, the share of missing B04 values and their
    median (values as each tool writes them: DN or reflectance)."""
    import numpy as np
    import xarray as xr

    if tool not in OUTPUT_DIRS:
        return {}
    files = sorted((workdir / OUTPUT_DIRS[tool]).glob("*.nc"))
    dates, pixels, missing, medians = [], [], [], []
    for path in files[:: max(1, len(files) // sample)][:sample]:
        with xr.open_dataset(path) as cube:
            band = cube["B04"].values.astype("float64")
        dates.append(band.shape[0])
        pixels.append(band.shape[1] * band.shape[2])
        missing.append(float(np.isnan(band).mean()))
        if np.isfinite(band).any():
            medians.append(float(np.nanmedian(band)))
    checked = len(dates)
    return {
        "files": len(files),
        "checked": checked,
        "dates": round(sum(dates) / checked, 1) if checked else 0,
        "pixels": round(sum(pixels) / checked) if checked else 0,
        "missing": round(sum(missing) / checked, 4) if checked else 0,
        "b04_median": round(float(np.median(medians)), 4) if medians else None,
    }


@dataclass(frozen=True)
class RunSpec:
    """What one run does: tool, feature set, vector, and the benchmark's settings."""

    tool: str
    features: str
    vector: Path
    layout: str
    cores: int
    seed_python: Path
    timeout_s: float | None


def run_tool(spec: RunSpec, server: StatsServer, latency_ms: float, repeat: int) -> Run:
    """Run one tool once against `server` in a fresh directory; measure it."""
    with tempfile.TemporaryDirectory(prefix=f"seed-{spec.tool}-") as tmp:
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
        command = tool_command(
            spec.tool, server.url, workdir, spec.cores, spec.vector, spec.seed_python
        )
        server.reset()
        load_before = os.getloadavg()[0]
        cpu_before = children_cpu_s()
        started = time.perf_counter()
        result = run_to_end(command, env, workdir, spec.timeout_s)
        wall = time.perf_counter() - started
        cpu = children_cpu_s() - cpu_before
        stats = server.reset()
        peaks, cpu_by_job, count = peak_rss_by_job(rss_log)
        error = "" if result.returncode == 0 else (result.stdout[-2000:] + result.stderr[-4000:])
        outputs = check_outputs(spec.tool, workdir) if result.returncode == 0 else {}
        ours = spec.tool in SITSFLOW_RUNS
        read_cpu = read_cpu_per_file(workdir / "logs") if ours else None
        decoded, cache_peak = reader_totals(workdir / "logs") if ours else (None, None)
        phases = None
        if spec.tool == "floor" and result.returncode == 0:
            decoded, phases = floor_totals(result.stdout)
        return Run(
            tool=spec.tool,
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
            features=spec.features,
            layout=spec.layout,
            outputs=outputs,
            read_cpu_ms_per_file=read_cpu,
            tiles_decoded=decoded,
            cache_peak_mb=cache_peak,
            phase_cpu_s=phases,
        )


READ_LINE = re.compile(r"read (\d+) files[^\n]*? in [\d.]+ s, ([\d.]+) ms CPU per file")


DECODED_LINE = re.compile(r"(\d+) tiles decoded")
CACHE_LINE = re.compile(r"range cache: .*?at most ([\d.]+) MB so far")


def reader_totals(logs: Path) -> tuple[int, float | None]:
    """The tiles the run decoded and the largest size its range cache reached (MB; None
    without a cache), from the reader's log lines."""
    decoded, peak = 0, None
    for log in logs.rglob("*.log"):
        text = log.read_text(errors="replace")
        decoded += sum(int(n) for n in DECODED_LINE.findall(text))
        for size in CACHE_LINE.findall(text):
            peak = max(peak or 0.0, float(size))
    return decoded, peak


def floor_totals(stdout: str) -> tuple[int, dict[str, float]]:
    """The tiles the floor tool decoded and its CPU per phase, from the totals it prints last
    (`benchmarks.floor_reference`)."""
    totals = json.loads(stdout.strip().splitlines()[-1])
    return totals["tiles"], {"search": totals["search_cpu_s"], "read": totals["read_cpu_s"]}


def read_cpu_per_file(logs: Path) -> float | None:
    """CPU milliseconds per COG read over every read of the run, from the reader's log lines
    (`sitsflow.pixels.tiles`: the process's CPU while it opened, fetched, decoded and placed
    the files' tiles, over the files), weighted by files; None without such lines."""
    files = cpu_ms = 0.0
    for log in logs.rglob("*.log"):
        for count, per_file in READ_LINE.findall(log.read_text(errors="replace")):
            files += int(count)
            cpu_ms += int(count) * float(per_file)
    return round(cpu_ms / files, 2) if files else None


# ---- report -----------------------------------------------------------------------------------

Key = tuple[str, float, str]  # (feature set, latency, tool)


def best_runs(runs: list[Run]) -> dict[Key, Run]:
    """The fastest successful run of each (feature set, latency, tool)."""
    best: dict[Key, Run] = {}
    for run in runs:
        key = (run.features, run.latency_ms, run.tool)
        if run.ok and (key not in best or run.wall_s < best[key].wall_s):
            best[key] = run
    return best


def _ratio(value: float, reference: float | None, width: int = 6) -> str:
    return f"{value / reference:{width}.2f}" if reference else f"{'':>{width}}"


def _outputs(run: Run, expected: int) -> str:
    return f"{run.outputs['files']}/{expected}" if run.outputs else "-"


def demo_table(runs: list[Run], bound: dict) -> str:
    """The demo archive's table (best run per latency and tool)."""
    best = best_runs(runs)
    header = (
        f"{'latency':>7}  {'tool':<31} {'wall s':>7} {'CPU s':>6} {'load':>5} {'x (s)':>6} "
        f"{'CPU/(s)':>7} {'x (f)':>6} {'requests':>8} {'req/rng':>7} {'MB':>7} {'B/LB':>5} "
        f"{'api':>5} {'RSS/job MB':>10} {'cubes':>6}"
    )
    lines = [header, "-" * len(header)]
    order = sorted(best, key=lambda key: (key[1], TOOLS.index(key[2])))
    for features, latency, tool in order:
        run = best[(features, latency, tool)]
        seed = best.get((features, latency, "seed"))
        floor = best.get((features, latency, "floor"))
        stats = run.stats
        lines.append(
            f"{latency:>5g}ms  {TOOL_LABELS[tool]:<31} {run.wall_s:7.1f} {run.cpu_s:6.1f} "
            f"{run.load_before:5.2f} {_ratio(run.wall_s, seed and seed.wall_s)} "
            f"{_ratio(run.cpu_s, seed and seed.cpu_s, 7)} "
            f"{_ratio(run.wall_s, floor and floor.wall_s)} {stats['data_requests']:8d} "
            f"{stats['data_requests'] / bound['ranges']:7.2f} {stats['data_bytes'] / 1e6:7.2f} "
            f"{stats['data_bytes'] / bound['bytes']:5.2f} {stats['api_requests']:5d} "
            f"{run.peak_rss_per_job / 1e6:10.0f} {_outputs(run, bound['features']):>6}"
        )
    lines.append(
        f"lower bound: {bound['files']} files ({bound['items']} items x bands, "
        f"{bound['features']} features), {bound['ranges']} distinct byte ranges "
        f"({bound['header_first_requests']} requests if the header is read first), "
        f"{bound['tiles']} tiles, {bound['bytes'] / 1e6:.2f} MB (headers "
        f"{bound['header_bytes'] / 1e6:.2f} MB; the whole files are "
        f"{bound['file_bytes'] / 1e6:.2f} MB)"
    )
    lines.append(
        "columns: best of the repetitions; CPU s = user + system time of the tool's processes "
        "(not the server's); load = 1-min load average before that run; x (s), x (f) = wall "
        "time / that of the seed (s), the floor (f); CPU/(s) = CPU s / the seed's; req/rng = "
        "data requests / distinct ranges needed; B/LB = bytes / lower bound; api = STAC API "
        "requests; RSS/job = largest peak RSS of one process (sitsflow: a Snakemake job; seed: "
        "its main process or a dask worker; others: the loop); cubes = files written / features"
    )
    return "\n".join(lines + _failures(runs) + _output_lines(best))


def floor_seconds(bound: dict, throughput: float | None, cores: int) -> tuple[float, float]:
    """(network floor, decode floor) in seconds: the bound's bytes (per batch) at the measured
    throughput, and the decode CPU of its blocks spread over `cores`."""
    network = bound["batch_bytes"] / throughput if throughput else 0.0
    return network, bound.get("decode_cpu_s", 0.0) / cores


def full_table(runs: list[Run], bounds: dict[str, dict], throughput: dict, cores: int) -> str:
    """The full-size archive's table: per feature set and latency, each tool's best run."""
    best = best_runs(runs)
    header = (
        f"{'features':<9} {'latency':>7}  {'tool':<31} {'wall s':>7} {'CPU s':>6} {'load':>5} "
        f"{'requests':>8} {'req/blk':>7} {'MB':>8} {'B/LB':>5} {'B/LBb':>5} {'B/LBs':>5} "
        f"{'x floor':>7} {'RSS/job MB':>10} {'cubes':>6}"
    )
    lines = [header, "-" * len(header)]
    order = sorted(best, key=lambda key: (FEATURE_SETS.index(key[0]), key[1], TOOLS.index(key[2])))
    for features, latency, tool in order:
        run, bound = best[(features, latency, tool)], bounds[features]
        rate = run.throughput or throughput.get(f"{latency:g}")
        network, decode = floor_seconds(bound, rate, cores)
        stats = run.stats
        lines.append(
            f"{features:<9} {latency:>5g}ms  {TOOL_LABELS[tool]:<31} {run.wall_s:7.1f} "
            f"{run.cpu_s:6.1f} {run.load_before:5.2f} {stats['data_requests']:8d} "
            f"{stats['data_requests'] / bound['tiles']:7.2f} {stats['data_bytes'] / 1e6:8.1f} "
            f"{stats['data_bytes'] / bound['bytes']:5.2f} "
            f"{stats['data_bytes'] / bound['batch_bytes']:5.2f} "
            f"{stats['data_bytes'] / bound['shared_bytes']:5.2f} "
            f"{_ratio(run.wall_s, max(network, decode), 7)} "
            f"{run.peak_rss_per_job / 1e6:10.0f} {_outputs(run, bound['features']):>6}"
        )
    for features, bound in bounds.items():
        lines.append(
            f"lower bound, {features}: {bound['features']} features, {bound['batches']} "
            f"batch(es), {bound['files']} files, {bound['tiles']} blocks, "
            f"{bound['bytes'] / 1e6:.1f} MB per feature (headers "
            f"{bound['header_bytes'] / 1e6:.1f} MB); once per block and date in a batch "
            f"{bound['batch_tiles']} blocks, {bound['batch_bytes'] / 1e6:.1f} MB; over all "
            f"features {bound['shared_tiles']} blocks, {bound['shared_bytes'] / 1e6:.1f} MB; "
            f"decoding the batch blocks {bound.get('decode_cpu_s', 0):.1f} s CPU"
        )
    for latency, rate in throughput.items():
        lines.append(f"loopback throughput at {latency} ms: {rate / 1e6:.0f} MB/s (this session)")
    lines.append(
        "columns: req/blk = data requests / blocks needed (per feature); B/LB, B/LBb, B/LBs = "
        "bytes / lower bound counted per feature, once per block and date within a batch "
        "(sitsflow's default batches; = B/LB with one job per feature), once over all "
        "features; x floor = wall / max(batch bound bytes / loopback throughput of that run's "
        "server, decode CPU of the batch bound's blocks / cores); others as in the demo table"
    )
    return "\n".join(lines + _failures(runs) + _output_lines(best))


def _failures(runs: list[Run]) -> list[str]:
    return [
        f"FAILED: {run.tool} ({run.features}) at {run.latency_ms} ms: {run.error[-500:]}"
        for run in runs
        if not run.ok
    ]


def _output_lines(best: dict[Key, Run]) -> list[str]:
    """One line per feature set and tool: what its cubes hold (from the first latency)."""
    seen: set[tuple[str, str]] = set()
    lines = []
    for (features, _, tool), run in sorted(best.items()):
        if run.outputs and (features, tool) not in seen:
            seen.add((features, tool))
            out = run.outputs
            lines.append(
                f"cubes of {tool} ({features}): {out['files']} files; over {out['checked']}: "
                f"{out['dates']} dates, {out['pixels']} pixels per band and date, B04 missing "
                f"{out['missing']:.1%}, median {out['b04_median']}"
            )
    return lines


def targets(runs: list[Run], bounds: dict[str, dict]) -> dict[str, bool]:
    """Issue 13's targets, checked on the best runs."""
    best = best_runs(runs)
    checks: dict[str, bool] = {}
    for (features, latency, tool), ours in sorted(best.items()):
        if tool != "sitsflow":
            continue
        where = f"{ours.layout} {features}, {latency:g} ms"
        seed = best.get((features, latency, "seed"))
        floor = best.get((features, latency, "floor"))
        if ours.layout == "demo" and seed is not None:
            checks[f"{where}: sitsflow wall <= 1/3 of (s)"] = ours.wall_s * 3 <= seed.wall_s
            checks[f"{where}: sitsflow CPU <= (s)"] = ours.cpu_s <= seed.cpu_s
        if ours.layout == "demo" and latency == 0:
            if floor is not None:
                checks[f"{where}: sitsflow wall / (f) <= 2.5"] = ours.wall_s <= 2.5 * floor.wall_s
            files = bounds[features]["files"]
            cube_cpu = ours.cpu_s_by_job.get("cube", ours.cpu_s)
            per_read = ours.read_cpu_ms_per_file
            checks[
                f"{where}: CPU per COG read <= 5 ms (reader's logs: {per_read} ms; cube jobs' "
                f"whole CPU / files: {cube_cpu / files * 1e3:.1f} ms)"
            ] = per_read is not None and per_read <= 5
        if ours.layout == "full":
            bound = bounds[features]
            kind = "per feature" if bound["batches"] == bound["features"] else "per batch"
            checks[f"{where}: bytes <= 1.1 x bound ({kind})"] = (
                ours.stats["data_bytes"] <= 1.1 * bound["batch_bytes"]
            )
        checks[f"{where}: peak RSS per job <= 500 MB"] = rss_target_met(ours.peak_rss_per_job)
    return checks


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archive-layout", choices=["demo", "full"], default="demo")
    parser.add_argument(
        "--latency-ms", type=float, nargs="*", help="default: 0 80 (demo), 50 (full)"
    )
    parser.add_argument(
        "--features", nargs="+", choices=FEATURE_SETS, help="default: rand_pts (demo), both (full)"
    )
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and latency")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores, seed workers")
    parser.add_argument("--archive", type=Path, help="archive directory (with items.json)")
    parser.add_argument("--out", type=Path, help="JSON results file")
    parser.add_argument("--seed-python", type=Path, default=SEED_PYTHON, help="(s)'s python")
    parser.add_argument("--timeout-s", type=float, help="end a tool run after this long")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=[],
        help="earlier results files whose runs join the table (best of all); "
        "`--latency-ms` with no value then only merges",
    )
    args = parser.parse_args(argv)
    full = args.archive_layout == "full"
    if args.latency_ms is None:
        args.latency_ms = [50.0] if full else [0.0, 80.0]
    if args.features is None:
        args.features = list(FEATURE_SETS) if full else ["rand_pts"]
    if not full and args.features != ["rand_pts"]:
        parser.error("the demo archive has the rand_pts features only")
    if args.out is None:
        args.out = DEFAULT_OUT[args.archive_layout]
    return args


def load_runs(path: Path) -> list[Run]:
    """The runs recorded in an earlier results file."""
    fields = set(Run.__dataclass_fields__)
    return [
        Run(**{key: value for key, value in run.items() if key in fields})
        for run in json.loads(path.read_text())["runs"]
    ]


def write_results(
    out: Path,
    archive: Path,
    layout: str,
    bounds: dict,
    runs: list[Run],
    throughput: dict,
    cores: int = 2,
) -> str:
    """Write the results file (every run, the table, the targets); return the table."""
    if layout == "full":
        report = full_table(runs, bounds, throughput, cores)
    else:
        report = demo_table(runs, bounds["rand_pts"])
    document = {
        "archive": str(archive),
        "layout": layout,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "lower_bounds": bounds,
        "loopback_throughput": throughput,
        "targets": targets(runs, bounds),
        "runs": [{**asdict(run), "peak_rss_per_job": run.peak_rss_per_job} for run in runs],
        "table": report,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on kill, as on Ctrl-C
    layout = args.archive_layout
    archive = ensure_archive(args.archive, layout)
    cache = args.out.with_name("lower_bound_cache.json")
    vectors = {features: feature_vector(archive, features) for features in args.features}
    bounds = {
        features: cached_lower_bound(archive, vector, cache, decode=layout == "full")
        for features, vector in vectors.items()
    }
    runs: list[Run] = [run for path in args.merge for run in load_runs(path)]
    for features in sorted({run.features for run in runs} - set(bounds)):  # merged only
        vector = feature_vector(archive, features)
        bounds[features] = cached_lower_bound(archive, vector, cache, decode=layout == "full")
    throughput: dict[str, float] = {}
    for latency in args.latency_ms:
        server = StatsServer(archive, latency)
        try:
            if layout == "full":
                from benchmarks.full_archive import ALIASES_FILE

                aliases = json.loads((archive / ALIASES_FILE).read_text())
                measured = loopback_throughput(server, next(iter(aliases)))
                throughput[f"{latency:g}"] = measured["bytes_per_s"]
                print(f"{latency:g} ms  loopback {measured['bytes_per_s'] / 1e6:.0f} MB/s")
            for features, vector in vectors.items():
                for repeat in range(args.repeat):
                    for tool in args.tools:
                        spec = RunSpec(
                            tool, features, vector, layout, args.cores, args.seed_python,
                            args.timeout_s,
                        )  # fmt: skip
                        run = run_tool(spec, server, latency, repeat)
                        run.throughput = throughput.get(f"{latency:g}", 0.0)
                        runs.append(run)
                        # kept if a later run dies
                        write_results(
                            args.out, archive, layout, bounds, runs, throughput, args.cores
                        )
                        print(
                            f"{latency:g} ms  {features:<9} {tool:<9} #{repeat}: "
                            f"{run.wall_s:7.1f} s  CPU {run.cpu_s:6.1f} s  "
                            f"load {run.load_before:.2f}  "
                            f"requests {run.stats['data_requests']}  "
                            f"{'ok' if run.ok else 'FAILED'}",
                            flush=True,
                        )
        finally:
            server.stop()
    report = write_results(args.out, archive, layout, bounds, runs, throughput, args.cores)
    print("\n" + report + "\n")
    for name, met in targets(runs, bounds).items():
        print(f"  [{'met' if met else 'not met'}] {name}")
    print(f"\nwrote {args.out}")
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
