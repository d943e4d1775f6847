"""Small CRS helpers: UTM zone of a geometry, cached transformers, the `crs` config value."""

from __future__ import annotations

from functools import lru_cache

import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry


def utm_epsg_for(geometry: BaseGeometry) -> int:
    """EPSG code of the WGS 84 / UTM zone containing the geometry's centroid (lon/lat input)."""
    centroid = geometry.centroid
    lon, lat = centroid.x, centroid.y
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


@lru_cache(maxsize=256)
def transformer(source: CRS, target: CRS) -> Transformer:
    """An always-x/y (lon/lat order) transformer, cached because building one is slow."""
    return Transformer.from_crs(source, target, always_xy=True)


def output_epsg(crs_setting: str, geometry: BaseGeometry) -> int:
    """Resolve the `crs` config value (`utm` or `EPSG:nnnn`) for one feature's geometry."""
    if crs_setting.lower() == "utm":
        return utm_epsg_for(geometry)
    epsg = CRS.from_user_input(crs_setting).to_epsg()
    if epsg is None:
        raise ValueError(f"crs {crs_setting!r} has no EPSG code; use 'utm' or 'EPSG:nnnn'")
    return epsg


def reproject(geometry: BaseGeometry, source: int, target: int) -> BaseGeometry:
    """The geometry with its coordinates transformed from EPSG `source` to EPSG `target`."""
    forward = transformer(CRS.from_epsg(source), CRS.from_epsg(target))
    return shapely.transform(geometry, lambda x, y: forward.transform(x, y), interleaved=False)
