"""Per-feature time series in long format, read from the feature's cube.

One row per (time step, variable): `id, time, band, value, observed`.

* `band` is a reflectance band (`B04`) or a spectral index of the cube (`NDVI`).
* Point features, method `pixel` (default): `value` is the cube pixel whose area contains the
  point, `observed` is 1 where that pixel was observed and 0 where it was gap-filled.
* Point features with method `median`, and polygons always: `value` is the median over the
  whole cube window (the buffered point's, or the polygon's bounding box on the grid) and
  `observed` the share (0..1) of the window's pixels that were observed. Pixels outside a
  polygon but inside its bounding box are included: the window is what the cube holds.

`time` is the acquisition time (UTC) of each time step, as in the cube.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from shapely import wkt

from sitsflow.projection import reproject

COLUMNS = ["id", "time", "band", "value", "observed"]
METHODS = ("pixel", "median")
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
POINT_TYPES = ("Point",)


def value_variables(cube: xr.Dataset) -> list[str]:
    """The cube's float (time, y, x) variables: reflectance bands, then spectral indices."""
    return [
        str(name)
        for name, variable in cube.data_vars.items()
        if variable.dims == ("time", "y", "x") and np.issubdtype(variable.dtype, np.floating)
    ]


def is_point_feature(cube: xr.Dataset) -> bool:
    return wkt.loads(cube.attrs["geometry_wkt"]).geom_type in POINT_TYPES


def pixel_under_point(cube: xr.Dataset) -> tuple[int, int]:
    """(row, col) of the cube pixel whose area contains the feature's point."""
    point = reproject(wkt.loads(cube.attrs["geometry_wkt"]), 4326, cube.rio.crs.to_epsg())
    col, row = ~cube.rio.transform() @ (point.x, point.y)
    row, col = int(np.floor(row)), int(np.floor(col))
    if not (0 <= row < cube.sizes["y"] and 0 <= col < cube.sizes["x"]):
        raise ValueError(
            f"feature {cube.attrs.get('feature_id')!r}: its point falls outside the cube grid "
            f"(row {row}, col {col} of {cube.sizes['y']} x {cube.sizes['x']})"
        )
    return row, col


def window_medians(cube: xr.Dataset, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """Per time step, the median of each variable over the window (NaN pixels ignored)."""
    medians = {}
    with warnings.catch_warnings():  # an all-NaN date is a NaN median, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in variables:
            values = cube[name].values.reshape(cube.sizes["time"], -1)
            medians[name] = np.nanmedian(values, axis=1)
    return medians


def observed_share(cube: xr.Dataset) -> np.ndarray:
    """Per time step, the share of the window's pixels that were observed (not gap-filled)."""
    observed = cube["observed"].values.reshape(cube.sizes["time"], -1).astype(np.float64)
    if observed.shape[1] == 0:
        return np.zeros(cube.sizes["time"])
    return observed.mean(axis=1)


def feature_timeseries(cube: xr.Dataset, method: str = "pixel") -> pd.DataFrame:
    """The cube's time series in long format (see module docstring); `method` for points."""
    if method not in METHODS:
        raise ValueError(f"timeseries method {method!r} must be one of {METHODS}")
    variables = value_variables(cube)
    if method == "pixel" and is_point_feature(cube):
        row, col = pixel_under_point(cube)
        series = {name: cube[name].values[:, row, col] for name in variables}
        observed = cube["observed"].values[:, row, col].astype(np.float64)
    else:
        series = window_medians(cube, variables)
        observed = observed_share(cube).round(6)
    times = pd.DatetimeIndex(cube["time"].values)
    frames = [
        pd.DataFrame(
            {
                "id": str(cube.attrs["feature_id"]),
                "time": times,
                "band": name,
                "value": np.asarray(series[name], dtype=np.float32),
                "observed": observed,
            }
        )
        for name in variables
    ]
    if not frames:
        return empty_timeseries()
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def empty_timeseries() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(dtype="string"),
            "time": pd.Series(dtype="datetime64[ns]"),
            "band": pd.Series(dtype="string"),
            "value": pd.Series(dtype=np.float32),
            "observed": pd.Series(dtype=np.float64),
        }
    )


def write_timeseries_csv(table: pd.DataFrame, path: str | Path) -> None:
    """CSV with ISO-8601 UTC times; float32 values are written in their shortest exact form."""
    table.to_csv(path, index=False, date_format=CSV_TIME_FORMAT)


def read_timeseries_csv(path: str | Path) -> pd.DataFrame:
    """A CSV written by `write_timeseries_csv`, with its dtypes restored (ids stay strings)."""
    table = pd.read_csv(
        path,
        dtype={"id": "string", "band": "string", "value": np.float32, "observed": np.float64},
    )
    table["time"] = pd.to_datetime(table["time"], utc=True, format="ISO8601").dt.tz_localize(None)
    return table[COLUMNS]


def combine_timeseries(
    paths: Sequence[str | Path], batch_tables: Sequence[str | Path] = ()
) -> pd.DataFrame:
    """All features' time series in one table: the rows of every per-feature CSV, then of every
    batch's Parquet table (batch mode), in the given order."""
    tables = [read_timeseries_csv(path) for path in paths]
    tables += [pd.read_parquet(path) for path in batch_tables]
    non_empty = [table for table in tables if len(table)]
    if not non_empty:
        return empty_timeseries()
    return pd.concat(non_empty, ignore_index=True)
