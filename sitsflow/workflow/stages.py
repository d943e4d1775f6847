"""The per-feature stages as functions of input paths, settings and an output path.

The per-feature rule scripts (`scripts/bbox.py` ...) and batch mode (`sitsflow.workflow.batch`)
both call these, so a feature's files are made by the same code whichever way the workflow runs.
Heavy imports stay inside the functions: a batch imports only what its stages need.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

from sitsflow.atomic import atomic_path, atomic_write_text
from sitsflow.workflow.features import Feature
from sitsflow.workflow.settings import (
    CubeSettings,
    GridSettings,
    SearchSettings,
    TimeseriesSettings,
)

if TYPE_CHECKING:
    from sitsflow.workflow.aoi import BboxRecord

log = logging.getLogger(__name__)


def read_bbox(path: str | Path) -> BboxRecord:
    """A bbox record written by `make_bbox`."""
    return cast("BboxRecord", json.loads(Path(path).read_text()))


def make_bbox(feature: Feature, grid: GridSettings, output: str) -> None:
    """Write the feature's area of interest and cube grid."""
    from sitsflow.workflow.aoi import make_aoi_record
    from sitsflow.workflow.features import area_of_use_warning, outside_area_of_use

    if outside_area_of_use([feature], grid.crs):
        log.warning("%s", area_of_use_warning([feature.fid], grid.crs))
    record = make_aoi_record(feature, grid)
    log.info("grid %s", record["properties"]["grid"])
    atomic_write_text(output, json.dumps(record, indent=1))


def search_items(bbox_path: str, search_settings: SearchSettings, output: str) -> None:
    """Search the catalog for the bbox record's grid extent; write the ItemCollection of the
    items whose footprint meets the grid and whose solar day is in start..end, recording the
    others (`sitsflow.catalog.search.select_items`)."""
    from sitsflow.catalog.search import (
        search,
        search_dates,
        select_items,
        write_item_collection,
    )
    from sitsflow.workflow.aoi import grid_of
    from sitsflow.workflow.grid import outline_lonlat

    record = read_bbox(bbox_path)
    bbox = record["properties"]["search_bbox_wgs84"]
    first, last = search_dates(search_settings.start, search_settings.end)
    found = search(
        search_settings.catalog,
        collection=search_settings.collection,
        bbox=bbox,
        start=first,
        end=last,
        query=search_settings.query,
        filter=search_settings.filter,
    )
    longitude = record["properties"]["centroid_lonlat"][0]
    window = outline_lonlat(grid_of(record))
    items, dropped = select_items(
        found, window, longitude, search_settings.start, search_settings.end
    )
    log.info(
        "%d items in %s for bbox %s (%s..%s UTC); %d kept",
        len(found),
        search_settings.collection,
        bbox,
        first,
        last,
        len(items),
    )
    for entry in dropped:
        log.info("dropped item %s: %s", entry["id"], entry["reason"])
    info = {
        "catalog": search_settings.catalog,
        "collection": search_settings.collection,
        "bbox": bbox,
        "datetime": f"{search_settings.start}/{search_settings.end}",
        "query": search_settings.query,
        "filter": search_settings.filter,
        "dropped": dropped,
    }
    write_item_collection(items, output, info)


def build_cube(bbox_path: str, items_path: str, settings: CubeSettings, output: str) -> None:
    """Load, mask, gap-fill and write the cube (netCDF or Zarr, by `output`'s suffix)."""
    from sitsflow.catalog.search import read_item_collection
    from sitsflow.outputs.write import write_cube
    from sitsflow.pixels.cube import make_cube

    items, search_info = read_item_collection(items_path)
    cube = make_cube(read_bbox(bbox_path), items, search_info, settings)
    write_cube(cube, output)
    log.info("wrote %s (%d time steps)", output, cube.sizes["time"])


def render_quicklook_file(cube_path: str, output: str) -> None:
    """Draw the cube's quicklook PNG."""
    from sitsflow.outputs.quicklook import render_quicklook
    from sitsflow.outputs.write import open_cube

    with open_cube(cube_path) as cube, atomic_path(output) as temporary:
        render_quicklook(cube.load(), temporary)
    log.info("wrote %s from %s (%d time steps)", output, cube_path, cube.sizes["time"])


def write_timeseries_file(cube_path: str, settings: TimeseriesSettings, output: str) -> None:
    """Write the cube's long-format time-series CSV."""
    from sitsflow.outputs.timeseries import feature_timeseries, method_used, write_timeseries_csv
    from sitsflow.outputs.write import open_cube

    with open_cube(cube_path) as cube:
        loaded = cube.load()
        table = feature_timeseries(loaded, settings)
        used = method_used(loaded, settings)
    with atomic_path(output) as temporary:
        write_timeseries_csv(table, temporary)
    log.info("wrote %s: %d rows, %s", output, len(table), used)
