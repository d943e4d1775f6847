"""ML-ready outputs (issue 15) on the shared demo archive: `mode: patch`, `time_step: P10D`,
`dataset: true` and `attributes`. Every cube has the run's 10-day axis, results/dataset.zarr
holds the cubes value for value, adding a feature writes only that feature's part of the store,
the tables carry the attribute columns, and `timeseries.layout: wide` has one row per feature
and date."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from shapely.geometry import Point

from sitsflow.outputs.timeseries import read_timeseries_csv
from sitsflow.outputs.write import open_cube
from sitsflow.pixels.timeaxis import regular_axis
from tests.conftest import VECTOR_FILE, shared_run_config
from tests.helpers import (
    ARCHIVE_FEATURES,
    BANDS,
    EMPTY_FEATURE,
    END,
    INDICES,
    START,
    dry_run_jobs,
    jobs_run,
    write_features,
)

P1 = ARCHIVE_FEATURES["p1"]
# Points around p1 fall in its tile of the archive (1920 m around p1); `nowhere` has no items.
FEATURES = {
    "p1": P1,
    "poly": ARCHIVE_FEATURES["poly"],
    "p1-east": Point(P1.x + 0.006, P1.y),
    "p1-north": Point(P1.x, P1.y + 0.005),
    EMPTY_FEATURE[0]: EMPTY_FEATURE[1],
}
LABELS: dict[str, dict[str, object]] = {
    "p1": {"label": "crop", "pt_id": 2},
    "poly": {"label": "forest", "pt_id": 5},
    "p1-east": {"label": "crop", "pt_id": 2},
    "p1-north": {"label": "water", "pt_id": 7},
    EMPTY_FEATURE[0]: {"label": "sea", "pt_id": 9},
}
NEW = ("p1-south", Point(P1.x, P1.y - 0.005), {"label": "grass", "pt_id": 3})
PATCH = [12, 10]  # nx, ny: not square, so that x and y cannot be swapped unnoticed
VARIABLES = [*BANDS, *INDICES, "SCL", "observed"]
FEATURE_DIMENSION_ARRAYS = ("feature",)  # the 1-D coordinates along `feature`


def write_vector(workdir: Path, features: dict, labels: dict) -> None:
    write_features(workdir / VECTOR_FILE, features, labels)


@pytest.fixture(scope="module")
def run(make_workdir, snakemake, demo_archive) -> Path:
    config = {
        **shared_run_config(demo_archive), "mode": "patch", "patch_size": PATCH,
        "time_step": "P10D", "dataset": True, "attributes": ["label", "pt_id"],
    }  # fmt: skip
    workdir = make_workdir("dataset", FEATURES, **config)
    write_vector(workdir, FEATURES, LABELS)
    snakemake(workdir)
    return workdir


def copy_of(workdir: Path, tmp_path_factory, name: str) -> Path:
    """A copy of a finished run, modification times kept (nothing in it is out of date)."""
    copy = tmp_path_factory.mktemp(name) / "run"
    shutil.copytree(workdir, copy, symlinks=True)
    return copy


def load_cube(workdir: Path, fid: str) -> xr.Dataset:
    with open_cube(workdir / "results" / "cubes" / f"{fid}.nc") as cube:
        return cube.load()


def open_dataset(workdir: Path) -> xr.Dataset:
    with xr.open_zarr(workdir / "results" / "dataset.zarr") as dataset:
        return dataset.load()


def assert_dataset_equals_cubes(workdir: Path, fids: list[str], labels: dict) -> None:
    dataset = open_dataset(workdir)
    assert list(dataset["feature"].values) == fids
    assert dict(dataset.sizes) == {
        "feature": len(fids), "time": dataset.sizes["time"], "y": PATCH[1], "x": PATCH[0],
    }  # fmt: skip
    for index, fid in enumerate(fids):
        cube = load_cube(workdir, fid)
        one = dataset.isel(feature=index)
        np.testing.assert_array_equal(dataset["time"].values, cube["time"].values)
        for name in [*VARIABLES, "inside"]:
            assert one[name].dims == cube[name].dims, name
            assert one[name].dtype == cube[name].dtype, name
            np.testing.assert_array_equal(one[name].values, cube[name].values, err_msg=name)
        np.testing.assert_array_equal(one["grid_x"].values, cube["x"].values)
        np.testing.assert_array_equal(one["grid_y"].values, cube["y"].values)
        assert one["label"].item() == labels[fid]["label"]
        assert one["pt_id"].item() == labels[fid]["pt_id"]
        assert json.loads(cube.attrs["feature_attributes"]) == labels[fid]
        centroid = cube.attrs["geometry_wkt"]
        assert one["lon"].item() == pytest.approx(_centroid(centroid)[0], abs=1e-6)
        assert one["lat"].item() == pytest.approx(_centroid(centroid)[1], abs=1e-6)
    assert dataset["pt_id"].dtype == np.int64
    assert dataset.attrs["time_step"] == "P10D" and dataset.attrs["composite"] == "median"


def _centroid(wkt_text: str) -> tuple[float, float]:
    from shapely import wkt

    point = wkt.loads(wkt_text).centroid
    return point.x, point.y


def test_every_cube_has_the_same_ten_day_axis(run):
    axis = regular_axis(START, END, "P10D")
    assert len(axis.starts) == 6  # 01-10, 01-20, 01-30, 02-09, 02-19, 03-01
    for fid in FEATURES:
        cube = load_cube(run, fid)
        np.testing.assert_array_equal(cube["time"].values, axis.times, err_msg=fid)
        assert cube.attrs["time_step"] == "P10D" and cube.attrs["composite"] == "median"
        count = cube["observed"].values
        assert count.dtype == np.uint8
        intervals = json.loads(cube.attrs["time_step_items"])
        assert len(intervals) == len(axis.starts)
        for start, end, days, counts in zip(axis.starts, axis.ends, intervals, count, strict=True):
            assert all(start.isoformat() <= day["date"] < end.isoformat() for day in days)
            # one observation per clear solar day at most; a median uses every clear day
            assert counts.max() <= len(days)
            assert counts.sum() == sum(day["pixels"] for day in days)
        if fid != EMPTY_FEATURE[0]:
            # every 5 days, 2 acquisitions per interval: some composites are of 2 days
            assert count.max() == 2, fid
        else:
            assert (count == 0).all() and np.isnan(cube["B04"].values).all()


def test_dataset_equals_the_cubes(run):
    assert_dataset_equals_cubes(run, list(FEATURES), LABELS)
    manifest = json.loads((run / "results" / "dataset.json").read_text())
    assert manifest["rebuilt"] and manifest["appended"] == list(FEATURES)


def test_timeseries_table_has_the_attribute_columns(run):
    table = pd.read_parquet(run / "results" / "timeseries.parquet")
    assert list(table.columns) == [
        "id", "label", "pt_id", "time", "band", "value", "observed", "n_pixels",
    ]  # fmt: skip
    assert table["label"].dtype == "string" and table["pt_id"].dtype == "Int64"
    for fid, labels in LABELS.items():
        rows = table[table["id"] == fid]
        assert len(rows) == 6 * len(BANDS + INDICES), fid
        assert set(rows["label"]) == {labels["label"]} and set(rows["pt_id"]) == {labels["pt_id"]}
    csv = read_timeseries_csv(run / "results" / "timeseries" / "p1.csv")
    assert list(csv.columns) == list(table.columns) and set(csv["label"]) == {"crop"}


def test_changing_the_time_step_reruns_the_cubes_only(run, snakemake):
    for change in ("time_step=P16D", "composite=max_ndvi"):
        jobs = dry_run_jobs(snakemake(run, "--dry-run", "--config", change))
        assert jobs.get("cube") == len(FEATURES), (change, jobs)
        assert "bbox" not in jobs and "search" not in jobs, (change, jobs)
    assert dry_run_jobs(snakemake(run, "--dry-run")) == {}


def chunk_files(store: Path) -> dict[str, tuple[int, int, str]]:
    """Every file of a Zarr v2 store -> (size, modification time, SHA-256)."""
    return {
        str(path.relative_to(store)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in store.rglob("*")
        if path.is_file()
    }


def feature_index(store: Path, name: str) -> int | None:
    """The feature index of a chunk file `array/i.j...` of an array whose first dimension is
    `feature` and that has more (one feature per chunk); None for any other file."""
    array, _, key = name.partition("/")
    if not key or key.startswith("."):
        return None
    dims = json.loads((store / array / ".zattrs").read_text())["_ARRAY_DIMENSIONS"]
    if dims[0] != "feature" or len(dims) == 1:
        return None
    return int(key.split(".")[0])


@pytest.fixture(scope="module")
def appended(run, snakemake, tmp_path_factory):
    workdir = copy_of(run, tmp_path_factory, "dataset-append")
    store = workdir / "results" / "dataset.zarr"
    before = chunk_files(store)
    fid, geometry, labels = NEW
    write_vector(workdir, {**FEATURES, fid: geometry}, {**LABELS, fid: labels})
    result = snakemake(workdir)
    return workdir, before, chunk_files(store), result


@pytest.mark.slow  # 12 s on 2 cores: its fixture reruns the workflow with one more feature
def test_appending_a_feature_writes_only_its_part_of_the_dataset(appended):
    workdir, before, after, result = appended
    store = workdir / "results" / "dataset.zarr"
    jobs = jobs_run(result)
    assert jobs["cube"] == 1 and jobs["bbox"] == 1 and jobs["dataset"] == 1, jobs
    manifest = json.loads((workdir / "results" / "dataset.json").read_text())
    assert manifest["appended"] == [NEW[0]] and manifest["rewritten"] == []
    assert not manifest["rebuilt"] and manifest["unchanged"] == len(FEATURES)
    changed = {name for name in after if before.get(name) != after[name]}
    new_index = len(FEATURES)
    old_chunks = [name for name in before if feature_index(store, name) is not None]
    # a chunk per feature and variable (an all-NaN chunk, as `nowhere`'s, is not stored)
    assert len(old_chunks) >= (len(FEATURES) - 1) * len(VARIABLES)
    # not one byte, not one modification time of another feature's chunks
    assert all(after.get(name) == before[name] for name in old_chunks)
    written = {name for name in changed if feature_index(store, name) is not None}
    assert written and {feature_index(store, name) for name in written} == {new_index}
    assert {name.split("/")[0] for name in written} >= {*VARIABLES, "inside", "grid_x"}
    # what else changed: array metadata (the longer shape), and the one chunk of each 1-D
    # coordinate along feature (id, lon, lat, the attributes...), which holds every feature
    others = changed - written
    assert all(
        name.rsplit("/", 1)[-1] in (".zarray", ".zattrs", ".zgroup", ".zmetadata")
        or name.endswith("/0")
        for name in others
    ), sorted(others)
    assert {"label/0", "pt_id/0", "feature/0", "lon/0"} <= others
    assert_dataset_equals_cubes(workdir, [*FEATURES, NEW[0]], {**LABELS, NEW[0]: NEW[2]})


@pytest.mark.slow  # 12 s on 2 cores: two more runs
def test_relabelling_a_feature_rewrites_its_cube_and_its_region_only(
    run, snakemake, tmp_path_factory
):
    workdir = copy_of(run, tmp_path_factory, "dataset-relabel")
    store = workdir / "results" / "dataset.zarr"
    before = chunk_files(store)
    labels = {**LABELS, "p1-east": {"label": "fallow", "pt_id": 4}}
    write_vector(workdir, FEATURES, labels)
    result = snakemake(workdir)
    jobs = jobs_run(result)
    assert jobs["cube"] == 1 and "bbox" not in jobs and jobs["dataset"] == 1, jobs
    after = chunk_files(store)
    index = list(FEATURES).index("p1-east")
    for name, entry in before.items():
        if feature_index(store, name) not in (None, index):
            assert after[name] == entry, name
    manifest = json.loads((workdir / "results" / "dataset.json").read_text())
    assert manifest["rewritten"] == ["p1-east"] and manifest["appended"] == []
    assert_dataset_equals_cubes(workdir, list(FEATURES), labels)


def test_a_deleted_store_is_rebuilt(run, snakemake, tmp_path_factory):
    workdir = copy_of(run, tmp_path_factory, "dataset-deleted")
    shutil.rmtree(workdir / "results" / "dataset.zarr")
    jobs = jobs_run(snakemake(workdir))
    assert jobs.get("dataset") == 1 and "cube" not in jobs, jobs
    assert_dataset_equals_cubes(workdir, list(FEATURES), LABELS)


def test_wide_layout_has_a_row_per_feature_and_date(run, snakemake, tmp_path_factory):
    workdir = copy_of(run, tmp_path_factory, "dataset-wide")
    long = pd.read_parquet(run / "results" / "timeseries.parquet")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["timeseries"] = {**config.get("timeseries", {}), "layout": "wide"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = jobs_run(snakemake(workdir))
    assert jobs.get("timeseries") == 1 and "cube" not in jobs and "dataset" not in jobs, jobs
    wide = pd.read_parquet(workdir / "results" / "timeseries.parquet")
    variables = BANDS + INDICES
    assert list(wide.columns) == [
        "id", "label", "pt_id", "time", *variables, "observed", "n_pixels",
    ]  # fmt: skip
    assert wide.shape == (len(FEATURES) * 6, 4 + len(variables) + 2)
    assert all(wide[name].dtype == np.float32 for name in variables)
    # the same values as the long table, one column per band and index
    pivot = long.pivot(index=["id", "time"], columns="band", values="value")
    indexed = wide.set_index(["id", "time"]).sort_index()
    pd.testing.assert_frame_equal(
        indexed[variables],
        pivot.loc[indexed.index, variables],
        check_names=False,
        check_column_type=False,
    )
    observed = long.groupby(["id", "time"])["observed"].first()
    np.testing.assert_array_equal(indexed["observed"], observed.loc[indexed.index])
    csv = read_timeseries_csv(workdir / "results" / "timeseries" / "poly.csv")
    assert csv.shape == (6, len(wide.columns)) and csv[variables[0]].dtype == np.float32


@pytest.mark.slow  # 15 s on 2 cores: a whole run in batch mode
def test_batch_mode_makes_the_same_dataset_and_table(run, make_workdir, snakemake):
    workdir = make_workdir.like(run, "dataset-batches", batch_size=2)
    result = snakemake(workdir)
    assert jobs_run(result)["batch"] >= 2 and "cube" not in jobs_run(result)
    per_feature, batched = open_dataset(run), open_dataset(workdir)
    assert list(batched["feature"].values) == list(FEATURES)
    xr.testing.assert_identical(batched.drop_attrs(deep=False), per_feature.drop_attrs(deep=False))
    keys = ["id", "band", "time"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(workdir / "results" / "timeseries.parquet").sort_values(
            keys, ignore_index=True
        ),
        pd.read_parquet(run / "results" / "timeseries.parquet").sort_values(
            keys, ignore_index=True
        ),
    )


def test_the_readme_training_example_gives_a_frame_and_an_array(run, monkeypatch):
    """README "Training data": its five lines, run in this run's directory (whose vector file
    has `pt_id` too), give the table and a (N, T, C, H, W) float32 array with the labels."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Training data", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.splitlines()[0].startswith("# make run") and len(code.splitlines()) == 5
    monkeypatch.chdir(run)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    x, y, frame = namespace["x"], namespace["y"], namespace["frame"]
    assert x.shape == (len(FEATURES), 6, 3, PATCH[1], PATCH[0]) and x.dtype == np.float32
    assert list(y) == [LABELS[fid]["pt_id"] for fid in FEATURES]
    np.testing.assert_array_equal(x[0, :, 2], load_cube(run, "p1")["B08"].values)
    assert {"id", "pt_id", "time"} <= set(frame.columns)
