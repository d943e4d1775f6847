"""A feature's area of interest and output grid, as stored in `results/bbox/{fid}.geojson`."""

from __future__ import annotations

from shapely.geometry import mapping, shape

from sitsflow.errors import InputError
from sitsflow.projection import output_epsg
from sitsflow.workflow.features import Feature, search_geometry
from sitsflow.workflow.grid import Grid, image_grid, patch_grid


def make_aoi_record(
    feature: Feature,
    *,
    buffer_m: float,
    crs: str,
    resolution: float,
    mode: str,
    patch_size: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> dict:
    """GeoJSON Feature: the buffered geometry (EPSG:4326), its bbox, and the cube's grid."""
    aoi = search_geometry(feature, buffer_m)
    epsg = output_epsg(crs, feature.geometry)
    if mode == "image":
        grid = image_grid(aoi, epsg, resolution)
    elif mode == "patch":
        if not patch_size:
            raise InputError("mode 'patch' needs patch_size: [nx, ny]", key="patch_size")
        grid = patch_grid(feature.geometry, epsg, resolution, tuple(patch_size))
    else:
        raise InputError(f"mode {mode!r} must be 'image' or 'patch'", key="mode")
    if max_pixels is not None and grid.n_pixels > max_pixels:
        raise InputError(
            f"the cube grid would be {grid.width} x {grid.height} = {grid.n_pixels} pixels per "
            f"band and date, above max_pixels = {max_pixels}; reduce buffer_m / patch_size, "
            "coarsen resolution, or raise max_pixels",
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
            "buffer_m": buffer_m,
            "mode": mode,
            "aoi_bbox_wgs84": [round(v, 7) for v in aoi.bounds],
            "search_bbox_wgs84": search_bbox,
            "grid": grid.to_dict(),
            "centroid_lonlat": [
                round(feature.geometry.centroid.x, 7),
                round(feature.geometry.centroid.y, 7),
            ],
        },
    }


def grid_of(record: dict) -> Grid:
    return Grid.from_dict(record["properties"]["grid"])


def geometry_of(record: dict):
    return shape(record["geometry"])
