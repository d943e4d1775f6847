"""Write a feature's cube as a compressed, CF-described netCDF file (or Zarr store), atomically."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sitsflow.atomic import atomic_path, replace_directory, temporary_for
from sitsflow.pixels.mask import SCL_CLASSES
from sitsflow.workflow.grid import Grid

if TYPE_CHECKING:
    import xarray as xr

CHUNK_TIME, CHUNK_XY = 64, 256
COMPRESSION = {"zlib": True, "complevel": 4, "shuffle": True}
PROVENANCE_PACKAGES = (
    "sitsflow",
    "stackstac",
    "pystac-client",
    "xarray",
    "rasterio",
    "numpy",
    "netCDF4",
    "snakemake",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    import rasterio

    versions["gdal"] = rasterio.__gdal_version__
    return versions


@dataclass
class CubeVariable:
    """One variable of a cube: dimensions, values and CF attributes."""

    dims: tuple[str, ...]
    data: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class CubeArrays:
    """A feature's cube as numpy arrays with their CF attributes.

    The cube job writes it with netCDF4 directly (`write_netcdf_arrays`): building an xarray
    Dataset and letting xarray encode it cost each job ~0.9 s of CPU (xarray and pandas
    imports, xarray's probe for dask, its encoders) for a file a few hundred kilobytes large.
    `to_dataset` makes the same cube an xarray Dataset (Zarr stores, spectral indices,
    analyses); both write the same file (`tests/test_write.py`).
    """

    variables: dict[str, CubeVariable]
    coords: dict[str, CubeVariable]
    attrs: dict[str, Any]

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(self.coords[name].data) for name in ("time", "y", "x")}

    def gridded(self) -> list[str]:
        """The variables on the grid: those that name the grid mapping."""
        return [n for n, v in self.variables.items() if {"x", "y"} <= set(v.dims)]

    def to_dataset(self) -> xr.Dataset:
        import xarray as xr

        def variable(entry: CubeVariable) -> xr.Variable:
            return xr.Variable(entry.dims, entry.data, dict(entry.attrs))

        dataset = xr.Dataset(
            {name: variable(entry) for name, entry in self.variables.items()},
            coords={name: variable(entry) for name, entry in self.coords.items()},
            attrs=dict(self.attrs),
        )
        for name in self.gridded():
            dataset[name].encoding["grid_mapping"] = GRID_MAPPING
        return dataset


def build_dataset(**arrays: Any) -> xr.Dataset:
    """`cube_arrays(**arrays)` as an xarray Dataset."""
    return cube_arrays(**arrays).to_dataset()


def cube_arrays(
    *,
    grid: Grid,
    times: np.ndarray,
    bands: list[str],
    reflectance: np.ndarray,
    classification: np.ndarray | None,
    classification_band: str,
    observed: np.ndarray,
    inside: np.ndarray | None = None,
    sources: dict[str, str] | None = None,
    attrs: dict[str, str | int | float],
) -> CubeArrays:
    """Assemble a clean cube (no stackstac leftovers) with CF metadata and a grid mapping.

    `inside` (y, x): the pixels a feature's statistics use (`sitsflow.pixels.cube`);
    `sources`: per band, which level of the files was read (an attribute of the variable).
    """
    res = grid.resolution
    dims = ("time", "y", "x")
    sources = sources or {}
    variables = {}
    for index, band in enumerate(bands):
        band_attrs = {
            "long_name": f"Sentinel-2 {band} surface reflectance",
            "standard_name": "surface_bidirectional_reflectance",
            "units": "1",
            "ancillary_variables": "observed",
        }
        if band in sources:
            band_attrs["source_level"] = sources[band]
        variables[band] = CubeVariable(dims, reflectance[:, index].astype(np.float32), band_attrs)
    if classification is not None:
        classes = np.where(np.isfinite(classification), classification, 0).astype(np.uint8)
        class_attrs = {
            "long_name": "Sentinel-2 scene classification of the item each pixel was taken "
            "from (not masked, not gap-filled)",
            "standard_name": "status_flag",
            "flag_values": np.array(sorted(SCL_CLASSES), dtype=np.uint8),
            "flag_meanings": " ".join(SCL_CLASSES[k] for k in sorted(SCL_CLASSES)),
        }
        if classification_band in sources:
            class_attrs["source_level"] = sources[classification_band]
        variables[classification_band] = CubeVariable(dims, classes, class_attrs)
    variables["observed"] = observed_variable(dims, observed)
    if inside is not None:
        variables["inside"] = CubeVariable(
            ("y", "x"),
            inside.astype(np.uint8),
            {
                "long_name": "1 where the pixel counts in the feature's statistics: its centre "
                "is inside the polygon (touched, with timeseries.all_touched); every pixel for "
                "point and line features",
                "flag_values": np.array([0, 1], dtype=np.uint8),
                "flag_meanings": "outside inside",
            },
        )
    time_attrs = {"standard_name": "time", "long_name": "acquisition time (UTC)"}
    coords = {
        "time": CubeVariable(("time",), np.asarray(times, dtype="datetime64[ns]"), time_attrs),
        "y": CubeVariable(("y",), grid.bounds[3] - res * (np.arange(grid.height) + 0.5)),
        "x": CubeVariable(("x",), grid.bounds[0] + res * (np.arange(grid.width) + 0.5)),
    }
    add_grid_mapping(coords, grid)
    return CubeArrays(variables, coords, dict(attrs))


def observed_variable(dims: tuple[str, ...], observed: np.ndarray) -> CubeVariable:
    """`observed`: a 0/1 flag per acquisition date (bool, or any other 0/1 array), or, on a
    regular axis, the number of clear observations behind each composite value (an unsigned
    integer count, what `sitsflow.pixels.composite` makes; 0 where the value was gap-filled or
    is missing)."""
    if not np.issubdtype(observed.dtype, np.unsignedinteger):
        return CubeVariable(
            dims,
            observed.astype(np.uint8),
            {
                "long_name": "1 where the value was observed (clear), 0 where gap-filled or "
                "missing",
                "standard_name": "status_flag",
                "flag_values": np.array([0, 1], dtype=np.uint8),
                "flag_meanings": "not_observed observed",
            },
        )
    return CubeVariable(
        dims,
        observed,
        {
            "long_name": "number of clear observations composited into the value (0: "
            "gap-filled or missing)",
            "standard_name": "number_of_observations",
            "units": "1",
        },
    )


GRID_MAPPING = "spatial_ref"


def add_grid_mapping(coords: dict[str, CubeVariable], grid: Grid) -> None:
    """The grid's CRS as a CF grid mapping variable in `coords`, with the axes' attributes: byte
    for byte what rioxarray's `write_crs`, `write_transform` and `write_coordinate_system` write
    (which GDAL, QGIS and rioxarray read back), without importing rioxarray and dask (0.3 s)."""
    import pyproj
    from rasterio.crs import CRS

    crs = CRS.from_epsg(grid.epsg)
    attrs: dict[str, object] = dict(pyproj.CRS.from_user_input(crs).to_cf())
    wkt = crs.to_wkt()
    attrs["spatial_ref"] = wkt
    attrs["crs_wkt"] = wkt
    attrs["GeoTransform"] = " ".join(str(value) for value in grid.transform.to_gdal())
    coords[GRID_MAPPING] = CubeVariable((), np.array(0), attrs)
    units = "metre" if crs.linear_units in ("metre", "meter") else crs.linear_units
    for axis in ("x", "y"):
        coords[axis].attrs.update(
            axis=axis.upper(),
            long_name=f"{axis} coordinate of projection",
            standard_name=f"projection_{axis}_coordinate",
            units=units,
        )


def provenance_attrs(**fields: object) -> dict[str, str | int | float]:
    """Global attributes: CF basics plus `fields`, dicts and lists stored as JSON strings."""
    attrs: dict[str, str | int | float] = {
        "Conventions": "CF-1.8",
        "title": "Sentinel-2 L2A surface reflectance time series (sitsflow)",
        "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
        "software_versions": json.dumps(package_versions()),
    }
    for key, value in fields.items():
        if value is None:
            continue
        attrs[key] = (
            json.dumps(value)
            if isinstance(value, (dict, list, tuple))
            else cast(str | int | float, value)
        )
    return attrs


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


def write_netcdf(dataset: xr.Dataset, path: str | Path) -> None:
    """Write with zlib compression and (time, y, x) chunks; rename into place when complete."""
    for name, chunks in _chunks(dataset).items():
        encoding: dict[str, object] = {
            **COMPRESSION,
            "_FillValue": _fill_value(dataset[name].dtype),
        }
        if chunks:
            encoding["chunksizes"] = chunks
        dataset[name].encoding.update(encoding)
    dataset["time"].encoding.update(TIME_ENCODING)
    with atomic_path(path) as temporary:
        dataset.to_netcdf(temporary, engine="netcdf4", format="NETCDF4")


def write_netcdf_arrays(cube: CubeArrays, path: str | Path) -> None:
    """Write `cube` with netCDF4 itself: the file `write_netcdf(cube.to_dataset(), path)` writes
    (same variables, attributes, types, chunks and compression, in the same order), without
    xarray. Times that are not whole milliseconds (xarray would pick finer units) and variables
    off the grid go through xarray."""
    times = cube.coords["time"].data
    milliseconds = times.astype("datetime64[ms]")
    off_grid = any(entry.dims not in GRIDDED_DIMS for entry in cube.variables.values())
    if off_grid or (milliseconds != times).any():
        write_netcdf(cube.to_dataset(), path)
        return
    import netCDF4

    gridded = set(cube.gridded())
    with atomic_path(path) as temporary, netCDF4.Dataset(temporary, "w", format="NETCDF4") as nc:
        for key, value in cube.attrs.items():
            nc.setncattr(key, value)
        for name in ("time", "y", "x"):
            nc.createDimension(name, cube.sizes[name])
        for name, entry in cube.variables.items():
            fill = _fill_value(entry.data.dtype)
            chunks = storage_chunks(entry.dims, entry.data.shape)
            attrs = {**entry.attrs, **({"grid_mapping": GRID_MAPPING} if name in gridded else {})}
            _write_variable(nc, name, entry.dims, entry.data, attrs, fill, chunks, COMPRESSION)
        time_attrs = {
            **cube.coords["time"].attrs,
            "units": "milliseconds since 1970-01-01",
            "calendar": TIME_ENCODING["calendar"],
        }
        _write_variable(nc, "time", ("time",), milliseconds.astype(np.int64), time_attrs)
        for axis in ("y", "x"):
            entry = cube.coords[axis]
            _write_variable(nc, axis, entry.dims, entry.data, entry.attrs, np.float64("nan"))
        grid_mapping = cube.coords[GRID_MAPPING]
        _write_variable(nc, GRID_MAPPING, (), grid_mapping.data, grid_mapping.attrs)


def _write_variable(
    nc: Any,
    name: str,
    dims: tuple[str, ...],
    data: np.ndarray,
    attrs: dict[str, Any],
    fill: object = None,
    chunks: tuple[int, ...] | None = None,
    compression: Mapping[str, object] | None = None,
) -> None:
    """One variable, created as xarray's netCDF4 backend creates it (fill value at creation,
    then the attributes, then the values)."""
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
    variable[...] = data


ZARR_SUFFIX = ".zarr"


def write_cube(cube: CubeArrays | xr.Dataset, path: str | Path) -> None:
    """Write netCDF, or Zarr when `path` ends in `.zarr` (config `format`)."""
    zarr = Path(path).suffix == ZARR_SUFFIX
    if isinstance(cube, CubeArrays):
        if not zarr:
            write_netcdf_arrays(cube, path)
            return
        cube = cube.to_dataset()
    if zarr:
        write_zarr(cube, path)
    else:
        write_netcdf(cube, path)


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
    dataset["time"].encoding = dict(TIME_ENCODING)
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
