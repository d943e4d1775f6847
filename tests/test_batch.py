"""Batch mode (config `batch_size`, sitsflow/workflow/batch.py, rules/batch.smk).

Unit tests drive `process_feature` / `run_batch` with a stand-in stage runner that writes small
files, so that what runs when is checked without reading rasters. The end-to-end tests run
Snakemake in batch mode on the shared demo archive (fixture `netcdf_run`): the cubes must equal
those of one-job-per-feature runs, and appending, editing, failing or deleting one feature's
file must redo that feature only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from shapely.geometry import Point, box, shape

from sitsflow.core.features import Feature
from sitsflow.core.layout import Layout
from sitsflow.core.pipeline import STAGE_NAMES as STAGES
from sitsflow.testing.settings import settings_for
from sitsflow.workflow.batch import (
    AUTO_BATCH_SIZE,
    AUTO_PER_FEATURE,
    BatchFailed,
    along_hilbert_curve,
    batch_generations,
    batch_group,
    forget_job_stages,
    plan_batches,
    process_feature,
    read_fingerprints,
    record_job_stages,
    resolve_batch_size,
    run_batch,
    stage_fingerprints,
)
from sitsflow.workflow.context import BatchContext, BatchSettings
from tests.conftest import VECTOR_FILE, WorkdirFactory
from tests.helpers import dry_run_jobs, jobs_run, write_features


def batch_settings(**config: object) -> BatchSettings:
    """The settings of a small test run, with the config values `config` changed."""
    base = {"buffer_m": 100, "crs": "utm", "resolution": 20, "bands": ["B04"]}
    return BatchSettings.from_settings(settings_for(**{**base, **config}), batch_mode=True)


SETTINGS = batch_settings()


def in_context(settings: BatchSettings) -> BatchContext:
    """A batch's context for the stand-in stages (no group search is read)."""
    return BatchContext(settings, group_search="results/searches/g.json")


POINT = Feature("f1", Point(8.49, 49.85))
LAYOUT = Layout()


# --------------------------------------------------------------------------------------------
# Planning


def features_at(points: dict[str, tuple[float, float]]) -> dict[str, Feature]:
    return {fid: Feature(fid, Point(x, y)) for fid, (x, y) in points.items()}


BATCH_WILDCARD = re.compile(r"[a-z0-9.-]+-q[0-3]*r?(-c\d\d\d\d)?")  # rules/common.smk


def test_batches_cut_each_group_by_where_its_features_lie():
    rng = np.random.default_rng(1)
    west = {f"w{i}": (8.2 + rng.uniform(0, 0.05), 48.2 + rng.uniform(0, 0.05)) for i in range(7)}
    east = {f"e{i}": (9.7 + rng.uniform(0, 0.05), 49.7 + rng.uniform(0, 0.05)) for i in range(3)}
    mixed = dict(sorted({**west, **east}.items(), key=lambda entry: rng.uniform()))
    features = features_at({**mixed, "g0": (-1.5, 40.5)})
    groups = {"e008n48": list(mixed), "w002n40": ["g0"]}
    plan = plan_batches(groups, 3, features, 2.0)
    assert plan["w002n40-q"] == ["g0"]
    assert sorted(fid for members in plan.values() for fid in members) == sorted(features)
    for batch, members in plan.items():
        assert 1 <= len(members) <= 3
        assert len({fid[0] for fid in members}) == 1, f"{batch} mixes the clusters: {members}"
        assert members == [fid for fid in [*groups["e008n48"], "g0"] if fid in members]
        assert BATCH_WILDCARD.fullmatch(batch) and batch_group(batch) in groups
    assert plan_batches(groups, 0, features, 2.0) == {}
    assert (
        batch_group("f-a-q1-b-q0312") == "f-a-q1-b" and batch_group("e008n48-q-c0001") == "e008n48"
    )


def test_the_smallest_quarters_of_a_cut_cell_form_one_batch():
    dense = {f"d{i}": (8.2 + i / 1000, 48.2) for i in range(7)}  # the south-west quarter
    sparse = {"s1": (9.5, 48.5), "s2": (8.5, 49.5), "s3": (9.5, 49.5)}  # one in each other

    def plan(points: dict[str, tuple[float, float]]) -> dict[str, list[str]]:
        return plan_batches({"e008n48": list(points)}, 8, features_at(points), 2.0)

    before = plan({**dense, **sparse})
    assert before == {"e008n48-q0": list(dense), "e008n48-qr": ["s1", "s2", "s3"]}
    assert all(BATCH_WILDCARD.fullmatch(b) and batch_group(b) == "e008n48" for b in before)
    # a feature joining a small quarter changes the rest only ...
    east = {f"s{i}": (9.5 + i / 100, 48.6) for i in range(4, 10)}  # quarter 1, with s1
    joined = plan({**dense, **sparse, "s4": east["s4"]})
    assert joined == {**before, "e008n48-qr": ["s1", "s2", "s3", "s4"]}
    # ... as long as the smallest quarters together hold at most the batch size: 1 + 1 + 6
    six = plan({**dense, **sparse, **dict(list(east.items())[:5])})
    assert six == {**before, "e008n48-qr": ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]}
    # then the quarter that no longer fits is a batch of its own, the others stay the rest
    seven = plan({**dense, **sparse, **east})
    assert seven == {
        **before,
        "e008n48-q1": ["s1", "s4", "s5", "s6", "s7", "s8", "s9"],
        "e008n48-qr": ["s2", "s3"],
    }


def test_features_at_one_spot_are_cut_in_file_order():
    features = features_at({f"f{i}": (8.5, 48.5) for i in range(7)})
    plan = plan_batches({"e008n48": list(features)}, 3, features, 2.0)
    assert list(plan.values()) == [["f0", "f1", "f2"], ["f3", "f4", "f5"], ["f6"]]
    assert all(BATCH_WILDCARD.fullmatch(batch) for batch in plan)


def test_appending_or_editing_a_feature_changes_only_the_batch_of_its_cell():
    rng = np.random.default_rng(7)
    points = {
        f"f{i:03d}": (8 + rng.uniform(0, 2) ** 2 / 2, 48 + rng.uniform(0, 2)) for i in range(300)
    }
    features = features_at(points)
    before = plan_batches({"e008n48": list(points)}, 10, features, 2.0)
    for change in ({"new": (8.9, 49.1)}, {"f010": (9.9, 48.1)}):
        changed = features_at({**points, **change})
        after = plan_batches({"e008n48": list(changed)}, 10, changed, 2.0)
        gone = {batch for batch in before if after.get(batch) != before[batch]}
        came = {batch for batch in after if before.get(batch) != after[batch]}
        # only the cells the feature left or entered change (the one it enters may split)
        assert 1 <= len(gone) <= 2 and len(came) <= 5
        left = {fid for batch in gone for fid in before[batch]} - set(change)
        assert left == {fid for batch in came for fid in after[batch]} - set(change)


def test_a_batch_that_lost_a_file_gets_a_new_generation_once(in_tmp):
    members = {"a-0000": ["f1", "f2"], "a-0001": ["f3"]}
    assert batch_generations(members, LAYOUT) == {"a-0000": 0, "a-0001": 0}  # no manifests yet
    for fid in ("f1", "f2", "f3"):
        for stage in STAGES:
            Path(LAYOUT.path(stage, fid)).parent.mkdir(parents=True, exist_ok=True)
            Path(LAYOUT.path(stage, fid)).write_text(stage)
    for batch, manifest in zip(members, LAYOUT.manifests(members), strict=True):
        Path(manifest).parent.mkdir(parents=True, exist_ok=True)
        Path(manifest).write_text(json.dumps({"batch": batch, "generation": 0, "summary": []}))
    assert batch_generations(members, LAYOUT) == {"a-0000": 0, "a-0001": 0}
    Path(LAYOUT.path("timeseries", "f2")).unlink()
    warnings: list[str] = []
    assert batch_generations(members, LAYOUT, warnings.append) == {"a-0000": 1, "a-0001": 0}
    assert warnings == [
        "batch a-0000: results/timeseries/f2.csv missing; the batch runs again to redo them"
    ]
    # the rerun batch redoes the file and records generation 1: complete again, nothing changes
    Path(LAYOUT.path("timeseries", "f2")).write_text("timeseries")
    manifest = Path(LAYOUT.manifests(["a-0000"])[0])
    manifest.write_text(json.dumps({"batch": "a-0000", "generation": 1}))
    assert batch_generations(members, LAYOUT) == {"a-0000": 1, "a-0001": 0}


def test_auto_batch_size_keeps_per_feature_jobs_for_small_inputs():
    assert resolve_batch_size("auto", AUTO_PER_FEATURE) == 0
    assert resolve_batch_size("auto", AUTO_PER_FEATURE + 1) == AUTO_BATCH_SIZE
    assert resolve_batch_size(0, 10_000) == 0
    assert resolve_batch_size(7, 3) == 7
    with pytest.raises(ValueError, match="batch_size"):
        resolve_batch_size(-1, 10)


def changed_stages(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {stage for stage in STAGES if a[stage] != b[stage]}


def test_fingerprints_follow_each_stage_inputs():
    base = stage_fingerprints(POINT.wkt, SETTINGS)
    moved = stage_fingerprints(Feature("f1", Point(8.5, 49.85)).wkt, SETTINGS)
    assert changed_stages(base, moved) == set(STAGES)
    finer = batch_settings(resolution=10)
    assert changed_stages(base, stage_fingerprints(POINT.wkt, finer)) == set(STAGES)
    later = batch_settings(end="2024-11-30")
    assert changed_stages(base, stage_fingerprints(POINT.wkt, later)) == {
        "items", "cube", "quicklook", "timeseries"
    }  # fmt: skip
    bands = batch_settings(bands=["B08"])
    assert changed_stages(base, stage_fingerprints(POINT.wkt, bands)) == {
        "cube", "quicklook", "timeseries"
    }  # fmt: skip
    median = batch_settings(timeseries={"method": "median"})
    assert changed_stages(base, stage_fingerprints(POINT.wkt, median)) == {"timeseries"}


def test_fingerprints_are_the_digests_state_files_of_earlier_runs_record():
    """Each fingerprint is the SHA-256 of the compact, key-sorted JSON of [stage, source,
    upstream fingerprints, the stage's settings] (the settings serialised once per job): a
    state file written by an earlier version stays current, and the feature is not redone."""
    import hashlib

    from sitsflow.core.pipeline import STAGES as DECLARED

    def digest(value: object) -> str:
        text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    attributes = {"crop": "blé", "year": 2024, "share": 0.5, "note": None}
    for settings in (SETTINGS, batch_settings(end="2024-11-30", bands=["B04", "B08"])):
        for labels in (None, attributes):
            got = stage_fingerprints(POINT.wkt, settings, labels)
            expected: dict[str, str] = {}
            for each in DECLARED:
                source: object = POINT.wkt if "geometry" in each.feature_values else None
                if "attributes" in each.feature_values and labels:
                    source = labels
                upstream = [expected[name] for name in each.upstream]
                expected[each.name] = digest(
                    [each.name, source, upstream, settings.stage_params(each.name)]
                )
            assert got == expected


def test_per_feature_jobs_record_the_fingerprints_a_batch_computes(in_tmp):
    """The per-feature rules' scripts record what they made with their params, as a batch
    would: a run that grows into batch mode finds those files current."""
    labels = {"crop": "wheat"}
    expected = stage_fingerprints(POINT.wkt, SETTINGS, labels)
    params = SETTINGS.rule_params(*STAGES)  # what each rule gets, by settings section
    # the cube job before the bbox job recorded anything: it cannot vouch for its stages
    record_job_stages("f1", ["items", "cube"], params, attributes=labels)
    assert read_fingerprints(LAYOUT.state("f1")) == {}
    record_job_stages("f1", ["bbox"], params, wkt=POINT.wkt)
    record_job_stages("f1", ["items", "cube"], params, attributes=labels)
    record_job_stages("f1", ["timeseries"], params)
    recorded = read_fingerprints(LAYOUT.state("f1"))
    assert recorded == {name: expected[name] for name in ("bbox", "items", "cube", "timeseries")}
    # a job about to make its stages again forgets them first; the others stay
    forget_job_stages("f1", ["items", "cube"])
    assert read_fingerprints(LAYOUT.state("f1")) == {
        name: expected[name] for name in ("bbox", "timeseries")
    }
    # and a cube job recording with other settings records other fingerprints
    other = batch_settings(bands=["B08"]).rule_params("items", "cube")
    record_job_stages("f1", ["items", "cube"], other, attributes=labels)
    assert read_fingerprints(LAYOUT.state("f1"))["cube"] != expected["cube"]


# --------------------------------------------------------------------------------------------
# One feature, one batch, with a stand-in for the real stages


class FakeStages:
    """Writes each stage's output as a small file; fails the (fid, stage) pairs in `failing`."""

    def __init__(self, failing: set[tuple[str, str]] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.failing = failing or set()

    def __call__(self, stage: str, feature: Feature, context: BatchContext) -> None:
        self.calls.append((feature.fid, stage))
        if (feature.fid, stage) in self.failing:
            raise RuntimeError(f"{stage} of {feature.fid} broke")
        output = Path(context.layout.path(stage, feature.fid))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(f"{stage} {feature.fid}")

    def stages_of(self, fid: str) -> list[str]:
        return [stage for called, stage in self.calls if called == fid]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_new_feature_runs_every_stage_then_nothing(in_tmp):
    stages = FakeStages()
    first = process_feature(POINT, in_context(SETTINGS), stages)
    assert first.ok and first.ran == list(STAGES) and stages.stages_of("f1") == list(STAGES)
    assert read_fingerprints(LAYOUT.state("f1")) == stage_fingerprints(POINT.wkt, SETTINGS)
    for stage in STAGES:
        assert Path(LAYOUT.log(stage, "f1")).exists()
    again = process_feature(POINT, in_context(SETTINGS), stages)
    assert again.ran == [] and again.up_to_date == list(STAGES)
    assert len(stages.calls) == len(STAGES)


def test_a_config_change_redoes_the_affected_stages_only(in_tmp):
    process_feature(POINT, in_context(SETTINGS), FakeStages())
    stages = FakeStages()
    median = batch_settings(timeseries={"method": "median"})
    outcome = process_feature(POINT, in_context(median), stages)
    assert outcome.ran == ["timeseries"] and stages.stages_of("f1") == ["timeseries"]


def test_a_deleted_output_is_remade_with_what_depends_on_it(in_tmp):
    process_feature(POINT, in_context(SETTINGS), FakeStages())
    Path(LAYOUT.path("cube", "f1")).unlink()
    stages = FakeStages()
    outcome = process_feature(POINT, in_context(SETTINGS), stages)
    assert outcome.ran == ["cube", "quicklook", "timeseries"]
    assert outcome.up_to_date == ["bbox", "items"]


def test_a_newer_input_file_redoes_the_stages_after_it(in_tmp):
    process_feature(POINT, in_context(SETTINGS), FakeStages())
    items = LAYOUT.path("items", "f1")
    later = time.time() + 10
    os.utime(items, (later, later))
    outcome = process_feature(POINT, in_context(SETTINGS), FakeStages())
    assert outcome.ran == ["cube", "quicklook", "timeseries"]


def test_a_failed_stage_leaves_no_output_and_is_retried_next_time(in_tmp):
    process_feature(POINT, in_context(SETTINGS), FakeStages())
    later = batch_settings(end="2024-11-30")
    broken = FakeStages(failing={("f1", "cube")})
    outcome = process_feature(POINT, in_context(later), broken)
    assert not outcome.ok and outcome.failed_stage == "cube"
    assert "cube of f1 broke" in outcome.error
    assert broken.stages_of("f1") == ["items", "cube"]  # nothing after the failure
    assert not Path(LAYOUT.path("cube", "f1")).exists()  # like the output of a failed job
    assert "cube" not in read_fingerprints(LAYOUT.state("f1"))
    assert "cube of f1 broke" in Path(LAYOUT.log("cube", "f1")).read_text()  # with traceback
    retry = process_feature(POINT, in_context(later), FakeStages())
    assert retry.ok and retry.ran == ["cube", "quicklook", "timeseries"]


def test_a_quicklook_not_drawn_any_more_goes_when_its_cube_is_redone(in_tmp):
    members = {"f1": POINT.geometry.wkt}
    drawing = batch_settings(quicklooks=True)
    run_batch("g-q", members, in_context(drawing), "batch.log", FakeStages())
    assert Path(LAYOUT.path("quicklook", "f1")).exists()
    # quicklooks off: an up-to-date feature keeps its quicklook (it shows its cube) ...
    run_batch("g-q", members, in_context(SETTINGS), "batch.log", FakeStages())
    assert Path(LAYOUT.path("quicklook", "f1")).exists()
    # ... until its cube is redone: then the quicklook would show another cube
    later = batch_settings(end="2024-11-30")
    stages = FakeStages()
    run_batch("g-q", members, in_context(later), "batch.log", stages)
    assert stages.stages_of("f1") == ["items", "cube", "timeseries"]
    assert not Path(LAYOUT.path("quicklook", "f1")).exists()
    assert "quicklook" not in read_fingerprints(LAYOUT.state("f1"))


def test_a_batch_processes_every_feature_and_fails_if_one_failed(in_tmp):
    members = {fid: Point(8.49 + i / 100, 49.85).wkt for i, fid in enumerate(["a", "b", "c"])}
    stages = FakeStages(failing={("b", "items")})
    with pytest.raises(BatchFailed, match=r"1 of 3 features of batch g-0007 failed: b \(items"):
        run_batch("g-0007", members, in_context(SETTINGS), "batch.log", stages)
    made = list(SETTINGS.stages)  # every stage but the quicklook, in batch mode by default
    assert made == [stage for stage in STAGES if stage != "quicklook"]
    assert stages.stages_of("a") == made and stages.stages_of("c") == made
    log_text = Path("batch.log").read_text()
    assert "b: items failed" in log_text and "a: ran bbox" in log_text
    # the job's CPU, per feature and by stage (the failed stage's too)
    cpu = re.search(r"CPU: ([\d.]+) s for the job \(([\d.]+) s per feature\): (.*)", log_text)
    assert cpu and float(cpu[1]) > 0 and float(cpu[2]) == pytest.approx(float(cpu[1]) / 3, 1e-2)
    assert [part.split()[0] for part in cpu[3].split(", ")] == made

    stages = FakeStages()
    outcomes = run_batch("g-0007", members, in_context(SETTINGS), None, stages)
    assert [o.fid for o in outcomes if o.ran] == ["b"]
    assert stages.stages_of("b") == ["items", "cube", "timeseries"]
    assert outcomes[0].up_to_date == made


def test_a_batch_writes_each_feature_state_once(in_tmp, monkeypatch):
    """A batch runs each member's first stages, then its cube and what follows in read
    rounds: the feature's state file is written once, after both (a file per write costs a
    batch about 1 ms of CPU per feature), and records every stage run."""
    import sitsflow.workflow.batch as batch_module

    written: list[str] = []
    write = batch_module.write_fingerprints
    monkeypatch.setattr(
        batch_module,
        "write_fingerprints",
        lambda path, fingerprints: (written.append(str(path)), write(path, fingerprints)),
    )
    members = {fid: Point(8.49 + i / 100, 49.85).wkt for i, fid in enumerate(["a", "b"])}
    run_batch("g-0008", members, in_context(SETTINGS), None, FakeStages())
    assert sorted(written) == sorted(LAYOUT.state(fid) for fid in members)
    for fid in members:
        recorded = read_fingerprints(LAYOUT.state(fid))
        assert sorted(recorded) == sorted(SETTINGS.stages)
    # a member failing in its first stages has its state written then (the rest is skipped)
    written.clear()
    later = batch_settings(end="2024-11-30")
    with pytest.raises(BatchFailed):
        run_batch("g-0008", members, in_context(later), None, FakeStages(failing={("b", "items")}))
    assert sorted(written) == sorted(LAYOUT.state(fid) for fid in members)
    assert "items" not in read_fingerprints(LAYOUT.state("b"))


def test_freed_memory_goes_back_to_the_system_only_above_the_rss_bound(monkeypatch):
    """Below the bound a batch keeps freed pages for its next round (no page faults to get
    them again); above it, it trims the heap so its RSS does not grow round by round."""
    import sitsflow.workflow.batch as batch_module

    class FakeGlibc:
        trims = 0

        def malloc_trim(self, pad: int) -> int:
            self.trims += 1
            return 1

    glibc = FakeGlibc()
    monkeypatch.setattr(batch_module, "_glibc", lambda: glibc)
    monkeypatch.setattr(batch_module, "resident_bytes", lambda: 300 * 2**20)
    assert not batch_module.release_freed_memory(above=384 * 2**20) and glibc.trims == 0
    monkeypatch.setattr(batch_module, "resident_bytes", lambda: 400 * 2**20)
    assert batch_module.release_freed_memory(above=384 * 2**20) and glibc.trims == 1
    monkeypatch.undo()
    assert batch_module.resident_bytes() > 10 * 2**20  # this process's, from /proc


# --------------------------------------------------------------------------------------------
# End to end: Snakemake in batch mode

BATCH_SIZE = 2
NEW_POINT = Point(8.4925, 49.8551)  # inside the archive's tile around p1


def file_times(workdir: Path) -> dict[str, float]:
    """Every per-feature file (and Zarr store) -> its modification time."""
    return {
        str(path.relative_to(workdir)): path.stat().st_mtime
        for folder in ("bbox", "items", "cubes", "quicklooks", "timeseries")
        for path in (workdir / "results" / folder).glob("*")
    }


def rewritten(before: dict[str, float], after: dict[str, float]) -> set[str]:
    return {path for path, when in after.items() if before.get(path) != when}


def vector(workdir: Path) -> dict:
    """The features of the working directory's vector file: id -> geometry."""
    collection = json.loads((workdir / VECTOR_FILE).read_text())
    return {f["properties"]["id"]: shape(f["geometry"]) for f in collection["features"]}


@pytest.fixture(scope="module")
def batch_run(netcdf_run, make_workdir, snakemake) -> Path:
    """The features and config of the shared netCDF run, in batches of two, with quicklooks
    (batch mode draws none unless asked: config `quicklooks`)."""
    workdir = make_workdir.like(netcdf_run, "batch-run", batch_size=BATCH_SIZE, quicklooks=True)
    snakemake(workdir)
    return workdir


@pytest.fixture
def batch_copy(batch_run, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(batch_run, copy, symlinks=True)
    time.sleep(1.0)  # a file rewritten now gets a different modification time
    return copy


AGGREGATES = {
    "summary": 1,
    "timeseries": 1,
    "all": 1,
}
# An edit of the vector file reruns the search job, which searches only the edited group again.
SEARCH = {"search": 1}


@pytest.mark.slow
def test_batch_mode_makes_the_same_files_as_per_feature_jobs(batch_run, netcdf_run, snakemake):
    reference = netcdf_run
    fids = list(vector(batch_run))
    for fid in fids:
        with (
            xr.open_dataset(batch_run / "results" / "cubes" / f"{fid}.nc") as batched,
            xr.open_dataset(reference / "results" / "cubes" / f"{fid}.nc") as per_feature,
        ):
            batched.attrs.pop("date_created")
            per_feature.attrs.pop("date_created")
            xr.testing.assert_identical(batched.load(), per_feature.load())
        for folder, suffix in (("timeseries", "csv"), ("bbox", "geojson")):
            ours = (batch_run / "results" / folder / f"{fid}.{suffix}").read_text()
            assert ours == (reference / "results" / folder / f"{fid}.{suffix}").read_text()
        assert (batch_run / "results" / "quicklooks" / f"{fid}.png").stat().st_size > 0
        for stage in STAGES:
            assert "done in" in (batch_run / "logs" / stage / f"{fid}.log").read_text()
    summaries = [pd.read_csv(run / "results" / "summary.csv") for run in (batch_run, reference)]
    pd.testing.assert_frame_equal(*summaries)
    tables = [
        pd.read_parquet(run / "results" / "timeseries.parquet") for run in (batch_run, reference)
    ]
    pd.testing.assert_frame_equal(*tables)
    manifests = sorted(p.name for p in (batch_run / "results" / "batches").glob("*.json"))
    # one batch per search group here: p1, poly and nowhere lie 2 degrees apart or more
    assert manifests == ["e008n48-q.json", "e010n50-q.json", "w030n40-q.json"]
    assert "Nothing to be done" in snakemake(batch_run, "--dry-run").stdout


@pytest.mark.slow
def test_growing_into_batch_mode_redoes_only_the_new_feature(netcdf_run, tmp_path, snakemake):
    """Per-feature jobs record what they made as batches do: a run that crosses into batch
    mode (`batch_size: auto` past 50 features; here set) does not redo every feature."""
    grown = tmp_path / "grown"
    shutil.copytree(netcdf_run, grown, symlinks=True)
    config = yaml.safe_load((grown / "config.yaml").read_text())
    WorkdirFactory.write_config(grown, {**config, "batch_size": BATCH_SIZE})
    write_features(grown / VECTOR_FILE, {**vector(grown), "extra": NEW_POINT})
    time.sleep(1.0)  # a file rewritten now gets a different modification time
    before = file_times(grown)
    ran = jobs_run(snakemake(grown))
    assert ran["batch"] == 3  # one per search group: every feature is in a batch now
    changed = rewritten(before, file_times(grown))
    # its bbox, items, cube and time series (batch mode draws no quicklook by default)
    assert {Path(path).stem for path in changed} == {"extra"} and len(changed) == 4
    logs = "".join(path.read_text() for path in (grown / "logs" / "batch").glob("*.log"))
    for fid in vector(netcdf_run):
        assert f"{fid}: ran nothing (up to date)" in logs


@pytest.mark.slow
def test_appending_a_feature_redoes_only_that_feature(batch_copy, snakemake):
    write_features(batch_copy / VECTOR_FILE, {**vector(batch_copy), "extra": NEW_POINT})
    before = file_times(batch_copy)
    assert jobs_run(snakemake(batch_copy)) == {"batch": 1, **SEARCH, **AGGREGATES}
    changed = rewritten(before, file_times(batch_copy))
    assert {Path(path).stem for path in changed} == {"extra"}
    assert len(changed) == len(STAGES)


@pytest.mark.slow
def test_editing_a_feature_redoes_only_that_feature(batch_copy, snakemake):
    features = vector(batch_copy)
    features["p1"] = NEW_POINT
    write_features(batch_copy / VECTOR_FILE, features)
    before = file_times(batch_copy)
    assert jobs_run(snakemake(batch_copy)) == {"batch": 1, **SEARCH, **AGGREGATES}
    assert {Path(path).stem for path in rewritten(before, file_times(batch_copy))} == {"p1"}


@pytest.mark.slow
def test_a_deleted_file_is_remade_alone_and_once(batch_copy, snakemake):
    quicklook = batch_copy / "results" / "quicklooks" / "poly.png"
    quicklook.unlink()
    before = file_times(batch_copy)
    manifests = {p: p.read_bytes() for p in (batch_copy / "results" / "batches").glob("*.json")}
    dry_run = snakemake(batch_copy, "--dry-run")
    said = dry_run.stdout + dry_run.stderr
    batch = "e010n50-q"
    assert f"batch {batch}: results/quicklooks/poly.png missing; the batch runs again" in said
    assert dry_run_jobs(dry_run) == {"batch": 1, **AGGREGATES}
    # parsing (dry run included) changes no file
    assert file_times(batch_copy) == before
    assert {p: p.read_bytes() for p in manifests} == manifests
    snakemake(batch_copy)
    assert rewritten(before, file_times(batch_copy)) == {"results/quicklooks/poly.png"}
    assert "Nothing to be done" in snakemake(batch_copy, "--dry-run").stdout


@pytest.mark.slow
def test_a_failing_feature_fails_the_run_but_not_its_batch_mates(batch_copy, snakemake):
    # Far too large for max_pixels: its bbox stage fails; `poly` shares its batch.
    huge = box(11.0, 49.8, 11.6, 50.3)
    write_features(batch_copy / VECTOR_FILE, {**vector(batch_copy), "huge": huge})
    before = file_times(batch_copy)
    result = snakemake(batch_copy, check=False)
    assert result.returncode != 0
    assert rewritten(before, file_times(batch_copy)) == set()  # poly was up to date
    summary = pd.read_csv(batch_copy / "results" / "summary.csv", keep_default_na=False)
    rows = summary.set_index("feature_id")
    assert rows.loc["huge", "status"] == "failed" and "max_pixels" in rows.loc["huge", "error"]
    assert set(rows.drop(index="huge")["status"]) <= {"ok", "no_items"}
    assert not (batch_copy / "results" / "batches" / "e010n50-q.json").exists()

    write_features(batch_copy / VECTOR_FILE, {**vector(batch_copy), "huge": NEW_POINT})
    snakemake(batch_copy)
    assert {Path(p).stem for p in rewritten(before, file_times(batch_copy))} == {"huge"}


def test_read_rounds_take_neighbours_together_along_a_hilbert_curve():
    """A batch's members are read in rounds of consecutive members: in Hilbert order, each
    step of a shuffled 8 x 8 grid of points goes to a neighbouring point (in file order,
    rounds would span the whole batch and decode its every tile)."""
    spacing = 0.01
    points = [(col, row) for row in range(8) for col in range(8)]
    random = np.random.default_rng(0)
    features = [
        Feature(f"p{col}-{row}", Point(8 + col * spacing, 48 + row * spacing))
        for col, row in (points[i] for i in random.permutation(len(points)))
    ]
    ordered = along_hilbert_curve(features)
    assert sorted(f.fid for f in ordered) == sorted(f.fid for f in features)
    steps = [
        round((abs(a.geometry.x - b.geometry.x) + abs(a.geometry.y - b.geometry.y)) / spacing)
        for a, b in zip(ordered, ordered[1:], strict=False)
    ]
    assert steps == [1] * 63


def test_a_cube_takes_what_its_batch_knows_of_its_items_while_the_file_is_unchanged(
    netcdf_run, tmp_path, monkeypatch
):
    """A batch hands each cube stage the items its items stage wrote and their read groups
    (`FeatureItems`): the cube equals the one built from the file, without parsing it; what
    the batch knows of a file that changed since (another stamp) is not used."""
    import sitsflow.catalog.search as search
    from sitsflow.pixels.cube import plan_read
    from sitsflow.workflow.context import FeatureItems
    from sitsflow.workflow.stages import build_cube, file_stamp
    from tests.helpers import BANDS

    settings = settings_for(bands=BANDS, crs="utm", resolution=10).cube
    bbox, items_path = (
        str(netcdf_run / f"results/{p}") for p in ("bbox/p1.geojson", "items/p1.json")
    )
    items, info = search.read_item_collection(items_path)
    stamp = file_stamp(items_path)
    assert stamp is not None and len(items) > 2
    from_file = build_cube(bbox, items_path, settings, str(tmp_path / "file.nc")).to_dataset()
    parsed: list[str] = []
    reader = search.read_item_collection
    monkeypatch.setattr(
        search, "read_item_collection", lambda path: parsed.append(path) or reader(path)
    )
    known = FeatureItems(stamp, items, info, plan_read(items, info, settings))
    handed = build_cube(bbox, items_path, settings, str(tmp_path / "known.nc"), known=known)
    assert parsed == []
    stale = FeatureItems(
        (stamp[0] - 1, stamp[1]), items[:1], info, plan_read(items[:1], info, settings)
    )
    again = build_cube(bbox, items_path, settings, str(tmp_path / "stale.nc"), known=stale)
    assert parsed == [items_path]
    for cube in (handed.to_dataset(), again.to_dataset()):
        for attrs in (cube.attrs, from_file.attrs):
            attrs.pop("date_created", None)
        xr.testing.assert_identical(cube, from_file)


def test_a_batch_job_does_not_import_xarray():
    """What a batch job imports to write cubes, time series and summary rows leaves xarray out
    (about 0.1 s of CPU per job): it hands them the arrays it wrote."""
    import subprocess
    import sys

    code = (
        "import sys, sitsflow.workflow.batch, sitsflow.workflow.stages, "
        "sitsflow.outputs.timeseries, sitsflow.outputs.summary, sitsflow.outputs.write, "
        "sitsflow.pixels.cube, sitsflow.pixels.tiles; print('xarray' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
