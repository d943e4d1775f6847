"""Generation of the whole archive: planning the features, reusing unchanged ones, workers.

`generate_archive` is the entry point (`make demo`, tests, benchmarks). Each feature's
parameters are recorded in `manifest.json`; a rerun reuses a feature whose parameters are
unchanged and whose files all still exist, and regenerates the others, so appending a feature
to the vector file only generates that feature. The remaining work is cut into chunks of
dates and spread over worker processes; every pixel depends only on its feature's own
parameters, so the archive is the same for any number of workers. Each feature's items also go
to its own `feature-items.json`, from which a rerun reads them back.

The options of `sitsflow.demo.options` (see `generate_archive`) are part of each feature's
parameters when they differ from their default, so that changing one regenerates the feature
while a default archive's manifest stays what it was.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from sitsflow.core.atomic import atomic_write_text
from sitsflow.core.bands import LANDSAT, collection_family
from sitsflow.core.types import JsonObject, StacItem
from sitsflow.demo.bands import NODATA, REFLECTANCE_BANDS, SCL_NAME
from sitsflow.demo.catalog import LAYOUTS, build_item, item_id
from sitsflow.demo.cogs import cog_bytes, write_bytes_atomic
from sitsflow.demo.landsat import LandsatSpec, plan_scenes, wrs_path_row
from sitsflow.demo.landsat import acquisitions as landsat_acquisitions
from sitsflow.demo.landscape import Landscape, make_landscape
from sitsflow.demo.options import ArchiveOptions
from sitsflow.demo.scene import render
from sitsflow.demo.tiles import (
    FeatureSpec,
    acquisition_days,
    as_date,
    make_acquisition,
    neighbour_tile,
    overlapping_bounds,
    tile_bounds_utm,
    tile_name,
)

log = logging.getLogger(__name__)

# Bump when the pixels or metadata produced for the same parameters change: the manifest then
# no longer matches and every feature is regenerated.
GENERATOR_VERSION = 1
ITEMS_FILE = "items.json"
MANIFEST_FILE = "manifest.json"
FEATURE_ITEMS_FILE = "feature-items.json"
# Landsat scenes (only when a Landsat collection is asked for): their own manifest section, so
# that an archive without them keeps the manifest it always had.
LANDSAT_DIR = "landsat"
LANDSAT_MANIFEST_KEY = "landsat"
LANDSAT_GENERATOR_VERSION = 1
DEFAULT_COLLECTIONS = ("sentinel-2-l2a",)


def _generate_item(spec: FeatureSpec, landscape: Landscape, day: date, out_dir: Path) -> StacItem:
    """Render one acquisition, write its six COGs and return its STAC item."""
    acquisition = make_acquisition(spec, day)
    scene = render(spec, landscape, acquisition)
    item_dir = f"tiles/T{spec.tile}/{item_id(spec, acquisition)}"
    files: dict[str, tuple[str, bytes]] = {}
    options = spec.options
    reflectance_resampling = options.overview_resampling.upper()
    layers = [
        (band.name, scene.dn[band.name], band.gsd, reflectance_resampling)
        for band in REFLECTANCE_BANDS
    ]
    layers.append((SCL_NAME, scene.scl, 20, options.scl_overview_resampling.upper()))
    nodata = NODATA if options.nodata_tag else None
    for name, array, gsd, resampling in layers:
        data = cog_bytes(array, spec.transform(gsd), spec.epsg, resampling, nodata)
        href = f"{item_dir}/{name}.tif"
        write_bytes_atomic(out_dir / href, data)
        files[name] = (href, data)
    return build_item(spec, acquisition, scene.scl, files)


def _generate_chunk(spec: FeatureSpec, days: Sequence[date], out_dir: str) -> list[StacItem]:
    """Worker entry point: the items of `days` for one tile of a feature (landscape built once)."""
    landscape = make_landscape(spec)
    return [_generate_item(spec, landscape, day, Path(out_dir)) for day in days]


def _generate_landsat_chunk(
    spec: LandsatSpec, chunk: Sequence[Any], out_dir: str
) -> list[StacItem]:
    """Worker entry point: the Landsat items of `chunk` (acquisitions) of one feature."""
    from sitsflow.demo.landsat_items import write_item

    landscape = make_landscape(spec.tile)
    folder = f"{LANDSAT_DIR}/{spec.path:03d}{spec.row:03d}"
    return [write_item(spec, landscape, acq, Path(out_dir), folder) for acq in chunk]


def _feature_params(
    geometry: BaseGeometry,
    start: date,
    end: date,
    revisit_days: int,
    layout: str,
    seed: int,
    margin_m: float,
    clear_fraction: float,
    options: ArchiveOptions,
) -> JsonObject:
    """Everything that determines a feature's items; a manifest entry is reused only if equal."""
    return {
        "geometry_wkt": shapely_wkt.dumps(geometry, rounding_precision=8),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "revisit_days": int(revisit_days),
        "layout": layout,
        "seed": int(seed),
        "margin_m": float(margin_m),
        "clear_fraction": float(clear_fraction),
        **options.non_default(),
        "generator_version": GENERATOR_VERSION,
    }


def _read_json(path: Path) -> JsonObject | None:
    """A JSON file's content, or None if it is missing or unreadable (a fresh start)."""
    try:
        document: JsonObject = json.loads(path.read_text())
        return document
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _reusable_items(
    out_dir: Path, entry: JsonObject | None, params: JsonObject
) -> list[StacItem] | None:
    """The feature's previous items if its entry matches `params` and all files still exist."""
    if not entry or entry.get("params") != params:
        return None
    document = _read_json(out_dir / entry.get("items_file", ""))
    if not document:
        return None
    items: list[StacItem] = document.get("features", [])
    if [item["id"] for item in items] != entry.get("items"):
        return None
    for item in items:
        for asset in item["assets"].values():
            if not (out_dir / asset["href"]).is_file():
                return None
    return items


def _check_arguments(
    features: Sequence[tuple[str, BaseGeometry]],
    revisit_days: int,
    layout: str,
    workers: int,
    clear_fraction: float,
    margin_m: float,
) -> None:
    """Refuse arguments that would fail in a worker or write an inconsistent archive."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if revisit_days < 1:
        raise ValueError(f"revisit_days must be >= 1, got {revisit_days}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not 0.0 <= clear_fraction <= 1.0:
        raise ValueError(f"clear_fraction must be within [0, 1], got {clear_fraction}")
    if margin_m < 0:
        raise ValueError(f"margin_m must be >= 0, got {margin_m}")
    counts = collections.Counter(str(fid) for fid, _ in features)
    duplicates = sorted(fid for fid, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate feature ids: {duplicates[:10]}")
    for fid, geometry in features:
        if geometry is None or geometry.is_empty:
            raise ValueError(f"feature {fid!r} has an empty geometry")


def _chunks(days: list[Any], workers: int) -> list[list[Any]]:
    """Split a feature's dates so that a few features still keep all workers busy."""
    if workers == 1:
        return [days]
    size = max(4, math.ceil(len(days) / (2 * workers)))
    return [days[i : i + size] for i in range(0, len(days), size)]


@dataclass
class _Plan:
    """One requested feature: its parameters, tile(s), and its items once known.

    `neighbour` is the east tile of a feature with overlapping tiles ("" without).
    """

    fid: str
    params: JsonObject
    epsg: int
    bounds: tuple[float, float, float, float]
    lon: float
    lat: float
    tile: str = ""
    neighbour: str = ""
    items: list[StacItem] | None = None
    reused: bool = False

    def spec(
        self,
        layout: str,
        seed: int,
        revisit_days: int,
        clear_fraction: float,
        options: ArchiveOptions,
    ) -> FeatureSpec:
        """The feature's tile spec: its tile and grid, the landscape over its own bounds."""
        return FeatureSpec(
            fid=self.fid,
            tile=self.tile,
            epsg=self.epsg,
            bounds=self.bounds,
            lon=self.lon,
            lat=self.lat,
            layout=layout,
            seed=seed,
            revisit_days=revisit_days,
            clear_fraction=clear_fraction,
            options=options,
            landscape_bounds=self.bounds,
        )


def _plan(fid: str, geometry: BaseGeometry, params: JsonObject, margin_m: float) -> _Plan:
    """A feature's plan: its tile bounds and centroid (its tile name comes later)."""
    epsg, bounds = tile_bounds_utm(geometry, margin_m)
    centroid = geometry.centroid
    return _Plan(fid, params, epsg, bounds, float(centroid.x), float(centroid.y))


def _assign_tiles(plans: list[_Plan], previous: dict[str, JsonObject], overlapping: bool) -> None:
    """Give each feature to generate a tile name (two if `overlapping`) no other feature uses.

    Tile names only have 480 grid squares per zone and band, so two features may hash to the
    same one, and item ids (which contain the tile name) must stay unique. Reused features keep
    their names; a regenerated feature keeps its previous name if still free and in the right
    zone; otherwise it takes the first free name of its salted hash sequence, in input order.
    With overlapping tiles the name's east neighbour (`neighbour_tile`) must be free as well.
    """

    def names(tile: str) -> tuple[str, ...]:
        """The names a feature takes if its (first) tile is `tile`."""
        return (tile, neighbour_tile(tile)) if overlapping else (tile,)

    taken = {name for plan in plans if plan.reused for name in (plan.tile, plan.neighbour) if name}
    for plan in plans:
        if plan.reused:
            continue
        zone = plan.epsg % 100
        old = previous.get(plan.fid, {}).get("tile")
        preferred = tile_name(plan.fid, zone, plan.lat)
        candidates = itertools.chain(
            [old] if old and old[:3] == preferred[:3] else [],
            (tile_name(plan.fid, zone, plan.lat, salt) for salt in itertools.count()),
        )
        chosen = next(names(name) for name in candidates if taken.isdisjoint(names(name)))
        plan.tile, plan.neighbour = chosen[0], chosen[1] if overlapping else ""
        taken.update(chosen)


def _start_method() -> str:
    """`fork` on Linux, else `spawn`.

    spawn and forkserver re-run the caller's main module in every worker, which breaks callers
    without an `if __name__ == "__main__"` guard (Snakemake `script:` files are such callers).
    The parent holds no open GDAL dataset when the pool forks, so fork is safe here; macOS
    (where fork is unsafe) gets spawn.
    """
    return "fork" if sys.platform.startswith("linux") else "spawn"


ChunkFunction = Callable[[Any, Sequence[Any], str], list[StacItem]]


def _run_chunks(
    tasks: list[tuple[Any, list[Any]]],
    out_dir: Path,
    workers: int,
    function: ChunkFunction = _generate_chunk,
) -> Iterator[tuple[Any, list[StacItem]]]:
    """Yield (spec, items) per finished chunk: inline for one worker, else in a process pool."""
    if workers == 1:
        for spec, days in tasks:
            yield spec, function(spec, days, str(out_dir))
        return
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future[list[StacItem]], Any] = {
            pool.submit(function, spec, days, str(out_dir)): spec for spec, days in tasks
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()


def _generate_features(
    specs: list[FeatureSpec], days: list[date], out_dir: Path, workers: int
) -> Iterator[tuple[str, list[StacItem]]]:
    """Yield (feature id, items) as soon as all chunks of all tiles of a feature are done.

    Items are sorted by datetime, then id: the two tiles of a feature with overlapping tiles
    share their datetimes, and chunks finish in any order.
    """
    tasks: list[tuple[Any, list[Any]]] = [
        (spec, chunk) for spec in specs for chunk in _chunks(days, workers)
    ]
    return _collect(tasks, out_dir, workers, _generate_chunk)


def _collect(
    tasks: list[tuple[Any, list[Any]]], out_dir: Path, workers: int, function: ChunkFunction
) -> Iterator[tuple[str, list[StacItem]]]:
    """Run the chunks; yield (feature id, its items by datetime then id) once all are done."""
    remaining = collections.Counter(spec.fid for spec, _ in tasks)
    collected: dict[str, list[StacItem]] = collections.defaultdict(list)
    for spec, items in _run_chunks(tasks, out_dir, workers, function):
        collected[spec.fid].extend(items)
        remaining[spec.fid] -= 1
        if remaining[spec.fid] == 0:
            finished = collected.pop(spec.fid)
            finished.sort(key=lambda item: (item["properties"]["datetime"], item["id"]))
            yield spec.fid, finished


def _save_feature(out_dir: Path, plan: _Plan, items: list[StacItem]) -> JsonObject:
    """Write the feature's own item list; return its manifest entry."""
    items_file = f"tiles/T{plan.tile}/{FEATURE_ITEMS_FILE}"
    document = {"type": "FeatureCollection", "features": items}
    atomic_write_text(out_dir / items_file, json.dumps(document))
    entry: JsonObject = {"params": plan.params, "tile": plan.tile}
    if plan.neighbour:
        entry["neighbour_tile"] = plan.neighbour
    entry.update(
        epsg=plan.epsg,
        bounds=list(plan.bounds),
        items_file=items_file,
        items=[item["id"] for item in items],
    )
    return entry


def _tile_specs(plan: _Plan, base: FeatureSpec) -> list[FeatureSpec]:
    """The tiles to render for a feature: its tile, or its west and east overlapping tiles.

    Overlapping tiles share one landscape drawn over both, so that the surface is the same.
    """
    if not base.options.overlapping_tiles:
        return [base]
    west, east = overlapping_bounds(plan.bounds)
    union = (west[0], west[1], east[2], east[3])
    return [
        replace(base, bounds=west, landscape_bounds=union),
        replace(base, tile=plan.neighbour, bounds=east, landscape_bounds=union),
    ]


def _write_manifest(
    out_dir: Path,
    entries: dict[str, JsonObject],
    order: list[str],
    landsat: dict[str, JsonObject] | None = None,
) -> None:
    """Write the manifest: the entry of every listed feature done so far, in input order, and
    the Landsat section when Landsat scenes are asked for (`landsat` not None)."""
    document: JsonObject = {
        "generator": "sitsflow.demo",
        "generator_version": GENERATOR_VERSION,
        "features": {fid: entries[fid] for fid in order if fid in entries},
    }
    if landsat is not None:
        document[LANDSAT_MANIFEST_KEY] = {fid: landsat[fid] for fid in order if fid in landsat}
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(document, indent=1))


def generate_archive(
    features: list[tuple[str, BaseGeometry]],
    out_dir: str | Path,
    start: str | date,
    end: str | date,
    *,
    revisit_days: int = 5,
    margin_m: float = 1920.0,
    layout: str = "planetary-computer",
    seed: int = 0,
    workers: int = 1,
    clear_fraction: float = 0.45,
    overview_resampling: str = "nearest",
    scl_overview_resampling: str = "nearest",
    scl_pattern: str = "scene",
    overlapping_tiles: bool = False,
    nodata_tag: bool = True,
    swath_edge: bool = False,
    saturated_fraction: float = 0.0,
    collections: Sequence[str] = DEFAULT_COLLECTIONS,
) -> Path:
    """Write (or update) a synthetic Sentinel-2 L2A archive; return the path of its items.json.

    One tile per feature (geometry in EPSG:4326; two with `overlapping_tiles`) covering the
    geometry + `margin_m` in its UTM zone, with one item every `revisit_days` from `start` to
    `end` (both included). Features whose manifest entry matches these parameters are reused as
    they are; the others are (re)generated; features not listed are left out of items.json
    (their files stay).
    `items.json` lists the items of all features in input order, by datetime within each.

    The other options make the archive look like a real one where real ones are unkind (issue
    12); at their defaults the archive is the same as without them:

    * `overview_resampling`: "nearest" or "average", the overviews of the reflectance bands.
      Averaged ones (as Earth Search's `sentinel-cogs`) carry the `OVR_RESAMPLING_ALG=AVERAGE`
      metadata item (default domain), as those files do.
    * `scl_overview_resampling`: the same for the SCL band. "average" makes overviews whose
      values are means of classes: the class band a reader must never read at an overview.
    * `scl_pattern`: "scene" (the SCL describes the scene) or "checkerboard": on clear dates
      (SCL cloud share < 10 %) the SCL alternates classes 5 and 9 pixel by pixel, so that 2 x 2
      means give 7, a class absent at full resolution (the reflectance stays the scene's).
    * `overlapping_tiles`: each feature is covered on every date by two items of neighbouring
      tiles of the same UTM zone (the tile extended 1920 m west, and its east neighbour, the
      next MGRS column letter, extended 1920 m east; their overlap is the whole feature tile),
      with the same datetime (same pass), the same surface reflectance and each its own sky,
      SCL and `eo:cloud_cover`.
    * `nodata_tag`: False writes COGs without a GeoTIFF nodata tag; the items still declare
      nodata 0 where their layout does (Earth Search `raster:bands`; Planetary Computer items
      declare none, only `s2:nodata_pixel_percentage`).
    * `swath_edge`: on S2B dates (every other date), the part of the tile east of a line through
      the centre of the feature's tile, tilted 12 degrees from north, is outside the swath: DN 0
      in every band, SCL 0, `s2:nodata_pixel_percentage` counting it and the item geometry
      leaving it out. With `nodata_tag=False` nothing in the files says these 0 are no data.
    * `saturated_fraction`: that share of each reflectance band's data pixels (not flagged in
      the SCL, which never has class 1 here) set to DN 65535, as L2A saturation.

    `collections` are the run's collections (config `collection`): with a Landsat one
    (`landsat-c2-l2`) each feature also gets the Landsat Collection 2 Level-2 scenes covering
    it (`sitsflow.demo.landsat`), in the Planetary Computer layout, whatever `layout`; with
    only Landsat ones, no Sentinel-2 tile is written. The options above are Sentinel-2's.
    """
    options = ArchiveOptions(
        overview_resampling=overview_resampling,
        scl_overview_resampling=scl_overview_resampling,
        scl_pattern=scl_pattern,
        overlapping_tiles=bool(overlapping_tiles),
        nodata_tag=bool(nodata_tag),
        swath_edge=bool(swath_edge),
        saturated_fraction=float(saturated_fraction),
    )
    options.check()
    _check_arguments(features, revisit_days, layout, workers, clear_fraction, margin_m)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first, last = as_date(start), as_date(end)
    days = acquisition_days(first, last, revisit_days)
    if not days:
        raise ValueError(f"no acquisition between {first} and {last}")
    manifest = _read_json(out / MANIFEST_FILE) or {}
    previous: dict[str, JsonObject] = manifest.get("features", {})
    families = {collection_family(str(name)) for name in collections}
    with_landsat = LANDSAT in families
    with_s2 = families != {LANDSAT}
    previous_landsat: dict[str, JsonObject] | None = (
        dict(manifest.get(LANDSAT_MANIFEST_KEY, {})) if with_landsat else None
    )

    plans = []
    for fid, geometry in features:
        params = _feature_params(
            geometry, first, last, revisit_days, layout, seed, margin_m, clear_fraction, options
        )
        plan = _plan(str(fid), geometry, params, margin_m)
        plan.items = _reusable_items(out, previous.get(plan.fid), params) if with_s2 else []
        if not with_s2:
            plan.reused = True  # nothing to generate, no manifest entry
        elif plan.items is not None:
            entry = previous[plan.fid]
            plan.reused, plan.tile = True, entry["tile"]
            plan.neighbour = entry.get("neighbour_tile", "")
        plans.append(plan)
    _assign_tiles(plans, previous, options.overlapping_tiles)
    entries = {plan.fid: previous[plan.fid] for plan in plans if plan.reused and with_s2}
    todo = {plan.fid: plan for plan in plans if not plan.reused}
    log.info(
        "demo archive %s: %d features (%d reused, %d to generate) x %d dates, layout %s",
        out,
        len(plans),
        len(entries),
        len(todo),
        len(days),
        layout,
    )

    specs = [
        spec
        for plan in todo.values()
        for spec in _tile_specs(
            plan,
            plan.spec(layout, int(seed), int(revisit_days), float(clear_fraction), options),
        )
    ]
    order = [plan.fid for plan in plans]
    started = time.perf_counter()
    for done, (fid, items) in enumerate(_generate_features(specs, days, out, workers), 1):
        plan = todo[fid]
        plan.items = items
        entries[plan.fid] = _save_feature(out, plan, items)
        # progress survives an interruption
        _write_manifest(out, entries, order, previous_landsat)
        log.info(
            "feature %s done (%d/%d): tile %s, %d items, %.1f s",
            plan.fid,
            done,
            len(todo),
            "+".join(filter(None, (plan.tile, plan.neighbour))),
            len(items),
            time.perf_counter() - started,
        )
    landsat_items: dict[str, list[StacItem]] = {}
    if previous_landsat is not None:
        landsat_entries = _generate_landsat(
            out, plans, previous_landsat, (first, last), workers, entries, order, landsat_items
        )
        _write_manifest(out, entries, order, landsat_entries)
    else:
        _write_manifest(out, entries, order)
    items_path = out / ITEMS_FILE
    document = {
        "type": "FeatureCollection",
        "features": [
            item
            for plan in plans
            for item in [*(plan.items or []), *landsat_items.get(plan.fid, [])]
        ],
        "links": [],
    }
    atomic_write_text(items_path, json.dumps(document))
    return items_path


def _landsat_params(plan: _Plan) -> JsonObject:
    """What determines a feature's Landsat items (none of the Sentinel-2 options)."""
    keys = ("geometry_wkt", "start", "end", "seed", "margin_m", "clear_fraction")
    return {
        **{key: plan.params[key] for key in keys},
        "landsat_generator_version": LANDSAT_GENERATOR_VERSION,
    }


def _landsat_claims(path: int, row: int) -> set[tuple[int, int]]:
    """The (path, row) pairs a feature's scenes use (the next path may take either row)."""
    return {(path, row), (path, row + 1), (path % 233 + 1, row), (path % 233 + 1, row + 1)}


def _landsat_candidates(lon: float, lat: float) -> Iterator[tuple[int, int]]:
    """The feature's WRS-2-like (path, row), then others nearby for a feature whose scenes
    another feature already uses (item ids contain path, row and date: they must differ)."""
    path, row = wrs_path_row(lon, lat)
    for salt in itertools.count():
        shift, rows = salt % 116, salt // 116
        yield (path - 1 + 2 * shift) % 233 + 1, min(row + 2 * rows, 247)


def _generate_landsat(
    out: Path,
    plans: list[_Plan],
    previous: dict[str, JsonObject],
    period: tuple[date, date],
    workers: int,
    entries: dict[str, JsonObject],
    order: list[str],
    found: dict[str, list[StacItem]],
) -> dict[str, JsonObject]:
    """Reuse or write every feature's Landsat items (into `found`); return their entries."""
    landsat: dict[str, JsonObject] = {}
    taken: set[tuple[int, int]] = set()
    todo: list[tuple[_Plan, JsonObject]] = []
    for plan in plans:
        params = _landsat_params(plan)
        entry = previous.get(plan.fid)
        items = _reusable_items(out, entry, params)
        if items is not None and entry is not None:
            landsat[plan.fid] = entry
            found[plan.fid] = items
            taken |= _landsat_claims(int(entry["path"]), int(entry["row"]))
        else:
            todo.append((plan, params))
    tasks: list[tuple[Any, list[Any]]] = []
    specs: dict[str, tuple[LandsatSpec, JsonObject]] = {}
    for plan, params in todo:
        path, row = next(
            (p, r)
            for p, r in _landsat_candidates(plan.lon, plan.lat)
            if taken.isdisjoint(_landsat_claims(p, r))
        )
        taken |= _landsat_claims(path, row)
        seed, clear_fraction = int(params["seed"]), float(params["clear_fraction"])
        tile = plan.spec("planetary-computer", seed, 5, clear_fraction, ArchiveOptions())
        spec = plan_scenes(tile, path, row)
        specs[plan.fid] = (spec, params)
        dates = landsat_acquisitions(spec, *period)
        tasks.extend((spec, chunk) for chunk in _chunks(dates, workers) if chunk)
        if not dates:
            found[plan.fid] = []
    for fid, items in _collect(tasks, out, workers, _generate_landsat_chunk):
        found[fid] = items
    for fid, (spec, params) in specs.items():
        items = found.get(fid, [])
        folder = f"{LANDSAT_DIR}/{spec.path:03d}{spec.row:03d}"
        items_file = f"{folder}/{FEATURE_ITEMS_FILE}"
        document = {"type": "FeatureCollection", "features": items}
        atomic_write_text(out / items_file, json.dumps(document))
        landsat[fid] = {
            "params": params,
            "path": spec.path,
            "row": spec.row,
            "items_file": items_file,
            "items": [item["id"] for item in items],
        }
        _write_manifest(out, entries, order, landsat)
    log.info(
        "landsat: %d features (%d reused), %d items",
        len(plans),
        len(plans) - len(todo),
        sum(len(items) for items in found.values()),
    )
    return landsat


# --------------------------------------------------------------------------------------------
# Helpers for the command line / Snakemake


def features_from_vector(path: str | Path, id_column: str = "id") -> list[tuple[str, BaseGeometry]]:
    """(id, lon/lat geometry) of every feature of a vector file, read and checked by sitsflow."""
    from sitsflow.core.features import load_features

    return [(feature.fid, feature.geometry) for feature in load_features(path, id_column)]


def archive_size(out_dir: str | Path) -> tuple[int, int]:
    """(number of files, total bytes) under `out_dir`."""
    count = size = 0
    for root, _, names in os.walk(out_dir):
        for name in names:
            count += 1
            size += os.path.getsize(os.path.join(root, name))
    return count, size
