"""The per-feature stages as functions of input paths, settings and an output path, and the
search job.

The per-feature rule scripts (`scripts/bbox.py` ...) and batch mode (`sitsflow.workflow.batch`)
both call these, so a feature's files are made by the same code whichever way the workflow runs:
each stage's `run_*` function (named by its declaration in `sitsflow.core.pipeline`) calls the
same function as its rule script, on the batch's paths and settings. Heavy imports stay inside
the functions: a batch imports only what its stages need.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sitsflow.catalog.search import ItemTexts, write_item_collection
from sitsflow.core.atomic import atomic_path, atomic_write_text
from sitsflow.core.features import AttributeValue, Feature
from sitsflow.core.layout import (
    QUICKLOOK_STATE,
    SEARCH_CACHE,
    SEARCH_INDEX,
    TIMESERIES_STATE,
    Layout,
)
from sitsflow.core.projection import area_of_interest
from sitsflow.core.settings import (
    CubeSettings,
    GridSettings,
    RangeCacheSettings,
    SearchSettings,
    StacSettings,
    TimeseriesSettings,
)
from sitsflow.core.types import JsonObject, StacItem

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from sitsflow.core.bbox import BboxRecord
    from sitsflow.pixels.cube_model import CubeArrays
    from sitsflow.pixels.read import Loader
    from sitsflow.workflow.context import BatchContext, FeatureItems

log = logging.getLogger(__name__)


def read_bbox(path: str | Path) -> BboxRecord:
    """A bbox record written by `make_bbox`."""
    return cast("BboxRecord", json.loads(Path(path).read_text()))


def make_bbox(feature: Feature, grid: GridSettings, output: str) -> None:
    """Write the feature's area of interest and cube grid."""
    from sitsflow.core.bbox import make_aoi_record
    from sitsflow.core.features import area_of_use_warning, outside_area_of_use

    if outside_area_of_use([feature], grid.crs):
        log.warning("%s", area_of_use_warning([feature.fid], grid.crs))
    with area_of_interest(feature.geometry.bounds):
        record = make_aoi_record(feature, grid)
    log.info("grid %s", record["properties"]["grid"])
    atomic_write_text(output, json.dumps(record, indent=1))


def search_groups(
    features: Mapping[str, Feature],
    groups: Mapping[str, Sequence[str]],
    grid: GridSettings,
    search_settings: SearchSettings,
    stac: StacSettings,
    generation: int,
    layout: Layout,
) -> JsonObject:
    """The search job: one search per group of features (`sitsflow.catalog.groups`), over the
    union of its members' windows, `stac.max_concurrent` at a time, at most
    `stac.max_requests_per_s` requests per second in all.

    A group whose window and settings were searched before is read from the cache. A group
    whose search fails gets a group file with the error (its features fail with it) and is
    searched again by the next run (`search_generation`). Returns the index it writes.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sitsflow.catalog.groups import group_windows, search_fingerprint
    from sitsflow.catalog.search import ApiLimits, Catalog, search_dates

    first, last = (str(day) for day in search_dates(search_settings.start, search_settings.end))
    windows = group_windows(groups, features, grid)
    fingerprints = {
        group: search_fingerprint(window, search_settings, first, last)
        for group, window in windows.items()
    }
    cache = Path(SEARCH_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    limits = ApiLimits(
        max_requests_per_s=stac.max_requests_per_s,
        max_concurrent=stac.max_concurrent,
        timeout_s=stac.timeout_s,
        connect_timeout_s=stac.connect_timeout_s,
        page_size=stac.page_size,
    )
    # one search per collection; their items go to the group's one result
    catalogs = [
        Catalog(search_settings.catalog, name, limits) for name in search_settings.collections
    ]
    record = {
        "catalog": search_settings.catalog,
        "collection": search_settings.collection,
        "datetime": f"{first}/{last}",
        "query": search_settings.query,
        "filter": search_settings.filter,
    }

    def one(group: str) -> JsonObject:
        entry = cache / f"{fingerprints[group]}.json"
        info: JsonObject = {"fingerprint": fingerprints[group], "members": len(groups[group])}
        if entry.exists():
            info["cached"] = True
        else:
            started = time.perf_counter()
            try:
                items = [
                    item
                    for catalog in catalogs
                    for item in catalog.search(
                        windows[group],
                        first,
                        last,
                        search_settings.query,
                        search_settings.filter,
                    )
                ]
            except Exception as exc:  # the group's features fail with it, the others go on
                log.error("group %s: search failed: %s", group, exc)
                error = {
                    "error": getattr(exc, "message", str(exc)),
                    "error_key": getattr(exc, "key", None),
                }
                failed = {**record, "bbox": list(windows[group]), "group": group, **error}
                write_item_collection([], layout.group_search(group), failed)
                return {**info, **error, "n_items": 0}
            write_item_collection(items, entry, {**record, "bbox": list(windows[group])})
            info.update(cached=False, seconds=round(time.perf_counter() - started, 3))
        _link(entry, Path(layout.group_search(group)))
        info["n_items"] = _count_items(entry)
        return info

    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, stac.max_concurrent)) as pool:
        outcomes = dict(zip(groups, pool.map(one, groups), strict=True))
    searched = sum(1 for info in outcomes.values() if info.get("cached") is False)
    failed = sorted(group for group, info in outcomes.items() if info.get("error"))
    index: JsonObject = {
        "generation": generation,
        "searched": searched,
        "cached": sum(1 for info in outcomes.values() if info.get("cached")),
        "failed": failed,
        "requests": sum(catalog.requests for catalog in catalogs),
        "retries": sum(catalog.retries for catalog in catalogs),
        "seconds": round(time.perf_counter() - started, 3),
        "groups": outcomes,
    }
    _prune_cache(cache, {info["fingerprint"] for info in outcomes.values()})
    atomic_write_text(SEARCH_INDEX, json.dumps(index, indent=1))
    log.info(
        "%d groups of %d features: %d searched, %d from the cache, %d failed; %d requests "
        "(%d retries) in %.1f s",
        len(groups),
        len(features),
        searched,
        index["cached"],
        len(failed),
        index["requests"],
        index["retries"],
        index["seconds"],
    )
    return index


def _link(entry: Path, target: Path) -> None:
    """`target` as a hard link to the cache `entry` (a copy where links fail), with a fresh
    modification time: Snakemake judges the search job's outputs by it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(entry, target)
    except OSError:
        shutil.copyfile(entry, target)
    os.utime(target)


def _count_items(path: Path) -> int:
    return int(json.loads(path.read_text()).get("sitsflow:search", {}).get("n_items", 0))


def _prune_cache(cache: Path, keep: set[str]) -> None:
    """Remove the cache entries no group uses any more."""
    for entry in cache.glob("*.json"):
        if entry.stem not in keep:
            entry.unlink(missing_ok=True)


def _meets(item: JsonObject, bbox: Sequence[float]) -> bool:
    """Whether the item's bbox (or its geometry's bounds) meets `bbox`, as a search's does."""
    bounds = item.get("bbox")
    if not bounds and item.get("geometry"):
        from shapely.geometry import shape

        bounds = shape(item["geometry"]).bounds
    if not bounds:
        return True
    if len(bounds) == 6:  # with heights: west, south, bottom, east, north, top
        west, south, east, north = bounds[0], bounds[1], bounds[3], bounds[4]
    else:
        west, south, east, north = bounds[:4]
    return not (east < bbox[0] or west > bbox[2] or north < bbox[1] or south > bbox[3])


def group_members(group_search: str | Path, index_path: str | Path = SEARCH_INDEX) -> int | None:
    """How many features the search group of `group_search` (its result file) has, from the
    search job's index; None when the index does not say."""
    groups = _read_state(str(index_path)).get("groups")
    entry = groups.get(Path(group_search).stem) if isinstance(groups, dict) else None
    members = entry.get("members") if isinstance(entry, dict) else None
    return members if isinstance(members, int) else None


def search_generation(index_path: str | Path = SEARCH_INDEX) -> int:
    """The search job's generation (a `params:` value, read when the workflow is parsed): the
    one the index records, plus one if a group's search failed, so that Snakemake reruns the
    job, which searches those groups again (as `sitsflow.workflow.batch.batch_generations`)."""
    try:
        index = json.loads(Path(index_path).read_text())
    except (OSError, ValueError):
        return 0
    return int(index.get("generation", 0)) + (1 if index.get("failed") else 0)


def dataset_generation(manifest: str | Path, store: str | Path) -> int:
    """The `dataset` job's generation (a `params:` value, read when the workflow is parsed):
    the one its manifest records, plus one when the store it describes is gone (deleted by
    hand: the store is not a Snakemake output), so that Snakemake reruns the job, which
    rebuilds the store (as `sitsflow.workflow.batch.batch_generations` does for batches)."""
    try:
        recorded = int(json.loads(Path(manifest).read_text()).get("generation", 0))
    except (OSError, ValueError):
        return 0
    return recorded if (Path(store) / ".zmetadata").is_file() else recorded + 1


@functools.lru_cache(maxsize=2)
def _group_result(
    path: str, mtime_ns: int, size: int
) -> tuple[list[StacItem], JsonObject, ItemTexts]:
    """A group's search result, parsed once for all the members of a batch (read only), and
    its items' JSON texts, made once; keyed by the file's modification time and size as well
    as its path."""
    from sitsflow.catalog.search import read_item_collection

    items, info = read_item_collection(path)
    return items, info, ItemTexts(items)


def feature_items(
    group_path: str, bbox_path: str, search_settings: SearchSettings, output: str
) -> tuple[list[StacItem], JsonObject]:
    """The feature's search result from its group's (`items_of_feature`), written to `output`
    with a record of the search; the same items as a search of its own window. Returns the
    items and the record as `read_item_collection` reads them back (the group's parsed items,
    which nothing changes)."""
    from sitsflow.core.errors import CatalogError

    record = read_bbox(bbox_path)
    status = os.stat(group_path)
    found, group_info, texts = _group_result(group_path, status.st_mtime_ns, status.st_size)
    if group_info.get("error"):
        raise CatalogError(
            f"the search of its group {Path(group_path).stem} failed: {group_info['error']}",
            key=group_info.get("error_key") or "catalog",
        )
    with area_of_interest(record["properties"]["search_bbox_wgs84"]):
        items, dropped = items_of_feature(found, record, search_settings)
    log.info(
        "%d of the %d items of %s kept (grid %s)",
        len(items),
        len(found),
        group_path,
        record["properties"]["search_bbox_wgs84"],
    )
    for entry in dropped:
        log.info("dropped item %s: %s", entry["id"], entry["reason"])
    info = {
        "catalog": search_settings.catalog,
        "collection": search_settings.collection,
        "bbox": record["properties"]["search_bbox_wgs84"],
        "datetime": f"{search_settings.start}/{search_settings.end}",
        "query": search_settings.query,
        "filter": search_settings.filter,
        "dropped": dropped,
        "group": Path(group_path).stem,
        "group_searched_at": group_info.get("searched_at"),
    }
    return items, write_item_collection(items, output, info, texts)


def items_of_feature(
    found: Sequence[JsonObject], record: BboxRecord, search_settings: SearchSettings
) -> tuple[list[JsonObject], list[dict[str, str]]]:
    """Of a group's items, those a search of the feature's own bbox finds (bbox meets bbox),
    then of those the ones its cube reads: footprint meets its grid, solar day in start..end
    (`sitsflow.catalog.search.select_items`); and the dropped ones with their reason."""
    from sitsflow.catalog.search import select_items
    from sitsflow.core.bbox import grid_of
    from sitsflow.core.grid import outline_lonlat

    search_bbox = record["properties"]["search_bbox_wgs84"]
    nearby = [item for item in found if _meets(item, search_bbox)]
    return select_items(
        nearby,
        outline_lonlat(grid_of(record)),
        record["properties"]["centroid_lonlat"][0],
        search_settings.start,
        search_settings.end,
    )


def build_cube(
    bbox_path: str,
    items_path: str,
    settings: CubeSettings,
    output: str,
    loader: Loader | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    range_cache: RangeCacheSettings | None = None,
    known: FeatureItems | None = None,
) -> CubeArrays | xr.Dataset:
    """Load, mask, composite, gap-fill and write the cube (netCDF or Zarr, by `output`'s
    suffix); `loader` (a batch's, shared by its cubes) reads the files, by default a new one
    keeping what it fetches in `range_cache`, the run's disk cache. `attributes`: the
    feature's vector-file columns, recorded in the cube. `known`: what a batch job knows of
    `items_path` already (its items, its read groups), used while the file is unchanged.
    Returns the cube as written, for the stages after it in the same job
    (`cube_timeseries`)."""
    from sitsflow.outputs.write import write_cube
    from sitsflow.pixels.cube import make_cube, make_cube_arrays
    from sitsflow.pixels.read import make_loader

    items, search_info, known = current_items(items_path, known, file_stamp(items_path))
    record = read_bbox(bbox_path)
    labels = dict(attributes or {})
    # spectral indices are computed on an xarray Dataset; without them none is built
    build = make_cube if settings.indices else make_cube_arrays
    own_loader = loader is None
    loader = loader or make_loader(settings, range_cache=range_cache)
    try:
        with area_of_interest(record["properties"]["search_bbox_wgs84"]):
            cube: CubeArrays | xr.Dataset = build(
                record,
                items,
                search_info,
                settings,
                loader=loader,
                attributes=labels,
                planned=known.planned if known is not None else None,
            )
    finally:
        if own_loader:
            loader.close()
    write_cube(cube, output, settings.compression)
    log.info("wrote %s (%d time steps)", output, cube.sizes["time"])
    return cube


def render_quicklook_file(
    cube_path: str, output: str, built: CubeArrays | xr.Dataset | None = None
) -> None:
    """Draw the cube's quicklook PNG (from `built`, the cube just written there: `as_written`)."""
    from sitsflow.outputs.quicklook import render_quicklook
    from sitsflow.outputs.write import open_cube
    from sitsflow.pixels.cube_model import CubeArrays

    written = as_written(built, cube_path)
    if written is not None:
        dataset = written.to_dataset() if isinstance(written, CubeArrays) else written
        with atomic_path(output) as temporary:
            render_quicklook(dataset, temporary)
    else:
        with open_cube(cube_path) as cube, atomic_path(output) as temporary:
            render_quicklook(cube.load(), temporary)
    log.info("wrote %s from %s", output, cube_path)


def render_quicklook_files(pairs: Sequence[tuple[str, str]], workers: int) -> None:
    """`render_quicklook_file` for every (cube, PNG) pair, in `workers` processes (forked
    after matplotlib is imported, so each pays no import): the quicklooks of a run are drawn
    in one job, after the last cube, and would otherwise be drawn one after the other."""
    import sitsflow.outputs.quicklook  # noqa: F401 (imported once, before the fork)

    if workers <= 1 or len(pairs) <= 1:
        for cube, output in pairs:
            render_quicklook_file(cube, output)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(workers, len(pairs)), mp_context=context) as pool:
        for _ in pool.map(_render_pair, pairs, chunksize=max(1, len(pairs) // (4 * workers))):
            pass


def _render_pair(pair: tuple[str, str]) -> None:
    render_quicklook_file(*pair)


def refresh_quicklooks(
    pairs: Sequence[tuple[str, str]],
    kinds: Sequence[str],
    report_directory: str,
    workers: int,
    generation: int,
    state_path: str = QUICKLOOK_STATE,
) -> int:
    """Per-feature mode's `quicklooks` job: draw each (cube, PNG) pair's quicklook only when it
    is stale (missing or older than its cube), so that a run adding one feature draws that
    feature's alone; then link every quicklook into `report_directory`, under its feature's
    kind (`kinds`: Points, Polygons), for the report. The PNGs are not Snakemake outputs:
    Snakemake would remove every one before the job runs. Returns how many were drawn."""
    stale = [(cube, png) for cube, png in pairs if not is_newer(png, cube)]
    render_quicklook_files(stale, workers)
    for (_, png), kind in zip(pairs, kinds, strict=True):
        link = Path(report_directory) / kind / Path(png).name
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(png, link)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(png, link)
    atomic_write_text(state_path, json.dumps({"generation": generation}))
    log.info("%d quicklooks up to date, %d drawn", len(pairs) - len(stale), len(stale))
    return len(stale)


@dataclass(frozen=True)
class CubeTimeseries:
    """What one opening of a cube gives the time-series stages: its table (`timeseries.layout`,
    with the feature's attributes), the method that made it, and the cube's summary row."""

    table: pd.DataFrame
    method: str
    summary_row: dict[str, Any]


def cube_timeseries(
    cube_path: str, settings: TimeseriesSettings, built: CubeArrays | xr.Dataset | None = None
) -> CubeTimeseries:
    """The cube's time series and summary row (`CubeTimeseries`), opening it once; or from
    `built`, the cube `build_cube` just wrote there (see `as_written`), without reopening it."""
    from sitsflow.outputs.write import open_cube

    written = as_written(built, cube_path)
    if written is not None:
        return _series_of(written, cube_path, settings)
    with open_cube(cube_path) as cube:
        return _series_of(cube.load(), cube_path, settings)


def as_written(
    built: CubeArrays | xr.Dataset | None, cube_path: str
) -> CubeArrays | xr.Dataset | None:
    """`built`, the cube `build_cube` just wrote to `cube_path`, which reads as the file does
    (`tests/test_timeseries.py` checks their time series and quicklooks equal); None when
    there is none, or when the file is Zarr: its store lists the variables in another order."""
    from sitsflow.outputs.write import ZARR_SUFFIX

    if built is None or Path(cube_path).suffix == ZARR_SUFFIX:
        return None
    return built


def _series_of(
    cube: CubeArrays | xr.Dataset, cube_path: str, settings: TimeseriesSettings
) -> CubeTimeseries:
    from sitsflow.outputs.summary import cube_summary_row
    from sitsflow.outputs.timeseries import feature_timeseries, method_used

    return CubeTimeseries(
        feature_timeseries(cube, settings),
        method_used(cube, settings),
        cube_summary_row(cube, cube_path),
    )


def _write_csv(series: CubeTimeseries, settings: TimeseriesSettings, output: str) -> None:
    from sitsflow.outputs.timeseries import write_timeseries_csv

    with atomic_path(output) as temporary:
        write_timeseries_csv(series.table, temporary)
    log.info(
        "wrote %s: %d rows (%s layout), %s",
        output,
        len(series.table),
        settings.layout,
        series.method,
    )


def write_timeseries_file(
    cube_path: str,
    settings: TimeseriesSettings,
    output: str,
    built: CubeArrays | xr.Dataset | None = None,
) -> CubeTimeseries:
    """Write the cube's time-series CSV; returns its table (for the run-wide Parquet file,
    which keeps the attribute columns' types that a CSV loses) and the cube's summary row,
    both from this one opening of the cube (or from `built`: see `cube_timeseries`)."""
    series = cube_timeseries(cube_path, settings, built)
    _write_csv(series, settings, output)
    return series


def refresh_timeseries(
    pairs: Sequence[tuple[str, str]],
    settings: TimeseriesSettings,
    generation: int,
    state_path: str = TIMESERIES_STATE,
) -> list[pd.DataFrame]:
    """Every (cube, CSV) pair's time-series table, for the run-wide Parquet table (which keeps
    the attribute columns' types a CSV loses); a CSV is written only when it is stale: missing,
    older than its cube, or written with other `timeseries` settings. So a run that adds one
    feature rewrites that feature's CSV only. The state file records each CSV's settings and the
    job's `generation` (`side_files_generation`)."""
    fingerprint = hashlib.sha256(
        json.dumps(settings.to_params(), sort_keys=True).encode()
    ).hexdigest()[:16]
    written = _read_state(state_path).get("written", {})
    tables, rewritten = [], 0
    for cube_path, csv in pairs:
        series = cube_timeseries(cube_path, settings)
        tables.append(series.table)
        if is_newer(csv, cube_path) and written.get(csv) == fingerprint:
            continue
        _write_csv(series, settings, csv)
        written[csv] = fingerprint
        rewritten += 1
    kept = {csv for _, csv in pairs}
    state = {"generation": generation, "written": {k: v for k, v in written.items() if k in kept}}
    atomic_write_text(state_path, json.dumps(state, indent=1, sort_keys=True))
    log.info("%d time-series CSVs up to date, %d written", len(pairs) - rewritten, rewritten)
    return tables


def side_files_generation(cubes: Sequence[str], files: Sequence[str], state_path: str) -> int:
    """The generation of a run-wide job that keeps one file per cube beside it without
    declaring them (per-feature mode's `timeseries` and `quicklooks` jobs: Snakemake would
    remove every one before the job runs), a `params:` value read when the workflow is parsed:
    the one the job recorded in `state_path`, plus one when a feature's file is missing beside
    its cube (deleted by hand: only this reruns the job, which makes it again)."""
    recorded = int(_read_state(state_path).get("generation", 0))
    missing = any(
        os.path.exists(cube) and not os.path.exists(file)
        for cube, file in zip(cubes, files, strict=True)
    )
    return recorded + 1 if missing else recorded


def is_newer(path: str, source: str) -> bool:
    """Whether `path` exists and is not older than `source` (which exists)."""
    made, read = modification_time(path), modification_time(source)
    return made is not None and read is not None and made >= read


def _read_state(path: str) -> dict[str, Any]:
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def current_items(
    path: str, known: FeatureItems | None, stamp: tuple[int, int] | None
) -> tuple[list[StacItem], JsonObject, FeatureItems | None]:
    """The items and search record of the items file at `path`, whose `file_stamp` is
    `stamp`: those `known` holds while the file is unchanged, else parsed from the file; and
    `known`, None once the file changed."""
    from sitsflow.catalog.search import read_item_collection

    if known is not None and known.stamp != stamp:
        known = None
    if known is not None and known.items is not None:
        return known.items, known.info, known
    items, info = read_item_collection(path)
    return items, info, known


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """The file's modification time (ns) and size, None if it does not exist: what tells that
    a file is still the one a job wrote or read (`FeatureItems`)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


def modification_time(path: str | Path) -> float | None:
    """The file's (or directory's) modification time, None if it does not exist."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# Each per-feature stage on a batch's paths and settings (`sitsflow.core.pipeline.Stage.runner`)


def run_bbox(feature: Feature, context: BatchContext) -> None:
    make_bbox(feature, context.settings.grid, context.layout.path("bbox", feature.fid))


def run_items(feature: Feature, context: BatchContext) -> None:
    layout = context.layout
    path = layout.path("items", feature.fid)
    items, info = feature_items(
        context.group_search, layout.path("bbox", feature.fid), context.settings.search, path
    )
    stamp = file_stamp(path)
    if stamp is not None:  # for the batch's read plan, which need not parse the file again
        from sitsflow.workflow.context import FeatureItems

        context.known_items[feature.fid] = FeatureItems(stamp, items, info)


def run_cube(feature: Feature, context: BatchContext) -> None:
    layout = context.layout
    path = layout.path("cube", feature.fid)
    cube = build_cube(
        layout.path("bbox", feature.fid),
        layout.path("items", feature.fid),
        context.settings.cube,
        path,
        loader=context.shared_loader(),
        attributes=feature.labels,
        known=context.known_items.pop(feature.fid, None),
    )
    # for the quicklook and the time series, which need not read the file back
    written = as_written(cube, path)
    if written is not None:
        context.built[feature.fid] = written


def run_quicklook(feature: Feature, context: BatchContext) -> None:
    layout = context.layout
    render_quicklook_file(
        layout.path("cube", feature.fid),
        layout.path("quicklook", feature.fid),
        context.built.get(feature.fid),
    )


def run_timeseries(feature: Feature, context: BatchContext) -> None:
    layout = context.layout
    context.tables[feature.fid] = write_timeseries_file(
        layout.path("cube", feature.fid),
        context.settings.timeseries,
        layout.path("timeseries", feature.fid),
        context.built.get(feature.fid),
    )
