"""Failure isolation: one feature's failure never stops the others, and is reported.

The contract (README, "When things go wrong"; docs/how-it-works.md): a feature without items
gets a valid cube with an empty time axis and status `no_items`; a feature whose job fails has
no cube, a `failed` row in `results/summary.csv` with the last error line of its log, the other
features complete, and Snakemake exits non-zero at the end. The next run redoes only the failed
feature and rebuilds the summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import Point

from sitsflow.core.atomic import sweep_temporaries
from sitsflow.core.errors import AssetError
from sitsflow.core.layout import Layout
from sitsflow.outputs.summary import (
    COLUMNS,
    failure_row,
    last_error,
    summarise_failed_run,
    summarise_run,
    write_failure_summary,
)
from sitsflow.pixels.load import asset_error
from sitsflow.testing.stac_server import StacServer

START, END = "2022-01-10", "2022-01-31"
GOOD, BROKEN, NOWHERE = "good", "broken", "nowhere"
POINTS = {GOOD: Point(8.49, 49.85), BROKEN: Point(25.0, 60.2), NOWHERE: Point(-30.0, 40.0)}


# ---- end to end: a COG the broken feature needs answers 404 ---------------------------------


@pytest.fixture(scope="module")
def archive(make_archive) -> tuple[Path, dict]:
    """Demo archive of GOOD and BROKEN (a private copy: the tests delete and restore a COG);
    returns (archive dir, the broken asset's item and path)."""
    features = {GOOD: POINTS[GOOD], BROKEN: POINTS[BROKEN]}
    root = make_archive(features, START, END, revisit_days=5, seed=5, private=True)
    items = json.loads((root / "items.json").read_text())["features"]
    victim = next(i for i in items if "T35" in i["id"])  # BROKEN is in UTM zone 35
    cog = root / victim["assets"]["B04"]["href"]
    keep = root / "kept-B04.tif"
    shutil.move(cog, keep)
    return root, {"item": victim["id"], "cog": cog, "kept": keep}


@pytest.fixture(scope="module")
def server(archive):
    with StacServer(archive[0]) as running:
        yield running


@pytest.fixture(scope="module")
def failed_run(make_workdir, snakemake, server):
    workdir = make_workdir(
        "failures-run", POINTS, catalog=server.url, start=START, end=END, crs="utm",
        resolution=20, buffer_m=300, query=None, bands=["B04", "B08"],
    )  # fmt: skip
    return workdir, snakemake(workdir, check=False)


def summary_of(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(workdir / "results" / "summary.csv", keep_default_na=False).set_index(
        "feature_id"
    )


@pytest.mark.slow
def test_run_exits_non_zero_and_says_which_feature_failed(failed_run):
    _, result = failed_run
    assert result.returncode != 0
    assert f"1 of 3 feature(s) failed: ['{BROKEN}']" in result.stderr


@pytest.mark.slow
def test_other_features_complete(failed_run):
    workdir, _ = failed_run
    cubes = workdir / "results" / "cubes"
    assert not (cubes / f"{BROKEN}.nc").exists()
    with xr.open_dataset(cubes / f"{GOOD}.nc") as good:
        assert good.attrs["status"] == "ok" and good.sizes["time"] == 5
        assert np.isfinite(good["B04"].values).any()
    with xr.open_dataset(cubes / f"{NOWHERE}.nc", decode_coords="all") as empty:
        assert empty.attrs["status"] == "no_items" and empty.attrs["n_items"] == 0
        assert empty.sizes["time"] == 0 and empty.sizes["x"] > 0 and empty.sizes["y"] > 0
        assert {"B04", "B08", "SCL", "observed"} <= set(empty.data_vars)
        assert empty.rio.crs is not None


@pytest.mark.slow
def test_summary_names_the_failed_item_and_asset(failed_run, archive):
    workdir, _ = failed_run
    summary = summary_of(workdir)
    assert list(summary.reset_index().columns) == COLUMNS
    assert summary.loc[GOOD, "status"] == "ok" and summary.loc[GOOD, "error"] == ""
    assert summary.loc[NOWHERE, "status"] == "no_items"
    assert int(summary.loc[NOWHERE, "n_time_steps"]) == 0
    row = summary.loc[BROKEN]
    assert row["status"] == "failed" and row["log"] == f"logs/cube/{BROKEN}.log"
    assert row["error"].startswith("cube: AssetError: cannot read asset 'B04' of item ")
    assert archive[1]["item"] in row["error"] and "HTTP 404" in row["error"]


@pytest.mark.slow
def test_next_run_redoes_only_the_failed_feature_and_rebuilds_the_summary(
    failed_run, archive, snakemake
):
    workdir, _ = failed_run
    _, broken = archive
    shutil.copy(broken["kept"], broken["cog"])  # the provider fixed the file
    good_cube = workdir / "results" / "cubes" / f"{GOOD}.nc"
    good_written = good_cube.stat().st_mtime_ns

    snakemake(workdir)

    summary = summary_of(workdir)
    assert summary.loc[BROKEN, "status"] == "ok" and summary.loc[BROKEN, "error"] == ""
    assert int(summary.loc[BROKEN, "n_time_steps"]) == 5
    assert good_cube.stat().st_mtime_ns == good_written, "a completed feature was redone"


# ---- the summary's pieces -------------------------------------------------------------------


TRACEBACK = """2026-01-01 10:00:00 INFO sitsflow: cube f: started
2026-01-01 10:00:01 ERROR sitsflow: cube f: failed after 1.00 s
Traceback (most recent call last):
  File "scripts/cube.py", line 20, in <module>
RuntimeError: Error opening 'http://x/a.tif'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "sitsflow/pixels/load.py", line 99, in load_reflectance
sitsflow.core.errors.AssetError: cannot read asset 'B04' of item 'I1'
"""


def test_last_error_is_the_final_exception_without_module_path(tmp_path):
    log = tmp_path / "f.log"
    log.write_text(TRACEBACK)
    assert last_error(log) == "AssetError: cannot read asset 'B04' of item 'I1'"
    log.write_text(TRACEBACK + "  second line of a multi-line message\n")
    assert last_error(log).endswith("'I1' second line of a multi-line message")
    log.write_text("2026-01-01 INFO sitsflow: cube f: started\n")
    assert last_error(log) is None
    assert last_error(tmp_path / "absent.log") is None


def test_failure_row_blames_the_first_job_without_output(tmp_path):
    (tmp_path / "logs" / "items").mkdir(parents=True)
    (tmp_path / "logs" / "items" / "f.log").write_text(
        "Traceback (most recent call last):\nsitsflow.errors.CatalogError: boom\n"
    )
    (tmp_path / "results" / "bbox").mkdir(parents=True)
    (tmp_path / "results" / "bbox" / "f.geojson").write_text("{}")
    row = failure_row("f", Layout(), tmp_path)
    assert row["status"] == "failed" and row["log"] == "logs/items/f.log"
    assert row["error"] == "items: CatalogError: boom"
    silent = failure_row("g", Layout(), tmp_path)  # killed: no traceback in a log
    assert silent["error"].startswith("bbox: the bbox job failed without an error message")


def feature_files(root: Path, fid: str) -> None:
    """The bbox and search outputs of feature `fid` (their content does not matter here)."""
    for output in (f"results/bbox/{fid}.geojson", f"results/items/{fid}.json"):
        (root / output).parent.mkdir(parents=True, exist_ok=True)
        (root / output).write_text("{}")


def tiny_cube(root: Path, fid: str) -> Path:
    """A feature's outputs, its cube with an empty time axis at results/cubes/{fid}.nc."""
    feature_files(root, fid)
    cube = root / "results" / "cubes" / f"{fid}.nc"
    cube.parent.mkdir(parents=True, exist_ok=True)
    xr.Dataset(
        {"B04": (("time", "y", "x"), np.zeros((0, 2, 2), np.float32))},
        coords={"time": np.array([], "datetime64[ns]"), "y": [1.0, 0.0], "x": [0.0, 1.0]},
        attrs={"feature_id": fid, "status": "no_items", "n_items": 0},
    ).to_netcdf(cube)
    return cube


def test_failure_summary_is_older_than_every_cube(tmp_path):
    """So that Snakemake reruns the `summary` rule on the next run, whatever else happens."""
    cube = tiny_cube(tmp_path, "a")
    table = write_failure_summary(["a", "b"], Layout(), root=tmp_path)
    assert list(table["status"]) == ["no_items", "failed"]
    summary = tmp_path / "results" / "summary.csv"
    assert summary.stat().st_mtime < cube.stat().st_mtime
    assert pd.read_csv(summary)["feature_id"].tolist() == ["a", "b"]


def test_cube_of_an_earlier_run_does_not_hide_an_items_failure(tmp_path):
    """The feature's items were not made now (their file is gone): the old cube is out of date."""
    tiny_cube(tmp_path, "a")
    (tmp_path / "results" / "items" / "a.json").unlink()
    (row,) = summarise_run(["a"], Layout(), tmp_path).to_dict("records")
    assert row["status"] == "failed" and row["log"] == "logs/items/a.log"


def test_summary_rule_output_is_kept_when_only_a_later_job_failed(tmp_path):
    """Every cube exists and the summary is newer: a failed quicklook must not touch it."""
    tiny_cube(tmp_path, "a")
    summary = tmp_path / "results" / "summary.csv"
    summary.write_text("written by the summary rule\n")
    message = summarise_failed_run(["a"], Layout(), tmp_path)
    assert summary.read_text() == "written by the summary rule\n"
    assert message.startswith("every feature's cube is complete")


def test_failed_run_handler_lists_failures_and_removes_leftovers(tmp_path):
    tiny_cube(tmp_path, "a")
    leftover = tmp_path / "results" / "cubes" / ".b.nc.tmp-4242"
    leftover.write_bytes(b"half a cube")
    message = summarise_failed_run(["a", "b"], Layout(), tmp_path)
    assert message.startswith("1 of 2 feature(s) failed: ['b']")
    assert not leftover.exists()
    assert pd.read_csv(tmp_path / "results" / "summary.csv")["status"].tolist() == [
        "no_items",
        "failed",
    ]


def test_unreadable_cube_is_reported_not_fatal(tmp_path):
    feature_files(tmp_path, "a")
    cube = tmp_path / "results" / "cubes" / "a.nc"
    cube.parent.mkdir(parents=True)
    cube.write_bytes(b"not netcdf")
    (row,) = summarise_run(["a"], Layout(), tmp_path).to_dict("records")
    assert row["status"] == "failed" and "cannot read results/cubes/a.nc" in row["error"]


def dead_pid() -> int:
    """The pid of a process that has exited."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    return int(finished.stdout)


def test_temporaries_of_dead_processes_are_swept(tmp_path):
    results = tmp_path / "results"
    (results / "cubes").mkdir(parents=True)
    (results / "quicklooks").mkdir()
    dead = dead_pid()
    stale = [
        results / "cubes" / f".a.nc.tmp-{dead}",
        results / "quicklooks" / f".a.png.tmp-{dead}",
        results / f".summary.csv.tmp-{dead}",
    ]
    for path in stale:
        path.write_bytes(b"half written")
    stale_store = results / "cubes" / f".b.zarr.tmp-{dead}"  # a Zarr store: a directory
    (stale_store / "B04").mkdir(parents=True)
    in_progress = results / "cubes" / f".c.nc.tmp-{os.getpid()}"  # its writer is alive
    in_progress.write_bytes(b"being written")
    keep = [results / "cubes" / "a.nc", results / "cubes" / ".notes.tmp-draft"]
    for path in keep:
        path.write_bytes(b"not a leftover")

    removed = sweep_temporaries(results)

    assert sorted(removed) == sorted([*stale, stale_store])
    assert not any(path.exists() for path in [*stale, stale_store])
    assert in_progress.exists() and all(path.exists() for path in keep)


def test_asset_error_maps_the_href_back_to_item_and_band_without_the_token():
    items = [
        {"id": "I1", "assets": {"B04": {"href": "https://h/c/I1/B04.tif"}}},
        {"id": "I2", "assets": {"B04": {"href": "https://h/c/I2/B04.tif"}}},
    ]
    stackstac_error = RuntimeError(
        "Error reading Window(col_off=0, row_off=0, width=8, height=8) from "
        "'https://h/c/I2/B04.tif?st=2026&sig=SECRET': RasterioIOError('Read failed: "
        "/vsicurl/https://h/c/I2/B04.tif?st=2026&sig=SECRET')"
    )
    error = asset_error(stackstac_error, items, ["B04"])
    assert isinstance(error, AssetError)
    assert str(error).startswith("cannot read asset 'B04' of item 'I2' (https://h/c/I2/B04.tif)")
    assert "SECRET" not in str(error)
    assert asset_error(RuntimeError("something else"), items, ["B04"]) is None
