"""Write a feature's cube (`sitsflow.pixels.cube_model`) as a compressed, CF-described netCDF
file (or Zarr store), atomically."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sitsflow.core.atomic import atomic_path, replace_directory, temporary_for
from sitsflow.core.settings import CubeCompression
from sitsflow.pixels.cube_model import GRID_MAPPING, CubeArrays

if TYPE_CHECKING:
    import xarray as xr

CHUNK_TIME, CHUNK_XY = 64, 256
# Each codec of config `compression`. zlib level 3 with byte shuffle: on sitsflow cubes both
# faster (11 against 14 ms per cube) and smaller (167 against 179 kB) than level 4, where zlib
# switches to lazy matching; its levels 1 and 2 are no faster on them. zstd level 1 (netCDF4
# shuffles only for zlib): the arrays of 32 x 101 x 101 held-out cubes of three bands alone in
# 5.3 ms and 128 kB against zlib's 20.7 ms and 216 kB (level 3: 9.8 ms, 109 kB); 20 whole
# held-out cubes in about half zlib's time each (`write_netcdf_arrays`, 17-26 against 33-51 ms
# as the machine's speed varied), 170 against 238 kB. See docs/scaling.md.
CODECS: dict[CubeCompression, dict[str, object]] = {
    "zlib": {"compression": "zlib", "complevel": 3, "shuffle": True},
    "zstd": {"compression": "zstd", "complevel": 1, "shuffle": False},
}
DEFAULT_CODEC: CubeCompression = "zlib"


def storage_chunks(dims: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The storage chunks of a gridded variable ((time, y, x) or (y, x)): at most CHUNK_TIME
    steps and CHUNK_XY pixels a side; None for an empty time axis."""
    if 0 in shape:
        return None
    sizes = {"time": CHUNK_TIME, "y": CHUNK_XY, "x": CHUNK_XY}
    return tuple(min(size, sizes[dim]) for size, dim in zip(shape, dims, strict=True))


GRIDDED_DIMS = (("time", "y", "x"), ("y", "x"))
TIME_ENCODING = {
    "units": "milliseconds since 1970-01-01 00:00:00",
    "calendar": "proleptic_gregorian",
    "dtype": "int64",
}


def _chunks(dataset: xr.Dataset) -> dict[str, tuple[int, ...] | None]:
    """`storage_chunks` of each gridded variable of `dataset`."""
    return {
        str(name): storage_chunks(variable.dims, variable.shape)
        for name, variable in dataset.data_vars.items()
        if variable.dims in GRIDDED_DIMS
    }


def _fill_value(dtype: np.dtype) -> np.float32 | None:
    """NaN for reflectance and indices; none for flags and classes (every value means one)."""
    return np.float32("nan") if dtype == np.float32 else None


def _time_encoding(times: np.ndarray) -> dict[str, str]:
    """TIME_ENCODING for times in whole milliseconds; otherwise the same in the finest units the
    times need, as xarray names them (it would switch to them itself, with a warning)."""
    if (times.astype("datetime64[ms]") == times).all():
        return TIME_ENCODING
    finest = "microseconds" if (times.astype("datetime64[us]") == times).all() else "nanoseconds"
    return {**TIME_ENCODING, "units": f"{finest} since 1970-01-01"}


def write_netcdf(
    dataset: xr.Dataset, path: str | Path, codec: CubeCompression = DEFAULT_CODEC
) -> None:
    """Write with `codec` (`CODECS`) and (time, y, x) chunks; rename into place when complete."""
    for name, chunks in _chunks(dataset).items():
        encoding: dict[str, object] = {
            **CODECS[codec],
            "_FillValue": _fill_value(dataset[name].dtype),
        }
        if chunks:
            encoding["chunksizes"] = chunks
        dataset[name].encoding.update(encoding)
    dataset["time"].encoding.update(_time_encoding(dataset["time"].values))
    with atomic_path(path) as temporary:
        dataset.to_netcdf(temporary, engine="netcdf4", format="NETCDF4")


def write_netcdf_arrays(
    cube: CubeArrays, path: str | Path, codec: CubeCompression = DEFAULT_CODEC
) -> None:
    """Write `cube` with netCDF4 itself: the file `write_netcdf(cube.to_dataset(), path,
    codec)` writes (same variables, attributes, types, chunks and compression, in the same
    order), without xarray. Times that are not whole milliseconds (xarray would pick finer
    units), variables off the grid and coordinates besides the grid's (a run with Landsat's
    `platform`) go through xarray."""
    times = cube.coords["time"].data
    milliseconds = times.astype("datetime64[ms]")
    off_grid = any(entry.dims not in GRIDDED_DIMS for entry in cube.variables.values())
    off_grid |= bool(set(cube.coords) - {"time", "y", "x", GRID_MAPPING})  # `platform`
    if off_grid or (milliseconds != times).any():
        write_netcdf(cube.to_dataset(), path, codec)
        return
    import netCDF4

    gridded = set(cube.gridded())
    with atomic_path(path) as temporary, netCDF4.Dataset(temporary, "w", format="NETCDF4") as nc:
        for key, value in cube.attrs.items():
            nc.setncattr(key, value)
        for name in ("time", "y", "x"):
            nc.createDimension(name, cube.sizes[name])
        # (name, dims, values, attributes, fill value, chunks, codec) of each variable
        variables: list[tuple[Any, ...]] = []
        for name, entry in cube.variables.items():
            attrs = {**entry.attrs, **({"grid_mapping": GRID_MAPPING} if name in gridded else {})}
            fill = _fill_value(entry.data.dtype)
            chunks = storage_chunks(entry.dims, entry.data.shape)
            variables.append((name, entry.dims, entry.data, attrs, fill, chunks, CODECS[codec]))
        time_attrs = {
            **cube.coords["time"].attrs,
            "units": "milliseconds since 1970-01-01",
            "calendar": TIME_ENCODING["calendar"],
        }
        variables.append(("time", ("time",), milliseconds.astype(np.int64), time_attrs))
        for axis in ("y", "x"):
            entry = cube.coords[axis]
            variables.append((axis, entry.dims, entry.data, entry.attrs, np.float64("nan")))
        grid_mapping = cube.coords[GRID_MAPPING]
        variables.append((GRID_MAPPING, (), grid_mapping.data, grid_mapping.attrs))
        # Every variable is defined before any value is written: netCDF-4 flushes the HDF5
        # file (compressing each cached chunk, writing the metadata) whenever it leaves define
        # mode, so values written between definitions paid that once per variable (15 to 25 %
        # of the write on held-out cubes).
        defined = [_define_variable(nc, *variable) for variable in variables]
        for variable, (_, _, data, *_) in zip(defined, variables, strict=True):
            variable[...] = data


def _define_variable(
    nc: Any,
    name: str,
    dims: tuple[str, ...],
    data: np.ndarray,
    attrs: dict[str, Any],
    fill: object = None,
    chunks: tuple[int, ...] | None = None,
    compression: Mapping[str, object] | None = None,
) -> Any:
    """One variable for `data`, defined as xarray's netCDF4 backend defines it (fill value at
    creation, then the attributes); the caller writes the values once all are defined."""
    variable = nc.createVariable(
        name,
        data.dtype,
        dims,
        fill_value=fill,
        chunksizes=chunks,
        endian="native",
        **(compression or {}),
    )
    for key, value in attrs.items():
        variable.setncattr(key, value)
    return variable


ZARR_SUFFIX = ".zarr"


def write_cube(
    cube: CubeArrays | xr.Dataset, path: str | Path, codec: CubeCompression | None = DEFAULT_CODEC
) -> None:
    """Write netCDF with `codec` (config `compression`), or Zarr when `path` ends in `.zarr`
    (config `format`), with Zarr's own codec."""
    zarr = Path(path).suffix == ZARR_SUFFIX
    codec = codec or DEFAULT_CODEC
    if isinstance(cube, CubeArrays):
        if not zarr:
            write_netcdf_arrays(cube, path, codec)
            return
        cube = cube.to_dataset()
    if zarr:
        write_zarr(cube, path)
    else:
        write_netcdf(cube, path, codec)


def write_zarr(dataset: xr.Dataset, path: str | Path) -> None:
    """Write a Zarr v2 store (consolidated metadata) beside `path`, then rename it into place.

    Zarr format 2 because consolidated metadata is not part of the format 3 specification
    (GDAL and older readers open v2). Same chunks, fill values and time encoding as netCDF.
    """
    dataset = dataset.copy()
    for name, chunks in _chunks(dataset).items():
        encoding: dict[str, object] = {"_FillValue": _fill_value(dataset[name].dtype)}
        if chunks:
            encoding["chunks"] = chunks
        dataset[name].encoding = encoding
    dataset["time"].encoding = dict(_time_encoding(dataset["time"].values))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_for(target)
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        dataset.to_zarr(temporary, mode="w", zarr_format=2, consolidated=True)
        replace_directory(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube written by `write_cube` (netCDF or Zarr), with its grid mapping decoded."""
    import xarray as xr

    engine = "zarr" if Path(path).suffix == ZARR_SUFFIX else None
    return xr.open_dataset(path, engine=engine, decode_coords="all")
