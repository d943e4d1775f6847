"""The cube job writes its netCDF file with netCDF4 itself (`write_netcdf_arrays`); the file must
be the one xarray writes from the same cube (`write_netcdf(cube.to_dataset())`), down to the
order, types and storage of every variable and attribute, for every kind of cube sitsflow
makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

from sitsflow.core.grid import Grid
from sitsflow.outputs.write import write_netcdf, write_netcdf_arrays
from sitsflow.pixels.cube_model import CubeArrays, cube_arrays, provenance_attrs

GRID = Grid(3035, 20.0, (4211500.0, 2971420.0, 4211500.0 + 20 * 5, 2971420.0 + 20 * 4))


def make_cube(
    steps: int, *, observed_counts: bool = False, classification: bool = True, ms: bool = True
) -> CubeArrays:
    rng = np.random.default_rng(steps)
    shape = (steps, 2, GRID.height, GRID.width)
    reflectance = rng.random(shape, dtype=np.float32)
    reflectance[rng.random(shape) < 0.2] = np.nan
    times = np.datetime64("2024-01-01T10:56:17.024", "ns") + np.arange(steps) * np.timedelta64(
        5, "D"
    )
    if not ms:
        times = times + np.timedelta64(1, "us")
    observed = (
        rng.integers(0, 4, (steps, GRID.height, GRID.width)).astype(np.uint16)
        if observed_counts
        else rng.random((steps, GRID.height, GRID.width)) < 0.8
    )
    attrs = provenance_attrs(
        feature_id="f1",
        geometry_wkt="POINT (8.5 49.8)",
        item_ids=["a", "b"],
        n_items=2,
        valid_fraction=0.93,
        feature_attributes={"label": "wheat", "code": 3},
    )
    return cube_arrays(
        grid=GRID,
        times=times,
        bands=["B04", "B08"],
        reflectance=reflectance,
        classification=rng.integers(0, 12, (steps, GRID.height, GRID.width)).astype(np.float32)
        if classification
        else None,
        classification_bands=["SCL"],
        observed=observed,
        inside=rng.random((GRID.height, GRID.width)) < 0.5,
        sources={"B04": "overview 1 (x2) (3 files)", "SCL": "full resolution (3 files)"},
        attrs=attrs,
    )


def layout(path: Path) -> dict[str, Any]:
    """Everything a netCDF file holds, in order: dimensions, then per variable its type,
    dimensions, storage, filters, attributes (with their types) and values."""

    def attributes(owner: Any) -> list[tuple[str, str, str]]:
        return [
            (key, type(value).__name__, repr(getattr(value, "dtype", None)) + repr(value))
            for key in owner.ncattrs()
            for value in [owner.getncattr(key)]
        ]

    with netCDF4.Dataset(path) as nc:
        return {
            "format": nc.data_model,
            "dimensions": [
                (name, len(dim), dim.isunlimited()) for name, dim in nc.dimensions.items()
            ],
            "attributes": attributes(nc),
            "variables": [
                (
                    name,
                    str(variable.dtype),
                    variable.dimensions,
                    variable.chunking(),
                    variable.filters(),
                    variable.endian(),
                    attributes(variable),
                    np.ma.getdata(variable[...]).tobytes(),
                )
                for name, variable in nc.variables.items()
            ],
        }


@pytest.mark.parametrize(
    "cube",
    [
        pytest.param(make_cube(3), id="acquisition axis"),
        pytest.param(make_cube(70), id="more steps than a chunk"),
        pytest.param(make_cube(4, observed_counts=True), id="composite counts"),
        pytest.param(make_cube(3, classification=False), id="no classification band"),
        pytest.param(make_cube(0), id="no time step"),
        pytest.param(make_cube(2, ms=False), id="times finer than milliseconds"),
    ],
)
def test_the_cube_job_writes_the_file_xarray_writes(tmp_path, cube):
    by_xarray, by_netcdf4 = tmp_path / "xarray.nc", tmp_path / "netcdf4.nc"
    write_netcdf(cube.to_dataset(), by_xarray)
    write_netcdf_arrays(cube, by_netcdf4)
    expected, written = layout(by_xarray), layout(by_netcdf4)
    assert written["dimensions"] == expected["dimensions"]
    assert written["attributes"] == expected["attributes"]
    assert [v[:7] for v in written["variables"]] == [v[:7] for v in expected["variables"]]
    assert written == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["netcdf4.nc", "xarray.nc"]


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "f.nc"

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(netCDF4.Variable, "__setitem__", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_netcdf_arrays(make_cube(3), path)
    assert list(tmp_path.iterdir()) == []


def test_a_cube_job_imports_neither_xarray_nor_pandas_nor_dask(netcdf_run, tmp_path):
    """What the cube job runs (`build_cube`), in a fresh interpreter: the cube it writes and the
    heavy libraries it loaded (xarray, pandas and dask cost a cube job 0.9 s of CPU)."""
    import subprocess
    import sys

    from sitsflow.testing.compare import open_comparable
    from tests.helpers import BANDS, INDICES

    output = tmp_path / "p1.nc"
    script = f"""
import sys
from sitsflow.testing.settings import cube_settings
from sitsflow.workflow.stages import build_cube

build_cube({str(netcdf_run / "results/bbox/p1.geojson")!r},
           {str(netcdf_run / "results/items/p1.json")!r},
           cube_settings(bands={BANDS!r}), {str(output)!r})
print(sorted(m for m in ("xarray", "pandas", "dask", "rioxarray") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    # the run's cube less its spectral indices (the run asks for some; this job did not)
    written, reference = (
        open_comparable(output),
        open_comparable(netcdf_run / "results/cubes/p1.nc"),
    )
    assert set(reference.variables) - set(written.variables) == set(INDICES)
    for name in written.variables:
        assert written[name].identical(reference[name]), name


def test_gridded_variables_are_deflated_at_level_3_with_shuffle(tmp_path):
    """docs/outputs.md's compression: zlib level 3, faster and smaller than 4 on cubes."""
    path = tmp_path / "c.nc"
    write_netcdf_arrays(make_cube(3), path)
    with netCDF4.Dataset(path) as nc:
        gridded = [v for v in nc.variables.values() if v.dimensions[-2:] == ("y", "x")]
        assert gridded
        for variable in gridded:
            filters = variable.filters()
            assert (filters["zlib"], filters["complevel"], filters["shuffle"]) == (True, 3, True)


@pytest.mark.parametrize("by_xarray", [False, True], ids=["netcdf4", "xarray"])
def test_zstd_cubes_hold_exactly_what_zlib_cubes_hold(tmp_path, by_xarray):
    """`compression: zstd`: the same file but for its gridded variables' codec (zstd level 1;
    netCDF4 shuffles only for zlib), and the same values when read back."""
    from sitsflow.outputs.write import open_cube

    cube = make_cube(4)
    paths = {codec: tmp_path / f"{codec}.nc" for codec in ("zlib", "zstd")}
    for codec, path in paths.items():
        if by_xarray:
            write_netcdf(cube.to_dataset(), path, codec)
        else:
            write_netcdf_arrays(cube, path, codec)
    zlib, zstd = layout(paths["zlib"]), layout(paths["zstd"])
    assert zstd["attributes"] == zlib["attributes"]
    compressed = []
    for ours, theirs in zip(zstd["variables"], zlib["variables"], strict=True):
        assert ours[:4] + ours[5:] == theirs[:4] + theirs[5:]
        assert not ours[4]["zlib"], ours
        if theirs[4]["zlib"]:
            compressed.append(ours[0])
            assert (ours[4]["zstd"], ours[4]["complevel"], ours[4]["shuffle"]) == (True, 1, False)
    assert compressed == ["B04", "B08", "SCL", "observed", "inside"]
    with open_cube(paths["zlib"]) as expected, open_cube(paths["zstd"]) as written:
        assert written.identical(expected)


def test_the_cube_stage_writes_the_configured_codec(netcdf_run, tmp_path):
    """`compression` reaches the file the cube stage writes; a Zarr run carries none, so that
    editing it reruns nothing there."""
    from sitsflow.testing.settings import cube_settings, settings_for
    from sitsflow.workflow.stages import build_cube
    from tests.helpers import BANDS

    output = tmp_path / "p1.nc"
    build_cube(
        str(netcdf_run / "results/bbox/p1.geojson"),
        str(netcdf_run / "results/items/p1.json"),
        cube_settings(bands=BANDS, compression="zstd"),
        str(output),
    )
    with netCDF4.Dataset(output) as nc:
        assert nc["B04"].filters()["zstd"] and not nc["B04"].filters()["zlib"]
    assert settings_for().cube.compression == "zlib"
    assert settings_for(format="zarr", compression="zstd").cube.compression is None


@pytest.mark.parametrize("epsg", [32632, 3035, 32632])  # 32632 again: from the job's cache
def test_the_grid_mapping_is_what_rioxarray_writes(epsg):
    """`add_grid_mapping` (CRS attributes worked out once per CRS in a job) writes what
    rioxarray's `write_crs`, `write_transform` and `write_coordinate_system` write."""
    import rioxarray  # noqa: F401 (registers the .rio accessor)
    import xarray as xr

    from sitsflow.pixels.cube_model import GRID_MAPPING, CubeVariable, add_grid_mapping

    grid = Grid(epsg, 20.0, (400000.0, 5000000.0, 400060.0, 5000040.0))
    xs = 400010.0 + 20.0 * np.arange(3)
    ys = 5000030.0 - 20.0 * np.arange(2)
    coords = {"x": CubeVariable(("x",), xs, {}), "y": CubeVariable(("y",), ys, {})}
    add_grid_mapping(coords, grid)
    theirs = (
        xr.Dataset(coords={"x": xs, "y": ys})
        .rio.write_crs(f"EPSG:{epsg}")
        .rio.write_transform(grid.transform)
        .rio.write_coordinate_system()
    )
    assert coords[GRID_MAPPING].attrs == theirs[GRID_MAPPING].attrs
    for axis in ("x", "y"):
        assert coords[axis].attrs == theirs[axis].attrs


def test_cube_arrays_read_as_the_dataset_of_their_file_reads(tmp_path):
    """What the analyses read of a cube (variables and coordinates by name, their values,
    types, `transpose` and `isel`), from the arrays a batch just wrote and from the file."""
    from sitsflow.outputs.write import open_cube

    arrays = make_cube(3)
    path = tmp_path / "c.nc"
    write_netcdf_arrays(arrays, path)
    with open_cube(path) as dataset:
        assert list(arrays.data_vars) == list(dataset.data_vars)
        for name in [*dataset.data_vars, "time", "x", "y"]:
            assert name in arrays
            ours, theirs = arrays[name], dataset[name]
            assert ours.dims == theirs.dims and ours.dtype == theirs.dtype, name
            np.testing.assert_array_equal(ours.values, theirs.values)
        assert "nowhere" not in arrays and "nowhere" not in dataset
        for ours, theirs in [
            (arrays["B04"].transpose("x", "time", "y"), dataset["B04"].transpose("x", "time", "y")),
            (arrays["B04"].isel(time=1), dataset["B04"].isel(time=1)),
            (arrays["B04"].isel(time=2, x=0), dataset["B04"].isel(time=2, x=0)),
        ]:
            assert ours.dims == theirs.dims
            np.testing.assert_array_equal(ours.values, theirs.values)


def test_every_variable_is_defined_before_any_value_is_written(tmp_path, monkeypatch):
    """netCDF-4 flushes the HDF5 file (compressing every cached chunk) each time it leaves
    define mode: writing values between definitions paid that once per variable (15 to 25 %
    of the write). The writer defines all variables first."""
    events: list[str] = []

    class RecordedVariable:
        def __init__(self, variable: Any) -> None:
            self._variable = variable

        def setncattr(self, key: str, value: Any) -> None:
            self._variable.setncattr(key, value)

        def __setitem__(self, key: Any, value: Any) -> None:
            events.append("write")
            self._variable[key] = value

    class RecordedDataset:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._nc = real_dataset(*args, **kwargs)

        def __enter__(self) -> RecordedDataset:
            return self

        def __exit__(self, *exc: object) -> None:
            self._nc.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._nc, name)

        def createVariable(self, *args: Any, **kwargs: Any) -> RecordedVariable:  # noqa: N802
            events.append("define")
            return RecordedVariable(self._nc.createVariable(*args, **kwargs))

    real_dataset = netCDF4.Dataset
    monkeypatch.setattr(netCDF4, "Dataset", RecordedDataset)
    cube = make_cube(3)
    write_netcdf_arrays(cube, tmp_path / "c.nc")
    defined = events.count("define")
    assert defined == len(cube.variables) + 4  # time, y, x and the grid mapping
    assert events == ["define"] * defined + ["write"] * defined
