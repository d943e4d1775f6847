"""`format: zarr`: the cube as a Zarr store, identical to the netCDF cube, written atomically."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sitsflow.outputs.write import open_cube, write_cube


def test_zarr_cube_equals_the_netcdf_cube(netcdf_run, zarr_run):
    with open_cube(netcdf_run / "results" / "cubes" / "p1.nc") as opened:
        netcdf = opened.load()
    path = zarr_run / "results" / "cubes" / "p1.zarr"
    assert path.is_dir() and (path / ".zmetadata").is_file()
    with open_cube(path) as opened:
        zarr = opened.load()
    assert zarr.rio.crs == netcdf.rio.crs
    assert zarr.rio.transform() == netcdf.rio.transform()
    xr.testing.assert_identical(
        zarr.drop_attrs(deep=False).drop_vars("spatial_ref"),
        netcdf.drop_attrs(deep=False).drop_vars("spatial_ref"),
    )
    ignored = {"date_created"}
    assert {k: v for k, v in zarr.attrs.items() if k not in ignored} == {
        k: v for k, v in netcdf.attrs.items() if k not in ignored
    }


def small_dataset(value: float) -> xr.Dataset:
    return xr.Dataset(
        {"B04": (("time", "y", "x"), np.full((2, 3, 4), value, np.float32))},
        coords={"time": np.array(["2024-01-01", "2024-01-06"], dtype="datetime64[ns]")},
    )


def test_rewriting_a_store_replaces_it_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "cubes" / "f.zarr"
    write_cube(small_dataset(0.1), path)
    write_cube(small_dataset(0.2), path)
    with open_cube(path) as cube:
        np.testing.assert_array_equal(cube["B04"].values, np.float32(0.2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.zarr"]


def test_a_failed_write_leaves_the_previous_store(tmp_path, monkeypatch):
    path = tmp_path / "f.zarr"
    write_cube(small_dataset(0.1), path)

    def interrupted(self, store, **kwargs):
        store.mkdir()
        (store / "partial").write_text("half written")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", interrupted)
    with pytest.raises(OSError, match="disk full"):
        write_cube(small_dataset(0.2), path)
    monkeypatch.undo()
    with open_cube(path) as cube:
        np.testing.assert_array_equal(cube["B04"].values, np.float32(0.1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.zarr"]
