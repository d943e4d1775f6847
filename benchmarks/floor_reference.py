"""Reference (f), the floor: fetch and decode exactly the tiles the seed's job needs, nothing else.

    python benchmarks/floor_reference.py --catalog http://127.0.0.1:8000/api \\
        [--vector data/rand_pts.geojson] [--in-flight 32] [--threads 2] [--prefetch 1024]

What any reader of the seed's job has to do at least, as fast as Python can drive it: per
feature one search (sitsflow's own, `benchmarks.workload`), then for every item and band open
the COG with `async_tiff` over `obstore`'s HTTP store (one ranged GET of `--prefetch` bytes for
the header, more only if the IFDs are longer), fetch the tiles under the cube's pixels at the
overview level sitsflow reads (the tiles of `benchmarks.cogbytes`' lower bound, computed from
the IFDs just read) and decode them (DEFLATE, predictor) on a Rust thread pool of `--threads`.
No reprojection, no mask, no gap-fill, no file written. `--in-flight` files are read at once
(each a header request, then one request per run of tiles that lie back to back in the file,
so that no byte outside a tile is asked for). A tile that several features need on the same
date (the same href) is fetched and decoded once, and a file opened once (`--share-tiles`, on
by default): the floor of a reader that batches features, which is what the clustered feature
set of the full-size archive measures; every feature of the demo archive and of rand_pts has
tiles of its own, so there it changes nothing.

Needs `async-tiff` and `obstore` (the `bench` extra). Prints the totals as one JSON line
(files, tiles, tile bytes, decoded pixels, search and read seconds); the
benchmark (`benchmarks/seed_workload.py`, tool `floor`) measures its wall and CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from affine import Affine
from pyproj import CRS

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cogbytes import (
    DEFAULT_MAX_GAP,
    CogLayout,
    Level,
    choose_level,
    needed_tiles,
    pixel_centres,
)
from benchmarks.workload import FeatureJob, default_config, feature_jobs, job_bands, search_items

DEFAULT_VECTOR = Path(__file__).resolve().parent.parent / "data" / "rand_pts.geojson"
# GeoTIFF NewSubfileType: 0 full resolution, 1 reduced resolution (an overview); masks are 4, 5
_IMAGE_SUBFILE_TYPES = (None, 0, 1)


def layout_from_ifds(ifds: Sequence[Any], size: int = 0) -> CogLayout:
    """The `benchmarks.cogbytes.CogLayout` of a tiled GeoTIFF from its `async_tiff` IFDs.

    Full resolution is the first IFD; overviews are the further reduced-resolution IFDs (mask
    IFDs are left out). The geotransform is the first IFD's tie point and pixel scale (a
    north-up COG); an overview's is that one scaled by the ratio of the sizes, as GDAL does.
    """
    images = [ifd for ifd in ifds if ifd.new_subfile_type in _IMAGE_SUBFILE_TYPES]
    first = images[0]
    tie, scale = first.model_tiepoint, first.model_pixel_scale
    if not tie or not scale:
        raise ValueError("the TIFF has no tie point and pixel scale (not a north-up GeoTIFF)")
    base = Affine(
        scale[0], 0.0, tie[3] - tie[0] * scale[0], 0.0, -scale[1], tie[4] + tie[1] * scale[1]
    )
    geokeys = first.geo_key_directory
    epsg = geokeys.projected_type or geokeys.geographic_type
    levels = []
    for ifd in images:
        width, height = ifd.image_width, ifd.image_height
        tile_width, tile_height = ifd.tile_width, ifd.tile_height
        if not tile_width or not tile_height:
            raise ValueError("the TIFF is not tiled")
        rows, cols = -(-height // tile_height), -(-width // tile_width)
        offsets = np.asarray(ifd.tile_offsets, dtype=np.int64)[: rows * cols].reshape(rows, cols)
        sizes = np.asarray(ifd.tile_byte_counts, dtype=np.int64)[: rows * cols].reshape(rows, cols)
        transform = base @ Affine.scale(first.image_width / width, first.image_height / height)
        levels.append(Level(width, height, tile_width, tile_height, transform, offsets, sizes))
    return CogLayout(size=size, crs=_crs(epsg), levels=tuple(levels))


@functools.lru_cache(maxsize=256)
def _crs(epsg: int) -> CRS:
    """The CRS of an EPSG code, made once (pyproj takes ~0.1 ms per CRS)."""
    return CRS.from_epsg(epsg)


def contiguous_runs(level: Level, tiles: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """`tiles` (row, col) grouped into runs that lie back to back in the file (GDAL's COG
    layout leaves 8 bytes between consecutive tiles), in file order; empty tiles left out.

    `async_tiff`'s `fetch_tiles` hands its ranges to obstore, which merges ranges less than
    1 MiB apart into one request: called once per run, it asks for no byte outside a tile.
    """
    placed = sorted(
        (int(level.offsets[r, c]), int(level.sizes[r, c]), (r, c))
        for r, c in tiles
        if level.sizes[r, c] > 0
    )
    runs: list[list[tuple[int, int]]] = []
    end = None
    for offset, size, tile in placed:
        if end is not None and offset - end < DEFAULT_MAX_GAP:
            runs[-1].append(tile)
        else:
            runs.append([tile])
        end = offset + size
    return runs


@dataclass
class Totals:
    """What the floor fetched and decoded."""

    features: int = 0
    items: int = 0
    files: int = 0
    tiles: int = 0
    shared_tiles: int = 0  # tiles another feature had already fetched (same href)
    tile_bytes: int = 0
    pixels: int = 0
    search_s: float = 0.0
    read_s: float = 0.0
    # CPU of the whole process (every thread) in each phase: what the read alone costs
    search_cpu_s: float = 0.0
    read_cpu_s: float = 0.0


@dataclass
class Floor:
    """Reads the tiles of every feature's files; one instance per run."""

    store_root: str
    in_flight: int
    threads: int
    prefetch: int
    share_tiles: bool
    totals: Totals = field(default_factory=Totals)
    _seen: set[tuple[str, int, int, int]] = field(default_factory=set)
    _points: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _tiles: dict[tuple[Any, ...], list[tuple[int, int]]] = field(default_factory=dict)
    _opened: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from async_tiff import DecoderRegistry, ThreadPool
        from obstore.store import HTTPStore

        self.store = HTTPStore.from_url(self.store_root, client_options={"allow_http": True})
        self.pool = ThreadPool(self.threads)
        self.decoders = DecoderRegistry()  # one for every tile: a decode without makes its own
        self.slots = asyncio.Semaphore(self.in_flight)

    def points(self, job: FeatureJob, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
        """The cube's pixel centres in `crs` (computed once per feature and CRS)."""
        key = (job.fid, crs.srs)
        if key not in self._points:
            from sitsflow.core.projection import transformer

            xs, ys = pixel_centres(job.transform, job.width, job.height)
            if CRS.from_epsg(job.epsg) != crs:
                xs, ys = transformer(CRS.from_epsg(job.epsg), crs).transform(xs, ys)
            self._points[key] = (np.asarray(xs), np.asarray(ys))
        return self._points[key]

    def tiles(self, job: FeatureJob, layout: CogLayout, index: int) -> list[tuple[int, int]]:
        """(row, col) of the tiles of level `index` under the cube's pixels, sorted (computed
        once per feature and level geometry: every date of a tile has the same)."""
        level = layout.levels[index]
        key = (job.fid, layout.crs.srs, level.width, level.height, level.tile_width,
               level.tile_height, tuple(level.transform)[:6])  # fmt: skip
        if key not in self._tiles:
            self._tiles[key] = sorted(needed_tiles(level, *self.points(job, layout.crs)))
        return self._tiles[key]

    async def read_file(self, job: FeatureJob, href: str) -> None:
        """Open one COG, fetch and decode the tiles of `job`'s window at the right level."""
        from async_tiff import TIFF

        path = href.removeprefix(self.store_root).lstrip("/")
        async with self.slots:
            if not self.share_tiles:
                tiff = await TIFF.open(path, store=self.store, prefetch=self.prefetch)
            else:  # each href opened once, by whichever feature comes first
                if href not in self._opened:
                    opening = TIFF.open(path, store=self.store, prefetch=self.prefetch)
                    self._opened[href] = asyncio.ensure_future(opening)
                tiff = await self._opened[href]
            layout = layout_from_ifds(tiff.ifds)
            index = choose_level(layout, abs(job.transform.a))
            tiles = self.tiles(job, layout, index)
            if self.share_tiles:
                fresh = [(r, c) for r, c in tiles if (href, index, r, c) not in self._seen]
                self._seen.update((href, index, r, c) for r, c in fresh)
                self.totals.shared_tiles += len(tiles) - len(fresh)
                tiles = fresh
            runs = contiguous_runs(layout.levels[index], tiles)
            pieces = await asyncio.gather(
                *(tiff.fetch_tiles([(c, r) for r, c in run], index) for run in runs)
            )
            fetched = [tile for piece in pieces for tile in piece]
            # decoding consumes a tile: count its bytes first
            self.totals.tile_bytes += sum(memoryview(t.compressed_bytes).nbytes for t in fetched)
            decoded = await asyncio.gather(
                *(tile.decode(pool=self.pool, decoder_registry=self.decoders) for tile in fetched)
            )
        self.totals.files += 1
        self.totals.tiles += len(fetched)
        for array in decoded:
            bands, height, width = array.shape
            self.totals.pixels += bands * height * width

    async def run(self, catalog: str, jobs: list[FeatureJob], config: dict[str, Any]) -> None:
        """Search every feature (8 searches at once), then read all their files."""
        bands = job_bands(config)
        loop = asyncio.get_running_loop()
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(8) as searches:
            found = await asyncio.gather(
                *(
                    loop.run_in_executor(searches, search_items, catalog, job, config)
                    for job in jobs
                )
            )
        self.totals.search_s = round(time.perf_counter() - started, 2)
        self.totals.search_cpu_s = round(time.process_time() - cpu, 2)
        self.totals.features = len(jobs)
        self.totals.items = sum(len(items) for items in found)
        started, cpu = time.perf_counter(), time.process_time()
        reads = [
            self.read_file(job, item["assets"][band]["href"])
            for job, items in zip(jobs, found, strict=True)
            for item in items
            for band in bands
        ]
        await asyncio.gather(*reads)
        self.totals.read_s = round(time.perf_counter() - started, 2)
        self.totals.read_cpu_s = round(time.process_time() - cpu, 2)


def data_root(catalog: str) -> str:
    """The archive's root URL on the benchmark's server (`/data` next to `/api`)."""
    parts = urlsplit(catalog)
    return f"{parts.scheme}://{parts.netloc}/data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True, help="STAC API URL of the test server")
    parser.add_argument("--vector", type=Path, default=DEFAULT_VECTOR)
    parser.add_argument("--in-flight", type=int, default=32, help="files read at once")
    parser.add_argument("--threads", type=int, default=2, help="decoding threads")
    parser.add_argument("--prefetch", type=int, default=1024, help="bytes read on open")
    parser.add_argument(
        "--share-tiles",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fetch a tile several features need (same href) once",
    )
    args = parser.parse_args(argv)
    config = default_config()
    jobs = list(feature_jobs(args.vector, config))
    floor = Floor(
        data_root(args.catalog), args.in_flight, args.threads, args.prefetch, args.share_tiles
    )
    asyncio.run(floor.run(args.catalog, jobs, config))
    print(json.dumps(floor.totals.__dict__), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
