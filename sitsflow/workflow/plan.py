"""What a run will read, from its searches alone: items, files, tiles, bytes and requests, per
feature and in all, before a pixel is fetched (`make plan`, rule `plan`).

The searches give each feature its items (the same selection as its cube job,
`sitsflow.workflow.stages.items_of_feature`) and each asset's grid (`proj:transform`,
`proj:shape`). What STAC does not say (tile size, overviews, compressed bytes per tile) comes
from the header of one file per band (`probe`, a few KB each): Sentinel-2 archives write every
file of a band alike. Each feature's grid, projected into the file's CRS, gives the tiles it
needs at the level its cube reads (`sitsflow.pixels.tiles.choose_level`); bytes are those tiles
at the probed file's mean compressed tile size of that level, requests one per row of tiles
plus the header's. Totals are given both as every feature reading alone and with each tile read
once (what features sharing tiles in one batch job read).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from sitsflow.core.errors import InputError
from sitsflow.core.features import Feature
from sitsflow.core.grid import Grid
from sitsflow.core.layout import Layout
from sitsflow.core.settings import CubeSettings, GridSettings, SearchSettings
from sitsflow.core.types import JsonObject

log = logging.getLogger(__name__)

# A download speed to turn bytes into a rough time (100 Mbit/s, a good office line).
REFERENCE_BYTES_PER_S = 12.5e6


@dataclass(frozen=True)
class ProbedLevel:
    """One level of a probed file: its size ratio to the full resolution, tile size, mean
    compressed bytes per (non-empty) tile, and which tiles (by index, row by row) lie within
    the bytes the header's request fetches anyway (a small file's coarse overviews)."""

    factor: float
    tile_width: int
    tile_height: int
    mean_tile_bytes: float
    tiles_across: int
    in_header: frozenset[int]


@dataclass(frozen=True)
class Probe:
    """The layout of one file of a band, standing for every file of that band."""

    href: str
    width: int
    height: int
    levels: tuple[ProbedLevel, ...]
    resampling: str | None
    header_requests: int
    header_bytes: int


@dataclass
class Totals:
    """Counts over features (each alone) and over distinct files and tiles."""

    features: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    items: int = 0
    files: int = 0
    tiles: int = 0
    bytes: float = 0.0
    requests: int = 0
    distinct_items: set[str] = field(default_factory=set)
    distinct_files: set[str] = field(default_factory=set)
    distinct_tiles: set[tuple[str, int, int, int]] = field(default_factory=set)
    distinct_bytes: float = 0.0
    items_per_feature: list[int] = field(default_factory=list)


def plan_run(
    features: Mapping[str, Feature],
    groups: Mapping[str, Sequence[str]],
    grid_settings: GridSettings,
    search_settings: SearchSettings,
    cube_settings: CubeSettings,
    layout: Layout,
) -> JsonObject:
    """The run's estimate from the group searches the search job wrote (`plan.json`'s
    content)."""
    from sitsflow.catalog.search import read_item_collection
    from sitsflow.core.bbox import grid_of, make_aoi_record
    from sitsflow.pixels.cube import read_groups
    from sitsflow.workflow.stages import items_of_feature

    started = time.perf_counter()
    probes: dict[str, Probe] = {}
    tiles_cache: dict[tuple[Any, ...], tuple[int, set[tuple[int, int]], int]] = {}
    totals = Totals()
    for group, members in groups.items():
        found, info = read_item_collection(layout.group_search(group))
        for fid in members:
            totals.features += 1
            if info.get("error"):
                totals.failed[fid] = f"search of group {group} failed: {info['error']}"
                continue
            try:
                record = make_aoi_record(features[fid], grid_settings)
            except InputError as exc:
                totals.failed[fid] = str(exc)
                continue
            items, _ = items_of_feature(found, record, search_settings)
            totals.items_per_feature.append(len(items))
            if not items:
                continue
            grid = grid_of(record)
            search_info = {"catalog": search_settings.catalog}
            read_groups_ = read_groups(items, search_info, cube_settings, skipped=[])
            for read_group in read_groups_:
                for item in read_group.items:
                    totals.items += 1
                    totals.distinct_items.add(item["id"])
                    for band in read_group.bands:
                        asset = item["assets"][band]
                        href = asset["href"]
                        # a band of two sensors is two kinds of file
                        name = band if len(read_groups_) == 1 else f"{band} ({read_group.family})"
                        if name not in probes:
                            probes[name] = probe(href, sign=read_group.provider.signs_hrefs)
                            log.info("probed %s: %s", name, describe_probe(probes[name]))
                        level, tiles, rows = needed_tiles(
                            asset,
                            item,
                            probes[name],
                            grid,
                            class_band=band in read_group.class_bands,
                            read_overviews=cube_settings.read_overviews,
                            cache=tiles_cache,
                        )
                        count_tiles(totals, probes[name], href, level, tiles, rows)
    return _summary(totals, probes, len(groups), time.perf_counter() - started)


def count_tiles(
    totals: Totals, probed: Probe, href: str, level: int, tiles: set[tuple[int, int]], rows: int
) -> None:
    """Add one file's share of a feature's read to `totals`."""
    mean = probed.levels[level].mean_tile_bytes
    totals.files += 1
    totals.tiles += len(tiles)
    totals.bytes += len(tiles) * mean + probed.header_bytes
    totals.requests += probed.header_requests + rows
    if href not in totals.distinct_files:
        totals.distinct_files.add(href)
        totals.distinct_bytes += probed.header_bytes
    for col, row in tiles:
        key = (href, level, col, row)
        if key not in totals.distinct_tiles:
            totals.distinct_tiles.add(key)
            totals.distinct_bytes += mean


def probe(href: str, *, sign: bool = False) -> Probe:
    """Read the header of one file: its levels, tile sizes and mean compressed tile bytes."""
    from sitsflow.catalog.ranges import RangeStore, resolve_href

    async def read() -> Probe:
        from async_tiff import TIFF

        from sitsflow.pixels.tiles import overview_resampling

        signer = None
        if sign:
            from sitsflow.catalog.signing import sign_href

            signer = sign_href
        async with RangeStore() as store:
            url = resolve_href(href, sign=signer)
            tiff = await TIFF.open(url, store=store, prefetch=store.prefix_bytes)
            levels = file_levels(tiff)
            header_bytes = max(store.prefix_bytes, store.counters.bytes)
            probed = []
            for level in levels:
                ifd = tiff.ifds[level.index]
                counts = list(ifd.tile_byte_counts or ifd.strip_byte_counts or [])
                offsets = list(ifd.tile_offsets or ifd.strip_offsets or [])
                sizes = [c for c in counts if c > 0]
                probed.append(
                    ProbedLevel(
                        factor=levels[0].width / level.width,
                        tile_width=level.tile_width,
                        tile_height=level.tile_height,
                        mean_tile_bytes=float(statistics.fmean(sizes)) if sizes else 0.0,
                        tiles_across=-(-level.width // level.tile_width),
                        in_header=frozenset(
                            index
                            for index, (offset, count) in enumerate(
                                zip(offsets, counts, strict=False)
                            )
                            if offset + count <= header_bytes
                        ),
                    )
                )
            return Probe(
                href=href,
                width=levels[0].width,
                height=levels[0].height,
                levels=tuple(probed),
                resampling=overview_resampling(tiff.ifds[0]),
                header_requests=max(1, store.counters.requests),
                header_bytes=header_bytes,
            )

    return asyncio.run(read())


def file_levels(tiff: Any) -> list[Any]:
    """The levels a read of the file fetches from: a COG's (`cog_levels`); a striped GeoTIFF's
    full resolution with each strip as a tile as wide as the image (GDAL reads such a file,
    strip by strip, without overviews)."""
    from sitsflow.pixels.tiles import Level, cog_levels, georeference

    first = tiff.ifds[0]
    if first.tile_width is not None and first.tile_height is not None:
        return cog_levels(tiff)
    transform, epsg = georeference(first)
    rows = first.rows_per_strip or first.image_height
    return [
        Level(
            index=0,
            width=first.image_width,
            height=first.image_height,
            tile_width=first.image_width,
            tile_height=min(rows, first.image_height),
            transform=transform,
            epsg=epsg,
        )
    ]


def needed_tiles(
    asset: JsonObject,
    item: JsonObject,
    probed: Probe,
    grid: Grid,
    *,
    class_band: bool,
    read_overviews: bool,
    cache: dict[tuple[Any, ...], tuple[int, set[tuple[int, int]], int]],
) -> tuple[int, set[tuple[int, int]], int]:
    """The level (position in `probed.levels`) the cube reads of this asset, the (col, row) of
    the tiles under the grid it fetches (those not in the header's bytes), and the number of
    their rows (one request each: a row's tiles are consecutive in a COG)."""
    from sitsflow.catalog.providers import item_epsg

    transform = asset.get("proj:transform") or item["properties"].get("proj:transform")
    shape = asset.get("proj:shape") or item["properties"].get("proj:shape")
    epsg = asset.get("proj:epsg") or item_epsg(item)
    if not transform or not epsg:
        raise ValueError(f"item {item['id']}: no proj:transform / proj:epsg to place its files")
    height, width = shape if shape else (probed.height, probed.width)
    key = (tuple(transform[:6]), width, height, epsg, grid, class_band, read_overviews)
    if key not in cache:
        cache[key] = _tiles(
            Affine(*transform[:6]), width, height, int(epsg), probed, grid, class_band,
            read_overviews,
        )  # fmt: skip
    return cache[key]


def _tiles(
    transform: Affine,
    width: int,
    height: int,
    epsg: int,
    probed: Probe,
    grid: Grid,
    class_band: bool,
    read_overviews: bool,
) -> tuple[int, set[tuple[int, int]], int]:
    from sitsflow.core.projection import epsg_transformer
    from sitsflow.pixels.tiles import Level, choose_level_for

    levels = [
        Level(
            index=index,
            width=round(width / probed_level.factor),
            height=round(height / probed_level.factor),
            tile_width=probed_level.tile_width,
            tile_height=probed_level.tile_height,
            transform=transform @ Affine.scale(probed_level.factor),
            epsg=epsg,
        )
        for index, probed_level in enumerate(probed.levels)
    ]
    chosen, _ = choose_level_for(levels, probed.resampling, grid, class_band, read_overviews)
    level = levels[chosen]
    minx, miny, maxx, maxy = grid.bounds
    steps = np.linspace(0.0, 1.0, 11)
    xs = np.concatenate([minx + (maxx - minx) * steps, np.full(11, maxx),
                         minx + (maxx - minx) * steps, np.full(11, minx)])  # fmt: skip
    ys = np.concatenate([np.full(11, miny), miny + (maxy - miny) * steps,
                         np.full(11, maxy), miny + (maxy - miny) * steps])  # fmt: skip
    if epsg != grid.epsg:
        xs, ys = epsg_transformer(grid.epsg, epsg).transform(xs, ys)
    cols, rows = ~level.transform @ (np.asarray(xs), np.asarray(ys))
    col0, col1 = max(0, int(np.floor(np.min(cols)))), min(level.width - 1, int(np.max(cols)))
    row0, row1 = max(0, int(np.floor(np.min(rows)))), min(level.height - 1, int(np.max(rows)))
    if col0 > col1 or row0 > row1:
        return chosen, set(), 0
    tile_cols = range(col0 // level.tile_width, col1 // level.tile_width + 1)
    tile_rows = range(row0 // level.tile_height, row1 // level.tile_height + 1)
    probed_level = probed.levels[chosen]
    fetched = {
        (c, r)
        for c in tile_cols
        for r in tile_rows
        if r * probed_level.tiles_across + c not in probed_level.in_header
    }
    return chosen, fetched, len({r for _, r in fetched})


def describe_probe(probed: Probe) -> str:
    """`10980 x 10980 px, 1024x1024 tiles, 4 overviews (AVERAGE), mean tile 1.41 MB`."""
    first = probed.levels[0]
    overviews = len(probed.levels) - 1
    made_by = f" ({probed.resampling})" if overviews and probed.resampling else ""
    return (
        f"{probed.width} x {probed.height} px, {first.tile_width}x{first.tile_height} tiles, "
        f"{overviews} overview(s){made_by}, mean tile {first.mean_tile_bytes / 1e6:.3g} MB at "
        "full resolution"
    )


def _summary(
    totals: Totals, probes: Mapping[str, Probe], groups: int, seconds: float
) -> JsonObject:
    counts = totals.items_per_feature
    return {
        "features": totals.features,
        "failed": totals.failed,
        "search_groups": groups,
        "items": totals.items,
        "items_per_feature": {
            "min": min(counts, default=0),
            "median": float(np.median(counts)) if counts else 0.0,
            "max": max(counts, default=0),
        },
        "distinct_items": len(totals.distinct_items),
        "files": totals.files,
        "distinct_files": len(totals.distinct_files),
        "tiles": totals.tiles,
        "distinct_tiles": len(totals.distinct_tiles),
        "bytes": round(totals.bytes),
        "distinct_bytes": round(totals.distinct_bytes),
        "requests": totals.requests,
        "probes": {band: describe_probe(p) for band, p in probes.items()},
        "seconds": round(seconds, 3),
    }


def plan_text(plan: JsonObject) -> str:
    """The plan for people: what the run reads, and about how long that takes to download."""
    per = plan["items_per_feature"]
    failed = plan["failed"]
    lines = [
        f"{plan['features']} features in {plan['search_groups']} search groups"
        + (f", {len(failed)} that will fail: {sorted(failed)[:5]}" if failed else ""),
        f"items: {plan['items']} (per feature {per['min']}..{per['max']}, median "
        f"{per['median']:g}), {plan['distinct_items']} distinct",
        f"files: {plan['files']} ({plan['distinct_files']} distinct)",
        f"tiles: {plan['tiles']} ({plan['distinct_tiles']} distinct)",
        f"bytes: {_size(plan['bytes'])} with every feature reading alone, "
        f"{_size(plan['distinct_bytes'])} with each tile read once",
        f"requests: about {plan['requests']}",
        f"download at 100 Mbit/s: about {_duration(plan['bytes'] / REFERENCE_BYTES_PER_S)} "
        f"(each tile once: {_duration(plan['distinct_bytes'] / REFERENCE_BYTES_PER_S)})",
        *(f"layout of {band}: {text}" for band, text in plan["probes"].items()),
    ]
    return "\n".join(lines) + "\n"


def _size(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def write_plan(plan: JsonObject, json_path: str | Path, text_path: str | Path) -> None:
    """`plan.json` and the text of `plan_text`, each written whole."""
    import json

    from sitsflow.core.atomic import atomic_write_text

    atomic_write_text(json_path, json.dumps(plan, indent=1))
    atomic_write_text(text_path, plan_text(plan))
