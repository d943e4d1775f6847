"""A feature's area of interest and output grid, as stored in `results/bbox/{fid}.geojson`."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from sitsflow.core.errors import InputError
from sitsflow.core.features import Feature, search_geometry
from sitsflow.core.grid import Grid, GridRecord, image_grid, patch_grid
from sitsflow.core.projection import output_epsg
from sitsflow.core.settings import GridSettings, Mode


class BboxProperties(TypedDict):
    """The `properties` of a bbox record."""

    feature_id: str
    feature_wkt: str
    buffer_m: float
    mode: Mode
    aoi_bbox_wgs84: list[float]
    search_bbox_wgs84: list[float]
    grid: GridRecord
    centroid_lonlat: list[float]


class BboxRecord(TypedDict):
    """`results/bbox/{id}.geojson`: a GeoJSON Feature with the area of interest (EPSG:4326)
    as geometry, the search bbox as `bbox`, and the cube grid in its properties."""

    type: Literal["Feature"]
    id: str
    bbox: list[float]
    geometry: dict[str, Any]
    properties: BboxProperties


def make_aoi_record(feature: Feature, settings: GridSettings) -> BboxRecord:
    """GeoJSON Feature: the buffered geometry (EPSG:4326), its bbox, and the cube's grid."""
    aoi = search_geometry(feature, settings.buffer_m)
    epsg = output_epsg(settings.crs, feature.geometry)
    if settings.mode == "image":
        grid = image_grid(aoi, epsg, settings.resolution)
    else:
        if settings.patch_size is None:
            raise InputError("mode 'patch' needs patch_size: [nx, ny]", key="patch_size")
        grid = patch_grid(feature.geometry, epsg, settings.resolution, settings.patch_size)
    if grid.n_pixels > settings.max_pixels:
        raise InputError(
            f"the cube grid would be {grid.width} x {grid.height} = {grid.n_pixels} pixels per "
            f"band and date, above max_pixels = {settings.max_pixels}; reduce buffer_m / "
            "patch_size, coarsen resolution, or raise max_pixels",
            key="max_pixels",
            fid=feature.fid,
        )
    search_bbox = [round(v, 7) for v in grid.bounds_lonlat()]
    return {
        "type": "Feature",
        "id": feature.fid,
        "bbox": search_bbox,
        "geometry": mapping(aoi),
        "properties": {
            "feature_id": feature.fid,
            "feature_wkt": feature.wkt,
            "buffer_m": settings.buffer_m,
            "mode": settings.mode,
            "aoi_bbox_wgs84": [round(v, 7) for v in aoi.bounds],
            "search_bbox_wgs84": search_bbox,
            "grid": grid.to_dict(),
            "centroid_lonlat": [
                round(feature.geometry.centroid.x, 7),
                round(feature.geometry.centroid.y, 7),
            ],
        },
    }


def grid_of(record: BboxRecord) -> Grid:
    return Grid.from_dict(record["properties"]["grid"])


def geometry_of(record: BboxRecord) -> BaseGeometry:
    return shape(record["geometry"])
