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

    record = make_aoi_record(feature, grid)
    log.info("grid %s", record["properties"]["grid"])
    atomic_write_text(output, json.dumps(record, indent=1))


def search_items(bbox_path: str, search_settings: SearchSettings, output: str) -> None:
    """Search the catalog for the bbox record's grid extent; write the ItemCollection."""
    from sitsflow.catalog.search import search, write_item_collection

    bbox = read_bbox(bbox_path)["properties"]["search_bbox_wgs84"]
    items = search(
        search_settings.catalog,
        collection=search_settings.collection,
        bbox=bbox,
        start=search_settings.start,
        end=search_settings.end,
        query=search_settings.query,
        filter=search_settings.filter,
    )
    log.info("%d items in %s for bbox %s", len(items), search_settings.collection, bbox)
    info = {
        "catalog": search_settings.catalog,
        "collection": search_settings.collection,
        "bbox": bbox,
        "datetime": f"{search_settings.start}/{search_settings.end}",
        "query": search_settings.query,
        "filter": search_settings.filter,
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
    from sitsflow.outputs.timeseries import (
        feature_timeseries,
        is_point_feature,
        write_timeseries_csv,
    )
    from sitsflow.outputs.write import open_cube

    method = settings.method
    with open_cube(cube_path) as cube:
        table = feature_timeseries(cube.load(), method)
        used = method if is_point_feature(cube) else "median (polygon window)"
    with atomic_path(output) as temporary:
        write_timeseries_csv(table, temporary)
    log.info("wrote %s: %d rows, method %s", output, len(table), used)
