"""Public services push back, and some stop answering (issue 14): a STAC API and an object
store that throttle (429 with `Retry-After` above a rate), a store that accepts connections and
never answers, and the plan of a run from its searches against what the run then reads.

* Throttled: the run's STAC requests keep under `stac.max_requests_per_s` (measured by the
  server over every sliding second), every 429 is waited out, no feature fails, and the cubes
  equal an unthrottled run's.
* A store that stalls one tile's files: that feature fails within its read timeouts with an
  error naming the item and the asset; the other feature completes.
* `snakemake plan`: items and files exact, bytes and requests close to what the cube jobs then
  fetch from the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import xarray as xr
from shapely.geometry import Point

from sitsflow.testing.stac_server import StacServer

pytestmark = pytest.mark.slow

POINTS = {"f1": (8.491383, 49.854370), "f2": (25.0, 60.2)}
START, END = "2022-01-10", "2022-03-10"
BANDS = ["B04", "B08"]


@pytest.fixture(scope="module")
def archive(make_archive) -> Path:
    features = {fid: Point(lonlat) for fid, lonlat in POINTS.items()}
    return make_archive(features, START, END, revisit_days=5, seed=21, clear_fraction=0.6)


@pytest.fixture
def run_workflow(make_workdir, snakemake) -> Callable[..., tuple[Path, object]]:
    """`run_workflow(name, catalog, *targets, check=True, **overrides)`: a run's working
    directory and Snakemake's result."""

    def run(
        name: str, catalog: str, *targets: str, check: bool = True, **overrides: object
    ) -> tuple[Path, object]:
        workdir = make_workdir(
            name, POINTS, catalog=catalog, start=START, end=END, crs="utm", resolution=10,
            bands=BANDS, query=None, buffer_m=300, **overrides,
        )  # fmt: skip
        cubes = [f"results/cubes/{fid}.nc" for fid in POINTS]
        return workdir, snakemake(workdir, *(targets or cubes), check=check)

    return run


def open_cube(workdir: Path, fid: str) -> xr.Dataset:
    with xr.open_dataset(workdir / "results" / "cubes" / f"{fid}.nc") as cube:
        return cube.load().drop_attrs()


def test_throttling_services_slow_the_run_but_change_nothing(archive, run_workflow):
    with StacServer(archive, default_limit=2, page_size_max=2) as clean:
        reference, _ = run_workflow("clean", clean.url, stac={"page_size": 2})
    throttled = StacServer(
        archive,
        default_limit=2,
        page_size_max=2,
        throttle_api_per_s=5,
        throttle_data_per_s=20,
        throttle_retry_after_s=1,
    )
    # the catalog's limit at the server's: pages of 2 items make ~20 search requests
    with throttled as server:
        polite, _ = run_workflow(
            "polite", server.url, stac={"page_size": 2, "max_requests_per_s": 5}
        )
        stats = server.reset_stats()
    assert stats["max_api_per_s"] <= 5, stats
    assert stats["data_throttled"] > 0, stats  # the store did push back
    # above the server's rate: told to wait, it waits, and still nothing fails
    with throttled as server:
        eager, _ = run_workflow("eager", server.url, stac={"page_size": 2, "max_requests_per_s": 0})
        eager_stats = server.reset_stats()
    assert eager_stats["api_throttled"] > 0, eager_stats
    for workdir in (polite, eager):
        for fid in POINTS:
            xr.testing.assert_identical(open_cube(workdir, fid), open_cube(reference, fid))
    logs = "".join(p.read_text() for p in (eager / "logs").rglob("*.log"))
    assert "HTTP 429" in logs


def test_a_store_that_never_answers_fails_its_feature_in_bounded_time(archive, run_workflow):
    collection = json.loads((archive / "items.json").read_text())
    f2_tile = next(
        item["properties"]["s2:mgrs_tile"]
        for item in collection["features"]
        if item["bbox"][0] <= POINTS["f2"][0] <= item["bbox"][2]
        and item["bbox"][1] <= POINTS["f2"][1] <= item["bbox"][3]
    )
    with StacServer(archive, stall_data_s=60, stall_data_match=f"/T{f2_tile}/") as server:
        started = time.monotonic()
        workdir, result = run_workflow(
            "stalled", server.url, check=False, reads={"timeout_s": 1, "retries": 1}
        )
        seconds = time.monotonic() - started
    assert result.returncode != 0
    assert seconds < 60, seconds  # 2 attempts of 1 s per file, one job retry, not 60 s each
    assert (workdir / "results" / "cubes" / "f1.nc").exists()
    assert not (workdir / "results" / "cubes" / "f2.nc").exists()
    log = (workdir / "logs" / "cube" / "f2.log").read_text()
    assert "cannot read asset" in log and "of item 'S2" in log and "timed out" in log


def test_the_plan_says_what_the_run_reads(archive, run_workflow, snakemake):
    with StacServer(archive) as server:
        workdir, _ = run_workflow("plan", server.url, "plan")
        server.reset_stats()
        snakemake(workdir, *(f"results/cubes/{fid}.nc" for fid in POINTS))
        stats = server.reset_stats()
    plan = json.loads((workdir / "results" / "plan.json").read_text())
    text = (workdir / "results" / "plan.txt").read_text()
    assert f"{len(POINTS)} features" in text and "bytes:" in text
    items = [
        len(json.loads((workdir / "results" / "items" / f"{fid}.json").read_text())["features"])
        for fid in POINTS
    ]
    assert plan["items"] == sum(items)
    assert plan["files"] == sum(items) * (len(BANDS) + 1)  # and the SCL
    assert 0.75 <= plan["bytes"] / stats["data_bytes"] <= 1.25, (plan, stats)
    assert 0.75 <= plan["requests"] / stats["data_requests"] <= 1.25, (plan, stats)
    assert plan["items_per_feature"]["min"] == min(items)
    assert plan["items_per_feature"]["max"] == max(items)
