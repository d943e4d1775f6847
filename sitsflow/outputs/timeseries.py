"""Per-feature time series, read from the feature's cube, in long or wide format.

Long (`timeseries.layout: long`, default), one row per (time step, variable):
`id, <attributes>, time, band, value, observed, n_pixels`. Wide (`layout: wide`), one row per
time step with a column per variable, the shape scikit-learn and most sample tables take:
`id, <attributes>, time, <bands and indices>, observed, n_pixels`.

* `band` is a reflectance band (`B04`) or a spectral index of the cube (`NDVI`).
* Point features, `timeseries.method: pixel` (default): `value` is the cube pixel whose area
  contains the point, `observed` 1 where that pixel was observed and 0 where it was gap-filled.
* Point (and line) features with method `median`: `value` is the median over the whole cube
  window (the buffered point's) and `observed` the share (0..1) of its pixels observed.
* Polygon features: `value` is the median (`timeseries.polygon_method: median`, default) or
  mean (`mean`) over the pixels inside the polygon (the cube's `inside` variable: centre inside,
  or touched with `timeseries.all_touched`), `observed` the share of those pixels observed, as R
  `sits`, openEO's `aggregate_spatial` and Earth Engine's `reduceRegion` summarise a parcel.
* `observed` is a share of pixels on either time axis: on a regular axis (`time_step`) the
  cube's `observed` counts the observations of each composite, and a pixel counts as observed
  when that count is at least 1.
* `n_pixels`: how many pixels had a value for that band and date (0: the value is NaN); in the
  wide layout the smallest of the row's variables.
* `<attributes>`: the vector file's `attributes` columns, from the cube's `feature_attributes`,
  the same on every row of a feature (the sample's label next to its values).

`time` is the acquisition time (UTC) of each time step, or the start of each interval on a
regular axis, as in the cube. The Parquet table is put together from the per-feature tables
computed from the cubes (not reread from the CSVs), so attribute columns keep the vector
file's types there.
"""

from __future__ import annotations

import json
import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd
from shapely import wkt

from sitsflow.core.projection import reproject
from sitsflow.core.settings import TimeseriesSettings
from sitsflow.pixels.cube_model import CubeArrays, cube_crs, cube_transform

if TYPE_CHECKING:  # xarray: imported where a cube is opened (a batch job never opens one)
    import xarray as xr

# A feature's cube: read from its file, or the arrays a batch just wrote there (which read as
# the file does, `sitsflow.pixels.cube_model.CubeVariable`)
Cube: TypeAlias = "xr.Dataset | CubeArrays"

COLUMNS = ["id", "time", "band", "value", "observed", "n_pixels"]
LAYOUTS = ("long", "wide")
METHODS = ("pixel", "median")
POLYGON_METHODS = ("median", "mean")
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
POINT_TYPES = ("Point",)
AREA_TYPES = ("Polygon", "MultiPolygon")


def value_variables(cube: Cube) -> list[str]:
    """The cube's float (time, y, x) variables: reflectance bands, then spectral indices."""
    return [
        str(name)
        for name, variable in cube.data_vars.items()
        if variable.dims == ("time", "y", "x") and np.issubdtype(variable.dtype, np.floating)
    ]


def is_point_feature(cube: Cube) -> bool:
    return wkt.loads(cube.attrs["geometry_wkt"]).geom_type in POINT_TYPES


def pixel_under_point(cube: Cube) -> tuple[int, int]:
    """(row, col) of the cube pixel whose area contains the feature's point."""
    crs, transform = cube_crs(cube), cube_transform(cube)
    if not isinstance(cube, CubeArrays) and (crs is None or transform is None):
        # a grid mapping sitsflow did not write: rioxarray reads it
        import rioxarray  # noqa: F401 (registers the .rio accessor)

        crs, transform = cube.rio.crs, cube.rio.transform()
    if crs is None or transform is None:
        raise ValueError(f"feature {cube.attrs.get('feature_id')!r}: its cube has no grid")
    point = reproject(wkt.loads(cube.attrs["geometry_wkt"]), 4326, crs.to_epsg())
    col, row = ~transform @ (point.x, point.y)
    row, col = int(np.floor(row)), int(np.floor(col))
    if not (0 <= row < cube.sizes["y"] and 0 <= col < cube.sizes["x"]):
        raise ValueError(
            f"feature {cube.attrs.get('feature_id')!r}: its point falls outside the cube grid "
            f"(row {row}, col {col} of {cube.sizes['y']} x {cube.sizes['x']})"
        )
    return row, col


def is_polygon_feature(cube: Cube) -> bool:
    return wkt.loads(cube.attrs["geometry_wkt"]).geom_type in AREA_TYPES


def statistics_pixels(cube: Cube) -> np.ndarray:
    """(y, x) True for the pixels a feature's window statistics use: the cube's `inside`
    variable (a polygon's pixels), every pixel for cubes written without it."""
    if "inside" not in cube:
        return np.ones((cube.sizes["y"], cube.sizes["x"]), dtype=bool)
    inside = cube["inside"]
    if "time" in inside.dims:  # cubes concatenated along time (xr.concat) repeat it
        inside = inside.isel(time=0)
    return np.asarray(inside.transpose("y", "x").values, dtype=bool)


def window_values(cube: Cube, name: str, pixels: np.ndarray | None = None) -> np.ndarray:
    """(time, n) values of variable `name` at the `pixels` (default: `statistics_pixels`)."""
    chosen = statistics_pixels(cube) if pixels is None else pixels
    return np.asarray(cube[name].values)[:, chosen]


def window_medians(
    cube: Cube, variables: Sequence[str], statistic: str = "median"
) -> dict[str, np.ndarray]:
    """Per time step, the median (or mean) of each variable over the statistics pixels (NaN
    pixels ignored; a date without any value is NaN)."""
    reduce = np.nanmedian if statistic == "median" else np.nanmean
    results = {}
    with warnings.catch_warnings():  # an all-NaN date is a NaN median, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in variables:
            values = window_values(cube, name)
            results[name] = (
                reduce(values, axis=1) if values.shape[1] else np.full(len(values), np.nan)
            )
    return results


def observed_share(cube: Cube) -> np.ndarray:
    """Per time step, the share of the statistics pixels that were observed (not gap-filled;
    on a regular axis, with at least one observation in the composite)."""
    observed = (window_values(cube, "observed") > 0).astype(np.float64)
    if observed.shape[1] == 0:
        return np.zeros(cube.sizes["time"])
    return np.asarray(observed.mean(axis=1))


def feature_attributes(cube: Cube) -> dict[str, Any]:
    """The feature's vector-file attributes the cube records (empty if none)."""
    recorded = cube.attrs.get("feature_attributes")
    return dict(json.loads(recorded)) if recorded else {}


def feature_timeseries(cube: Cube, settings: TimeseriesSettings) -> pd.DataFrame:
    """The cube's time series in `settings.layout` (see module docstring)."""
    long = long_timeseries(cube, settings)
    attributes = feature_attributes(cube)
    if settings.layout == "wide":
        return with_attributes(to_wide(long, value_variables(cube)), attributes)
    return with_attributes(long, attributes)


def long_timeseries(cube: Cube, settings: TimeseriesSettings) -> pd.DataFrame:
    """The cube's time series in long format, without attribute columns."""
    variables = value_variables(cube)
    if is_polygon_feature(cube):
        series = window_medians(cube, variables, settings.polygon_method)
        observed = observed_share(cube).round(6)
        counts = {name: np.isfinite(window_values(cube, name)).sum(axis=1) for name in variables}
    elif settings.method == "pixel" and is_point_feature(cube):
        row, col = pixel_under_point(cube)
        series = {name: cube[name].values[:, row, col] for name in variables}
        observed = (cube["observed"].values[:, row, col] > 0).astype(np.float64)
        counts = {name: np.isfinite(series[name]).astype(np.int64) for name in variables}
    else:
        series = window_medians(cube, variables)
        observed = observed_share(cube).round(6)
        counts = {name: np.isfinite(window_values(cube, name)).sum(axis=1) for name in variables}
    if not variables:
        return empty_timeseries()
    # one block of rows per variable, every time step in each: built as whole columns (a
    # frame per variable, then concatenated, cost a batch 2 ms per feature)
    times = pd.DatetimeIndex(cube["time"].values)
    rows = len(times) * len(variables)
    return pd.DataFrame(
        {
            "id": pd.array([str(cube.attrs["feature_id"])] * rows, dtype="string"),
            "time": np.tile(times.values, len(variables)),
            "band": pd.array(np.repeat(np.array(variables, dtype=object), len(times)), "string"),
            "value": np.concatenate([np.asarray(series[n], dtype=np.float32) for n in variables]),
            "observed": np.tile(np.asarray(observed), len(variables)),
            "n_pixels": np.concatenate([np.asarray(counts[n], dtype=np.int64) for n in variables]),
        }
    )


def to_wide(long: pd.DataFrame, variables: Sequence[str]) -> pd.DataFrame:
    """One row per time step, a column per variable (in cube order), then `observed` (the same
    for every variable of a date) and `n_pixels` (the smallest of the date's variables)."""
    if not len(long):
        return empty_wide(variables)
    values = long.pivot(index="time", columns="band", values="value")
    steps = long.groupby("time", sort=True)
    wide = pd.DataFrame(
        {
            "id": long["id"].iloc[0],
            "time": values.index,
            **{name: values[name].to_numpy(np.float32) for name in variables},
            "observed": steps["observed"].first().to_numpy(np.float64),
            "n_pixels": steps["n_pixels"].min().to_numpy(np.int64),
        }
    )
    return typed(wide)


def empty_wide(variables: Sequence[str]) -> pd.DataFrame:
    """A wide table without rows (a feature without items): its columns and types."""
    columns: dict[str, pd.Series] = {
        "id": pd.Series(dtype="string"),
        "time": pd.Series(dtype="datetime64[ns]"),
        **{name: pd.Series(dtype=np.float32) for name in variables},
        "observed": pd.Series(dtype=np.float64),
        "n_pixels": pd.Series(dtype=np.int64),
    }
    return pd.DataFrame(columns)


def with_attributes(table: pd.DataFrame, attributes: dict[str, Any]) -> pd.DataFrame:
    """`table` with one column per attribute after `id`, its value on every row."""
    if not attributes:
        return table
    columns = {
        name: pd.Series([value] * len(table), dtype=object) for name, value in attributes.items()
    }
    labelled = pd.concat(
        [table[["id"]], pd.DataFrame(columns, index=table.index), table.drop(columns="id")],
        axis=1,
    )
    return harmonise_attributes(labelled, list(attributes))


def harmonise_attributes(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Attribute columns with one type each, as Parquet needs: text as `string`, booleans as
    `boolean`, integers as `Int64`, other numbers as float64 (missing values: NA or NaN);
    a column mixing text with numbers, or booleans with numbers, becomes text."""
    for name in names:
        kinds = {_kind(value) for value in table[name] if not _missing(value)}
        if kinds == {"bool"}:
            table[name] = table[name].astype("boolean")
        elif kinds == {"int"}:
            table[name] = table[name].astype("Int64")
        elif kinds and kinds <= {"int", "float"}:
            table[name] = pd.to_numeric(table[name]).astype(np.float64)
        else:
            table[name] = pd.Series(
                [None if _missing(value) else str(value) for value in table[name]],
                index=table.index,
                dtype="string",
            )
    return table


def _kind(value: Any) -> str:
    """bool, int, float or str: the kind of one attribute value (numpy scalars included)."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    return "str"


def _missing(value: Any) -> bool:
    """None, NA, or a NaN float: a feature without a value in that column."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def typed(table: pd.DataFrame) -> pd.DataFrame:
    """The types a time-series table has whatever made it: `id` and `band` as `string`."""
    for name in ("id", "band"):
        if name in table:
            table[name] = table[name].astype("string")
    return table


def method_used(cube: Cube, settings: TimeseriesSettings) -> str:
    """What `feature_timeseries` computes for this cube, for its log line."""
    if is_polygon_feature(cube):
        return f"{settings.polygon_method} of the pixels inside the polygon"
    if settings.method == "pixel" and is_point_feature(cube):
        return "the pixel under the point"
    return "median of the window"


def empty_timeseries() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(dtype="string"),
            "time": pd.Series(dtype="datetime64[ns]"),
            "band": pd.Series(dtype="string"),
            "value": pd.Series(dtype=np.float32),
            "observed": pd.Series(dtype=np.float64),
            "n_pixels": pd.Series(dtype=np.int64),
        }
    )


def write_timeseries_csv(table: pd.DataFrame, path: str | Path) -> None:
    """CSV with ISO-8601 UTC times; float32 values are written in their shortest exact form."""
    table.to_csv(path, index=False, date_format=CSV_TIME_FORMAT)


def read_timeseries_csv(path: str | Path) -> pd.DataFrame:
    """A CSV written by `write_timeseries_csv` (long or wide), with its dtypes restored: ids
    stay strings, values float32. Attribute columns (between `id` and `time`) are typed by
    pandas from their text; the Parquet table keeps their own types."""
    header = list(pd.read_csv(path, nrows=0).columns)
    after_time = header[header.index("time") + 1 :]
    variables = [] if "band" in header else after_time[: after_time.index("observed")]
    dtypes: dict[str, Any] = {
        "id": "string",
        "band": "string",
        "value": np.float32,
        "observed": np.float64,
        "n_pixels": np.int64,
        **dict.fromkeys(variables, np.float32),
    }
    table = pd.read_csv(path, dtype={k: v for k, v in dtypes.items() if k in header})
    table["time"] = pd.to_datetime(table["time"], utc=True, format="ISO8601").dt.tz_localize(None)
    return table[header]


def combine_tables(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-feature (or per-batch) tables in one, in the given order; the columns of the first
    when every table is empty. Attribute columns get one type over all features."""
    non_empty = [table for table in tables if len(table)]
    if not non_empty:
        return tables[0] if tables else empty_timeseries()
    combined = pd.concat(non_empty, ignore_index=True)
    first = list(non_empty[0].columns)
    names = first[1 : first.index("time")]
    return harmonise_attributes(typed(combined), names)


def combine_timeseries(
    paths: Sequence[str | Path], batch_tables: Sequence[str | Path] = ()
) -> pd.DataFrame:
    """All features' time series in one table: the rows of every per-feature CSV, then of every
    batch's Parquet table (batch mode), in the given order."""
    tables = [read_timeseries_csv(path) for path in paths]
    tables += [pd.read_parquet(path) for path in batch_tables]
    return combine_tables(tables)
