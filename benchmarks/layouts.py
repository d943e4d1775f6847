"""What each file layout costs a read (issue 20): sitsflow's reader, its GDAL path, stackstac.

One real Sentinel-2 band (BigEarthNet, mirrored to `--size` pixels at 10 m) is written in every
layout of `sitsflow.testing.layouts` and served over HTTP by the test server (`--latency-ms`
per request). Each layout's file is then read for `--windows` feature-sized windows (`--window`
metres, 20 m grid, the file's UTM zone) three ways, every window as its own read of one file:

* `sitsflow`: sitsflow's reader (`loader: sitsflow`), which hands the layouts it does not read
  exactly to GDAL (the rows whose `path` says `gdal`);
* `gdal path`: the same windows through that GDAL path directly (`read_file_with_gdal`);
* `stackstac`: `loader: stackstac`.

Per layout and way it prints the median wall and CPU time of a window's read (the first
window of a file opens it; the others find its header in the reader's cache, as the items of
one tile do in a job), the requests and bytes per window, and whether the three gave the same
values. Run it as

    python -m benchmarks.layouts --size 2048 --windows 20 --latency-ms 20

`--size 10980` writes full-size files (Earth Search's tile size; about a minute each to write).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitsflow.core.grid import Grid  # noqa: E402
from sitsflow.pixels.gdal_reads import GridTarget, read_file_with_gdal  # noqa: E402
from sitsflow.pixels.load import read_items  # noqa: E402
from sitsflow.pixels.tiles import TileReader  # noqa: E402
from sitsflow.testing.layouts import LAYOUTS, source_band, write_layout  # noqa: E402
from sitsflow.testing.stac_server import ServerProcess  # noqa: E402

PATCH = REPO.parent / "shared/data/bigearthnet-s2/S2A_MSIL2A_20170613T101031_87_48"


def windows(transform: object, size: int, count: int, metres: float) -> list[Grid]:
    """`count` square windows of `metres` at 20 m inside the file, at seeded random places."""
    west, north = transform.c, transform.f  # type: ignore[attr-defined]
    extent = size * 10.0
    rng = np.random.default_rng(7)
    grids = []
    for _ in range(count):
        x = west + 20 * np.floor(rng.uniform(0, extent - metres) / 20)
        y = north - extent + 20 * np.floor(rng.uniform(0, extent - metres) / 20)
        grids.append(Grid(32633, 20.0, (float(x), float(y), float(x + metres), float(y + metres))))
    return grids


def item(name: str, href: str, shape: tuple[int, int], transform: object) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": name,
        "properties": {"datetime": "2017-06-13T10:10:31Z", "proj:epsg": 32633},
        "geometry": None,
        "assets": {
            "B04": {
                "href": href,
                "proj:shape": list(shape),
                "proj:transform": list(transform)[:6],  # type: ignore[call-overload]
            }
        },
        "links": [],
    }


def read_window(
    way: str, reader: TileReader, stac_item: dict, grid: Grid
) -> tuple[np.ndarray, str]:
    """One window of the item's file read `way`; the array, and which path sitsflow's reader
    took (`own`, `gdal`; `-` for the other ways)."""
    if way == "sitsflow":
        stack = reader.read([stac_item], ["B04"], grid)
        return stack.data[0, 0], "gdal" if stack.through_gdal else "own"
    if way == "gdal path":
        out = np.full((grid.height, grid.width), np.nan, np.float32)
        read_file_with_gdal(
            stac_item["assets"]["B04"]["href"], [GridTarget(grid, out, False, True)]
        )
        return out, "-"
    return read_items([stac_item], ["B04"], grid).data[0, 0], "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="file width and height (px)")
    parser.add_argument("--windows", type=int, default=20, help="windows read per layout")
    parser.add_argument("--window", type=float, default=2000.0, help="window side (m)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per request")
    parser.add_argument("--workdir", type=Path, help="where the files go (default: a temp dir)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sitsflow-layouts-"))
    workdir.mkdir(parents=True, exist_ok=True)
    values, transform, epsg = source_band(next(PATCH.glob("*_B04.tif")), args.size)
    files = {}
    for name in LAYOUTS:
        target = workdir / f"{name}-{args.size}"
        existing = list(workdir.glob(f"{name}-{args.size}.*"))
        files[name] = (
            existing[0] if existing else write_layout(name, values, transform, epsg, target)
        )
    (workdir / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    grids = windows(transform, args.size, args.windows, args.window)
    print(
        f"{args.size} px files, {args.windows} windows of {args.window:.0f} m at 20 m, "
        f"{args.latency_ms:.0f} ms per request"
    )
    print(
        f"{'layout':<30} {'way':<10} {'path':<8} {'MB file':>8} {'wall ms':>8} {'CPU ms':>7} "
        f"{'req/win':>8} {'kB/win':>8} same"
    )
    with ServerProcess(workdir, args.latency_ms) as server:
        for name, path in files.items():
            reference: list[np.ndarray] = []
            for way in ("sitsflow", "gdal path", "stackstac"):
                # a URL of its own per way: GDAL's process-wide cache starts cold for each
                href = f"{server.data_url}/{path.name}?way={way.replace(' ', '-')}"
                stac_item = item(name, href, values.shape, transform)
                walls, cpus, arrays, path_used = [], [], [], "-"
                server.reset()
                with TileReader() as reader:
                    for grid in grids:
                        wall, cpu = time.perf_counter(), time.process_time()
                        array, path_used = read_window(way, reader, stac_item, grid)
                        walls.append(time.perf_counter() - wall)
                        cpus.append(time.process_time() - cpu)
                        arrays.append(array)
                stats = server.reset()
                reference = reference or arrays
                same = all(
                    np.array_equal(a, b, equal_nan=True)
                    for a, b in zip(arrays, reference, strict=True)
                )
                wall_ms, cpu_ms = 1000 * statistics.median(walls), 1000 * statistics.median(cpus)
                print(
                    f"{name:<30} {way:<10} {path_used:<8} {path.stat().st_size / 1e6:>8.1f} "
                    f"{wall_ms:>8.1f} {cpu_ms:>7.1f} {stats['data_requests'] / len(grids):>8.1f} "
                    f"{stats['data_bytes'] / len(grids) / 1e3:>8.1f} {'yes' if same else 'NO'}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
