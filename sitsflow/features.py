"""Read the user's vector file into validated features with safe ids and search geometries.

A *feature* is one row of the vector file: it gets one cube. Its id becomes a file name
(`results/cubes/{id}.nc`), so ids are checked here, once, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd
from shapely import wkt as shapely_wkt
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from sitsflow.errors import InputError
from sitsflow.projection import reproject, utm_epsg_for

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CSV_COORDINATE_COLUMNS = (("lon", "lat"), ("longitude", "latitude"), ("x", "y"))


@dataclass(frozen=True)
class Feature:
    """One feature: its id and geometry in EPSG:4326 (longitude, latitude)."""

    fid: str
    geometry: BaseGeometry

    @property
    def wkt(self) -> str:
        """Geometry as WKT rounded to ~1 mm, stable across reads (used as a rerun trigger)."""
        return shapely_wkt.dumps(self.geometry, rounding_precision=8)


def read_vector(path: str | Path) -> gpd.GeoDataFrame:
    """Read GeoJSON, GeoPackage, Shapefile (anything GDAL reads) or a CSV with lon/lat columns."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"vector file not found: {path}", key="vector")
    if path.suffix.lower() == ".csv":
        return _read_csv_points(path)
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # GDAL raises several types for unreadable files
        raise InputError(f"cannot read vector file {path}: {exc}", key="vector") from exc
    if frame.crs is None:
        raise InputError(
            f"vector file {path} has no CRS; set one (e.g. EPSG:4326) before using it",
            key="vector",
        )
    return frame


def _read_csv_points(path: Path) -> gpd.GeoDataFrame:
    table = pd.read_csv(path)
    lower = {c.lower(): c for c in table.columns}
    for lon_name, lat_name in CSV_COORDINATE_COLUMNS:
        if lon_name in lower and lat_name in lower:
            lon, lat = table[lower[lon_name]], table[lower[lat_name]]
            geometry = [Point(xy) for xy in zip(lon, lat, strict=True)]
            return gpd.GeoDataFrame(table, geometry=geometry, crs="EPSG:4326")
    raise InputError(
        f"CSV {path} needs longitude/latitude columns named lon/lat, longitude/latitude or x/y; "
        f"found {list(table.columns)}",
        key="vector",
    )


def load_features(path: str | Path, id_column: str = "id") -> list[Feature]:
    """Read and validate the vector file; return features in file order.

    Fails with one message listing every offending feature rather than stopping at the first.
    """
    frame = read_vector(path)
    if id_column not in frame.columns:
        columns = [c for c in frame.columns if c != frame.geometry.name]
        raise InputError(
            f"column {id_column!r} not found in {path}; available columns: {columns}",
            key="id_column",
        )
    if frame.empty:
        raise InputError(f"vector file {path} has no features", key="vector")
    frame = frame.to_crs("EPSG:4326")
    ids = [_id_to_str(value) for value in frame[id_column]]
    _check_ids(ids, id_column)
    features = [Feature(fid, geom) for fid, geom in zip(ids, frame.geometry, strict=True)]
    _check_geometries(features)
    return features


def _id_to_str(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_ids(ids: list[str | None], id_column: str) -> None:
    missing = [row for row, fid in enumerate(ids) if fid is None]
    if missing:
        raise InputError(
            f"{len(missing)} feature(s) have no {id_column!r} value (rows {missing[:10]}); "
            "give every feature an id",
            key="id_column",
        )
    unsafe = [fid for fid in ids if not SAFE_ID.match(fid)]
    if unsafe:
        raise InputError(
            f"feature ids unusable as file names: {unsafe[:10]}; use letters, digits, '.', '_' "
            "and '-' only (at most 128 characters, not starting with '.' or '-')",
            key="id_column",
        )
    seen: set[str] = set()
    duplicates = sorted({fid for fid in ids if fid in seen or seen.add(fid)})
    if duplicates:
        raise InputError(
            f"duplicate feature ids in column {id_column!r}: {duplicates[:10]}; ids must be unique",
            key="id_column",
        )


def _check_geometries(features: list[Feature]) -> None:
    problems = []
    for feature in features:
        geom = feature.geometry
        if geom is None or geom.is_empty:
            problems.append(f"{feature.fid}: empty or missing geometry")
            continue
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            problems.append(
                f"{feature.fid}: coordinates {geom.bounds} outside longitude/latitude range "
                "(swapped lat/lon, or a wrong CRS in the file?)"
            )
        elif geom.geom_type not in ("Point", "MultiPoint") and not geom.is_valid:
            problems.append(f"{feature.fid}: invalid geometry (self-intersecting?)")
    if problems:
        raise InputError("bad geometries:\n  " + "\n  ".join(problems), key="vector")


def search_geometry(feature: Feature, buffer_m: float) -> BaseGeometry:
    """Area of interest in EPSG:4326: points buffered by `buffer_m` metres, polygons as they are.

    The buffer is computed in the feature's own UTM zone so that 1000 m is 1000 m at any
    latitude (a buffer in degrees is ~2x too narrow east-west at 60 deg N).
    """
    geom = feature.geometry
    if geom.geom_type not in ("Point", "MultiPoint"):
        return geom
    utm = utm_epsg_for(geom)
    buffered = reproject(geom, 4326, utm).buffer(buffer_m, quad_segs=16)
    return reproject(buffered, utm, 4326)
