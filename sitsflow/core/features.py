"""Read the user's vector file into validated features with safe ids and search geometries.

A *feature* is one row of the vector file: it gets one cube. Its id becomes a file name
(`results/cubes/{id}.nc`), so ids are checked here, once, when the workflow is parsed and before
anything is written. Ids that are not safe file names are rejected with the list of offending
ids (never renamed: an id that silently became another name would not match the user's table).

Geometries: points and lines are buffered by `buffer_m`, polygons used as they are; a file may
mix them. Empty, null, invalid (self-intersecting) geometries, geometry collections and
geometries across the antimeridian are rejected, each with the feature ids.

Attributes: the columns named in config `attributes` (a class label, a field id) travel with
each feature into its cube's attributes, the time-series tables and the dataset's feature
coordinates, so that a training table has each sample's label next to its values. Their values
are kept as JSON scalars (text, integers, floats, booleans; missing values as null; dates as
ISO text).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from shapely import wkt as shapely_wkt
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from sitsflow.core.errors import InputError
from sitsflow.core.projection import reproject, utm_epsg_for

if TYPE_CHECKING:
    import geopandas as gpd

# geopandas and pandas are imported where a vector file is read: the per-feature jobs use
# `Feature` and `search_geometry` only, and importing them costs each job about 0.4 s of CPU.

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CSV_COORDINATE_COLUMNS = (("lon", "lat"), ("longitude", "latitude"), ("x", "y"))
BUFFERED_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString")
AREA_TYPES = ("Polygon", "MultiPolygon")
SHAPELY_TYPE_IDS = {BUFFERED_TYPES: [0, 4, 1, 5], AREA_TYPES: [3, 6]}  # shapely.get_type_id
# A feature whose longitudes span more than this crosses the antimeridian (or is absurd).
MAX_LONGITUDE_SPAN = 180.0
LISTED = 10  # offending ids / rows listed in a message
SHOWN_ID_LENGTH = 40


# A JSON scalar: the value an attribute column has for one feature.
AttributeValue: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True)
class Feature:
    """One feature: its id, geometry in EPSG:4326 (longitude, latitude), and the values of the
    vector file's `attributes` columns, as (column, value) pairs in config order (pairs keep
    the feature hashable)."""

    fid: str
    geometry: BaseGeometry
    attributes: tuple[tuple[str, AttributeValue], ...] = ()

    @property
    def labels(self) -> dict[str, AttributeValue]:
        """The attributes as a dict (column -> value), what cubes and tables record."""
        return dict(self.attributes)

    @cached_property
    def wkt(self) -> str:
        """Geometry as WKT rounded to ~1 mm, stable across reads (used as a rerun trigger;
        kept, as a batch's params ask for every member's twice per parse)."""
        text: str = shapely_wkt.dumps(self.geometry, rounding_precision=8)
        return text


def read_vector(path: str | Path) -> gpd.GeoDataFrame:
    """Read GeoJSON, GeoPackage, Shapefile (anything GDAL reads) or a CSV with lon/lat columns."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"vector file not found: {path} (relative paths start in the working directory); "
            "fix the path",
            key="vector",
        )
    if path.suffix.lower() == ".csv":
        return _read_csv_points(path)
    import geopandas as gpd

    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # GDAL raises several types for unreadable files
        raise InputError(
            f"cannot read vector file {path}: {exc}; is it a valid GeoJSON, GeoPackage, "
            "Shapefile or CSV? Open it in QGIS/ogrinfo to check",
            key="vector",
        ) from exc
    if frame.crs is None:
        raise InputError(
            f"vector file {path} has no CRS; set one (e.g. EPSG:4326) before using it",
            key="vector",
        )
    return frame


def _read_csv_points(path: Path) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read CSV {path}: {exc}", key="vector") from exc
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


def load_features(
    path: str | Path, id_column: str = "id", attributes: Sequence[str] = ()
) -> list[Feature]:
    """Read and validate the vector file; return features in file order, each with the values
    of its `attributes` columns.

    Fails with one message listing every offending feature rather than stopping at the first.
    """
    frame = read_vector(path)
    if frame.empty:
        raise InputError(
            f"vector file {path} has no features; point `vector` at a file with at least one",
            key="vector",
        )
    if id_column not in frame.columns:
        columns = [c for c in frame.columns if c != frame.geometry.name]
        raise InputError(
            f"column {id_column!r} not found in {path}; available columns: {columns}. Set "
            "`id_column` to the column holding the feature ids",
            key="id_column",
        )
    absent = [column for column in attributes if column not in frame.columns]
    if absent:
        columns = [c for c in frame.columns if c != frame.geometry.name]
        raise InputError(
            f"attribute column(s) {absent} not found in {path}; available columns: {columns}",
            key="attributes",
        )
    frame = frame.to_crs("EPSG:4326")
    ids = _check_ids([_id_to_str(value) for value in frame[id_column]], id_column)
    columns = [list(frame[column]) for column in attributes]
    values = [tuple(row) for row in zip(*columns, strict=True)] if columns else [()] * len(ids)
    features = [
        Feature(fid, geom, tuple(zip(attributes, map(attribute_value, row), strict=True)))
        for fid, geom, row in zip(ids, frame.geometry, values, strict=True)
    ]
    _check_geometries(features)
    return features


def attribute_value(value: object) -> AttributeValue:
    """An attribute cell as a JSON scalar: numpy numbers as Python numbers, missing values
    (None, NaN, NaT, pd.NA) as None, dates and times as ISO 8601 text, anything else as text."""
    import datetime as dt

    import numpy as np
    import pandas as pd  # already imported by read_vector

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    return str(value)


def _id_to_str(value: object) -> str | None:
    """The id as text (`7.0` -> `7`); None for a missing or blank value."""
    import pandas as pd  # already imported by read_vector

    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text.strip() else None


def _listing(values: Sequence[object], total: int | None = None) -> str:
    """The first LISTED values, long ones shortened, plus how many more there are."""
    shown = [
        f"{v[:SHOWN_ID_LENGTH]!r}... ({len(v)} characters)"
        if isinstance(v, str) and len(v) > SHOWN_ID_LENGTH
        else repr(v)
        for v in values[:LISTED]
    ]
    more = (total if total is not None else len(values)) - len(shown)
    return "[" + ", ".join(shown) + (f", and {more} more" if more > 0 else "") + "]"


def _check_ids(values: Sequence[str | None], id_column: str) -> list[str]:
    """Reject missing, unsafe (as file names) and duplicate ids, listing the offenders.

    Returns the ids, every one of them now a str.
    """
    missing = [row for row, fid in enumerate(values) if fid is None]
    if missing:
        raise InputError(
            f"{len(missing)} feature(s) have no {id_column!r} value (rows, from 0: "
            f"{_listing(missing)}); give every feature an id",
            key="id_column",
        )
    ids = [fid for fid in values if fid is not None]  # all of them
    unsafe = [fid for fid in ids if not SAFE_ID.match(fid)]
    if unsafe:
        raise InputError(
            f"{len(unsafe)} feature id(s) unusable as file names: {_listing(unsafe)}; ids "
            "become file names (results/cubes/{id}.nc), so use ASCII letters, digits, '.', '_' "
            "and '-' only, at most 128 characters, not starting with '.' or '-'. Fix them in "
            "the vector file, or point `id_column` at a column of safe ids",
            key="id_column",
        )
    counts = Counter(ids)
    duplicates = sorted(fid for fid, count in counts.items() if count > 1)
    if duplicates:
        raise InputError(
            f"duplicate feature ids in column {id_column!r}: {_listing(duplicates)}; ids must "
            "be unique (each feature gets its own cube)",
            key="id_column",
        )
    return ids


def _check_geometries(features: list[Feature]) -> None:
    """Reject unusable geometries, with one line per offending feature (at most LISTED)."""
    problems = [
        f"feature {features[index].fid!r}: {problem}"
        for index in _suspect_geometries([feature.geometry for feature in features])
        if (problem := geometry_problem(features[index].geometry))
    ]
    if problems:
        shown = problems[:LISTED]
        if len(problems) > LISTED:
            shown.append(f"and {len(problems) - LISTED} more")
        raise InputError(
            f"{len(problems)} feature(s) with unusable geometries (fix or remove them in the "
            "vector file):\n  " + "\n  ".join(shown),
            key="vector",
        )


def _suspect_geometries(geometries: list[BaseGeometry | None]) -> list[int]:
    """Indices of the geometries that may have a `geometry_problem`: the checks of that
    function done on all of them at once (shapely's array functions; 100 000 features in
    0.1 s instead of 1 s), so that only these need the one-by-one check and its message."""
    import numpy as np
    import shapely

    array = np.array(geometries, dtype=object)
    missing = np.array([geom is None for geom in geometries], dtype=bool)
    array[missing] = shapely.Point()
    types = np.array(shapely.get_type_id(array))
    supported = np.isin(types, SHAPELY_TYPE_IDS[BUFFERED_TYPES] + SHAPELY_TYPE_IDS[AREA_TYPES])
    bounds = np.array(shapely.bounds(array))
    with np.errstate(invalid="ignore"):
        inside = (
            np.isfinite(bounds).all(axis=1)
            & (bounds[:, 0] >= -180) & (bounds[:, 2] <= 180)
            & (bounds[:, 1] >= -90) & (bounds[:, 3] <= 90)
            & (bounds[:, 0] <= bounds[:, 2]) & (bounds[:, 1] <= bounds[:, 3])
            & (bounds[:, 2] - bounds[:, 0] <= MAX_LONGITUDE_SPAN)
        )  # fmt: skip
    areas = np.isin(types, SHAPELY_TYPE_IDS[AREA_TYPES])
    valid = np.ones(len(geometries), dtype=bool)
    valid[areas] = shapely.is_valid(array[areas])
    usable = ~missing & ~shapely.is_empty(array) & supported & inside & valid
    return [int(index) for index in np.flatnonzero(~usable)]


def geometry_problem(geom: BaseGeometry | None) -> str | None:
    """What is wrong with a feature's geometry (EPSG:4326), or None if it is usable."""
    if geom is None or geom.is_empty:
        return "empty or missing geometry"
    if geom.geom_type not in BUFFERED_TYPES + AREA_TYPES:
        return (
            f"geometry type {geom.geom_type} is not supported; use points, lines or polygons "
            "(split collections into separate features)"
        )
    minx, miny, maxx, maxy = geom.bounds
    if not all(math.isfinite(v) for v in geom.bounds):
        return "coordinates are not finite numbers"
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        return (
            f"coordinates {tuple(round(v, 6) for v in geom.bounds)} outside longitude/latitude "
            "range ([-180, 180], [-90, 90]): lat/lon swapped, a wrong CRS in the file, or "
            "longitudes beyond 180 (the antimeridian is not supported)"
        )
    if maxx - minx > MAX_LONGITUDE_SPAN:
        return crosses_antimeridian(geom.bounds)
    if geom.geom_type in AREA_TYPES and not geom.is_valid:
        return (
            f"invalid geometry ({explain_validity(geom)}); repair it, e.g. QGIS 'Fix "
            "geometries' or shapely.make_valid"
        )
    return None


def crosses_antimeridian(bounds: tuple[float, float, float, float]) -> str:
    """The message for a geometry that spans the antimeridian (more than 180 deg of longitude)."""
    return (
        f"spans {bounds[2] - bounds[0]:.1f} degrees of longitude ({bounds[0]:.4f} to "
        f"{bounds[2]:.4f}): it crosses the antimeridian (180 deg), which sitsflow does not "
        "support; split it into one feature on each side of 180 deg"
    )


def search_geometry(feature: Feature, buffer_m: float) -> BaseGeometry:
    """Area of interest in EPSG:4326: points and lines buffered by `buffer_m` metres, polygons
    as they are.

    The buffer is computed in the feature's own UTM zone so that 1000 m is 1000 m at any
    latitude (a buffer in degrees is ~2x too narrow east-west at 60 deg N). A buffer that
    reaches across the antimeridian is refused (InputError naming the feature and `buffer_m`).
    """
    geom = feature.geometry
    if geom.geom_type not in BUFFERED_TYPES:
        return geom
    utm = utm_epsg_for(geom)
    buffered = reproject(reproject(geom, 4326, utm).buffer(buffer_m, quad_segs=16), utm, 4326)
    if buffered.bounds[2] - buffered.bounds[0] > MAX_LONGITUDE_SPAN:
        raise InputError(
            f"the {buffer_m} m buffer around it {crosses_antimeridian(buffered.bounds)}, or "
            "reduce buffer_m",
            key="buffer_m",
            fid=feature.fid,
        )
    return buffered


def outside_area_of_use(features: Iterable[Feature], crs: str) -> list[str]:
    """Ids of the features whose centroid lies outside the area of use of the output `crs`
    (EPSG:3035 is for Europe: a feature in Africa gets a distorted, rotated grid); none for
    `utm`, which is each feature's own zone."""
    if crs.lower() == "utm":
        return []
    from pyproj import CRS
    from shapely.geometry import box

    area = CRS.from_user_input(crs).area_of_use
    if area is None:
        return []
    extent = box(area.west, area.south, area.east, area.north)
    return [feature.fid for feature in features if not extent.covers(feature.geometry.centroid)]


def area_of_use_warning(fids: Sequence[str], crs: str) -> str:
    """What to tell the user about `outside_area_of_use`'s features."""
    from pyproj import CRS

    area = CRS.from_user_input(crs).area_of_use
    where = f" ({area.name})" if area is not None else ""
    return (
        f"{len(fids)} feature(s) lie outside the area of use of crs {crs}{where}: "
        f"{_listing(list(fids))}; their grids are distorted there. Set `crs: utm` (each "
        "feature in its own UTM zone) or a CRS made for where they are"
    )
