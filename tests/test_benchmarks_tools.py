"""The seed benchmark's tools: its lower bound (benchmarks.cogbytes) on small COGs made here,
its per-job peak RSS log, and the read concurrency the benchmark chose (sitsflow.pixels.load).

The tile offsets GDAL reports are checked against the TIFF's own TileOffsets/TileByteCounts
(parsed here with struct), and the needed byte ranges are checked to be sufficient (a copy of
the file with every other byte zeroed reads the same cube) and minimal (dropping any needed
tile changes the cube).
"""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from benchmarks.cogbytes import (
    choose_level,
    merge_ranges,
    needed_ranges,
    needed_tile_ranges,
    needed_tiles,
    pixel_centres,
    read_layout,
    total_bytes,
)
from benchmarks.seed_workload import job_name, peak_rss_by_job, read_cpu_per_file
from sitsflow.pixels import load

SIZE, BLOCK = 512, 128
UTM_ORIGIN = (500_000.0, 5_540_000.0)  # EPSG:32632, around 9 E 50 N
UTM = Affine(10.0, 0.0, UTM_ORIGIN[0], 0.0, -10.0, UTM_ORIGIN[1])


def write_cog(path: Path, compress: str) -> np.ndarray:
    """A 512 x 512 uint16 COG, 128 px tiles, overviews at 20, 40 m; values 1..60000 (no 0)."""
    data = np.random.default_rng(5).integers(1, 60000, (SIZE, SIZE), dtype=np.uint16)
    profile = {
        "driver": "COG", "width": SIZE, "height": SIZE, "count": 1, "dtype": "uint16",
        "crs": "EPSG:32632", "transform": UTM, "blocksize": BLOCK, "compress": compress,
        "overview_resampling": "nearest", "overview_count": 2,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return data


@pytest.fixture(scope="module")
def raw_cog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cog") / "raw.tif"
    write_cog(path, "NONE")
    return path


@pytest.fixture(scope="module")
def deflate_cog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cog") / "deflate.tif"
    write_cog(path, "DEFLATE")
    return path


def tiff_tiles(path: Path) -> list[tuple[int, list[int], list[int]]]:
    """(width, TileOffsets, TileByteCounts) of every IFD of a little-endian classic TIFF."""
    blob = path.read_bytes()
    assert blob[:4] == b"II*\x00"
    types = {3: "H", 4: "I", 16: "Q"}
    result = []
    offset = struct.unpack_from("<I", blob, 4)[0]
    while offset:
        count = struct.unpack_from("<H", blob, offset)[0]
        tags = {}
        for index in range(count):
            tag, kind, n, value = struct.unpack_from("<HHII", blob, offset + 2 + 12 * index)
            fmt = types.get(kind)
            if fmt and n * struct.calcsize(fmt) <= 4:
                raw = struct.pack("<I", value)[: n * struct.calcsize(fmt)]
                tags[tag] = list(struct.unpack("<" + fmt * n, raw))
            elif fmt:
                tags[tag] = list(struct.unpack_from("<" + fmt * n, blob, value))
        result.append((tags[256][0], tags[324], tags[325]))
        offset = struct.unpack_from("<I", blob, offset + 2 + 12 * count)[0]
    return result


def test_layout_matches_the_tiff_structure(deflate_cog: Path) -> None:
    layout = read_layout(deflate_cog)
    ifds = tiff_tiles(deflate_cog)
    assert [level.width for level in layout.levels] == [width for width, _, _ in ifds]
    assert [level.resolution for level in layout.levels] == [10.0, 20.0, 40.0]
    for level, (_, offsets, sizes) in zip(layout.levels, ifds, strict=True):
        # TIFF stores tiles row by row; GDAL's BLOCK_OFFSET_x_y names them by column first
        assert level.offsets.ravel().tolist() == offsets
        assert level.sizes.ravel().tolist() == sizes
    all_offsets = [o for _, offsets, _ in ifds for o in offsets]
    assert layout.header_bytes == min(all_offsets) > 8
    assert layout.size == deflate_cog.stat().st_size


@pytest.mark.parametrize(("resolution", "level"), [(5, 0), (10, 0), (15, 0), (20, 1), (39, 1)])
def test_choose_level(deflate_cog: Path, resolution: float, level: int) -> None:
    assert choose_level(read_layout(deflate_cog), resolution) == level


def test_choose_level_stops_at_the_coarsest(deflate_cog: Path) -> None:
    assert choose_level(read_layout(deflate_cog), 1000) == 2


def test_needed_tiles_of_a_window(deflate_cog: Path) -> None:
    level = read_layout(deflate_cog).levels[0]
    # pixel centres of columns 100..150 and rows 200..260 of the full-resolution grid
    window = UTM @ Affine.translation(100, 200)
    xs, ys = pixel_centres(window, 51, 61)
    assert needed_tiles(level, xs, ys) == {(1, 0), (1, 1), (2, 0), (2, 1)}
    outside = np.array([UTM_ORIGIN[0] - 5.0]), np.array([UTM_ORIGIN[1] + 5.0])
    assert needed_tiles(level, *outside) == set()


def test_merge_ranges() -> None:
    assert merge_ranges([(30, 40), (0, 10), (10, 20), (45, 50), (100, 100)], max_gap=6) == [
        (0, 20),
        (30, 50),
    ]
    assert merge_ranges([(0, 10), (5, 8), (20, 30)], max_gap=0) == [(0, 10), (20, 30)]
    assert total_bytes([(0, 10), (20, 25)]) == 15


def test_needed_ranges_same_crs_counts_header_and_tiles(raw_cog: Path) -> None:
    layout = read_layout(raw_cog)
    window = Affine(20.0, 0.0, UTM_ORIGIN[0] + 20 * 10, 0.0, -20.0, UTM_ORIGIN[1] - 20 * 10)
    ranges = needed_ranges(layout, window, 20, 20, 32632, max_gap=0)  # 20 m: overview 1
    tile = BLOCK * BLOCK * 2  # uncompressed uint16
    assert ranges[0][0] == 0 and total_bytes(ranges) == layout.header_bytes + tile
    level = layout.levels[1]
    assert (int(level.offsets[0, 0]), int(level.offsets[0, 0]) + tile) in ranges


def equal_area_grid() -> tuple[Affine, int, int]:
    """A 20 m EPSG:3035 grid well inside the COG (rotated a little against UTM)."""
    to_laea = Transformer.from_crs(32632, 3035, always_xy=True)
    x, y = to_laea.transform(UTM_ORIGIN[0] + 1500, UTM_ORIGIN[1] - 2500)
    return Affine(20.0, 0.0, round(x / 20) * 20, 0.0, -20.0, round(y / 20) * 20), 60, 45


def read_onto_grid(path: Path, level: int, grid: tuple[Affine, int, int]) -> np.ndarray:
    """Nearest-neighbour read of one level of `path` onto the grid, as the workflow reads."""
    transform, width, height = grid
    options = {"overview_level": level - 1} if level else {}
    with (
        rasterio.open(path, **options) as src,
        WarpedVRT(
            src, crs="EPSG:3035", transform=transform, width=width, height=height,
            resampling=Resampling.nearest,
        ) as vrt,
    ):  # fmt: skip
        return vrt.read(1)


def keep_only(path: Path, ranges: list[tuple[int, int]], out: Path) -> None:
    """A copy of `path` with every byte outside `ranges` zeroed."""
    original = path.read_bytes()
    copy = bytearray(len(original))
    for start, end in ranges:
        copy[start:end] = original[start:end]
    out.write_bytes(bytes(copy))


@pytest.mark.parametrize("resolution", [10.0, 20.0])
def test_needed_ranges_are_sufficient_and_minimal(
    raw_cog: Path, tmp_path: Path, resolution: float
) -> None:
    layout = read_layout(raw_cog)
    transform, width, height = equal_area_grid()
    scale = resolution / 20.0
    grid = (transform @ Affine.scale(scale), round(width / scale), round(height / scale))
    level = choose_level(layout, resolution)
    ranges = needed_ranges(layout, *grid, 3035, max_gap=0)
    expected = read_onto_grid(raw_cog, level, grid)
    assert (expected > 0).all()  # the grid lies inside the image: every pixel has a value

    keep_only(raw_cog, ranges, tmp_path / "kept.tif")
    np.testing.assert_array_equal(read_onto_grid(tmp_path / "kept.tif", level, grid), expected)

    header, *tiles = ranges
    assert header == (0, layout.header_bytes) and tiles
    assert needed_tile_ranges(layout, *grid, 3035, max_gap=0) == tiles
    assert total_bytes(ranges) < layout.size / 2
    for dropped in tiles:  # every tile range is needed: without it some cube pixels change
        keep_only(raw_cog, [r for r in ranges if r != dropped], tmp_path / "less.tif")
        assert (read_onto_grid(tmp_path / "less.tif", level, grid) != expected).any()


def test_deflate_ranges_merge_consecutive_tiles(deflate_cog: Path) -> None:
    layout = read_layout(deflate_cog)
    whole = Affine(10.0, 0.0, UTM_ORIGIN[0], 0.0, -10.0, UTM_ORIGIN[1])
    ranges = needed_ranges(layout, whole, SIZE, SIZE, 32632)  # every full-resolution tile
    level = layout.levels[0]
    assert total_bytes(ranges) >= layout.header_bytes + int(level.sizes.sum())
    # GDAL writes a level's tiles one after another: with the header, at most 2 ranges
    assert len(ranges) <= 2


def test_job_names_and_peak_rss_log(tmp_path: Path) -> None:
    assert job_name(["/w/.snakemake/scripts/tmpab12cd.cube.py"]) == "cube"
    assert job_name(["/venv/lib/python3.11/site-packages/snakemake/__main__.py"]) == (
        "snakemake (main)"
    )
    assert job_name(["/repo/benchmarks/notebook_reference.py", "--loader", "odc"]) == (
        "notebook_reference"
    )
    log = tmp_path / "rss.jsonl"
    log.write_text(
        '{"pid": 1, "argv": ["/x/tmp1.cube.py"], "peak_rss": 300, "cpu_s": 1.5}\n'
        '{"pid": 2, "argv": ["/x/tmp2.cube.py"], "peak_rss": 500, "cpu_s": 2.0}\n'
        '{"pid": 3, "argv": ["/x/tmp3.bbox.py"], "peak_rss": 100, "cpu_s": 0.5}\n'
    )
    assert peak_rss_by_job(log) == ({"cube": 500, "bbox": 100}, {"cube": 3.5, "bbox": 0.5}, 3)


def test_cpu_per_cog_read_from_the_reader_logs(tmp_path: Path) -> None:
    (tmp_path / "cube").mkdir()
    (tmp_path / "cube" / "a.log").write_text(
        "x INFO sitsflow.pixels.tiles: read 100 files in 0.40 s, 2.00 ms CPU per file: 200 "
        "requests, 0.50 MB, 0 ranges from the disk cache, 400 tiles decoded\n"
    )
    (tmp_path / "batch.log").write_text(
        "x INFO sitsflow.pixels.tiles: read 300 files for 3 features in 1.10 s, 6.00 ms CPU per "
        "file: 600 requests\n"
    )
    assert read_cpu_per_file(tmp_path) == 5.0  # (100 x 2 + 300 x 6) / 400
    assert read_cpu_per_file(tmp_path / "cube" / "none") is None


@pytest.mark.parametrize(
    ("wall", "cpu", "threads"),
    [(0.010, 0.010, 1), (0.039, 0.010, 1), (0.045, 0.005, 4), (0.170, 0.005, 17), (1.0, 0.0, 32)],
)
def test_read_threads_follow_wall_over_cpu(wall: float, cpu: float, threads: int) -> None:
    assert load.read_threads_for(wall, cpu) == threads


@pytest.mark.parametrize("steps", [1, 2, 3, 7])
def test_compute_stack_equals_a_plain_compute(
    steps: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import dask.array as da

    monkeypatch.delenv("SITSFLOW_READ_THREADS", raising=False)
    values = np.arange(steps * 2 * 3 * 4, dtype=np.float32).reshape(steps, 2, 3, 4)
    array = da.from_array(values, chunks=(1, 1, 3, 4))
    with caplog.at_level("INFO", logger="sitsflow.pixels.load"):
        np.testing.assert_array_equal(load.compute_stack(array), values)
    assert ("thread(s)" in caplog.text) == (steps > 2)


def test_compute_stack_fixed_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import dask.array as da

    monkeypatch.setenv("SITSFLOW_READ_THREADS", "3")
    values = np.ones((4, 1, 2, 2), dtype=np.float32)
    np.testing.assert_array_equal(load.compute_stack(da.from_array(values, chunks=1)), values)


@pytest.mark.parametrize("latency_s", [0.0, 0.02])
def test_prefetch_headers_fills_gdal_cache_when_the_network_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, latency_s: float
):
    """With 20 ms per request every file is opened ahead (a file that fails is left to the
    real read) and the reads then make no request; from a server next door only the probes
    are opened, and the other files wait for the real read."""
    from sitsflow.testing.stac_server import StacServer

    archive = tmp_path / "archive"
    (archive / "tiles").mkdir(parents=True)
    (archive / "items.json").write_text('{"type": "FeatureCollection", "features": []}')
    small = {"driver": "COG", "width": 200, "height": 200, "count": 1, "dtype": "uint16"}
    for index in range(5):
        with rasterio.open(archive / "tiles" / f"b{index}.tif", "w", **small, crs="EPSG:32632",
                           transform=UTM, blocksize=128, compress="DEFLATE") as dst:  # fmt: skip
            dst.write(np.full((200, 200), index + 1, dtype=np.uint16), 1)
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "20")  # the server runs in this process
    # The server shares this process's GIL: on a machine busy with other tests its opens wait
    # several ms with no latency at all; 15 ms is still below what 20 ms per request costs.
    monkeypatch.setattr(load, "PREFETCH_MIN_WAIT_S", 0.015)
    with StacServer(archive, latency_s=latency_s) as server:
        hrefs = [f"{server.data_url}/tiles/b{index}.tif" for index in range(5)]
        load.prefetch_headers([*hrefs, f"{server.data_url}/tiles/missing.tif", "/local.tif"])
        prefetched = server.reset_stats()
        opened = 5 if latency_s else load.PREFETCH_PROBES
        assert prefetched["data_requests"] == 2 * opened + (1 if latency_s else 0)  # HEAD + GET
        assert prefetched["status"].get(404, 0) == (1 if latency_s else 0)
        with rasterio.Env(**load.gdal_options()):
            for index, href in enumerate(hrefs):
                with rasterio.open(href) as src:
                    assert (src.read(1) == index + 1).all()
        assert server.stats["data_requests"] == 2 * (5 - opened)


def test_the_job_floor_runs_the_shape_and_prints_its_cost(capsys: pytest.CaptureFixture[str]):
    from benchmarks import job_floor

    assert job_floor.main(["--features", "2", "--repeat", "1"]) == 0
    printed = capsys.readouterr().out
    assert "run 1: 2 features x 2 jobs, --cores 2:" in printed and "best:" in printed
    wall, cpu = job_floor.run_once(1, 1)
    assert wall > 0 and cpu > 0


# ---- issue 21's benchmark (benchmarks/tile_aware.py) ------------------------------------------


def test_tile_aware_counts_decoding_from_the_logs_and_checks_the_targets(tmp_path):
    from benchmarks.seed_workload import Run, floor_totals, reader_totals, rss_target_met
    from benchmarks.tile_aware import analytic_floor, row, table, targets

    logs = tmp_path / "logs" / "batch"
    logs.mkdir(parents=True)
    (logs / "e008n52-q.log").write_text(
        "INFO: read 60 files for 27 features in 2.02 s, 49.73 ms CPU per file: 180 requests, "
        "219.84 MB, 0 ranges and 0 decoded tiles from the disk cache, 180 tiles decoded\n"
        "INFO: read 60 files for 6 features in 0.71 s, 22.04 ms CPU per file: 0 requests, 0.00 "
        "MB, 12 ranges and 120 decoded tiles from the disk cache, 20 tiles decoded\n"
        "INFO: range cache: this job kept 733.2 MB; it holds 733.2 MB, at most 812.5 MB so far\n"
    )
    assert reader_totals(tmp_path / "logs") == (200, 812.5)
    bound = {
        "features": 1000, "shared_bytes": 700e6, "shared_tiles": 500, "shared_headers": 100,
        "batch_tiles": 1000, "decode_cpu_s": 8.0,
    }  # fmt: skip
    stats = {"data_bytes": 770e6, "data_requests": 700}

    def run(tool: str, wall: float, cpu: float, decoded: int | None) -> Run:
        return Run(
            tool, 50, 0, wall, 0.1, 0.1, True, cpu, stats, {"batch": int(400e6)},
            tiles_decoded=decoded, cache_peak_mb=812.5,
        )  # fmt: skip

    floor = run("floor", 40.0, 40.0, 500)
    # what the floor tool prints last: its tiles and its CPU while searching and reading
    totals = {"tiles": 500, "search_cpu_s": 12.0, "read_cpu_s": 26.0, "files": 9}
    floor.tiles_decoded, floor.phase_cpu_s = floor_totals(f"log line\n{json.dumps(totals)}\n")
    assert (floor.tiles_decoded, floor.phase_cpu_s) == (500, {"search": 12.0, "read": 26.0})
    ours = row(run("sitsflow", 90.0, 101.5, 200), bound, floor)
    # 200 tiles at 8 ms each: 1.6 s of the 101.5 s are decoding, 0.0999 s per feature is not
    assert ours["beyond_decode_per_feature_s"] == pytest.approx(0.0999)
    assert row(floor, bound, floor)["beyond_decode_per_feature_s"] == pytest.approx(0.036)
    assert ours["x_floor"] == pytest.approx(2.25) and ours["x_bytes"] == pytest.approx(1.1)
    assert ours["x_requests"] == pytest.approx(700 / 600)
    assert all(targets({"a": ours}).values())
    slow = row(run("sitsflow", 110.0, 130.0, 200), bound, floor)
    failed = [name for name, met in targets({"a": slow}).items() if not met]
    assert failed == [
        "a (1000 features): wall <= 2.5 x floor",
        "a (1000 features): CPU per feature beyond decoding <= 0.1 s",
    ]
    # no job's peak RSS on record (their exit hooks did not run): the target is not met
    unmeasured = run("sitsflow", 90.0, 101.5, 200)
    unmeasured.peak_rss_by_job = {}
    failed = [
        name for name, met in targets({"a": row(unmeasured, bound, floor)}).items() if not met
    ]
    assert failed == ["a (1000 features): peak RSS per job <= 500 MB"]
    # the same rule in seed_workload.py's targets: nothing on record, or above 500 MB, fails
    assert [rss_target_met(peak) for peak in (0, 1, 500e6, 500e6 + 1)] == [
        False, True, True, False,
    ]  # fmt: skip
    # the network floor (700 MB at 1 GB/s) or decoding 500 blocks on 2 cores (2 s)
    assert analytic_floor(bound, 1e9, 2) == pytest.approx(2.0)
    partial = row(run("rasteret", 30.0, 30.0, None), bound, floor, features=10)
    assert partial["x_floor"] is None and partial["cpu_per_feature_s"] == pytest.approx(3.0)
    # the report says which decode cost it used: timed before and after the tools, their mean
    timed = {**bound, "batches": 8, "analytic_floor_s": 2.0, "decode_cpu_s_stored": 7.0,
             "decode_cpu_s_this_run": [7.8, 8.2]}  # fmt: skip
    report = table({"a": {"floor": row(floor, timed, floor), "sitsflow": ours}}, {"a": timed})
    assert "a: 7.8 s CPU before the tools, 8.2 s after (stored bound: 7.0 s)" in report
    assert "decode 8.0 ms CPU per block" in report
    # a run with no peak RSS on record (rasteret's has no probe) shows "-", not 0 MB, and a
    # "-" cell is as wide as its column
    unprobed = run("rasteret", 30.0, 30.0, None)
    unprobed.peak_rss_by_job, unprobed.cache_peak_mb = {}, None
    rows = {"sitsflow": ours, "rasteret": row(unprobed, bound, floor, features=10)}
    report = table({"a": rows}, {"a": timed})
    widths = [len(line) for line in report.splitlines()[:4]]
    assert widths[0] == widths[2] == widths[3], report
    assert report.splitlines()[3].split()[-2:] == ["-", "-"]


def test_tile_aware_repeats_run_in_turn_and_show_the_median_run():
    """`tile_aware.py --repeat N`: each round starts one tool further on; a tool's row is its
    median run by CPU (the upper middle of an even number, a failed run first), the table
    lists every run's CPU per feature beyond decoding, and the targets other than CPU are
    checked on the worst run."""
    from benchmarks.seed_workload import Run
    from benchmarks.tile_aware import median_run, row, run_order, table, targets

    tools = ["sitsflow", "sitsflow-zstd", "floor"]
    assert [run_order(tools, repeat) for repeat in range(4)] == [
        ["floor", "sitsflow", "sitsflow-zstd"],
        ["sitsflow", "sitsflow-zstd", "floor"],
        ["sitsflow-zstd", "floor", "sitsflow"],
        ["floor", "sitsflow", "sitsflow-zstd"],
    ]

    def run(cpu: float, ok: bool = True) -> Run:
        return Run(
            "sitsflow", 50, 0, 60.0, 0.1, 0.1, ok, cpu, {"data_bytes": 7e8, "data_requests": 600},
            {"batch": int(4e8)}, tiles_decoded=500,
        )  # fmt: skip

    runs = [run(130.0), run(110.0), run(120.0)]
    assert median_run(runs) is runs[2]
    assert median_run(runs[:2]) is runs[0]  # of two, the upper
    broken = run(90.0, ok=False)
    assert median_run([*runs, broken]) is broken
    bound = {
        "features": 1000, "shared_bytes": 700e6, "shared_tiles": 500, "shared_headers": 100,
        "batch_tiles": 1000, "decode_cpu_s": 8.0, "batches": 5, "analytic_floor_s": 2.0,
    }  # fmt: skip
    shown = row(median_run(runs), bound, None, repeats=runs)
    # 500 tiles at 8 ms: 4 s of decoding in each run
    assert shown["beyond_decode_per_feature_s"] == pytest.approx(0.116)
    assert shown["beyond_decode_per_feature_runs"] == pytest.approx([0.126, 0.106, 0.116])
    report = table({"a": {"sitsflow": shown}}, {"a": bound})
    assert "sitsflow on a, 3 runs in turn: beyond/f 0.126, 0.106, 0.116" in report
    # CPU is checked on the median run, the rest on the worst: a run past 500 MB fails RSS
    floor = Run("floor", 50, 0, 40.0, 0.1, 0.1, True, 40.0, runs[0].stats, {}, tiles_decoded=500)
    checked = targets({"a": row(median_run(runs), bound, floor, repeats=runs)})
    assert checked["a (1000 features): peak RSS per job <= 500 MB"]
    runs[0].peak_rss_by_job = {"batch": int(6e8)}
    runs[1].wall_s = 110.0
    checked = targets({"a": row(median_run(runs), bound, floor, repeats=runs)})
    assert not checked["a (1000 features): peak RSS per job <= 500 MB"]
    assert not checked["a (1000 features): wall <= 2.5 x floor"]  # 110 s against 40
    assert not checked["a (1000 features): CPU per feature beyond decoding <= 0.1 s"]
    single = table({"a": {"sitsflow": row(runs[0], bound, None)}}, {"a": bound})
    assert "runs in turn" not in single


def test_the_zstd_run_is_the_default_run_with_its_setting(tmp_path):
    """`tile_aware.py --tools sitsflow-zstd`: the user's command plus `compression=zstd`,
    counted as sitsflow's (its cubes read back from the same directory)."""
    from benchmarks.seed_workload import OUTPUT_DIRS, tool_command

    commands = {}
    for tool in ("sitsflow", "sitsflow-zstd"):
        workdir = tmp_path / tool
        workdir.mkdir()
        command = tool_command(tool, "http://127.0.0.1:1/api", workdir, 2, tmp_path, Path("py"))
        commands[tool] = [arg.replace(str(workdir), "WORKDIR") for arg in command]
    default = commands["sitsflow"]
    at = default.index("--quiet")
    assert commands["sitsflow-zstd"] == [*default[:at], "compression=zstd", *default[at:]]
    assert OUTPUT_DIRS["sitsflow-zstd"] == OUTPUT_DIRS["sitsflow"]


def test_fetch_cpu_fetches_the_planned_ranges_with_both_clients(tmp_path, capsys):
    """`benchmarks/fetch_cpu.py`: ranges inside the band files (not SCL), fetched whole by
    obstore and by aiohttp from the test server."""
    from benchmarks import fetch_cpu

    files = {"items/a/B04.tif": 5000, "items/a/SCL.tif": 300, "items/b/B08.tif": 7000}
    for alias, size in files.items():
        (tmp_path / alias.replace("/", "_")).write_bytes(bytes(range(256)) * (size // 256 + 1))
    aliases = {alias: alias.replace("/", "_") for alias in files}
    (tmp_path / "aliases.json").write_text(json.dumps(aliases))
    (tmp_path / "items.json").write_text('{"type": "FeatureCollection", "features": []}')
    ranges = fetch_cpu.plan_ranges(tmp_path, 10_000, 1000)
    assert len(ranges) == 10
    assert {path for path, _, _ in ranges} == {"items/a/B04.tif", "items/b/B08.tif"}
    assert all(stop - start == 1000 and stop <= files[path] for path, start, stop in ranges)
    server = fetch_cpu.ServerProcess(tmp_path)
    try:
        for fetch in (fetch_cpu.with_obstore, fetch_cpu.with_aiohttp):
            assert asyncio.run(fetch(server.data_url, ranges, 4)) == 10_000
    finally:
        server.stop()
    assert fetch_cpu.main([str(tmp_path), "--megabytes", "0.01", "--range-kb", "1",
                           "--latency-ms", "0", "--repeat", "1"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "obstore  10 ranges, 0 MB" in printed and "aiohttp  10 ranges, 0 MB" in printed
