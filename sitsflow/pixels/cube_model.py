"""The cube model: a feature's cube as numpy arrays with their CF attributes, its grid
mapping and its provenance. The cube assembly (`sitsflow.pixels.cube`) builds it; the writer
(`sitsflow.outputs.write`) and the analyses read it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sitsflow.core.bands import QA_PIXEL, S2_BANDS, THERMAL_BANDS
from sitsflow.core.grid import Grid
from sitsflow.pixels.mask import SCL_CLASSES
from sitsflow.pixels.qa import QA_PIXEL_BITS

if TYPE_CHECKING:
    import xarray as xr
    from affine import Affine
    from rasterio.crs import CRS as RasterioCRS

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


@functools.cache
def package_versions() -> dict[str, str]:
    """The versions of the packages that made a cube, found once per process (2 ms each time:
    `importlib.metadata` reads every installed package's metadata). Do not mutate."""
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
    """One variable of a cube: dimensions, values and CF attributes. It reads as the
    `xarray.DataArray` of the written file reads where the analyses need it (`values`,
    `dtype`, `transpose`, `isel`): a batch takes a cube's time series and summary row from the
    arrays it just wrote, without xarray (`sitsflow.outputs.timeseries`)."""

    dims: tuple[str, ...]
    data: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> np.ndarray:
        return self.data

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    def transpose(self, *dims: str) -> CubeVariable:
        order = [self.dims.index(dim) for dim in dims]
        return CubeVariable(tuple(dims), self.data.transpose(order), self.attrs)

    def isel(self, **indexers: int) -> CubeVariable:
        """The variable at one position along each dimension named (which it drops)."""
        index = tuple(indexers.get(dim, slice(None)) for dim in self.dims)
        kept = tuple(dim for dim in self.dims if dim not in indexers)
        return CubeVariable(kept, self.data[index], self.attrs)


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

    @property
    def data_vars(self) -> dict[str, CubeVariable]:
        return self.variables

    def __getitem__(self, name: str) -> CubeVariable:
        """A variable or a coordinate, as `xarray.Dataset[name]`."""
        return self.variables[name] if name in self.variables else self.coords[name]

    def __contains__(self, name: object) -> bool:
        return name in self.variables or name in self.coords

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
    classification_bands: Sequence[str],
    observed: np.ndarray,
    inside: np.ndarray | None = None,
    sources: dict[str, str] | None = None,
    attrs: dict[str, str | int | float],
    platforms: Sequence[str] | None = None,
) -> CubeArrays:
    """Assemble a clean cube (no stackstac leftovers) with CF metadata and a grid mapping.

    `classification` holds each pixel's class from the item it was taken from: SCL values,
    and Landsat's QA_PIXEL values shifted by QA_CLASS_OFFSET; each of `classification_bands`
    (`SCL`, `QA_PIXEL`) becomes its own variable. `inside` (y, x): the pixels a feature's
    statistics use (`sitsflow.pixels.cube`); `sources`: per band, which level of the files
    was read (an attribute of the variable); `platforms`: each time step's platforms (a
    coordinate along time, for runs that read Landsat).
    """
    res = grid.resolution
    dims = ("time", "y", "x")
    sources = sources or {}
    variables = {}
    for index, band in enumerate(bands):
        band_attrs = value_attrs(band)
        if band in sources:
            band_attrs["source_level"] = sources[band]
        variables[band] = CubeVariable(dims, reflectance[:, index].astype(np.float32), band_attrs)
    if classification is not None:
        for band in classification_bands:
            variable = class_variable(band, classification, dims)
            if band in sources:
                variable.attrs["source_level"] = sources[band]
            variables[band] = variable
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
        **(
            {
                "platform": CubeVariable(
                    ("time",),
                    np.asarray(list(platforms), dtype=str),
                    {"long_name": "platforms of the items each time step took pixels from"},
                )
            }
            if platforms is not None
            else {}
        ),
        "y": CubeVariable(("y",), grid.bounds[3] - res * (np.arange(grid.height) + 0.5)),
        "x": CubeVariable(("x",), grid.bounds[0] + res * (np.arange(grid.width) + 0.5)),
    }
    add_grid_mapping(coords, grid)
    return CubeArrays(variables, coords, dict(attrs))


# Landsat's QA_PIXEL values in a classification layer shared with SCL: shifted past every
# 16-bit value (float32 holds the sums exactly), so that no value means two things.
QA_CLASS_OFFSET = 1 << 16


def value_attrs(band: str) -> dict[str, Any]:
    """A value band's CF attributes: surface reflectance, or surface temperature in kelvin
    for the thermal band (`lwir11`); Sentinel-2's names (`B04`) say their sensor."""
    if band in THERMAL_BANDS:
        return {
            "long_name": f"{band} surface temperature",
            "standard_name": "surface_temperature",
            "units": "K",
            "ancillary_variables": "observed",
        }
    sensor = "Sentinel-2 " if band in S2_BANDS else ""
    return {
        "long_name": f"{sensor}{band} surface reflectance",
        "standard_name": "surface_bidirectional_reflectance",
        "units": "1",
        "ancillary_variables": "observed",
    }


def class_variable(band: str, classification: np.ndarray, dims: tuple[str, ...]) -> CubeVariable:
    """The `SCL` or `QA_PIXEL` variable from the shared classification layer: each pixel's
    class where it was taken from an item of that band's sensor, no data (SCL 0, QA_PIXEL 1
    = fill) elsewhere."""
    finite = np.isfinite(classification)
    landsat = finite & (classification >= QA_CLASS_OFFSET)
    if band == QA_PIXEL:
        values = np.where(landsat, classification - QA_CLASS_OFFSET, 1).astype(np.uint16)
        return CubeVariable(
            dims,
            values,
            {
                "long_name": "Landsat QA_PIXEL of the item each pixel was taken from (not "
                "masked, not gap-filled; 1 = fill where no Landsat item gave the pixel)",
                "standard_name": "status_flag",
                "flag_masks": np.array(
                    [1 << bit for bit in QA_PIXEL_BITS.values()], dtype=np.uint16
                ),
                "flag_meanings": " ".join(QA_PIXEL_BITS),
            },
        )
    classes = np.where(finite & ~landsat, classification, 0).astype(np.uint8)
    return CubeVariable(
        dims,
        classes,
        {
            "long_name": "Sentinel-2 scene classification of the item each pixel was taken "
            "from (not masked, not gap-filled)",
            "standard_name": "status_flag",
            "flag_values": np.array(sorted(SCL_CLASSES), dtype=np.uint8),
            "flag_meanings": " ".join(SCL_CLASSES[k] for k in sorted(SCL_CLASSES)),
        },
    )


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
    crs_attrs, units = _crs_attributes(grid.epsg)
    attrs: dict[str, object] = dict(crs_attrs)
    attrs["GeoTransform"] = " ".join(str(value) for value in grid.transform.to_gdal())
    coords[GRID_MAPPING] = CubeVariable((), np.array(0), attrs)
    for axis in ("x", "y"):
        coords[axis].attrs.update(
            axis=axis.upper(),
            long_name=f"{axis} coordinate of projection",
            standard_name=f"projection_{axis}_coordinate",
            units=units,
        )


def cube_crs(cube: xr.Dataset | CubeArrays) -> RasterioCRS | None:
    """The CRS of a cube written by sitsflow, as rioxarray's `cube.rio.crs` reads it (its grid
    mapping's `spatial_ref`, else `crs_wkt`), without importing rioxarray and dask (0.46 s a
    job); None when the cube has no such grid mapping (then ask rioxarray)."""
    if GRID_MAPPING not in cube.coords:
        return None
    attrs = cube.coords[GRID_MAPPING].attrs
    wkt = attrs.get("spatial_ref") or attrs.get("crs_wkt")
    return _crs_from_wkt(wkt) if isinstance(wkt, str) else None


@functools.cache
def _crs_from_wkt(wkt: str) -> RasterioCRS:
    from rasterio.crs import CRS

    return CRS.from_wkt(wkt)


def cube_transform(cube: xr.Dataset | CubeArrays) -> Affine | None:
    """The affine transform of a cube's grid as rioxarray's `cube.rio.transform()` computes it
    for a north-up grid: the resolution from the grid mapping's `GeoTransform`, the origin
    from the first x and y coordinates (half a pixel out); None where that rule does not
    apply (no GeoTransform, a rotated one, no pixel): then ask rioxarray."""
    from affine import Affine

    if GRID_MAPPING not in cube.coords or not (cube.sizes.get("x") and cube.sizes.get("y")):
        return None
    text = cube.coords[GRID_MAPPING].attrs.get("GeoTransform")
    if not isinstance(text, str):
        return None
    cached = Affine.from_gdal(*np.fromstring(text, sep=" ").tolist())
    if not cached.is_rectilinear or cached.b or cached.d:
        return None
    left = float(cube["x"].values[0]) - cached.a / 2.0
    top = float(cube["y"].values[0]) - cached.e / 2.0
    return Affine.translation(left, top) @ Affine.scale(cached.a, cached.e)


@functools.cache
def _crs_attributes(epsg: int) -> tuple[dict[str, object], str]:
    """The CF attributes of a CRS (with its WKT as `spatial_ref` and `crs_wkt`) and its axes'
    units: worked out once per CRS in a job (0.8 ms each time)."""
    import pyproj
    from rasterio.crs import CRS

    crs = CRS.from_epsg(epsg)
    attrs: dict[str, object] = dict(pyproj.CRS.from_user_input(crs).to_cf())
    wkt = crs.to_wkt()
    attrs["spatial_ref"] = wkt
    attrs["crs_wkt"] = wkt
    units = "metre" if crs.linear_units in ("metre", "meter") else crs.linear_units
    return attrs, units


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
