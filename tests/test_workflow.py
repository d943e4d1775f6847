"""End to end: the Snakemake workflow against a demo archive served over HTTP on 127.0.0.1.

The demo archive is searched through a STAC API (item-search, query extension, `next` paging)
and its COGs are read with HTTP range requests. Every cube value is then checked against an
independent computation from the generator's COGs read locally: DN -> reflectance, SCL mask,
per-pixel `np.interp` along real time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401 (registers the .rio accessor)
import xarray as xr
import yaml
from shapely.geometry import Point

from sitsflow.core.layout import Layout
from sitsflow.core.pipeline import STAGE_NAMES
from sitsflow.testing.settings import settings_for
from sitsflow.testing.stac_server import StacServer
from tests.conftest import VECTOR_FILE
from tests.helpers import expected_cube, jobs_run, write_features

LAYOUT = Layout()

pytestmark = pytest.mark.slow  # and `integration`, as they request `snakemake`

MASK_CLASSES = [0, 1, 3, 8, 9, 10]
# the schema's default edge bound of the gap-fill, which the workflow runs with
MAX_EDGE_DAYS = settings_for().cube.gapfill.max_edge_days
BANDS = ["B03", "B04", "B08"]
# 2022-01-10..2022-03-10 straddles the processing baseline 04.00 switch (2022-01-25).
START, END = "2022-01-10", "2022-03-10"
POINTS = {"p1": (8.491383, 49.854370), "p60n": (25.0, 60.2), "p3": (-1.25, 44.55)}


@pytest.fixture(scope="module")
def archive(make_archive) -> Path:
    features = {fid: Point(lonlat) for fid, lonlat in POINTS.items()}
    features["extra"] = Point(11.176778, 50.013801)  # archive also covers the 4th point
    return make_archive(features, START, END, revisit_days=5, seed=7, clear_fraction=0.6)


@pytest.fixture(scope="module")
def server(archive):
    # Small pages so that every search pages through `next` links.
    with StacServer(archive, default_limit=5, page_size_max=5) as running:
        yield running


@pytest.fixture(scope="module")
def run(make_workdir, snakemake, server):
    workdir = make_workdir(
        "run", POINTS, catalog=server.url, start=START, end=END, crs="utm", resolution=10,
        bands=BANDS, query={"eo:cloud_cover": {"lt": 30}}, buffer_m=300,
    )  # fmt: skip
    server.reset_stats()
    snakemake(workdir)
    return workdir, dict(server.stats)


def test_cubes_match_the_archive(run, archive):
    workdir, stats = run
    assert stats["api_requests"] > 0 and stats["range_requests"] > 0
    filled_pixels = 0
    for fid in POINTS:
        items = json.loads((workdir / "results" / "items" / f"{fid}.json").read_text())["features"]
        assert items, f"no items for {fid}"
        assert all(i["properties"]["eo:cloud_cover"] < 30 for i in items)
        assert all(i["assets"]["B04"]["href"].startswith("http://127.0.0.1") for i in items)
        cube_path = workdir / "results" / "cubes" / f"{fid}.nc"
        with xr.open_dataset(cube_path, decode_coords="all") as cube:
            cube.load()
        assert cube.rio.crs.to_epsg() == 32600 + int((POINTS[fid][0] + 180) // 6) + 1
        assert cube.rio.resolution() == (10.0, -10.0)
        expected = expected_cube(archive, items, cube, BANDS, MASK_CLASSES, MAX_EDGE_DAYS)
        np.testing.assert_array_equal(cube["time"].values, expected["times"])
        np.testing.assert_array_equal(cube["observed"].values.astype(bool), expected["observed"])
        filled_pixels += int((~expected["observed"]).sum())
        for band in BANDS:
            assert cube[band].dtype == np.float32
            np.testing.assert_allclose(cube[band].values, expected[band], rtol=0, atol=1e-6)
        assert cube.attrs["feature_id"] == fid
        assert json.loads(cube.attrs["item_ids"]) == [i["id"] for i in items]
        assert cube.attrs["gapfill_method"] == "linear"
        assert json.loads(cube.attrs["mask_classes"]) == MASK_CLASSES
        assert "stackstac" in json.loads(cube.attrs["software_versions"])
    assert filled_pixels > 1000, "the archive should have clouds for the gap-fill to fill"


def test_job_logs_have_timings_and_no_warnings(run):
    workdir, _ = run
    logs = sorted((workdir / "logs").rglob("*.log"))
    # per feature: bbox, cube; once: search, quicklooks, timeseries, summary
    assert len(logs) == 2 * len(POINTS) + 4
    for log in logs:
        text = log.read_text()
        assert "done in" in text, log
        assert "WARNING" not in text and "Traceback" not in text, (log, text)
    # each point is alone in its search group: its tiles are no other job's, none is cached
    for fid in POINTS:
        assert "range cache: not used" in (workdir / "logs" / "cube" / f"{fid}.log").read_text()


def test_offset_removed_across_baseline_change(run, archive):
    workdir, _ = run
    with xr.open_dataset(workdir / "results" / "cubes" / "p1.nc") as cube:
        observed = cube["observed"].values.astype(bool)
        red = cube["B04"].values
        before = cube["time"].values < np.datetime64("2022-01-25")
    # Without the offset removal, values after the switch would jump by 0.1.
    median_before = np.nanmedian(np.where(observed[before], red[before], np.nan))
    median_after = np.nanmedian(np.where(observed[~before], red[~before], np.nan))
    assert abs(median_after - median_before) < 0.05


def test_summary_lists_every_feature(run):
    workdir, _ = run
    lines = (workdir / "results" / "summary.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
    assert sorted(r["feature_id"] for r in rows) == sorted(POINTS)
    for row in rows:
        assert row["status"] == "ok"
        assert 0 < float(row["valid_fraction"]) <= 1
        assert int(row["n_time_steps"]) == int(row["n_items"]) > 0


def test_second_run_does_nothing(run, snakemake):
    workdir, _ = run
    result = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


# What one new or edited feature reruns: its own jobs, plus the jobs over all features.
# A feature's own jobs, and the run-wide jobs an edit of the vector file reruns (the search job
# searches only the feature's group again).
PER_FEATURE_JOBS = {
    **{rule: 1 for rule in ("bbox", "cube")},
    **{rule: 1 for rule in ("search", "quicklooks", "timeseries", "summary", "all")},
}


def test_appending_a_feature_adds_exactly_its_jobs(run, snakemake, tmp_path):
    workdir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    points = {**POINTS, "extra": (11.176778, 50.013801)}
    write_features(copy / VECTOR_FILE, points)
    before = feature_files(copy, POINTS)
    assert jobs_run(snakemake(copy)) == PER_FEATURE_JOBS
    # no other feature's file was rewritten: not its cube, time series nor quicklook
    after = feature_files(copy, POINTS)
    assert {path for path in after if after[path] != before[path]} == set()
    assert set(feature_files(copy, ["extra"])) == {
        LAYOUT.path(stage, "extra") for stage in STAGE_NAMES
    }


@pytest.mark.parametrize(
    ("stage", "rule"), [("timeseries", "timeseries"), ("quicklook", "quicklooks")]
)
def test_a_deleted_file_of_a_run_wide_job_is_made_again_alone_and_once(
    run, snakemake, tmp_path, stage, rule
):
    """The CSVs and quicklooks are not outputs of the run-wide jobs that keep them (Snakemake
    would remove them all before the job runs): one deleted by hand is made again, alone."""
    workdir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    (copy / LAYOUT.path(stage, "p1")).unlink()
    before = feature_files(copy, POINTS)
    assert jobs_run(snakemake(copy)) == {rule: 1, "all": 1}
    after = feature_files(copy, POINTS)
    assert {path for path in after if after[path] != before.get(path)} == {LAYOUT.path(stage, "p1")}
    assert (copy / LAYOUT.path(stage, "p1")).read_bytes() == (
        workdir / LAYOUT.path(stage, "p1")
    ).read_bytes()
    assert "Nothing to be done" in snakemake(copy, "--dry-run").stdout


def feature_files(workdir: Path, fids) -> dict[str, tuple[int, int]]:
    """Every per-feature file of `fids` (bbox, items, cube, quicklook, time series) -> its
    modification time and size."""
    found = {}
    for fid in fids:
        for stage in STAGE_NAMES:
            path = workdir / LAYOUT.path(stage, fid)
            if path.exists():
                stat = path.stat()
                found[LAYOUT.path(stage, fid)] = (stat.st_mtime_ns, stat.st_size)
    return found


def test_editing_one_feature_reruns_only_it(run, snakemake, tmp_path):
    workdir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    write_features(copy / VECTOR_FILE, {**POINTS, "p1": (8.4915, 49.8545)})
    assert jobs_run(snakemake(copy)) == PER_FEATURE_JOBS


def test_a_new_date_range_searches_again_and_redoes_every_cube(run, snakemake, tmp_path):
    # The search reruns (its params changed) and so would mask, in an ordinary DAG, the cube
    # jobs behind their ancient group input: the checkpoint has them judged on their own params.
    workdir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["end"] = "2022-02-20"
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = jobs_run(snakemake(copy))
    assert jobs["search"] == 1 and jobs["cube"] == len(POINTS) and "bbox" not in jobs
    for fid in POINTS:
        with xr.open_dataset(copy / "results" / "cubes" / f"{fid}.nc") as cube:
            assert cube["time"].values.max() <= np.datetime64("2022-02-21")
