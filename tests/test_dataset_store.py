"""results/dataset.zarr (sitsflow/outputs/dataset.py) from small synthetic cubes: a store built
in several append groups keeps its attributes, changed cubes are rewritten in place, removed
features and cubes of another shape rebuild the store, and cubes that cannot be stacked are
refused with the reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sitsflow.core.grid import Grid
from sitsflow.outputs import dataset as dataset_module
from sitsflow.outputs.dataset import StackError, update_dataset
from sitsflow.outputs.write import write_cube
from sitsflow.pixels.cube_model import build_dataset, provenance_attrs

TIMES = np.array(["2024-01-01", "2024-01-11", "2024-01-21"], dtype="datetime64[ns]")


def cube(
    fid: str,
    value: float,
    *,
    times: np.ndarray = TIMES,
    width: int = 3,
    label: object = "a",
    code: object = "value",
) -> xr.Dataset:
    """A 3-step, 2 x `width` pixel cube whose B04 is `value` + pixel number, `observed` a count."""
    grid = Grid(32632, 10.0, (500000.0, 5500000.0, 500000.0 + 10 * width, 5500020.0))
    values = value + np.arange(2 * width, dtype=np.float32).reshape(1, 1, 2, width)
    reflectance = np.broadcast_to(values, (len(times), 1, 2, width)).copy()
    reflectance[0, 0, 0, 0] = np.nan
    observed = np.ones((len(times), 2, width), dtype=np.uint8)
    attrs = provenance_attrs(
        feature_id=fid,
        geometry_wkt="POINT (9 49.6)",
        time_step="P10D",
        feature_attributes={"label": label, "code": int(value) if code == "value" else code},
        valid_fraction=0.5,
    )
    return build_dataset(
        grid=grid,
        times=times,
        bands=["B04"],
        reflectance=reflectance,
        classification=np.full((len(times), 2, width), 4.0, np.float32),
        classification_bands=["SCL"],
        observed=observed,
        inside=np.ones((2, width), bool),
        attrs=attrs,
    )


def write_cubes(directory: Path, cubes: dict[str, xr.Dataset]) -> list[tuple[str, Path]]:
    paths = []
    for fid, dataset in cubes.items():
        path = directory / f"{fid}.nc"
        write_cube(dataset, path)
        paths.append((fid, path))
    return paths


def opened(store: Path) -> xr.Dataset:
    with xr.open_zarr(store) as dataset:
        return dataset.load()


def test_a_store_of_several_groups_holds_every_cube_and_its_attributes(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_module, "APPEND_GROUP", 2)  # 5 cubes: groups of 2, 2 and 1
    cubes = {f"f{n}": cube(f"f{n}", float(n)) for n in range(5)}
    store = tmp_path / "dataset.zarr"
    update = update_dataset(write_cubes(tmp_path, cubes), store)
    assert update.rebuilt and update.features == 5 and update.time_steps == 3
    stacked = opened(store)
    assert list(stacked["feature"].values) == list(cubes)
    for index, one in enumerate(cubes.values()):
        np.testing.assert_array_equal(stacked["B04"].values[index], one["B04"].values)
        np.testing.assert_array_equal(stacked["observed"].values[index], one["observed"].values)
        assert stacked["code"].values[index] == index and stacked["label"].values[index] == "a"
    assert stacked["observed"].dtype == np.uint8 and stacked["B04"].dtype == np.float32
    assert stacked.attrs["time_step"] == "P10D"
    assert [fid for fid, _ in json.loads(stacked.attrs["sitsflow_features"])] == list(cubes)
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))  # no temporaries


def test_changed_cubes_are_rewritten_and_new_ones_appended(tmp_path):
    store = tmp_path / "dataset.zarr"
    cubes = {"a": cube("a", 1.0), "b": cube("b", 2.0)}
    update_dataset(write_cubes(tmp_path, cubes), store)
    cubes["b"] = cube("b", 7.0)
    cubes["c"] = cube("c", 3.0)
    write_cubes(tmp_path, {"b": cubes["b"], "c": cubes["c"]})  # a's file stays as it was
    update = update_dataset([(fid, tmp_path / f"{fid}.nc") for fid in cubes], store)
    assert not update.rebuilt and update.rewritten == ["b"] and update.appended == ["c"]
    assert update.unchanged == 1
    stacked = opened(store)
    assert list(stacked["feature"].values) == ["a", "b", "c"]
    for index, one in enumerate(cubes.values()):
        np.testing.assert_array_equal(stacked["B04"].values[index], one["B04"].values)
    np.testing.assert_array_equal(stacked["code"].values, [1, 7, 3])
    assert stacked.attrs["time_step"] == "P10D"
    again = update_dataset([(fid, tmp_path / f"{fid}.nc") for fid in cubes], store)
    assert (again.rewritten, again.appended, again.unchanged) == ([], [], 3)


def test_a_removed_feature_or_an_attribute_of_another_type_rebuilds(tmp_path):
    store = tmp_path / "dataset.zarr"
    paths = write_cubes(tmp_path, {"a": cube("a", 1.0), "b": cube("b", 2.0)})
    update_dataset(paths, store)
    update = update_dataset(paths[:1], store)
    assert update.rebuilt and "removed" in update.reason
    assert list(opened(store)["feature"].values) == ["a"]
    update = update_dataset(paths, store)
    assert not update.rebuilt and update.appended == ["b"]
    # a missing label fits the text column (as ""); a missing code does not fit the integer
    # column: the store is rebuilt with a float column (NaN)
    write_cubes(tmp_path, {"c": cube("c", 3.0, label=None)})
    paths.append(("c", tmp_path / "c.nc"))
    update = update_dataset(paths, store)
    assert not update.rebuilt and update.appended == ["c"]
    assert list(opened(store)["label"].values) == ["a", "a", ""]
    assert opened(store)["code"].dtype == np.int64
    write_cubes(tmp_path, {"d": cube("d", 4.0, code=None)})
    paths.append(("d", tmp_path / "d.nc"))
    update = update_dataset(paths, store)
    assert update.rebuilt and "'code' of 'd'" in update.reason
    codes = opened(store)["code"].values
    assert codes.dtype == np.float64
    np.testing.assert_array_equal(codes, [1.0, 2.0, 3.0, np.nan])


def test_cubes_of_other_axes_or_sizes_cannot_be_stacked(tmp_path):
    store = tmp_path / "dataset.zarr"
    other_axis = {"a": cube("a", 1.0), "b": cube("b", 2.0, times=TIMES[:2])}
    with pytest.raises(StackError, match="different time axes.*needs a time_step"):
        update_dataset(write_cubes(tmp_path, other_axis), store)
    other_size = {"a": cube("a", 1.0), "b": cube("b", 2.0, width=4)}
    with pytest.raises(StackError, match="differ in size.*mode: patch"):
        update_dataset(write_cubes(tmp_path, other_size), store)
    assert not store.exists()
    # a store exists: a cube of another shape rebuilds it (and fails the same way if it must)
    update_dataset(write_cubes(tmp_path, {"a": cube("a", 1.0), "b": cube("b", 2.0)}), store)
    write_cubes(tmp_path, {"b": cube("b", 2.0, width=4)})
    with pytest.raises(StackError, match="differ in size"):
        update_dataset([("a", tmp_path / "a.nc"), ("b", tmp_path / "b.nc")], store)
    assert list(opened(store)["feature"].values) == ["a", "b"]  # the previous store is kept
