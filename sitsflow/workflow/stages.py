"""The per-feature stages as functions of input paths, settings and an output path.

The per-feature rule scripts (`scripts/bbox.py` ...) and batch mode (`sitsflow.workflow.batch`)
both call these, so a feature's files are made by the same code whichever way the workflow runs.
Heavy imports stay inside the functions: a batch imports only what its stages need.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sitsflow.atomic import atomic_path, atomic_write_text
from sitsflow.workflow.features import Feature

log = logging.getLogger(__name__)


def make_bbox(feature: Feature, grid: Mapping[str, Any], output: str) -> None:
    """Write the feature's area of interest and cube grid (`grid`: the grid config keys)."""
    from sitsflow.workflow.aoi import make_aoi_record

    record = make_aoi_record(
        feature,
        buffer_m=grid["buffer_m"],
        crs=grid["crs"],
        resolution=grid["resolution"],
        mode=grid["mode"],
        patch_size=grid["patch_size"],
        max_pixels=grid["max_pixels"],
    )
    log.info("grid %s", record["properties"]["grid"])
    atomic_write_text(output, json.dumps(record, indent=1))


def search_items(bbox_path: str, options: Mapping[str, Any], output: str) -> None:
    """Search the catalog for the bbox record's grid extent; write the ItemCollection."""
    from sitsflow.catalog.search import search, write_item_collection

    record = json.loads(Path(bbox_path).read_text())
    bbox = record["properties"]["search_bbox_wgs84"]
    items = search(
        options["catalog"],
        collection=options["collection"],
        bbox=bbox,
        start=options["start"],
        end=options["end"],
        query=options["query"],
        filter=options["filter"],
    )
    log.info("%d items in %s for bbox %s", len(items), options["collection"], bbox)
    info = {
        "catalog": options["catalog"],
        "collection": options["collection"],
        "bbox": bbox,
        "datetime": f"{options['start']}/{options['end']}",
        "query": options["query"],
        "filter": options["filter"],
    }
    write_item_collection(items, output, info)


def build_cube(
    bbox_path: str, items_path: str, cube_params: Mapping[str, Any], output: str
) -> None:
    """Load, mask, gap-fill and write the cube (netCDF or Zarr, by `output`'s suffix)."""
    from sitsflow.catalog.search import read_item_collection
    from sitsflow.outputs.write import write_cube
    from sitsflow.pixels.cube import CubeSettings, make_cube

    record = json.loads(Path(bbox_path).read_text())
    items, search_info = read_item_collection(items_path)
    cube = make_cube(record, items, search_info, CubeSettings.from_config(dict(cube_params)))
    write_cube(cube, output)
    log.info("wrote %s (%d time steps)", output, cube.sizes["time"])


def render_quicklook_file(cube_path: str, output: str) -> None:
    """Draw the cube's quicklook PNG."""
    from sitsflow.outputs.quicklook import render_quicklook
    from sitsflow.outputs.write import open_cube

    with open_cube(cube_path) as cube, atomic_path(output) as temporary:
        render_quicklook(cube.load(), temporary)
    log.info("wrote %s from %s (%d time steps)", output, cube_path, cube.sizes["time"])


def write_timeseries_file(cube_path: str, method: str, output: str) -> None:
    """Write the cube's long-format time-series CSV (`method`: pixel or median)."""
    from sitsflow.outputs.timeseries import (
        feature_timeseries,
        is_point_feature,
        write_timeseries_csv,
    )
    from sitsflow.outputs.write import open_cube

    with open_cube(cube_path) as cube:
        table = feature_timeseries(cube.load(), method)
        used = method if is_point_feature(cube) else "median (polygon window)"
    with atomic_path(output) as temporary:
        write_timeseries_csv(table, temporary)
    log.info("wrote %s: %d rows, method %s", output, len(table), used)
