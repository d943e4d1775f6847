"""The lower bound of bytes, ranges and blocks the seed's job needs from a local archive.

For every feature (its cube grid: `benchmarks.workload`), every item its search finds and every
band, the COG header (everything before the first tile) plus the tiles under the cube's pixels
at the overview level sitsflow reads (`benchmarks.cogbytes`). Three ways of counting:

* per feature (`bytes`, `ranges`, `tiles`): what a reader that reads each feature on its own
  needs at least; `ranges` are the contiguous byte ranges (a header directly followed by
  needed tiles is one), the fewest range requests;
* per batch (`batch_bytes`, `batch_tiles`): a tile, or a header, that several features of one
  of sitsflow's batches (`sitsflow.workflow.batch.plan_batches`, the default `batch_size`)
  need on the same date (the same href) counted once: the issue's bound for field plots,
  "features in one batch that need the same block read it once"; with one job per feature
  (up to 50 features) it is the per-feature bound;
* shared (`shared_bytes`, `shared_tiles`): counted once over all features.

An archive may alias hrefs to physical files (`aliases.json`, the full-size archive: every date
of a tile names the same file): the layout is read from the physical file, once, and the
counting stays per href, as for an archive with one file per date. `tile_kinds` counts the
needed tiles (per batch) by physical file and level, for `decode_seconds`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cogbytes import (
    CogLayout,
    choose_level,
    merge_ranges,
    needed_tiles,
    pixel_centres,
    read_layout,
    total_bytes,
)
from benchmarks.workload import FeatureJob, feature_jobs, job_bands

BOUND_VERSION = 5  # bump when what is counted changes, or how batches are cut (it is cached)


@dataclass
class LocalArchive:
    """An archive directory: its items (relative hrefs), aliases and COG layouts."""

    root: Path
    items: list[dict[str, Any]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    _layouts: dict[str, CogLayout] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path) -> LocalArchive:
        from sitsflow.testing.stac_server import load_aliases

        document = json.loads((root / "items.json").read_text())
        items = document["features"] if isinstance(document, dict) else document
        return cls(root.resolve(), items, load_aliases(root))

    def search(self, job: FeatureJob, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The items the test server's search returns for `job` (the same filter code)."""
        from sitsflow.catalog.filters import filter_items, parse_filter
        from sitsflow.catalog.search import datetime_range

        text = config.get("filter")
        return filter_items(
            self.items,
            collections=[config["collection"]],
            bbox=job.bbox,
            datetime_range=datetime_range(config["start"], config["end"]),
            query=config["query"],
            filter=parse_filter(text, "cql2-text") if text else None,
        )

    def physical(self, href: str) -> str:
        """The relative path of the file that answers for `href`."""
        return self.aliases.get(href, href)

    def layout(self, href: str) -> CogLayout:
        """The layout of the file behind `href` (read once per physical file)."""
        path = self.physical(href)
        if path not in self._layouts:
            self._layouts[path] = read_layout(self.root / path)
        return self._layouts[path]


@dataclass
class _Counter:
    """Distinct headers and tiles, by href, within one scope (a batch, or everything)."""

    headers: set[str] = field(default_factory=set)
    tiles: set[tuple[str, int, int, int]] = field(default_factory=set)
    bytes: int = 0

    def add(self, href: str, layout: CogLayout, level: int, tiles: list[tuple[int, int]]) -> int:
        """Count what is new in this scope; return the number of new tiles."""
        if href not in self.headers:
            self.headers.add(href)
            self.bytes += layout.header_bytes
        new = 0
        sizes = layout.levels[level].sizes
        for row, col in tiles:
            key = (href, level, row, col)
            if key not in self.tiles:
                self.tiles.add(key)
                self.bytes += int(sizes[row, col])
                new += 1
        return new


def batches_of(features: list[Any], group_degrees: float = 2) -> dict[str, str]:
    """Feature id -> the batch sitsflow's default `batch_size` puts it in (`features`:
    `sitsflow.core.features.Feature`s; batches hold features of one search group), or its
    own id when every feature has jobs of its own."""
    from sitsflow.catalog.groups import plan_groups
    from sitsflow.workflow.batch import plan_batches, resolve_batch_size

    groups = plan_groups(features, group_degrees)
    by_id = {feature.fid: feature for feature in features}
    plan = plan_batches(groups, resolve_batch_size("auto", len(features)), by_id, group_degrees)
    if not plan:
        return {feature.fid: feature.fid for feature in features}
    return {fid: batch for batch, members in plan.items() for fid in members}


def lower_bound(archive_dir: Path, vector: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The bound of the job in `config` for the features of `vector` (see module)."""
    archive = LocalArchive.open(archive_dir)
    jobs = list(feature_jobs(vector, config))
    batch_of = batches_of([job.feature for job in jobs], config["stac"]["group_degrees"])
    bands = job_bands(config)
    totals: Counter[str] = Counter()
    shared, batches = _Counter(), {batch: _Counter() for batch in set(batch_of.values())}
    kinds: Counter[str] = Counter()
    for job in jobs:
        points: dict[str, Any] = {}
        tile_cache: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
        items = archive.search(job, config)
        totals["features"] += 1
        totals["items"] += len(items)
        for item in items:
            for band in bands:
                href = item["assets"][band]["href"]
                layout = archive.layout(href)
                level = choose_level(layout, abs(job.transform.a))
                tiles = _tiles(job, layout, level, points, tile_cache)
                pieces = [
                    (int(layout.levels[level].offsets[r, c]),
                     int(layout.levels[level].offsets[r, c] + layout.levels[level].sizes[r, c]))
                    for r, c in tiles
                    if layout.levels[level].sizes[r, c]
                ]  # fmt: skip
                tile_ranges = merge_ranges(pieces)
                ranges = merge_ranges([(0, layout.header_bytes), *pieces])
                totals["files"] += 1
                totals["ranges"] += len(ranges)
                totals["header_first_requests"] += 1 + len(tile_ranges)
                totals["bytes"] += total_bytes(ranges)
                totals["tile_bytes"] += total_bytes(tile_ranges)
                totals["header_bytes"] += layout.header_bytes
                totals["file_bytes"] += layout.size
                totals["tiles"] += len(pieces)
                shared.add(href, layout, level, tiles)
                new = batches[batch_of[job.fid]].add(href, layout, level, tiles)
                kinds[f"{archive.physical(href)}|{level}"] += new
    bound: dict[str, Any] = dict(totals)
    bound["batches"] = len(batches)
    bound["batch_bytes"] = sum(counter.bytes for counter in batches.values())
    bound["batch_tiles"] = sum(len(counter.tiles) for counter in batches.values())
    bound["shared_bytes"] = shared.bytes
    bound["shared_tiles"] = len(shared.tiles)
    bound["shared_headers"] = len(shared.headers)
    bound["tile_kinds"] = dict(kinds)
    return bound


def _tiles(
    job: FeatureJob,
    layout: CogLayout,
    level: int,
    points: dict[str, Any],
    cache: dict[tuple[Any, ...], list[tuple[int, int]]],
) -> list[tuple[int, int]]:
    """Tiles of `level` under `job`'s pixels; points and tiles cached per CRS and geometry."""
    from pyproj import CRS

    from sitsflow.core.projection import transformer

    grid_level = layout.levels[level]
    crs = layout.crs.srs
    key = (crs, grid_level.width, grid_level.height, grid_level.tile_width,
           tuple(grid_level.transform)[:6])  # fmt: skip
    if key not in cache:
        if crs not in points:
            xs, ys = pixel_centres(job.transform, job.width, job.height)
            target = CRS.from_user_input(layout.crs)
            if CRS.from_epsg(job.epsg) != target:
                xs, ys = transformer(CRS.from_epsg(job.epsg), target).transform(xs, ys)
            points[crs] = (xs, ys)
        cache[key] = sorted(needed_tiles(grid_level, *points[crs]))
    return cache[key]


def decode_seconds(archive_dir: Path, bound: dict[str, Any], sample: int = 6) -> dict[str, Any]:
    """CPU seconds to decode the bound's tiles (per batch) once: for each physical file and
    level, `sample` of its tiles decoded with async_tiff (DEFLATE, predictor) in this thread,
    the mean CPU time times the number of tiles of that kind."""
    import asyncio

    from async_tiff import TIFF, DecoderRegistry
    from obstore.store import LocalStore

    store = LocalStore(prefix=archive_dir.resolve())
    registry = DecoderRegistry()

    async def cost(path: str, level: int) -> float:
        tiff = await TIFF.open(path, store=store)
        ifd = tiff.ifds[level]
        cols, rows = ifd.tile_count or (1, 1)
        picks = [((i * 7) % cols, (i * 5) % rows) for i in range(sample)]
        tiles = [await tiff.fetch_tile(x, y, level) for x, y in picks]
        started = time.process_time()
        for tile in tiles:
            tile.decode_sync(decoder_registry=registry)
        return (time.process_time() - started) / len(tiles)

    per_tile: dict[str, float] = {}
    total = 0.0
    for kind, count in bound.get("tile_kinds", {}).items():
        path, level = kind.rsplit("|", 1)
        per_tile[kind] = asyncio.run(cost(path, int(level)))
        total += per_tile[kind] * count
    return {
        "decode_cpu_s": round(total, 2),
        "per_tile_ms": {k: v * 1e3 for k, v in per_tile.items()},
    }
