"""The workflow on a real SLURM cluster through profiles/slurm (snakemake-executor-plugin-slurm).

A single-node cluster (slurmctld + slurmd + munged, no accounting database) is started on this
machine by tests/slurm/start_slurm.sh, shared with any other test session running at the same
time (tests/slurm/cluster.py). The tests are skipped, with the reason, only where SLURM is not
installed or cannot start (`bash tests/install_slurm.sh` installs it).

The run uses batch mode (`batch_size: 2`; its three features lie in three search groups, so
three `batch` jobs) and the profile's grouping, which must put every batch into one cluster
job, beside the search's own cluster job. Its cubes, time series and summary
must equal those of the same configuration run locally with one job per feature and stage
(the fixture `netcdf_run`, shared with the other result tests).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest import REPO, VECTOR_FILE
from tests.slurm.cluster import SlurmCluster, SlurmUnavailable, shared_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.services, pytest.mark.slow]

# What a user of profiles/slurm changes for this cluster (README "Running on a cluster"):
# 2 CPUs per grouped job (the node has 2), no account; plus quicker first status checks.
SLURM_ARGS = (
    "--workflow-profile", str(REPO / "profiles" / "slurm"),
    "--cores", "2",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",
)  # fmt: skip
BATCH_SIZE = 2
VOLATILE_ATTRS = ("date_created",)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(shared_cluster())
        except SlurmUnavailable as reason:
            pytest.skip(f"no SLURM cluster: {reason}")
        yield cluster


@pytest.fixture(scope="module")
def local_run(netcdf_run) -> Path:
    """The reference: the same features and config, one local job per feature and stage."""
    return netcdf_run


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, local_run, make_workdir, snakemake) -> tuple[Path, str]:
    """Working directory and SLURM run id of the workflow run through profiles/slurm."""
    workdir = make_workdir.like(local_run, "slurm-run", batch_size=BATCH_SIZE)
    result = snakemake(workdir, *SLURM_ARGS, env=slurm_cluster.env())
    match = re.search(r"SLURM run ID: (\S+)", result.stdout + result.stderr)
    assert match, "the SLURM executor did not report its run id"
    return workdir, match[1]


def feature_ids(workdir: Path) -> list[str]:
    collection = json.loads((workdir / VECTOR_FILE).read_text())
    return [str(feature["properties"]["id"]) for feature in collection["features"]]


def test_jobs_ran_as_cluster_jobs_with_batches_grouped(slurm_run, slurm_cluster):
    workdir, run_id = slurm_run
    jobs = slurm_cluster.jobs(name=run_id)
    assert jobs, f"squeue lists no job named {run_id}"
    assert {job["state"] for job in jobs} == {"COMPLETED"}, jobs
    assert {job["node"] for job in jobs} == {"localhost"}, jobs
    controller_log = slurm_cluster.controller_log()
    for job in jobs:  # started by the main or the backfill scheduler, then completed
        started = rf"(Allocate JobId={job['id']} NodeList=localhost|Started JobId={job['id']} in)"
        assert re.search(started, controller_log), job
        assert f"_job_complete: JobId={job['id']} WEXITSTATUS 0" in controller_log, job

    # Grouping: the search (a checkpoint) a cluster job of its own, every batch in one cluster
    # job, the run-wide outputs in another.
    assert len(jobs) == 3, jobs
    assert sum(job["comment"] == "rule_search" for job in jobs) == 1, jobs
    batch_manifests = sorted(p.name for p in (workdir / "results" / "batches").glob("*.json"))
    assert len(batch_manifests) >= 2, batch_manifests  # one batch per search group at least
    feature_jobs = [job for job in jobs if "features" in job["comment"]]
    assert len(feature_jobs) == 1, jobs
    slurm_logs = list((workdir / ".snakemake" / "slurm_logs").rglob(f"{feature_jobs[0]['id']}.log"))
    assert len(slurm_logs) == 1, slurm_logs
    log_text = slurm_logs[0].read_text()
    for manifest in batch_manifests:
        assert f"results/batches/{manifest}" in log_text


def test_every_feature_has_its_files(slurm_run):
    workdir, _ = slurm_run
    for fid in feature_ids(workdir):
        for path in (
            f"results/bbox/{fid}.geojson",
            f"results/items/{fid}.json",
            f"results/cubes/{fid}.nc",
            f"results/timeseries/{fid}.csv",
            f"logs/cube/{fid}.log",
        ):
            assert (workdir / path).exists(), path
        # batch mode draws no quicklook unless asked (config `quicklooks`)
        assert not (workdir / f"results/quicklooks/{fid}.png").exists()
    for path in ("summary.csv", "summary.html", "timeseries.parquet", "overview.png"):
        assert (workdir / "results" / path).exists(), path


def without_volatile_attrs(cube: xr.Dataset) -> xr.Dataset:
    cube.attrs = {k: v for k, v in cube.attrs.items() if k not in VOLATILE_ATTRS}
    return cube


def test_cubes_equal_the_local_run(slurm_run, local_run):
    workdir, _ = slurm_run
    for fid in feature_ids(workdir):
        with (
            xr.open_dataset(workdir / "results" / "cubes" / f"{fid}.nc") as on_slurm,
            xr.open_dataset(local_run / "results" / "cubes" / f"{fid}.nc") as local,
        ):
            xr.testing.assert_identical(
                without_volatile_attrs(on_slurm.load()), without_volatile_attrs(local.load())
            )


def test_summary_and_time_series_equal_the_local_run(slurm_run, local_run):
    workdir, _ = slurm_run
    slurm_summary = pd.read_csv(workdir / "results" / "summary.csv", dtype={"feature_id": str})
    local_summary = pd.read_csv(local_run / "results" / "summary.csv", dtype={"feature_id": str})
    pd.testing.assert_frame_equal(slurm_summary, local_summary)
    assert set(slurm_summary["status"]) == {"ok", "no_items"}
    for fid in feature_ids(workdir):
        on_slurm = (workdir / "results" / "timeseries" / f"{fid}.csv").read_text()
        local = (local_run / "results" / "timeseries" / f"{fid}.csv").read_text()
        assert on_slurm == local, fid
    tables = [
        pd.read_parquet(run / "results" / "timeseries.parquet") for run in (workdir, local_run)
    ]
    pd.testing.assert_frame_equal(*tables)
    assert np.isfinite(tables[0]["value"]).any()
