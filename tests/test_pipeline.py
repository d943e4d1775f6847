"""The stage registry (sitsflow/core/pipeline.py): each stage declared once, and what is derived
from it (paths, rules' params, batch fingerprints, run_stage, the summary's chain)."""

import inspect
import json
from pathlib import Path

import pytest
from shapely.geometry import Point

from sitsflow.core.features import Feature
from sitsflow.core.layout import Layout
from sitsflow.core.pipeline import STAGE_NAMES, STAGES, chain_to, stage_named
from sitsflow.core.settings import Settings
from sitsflow.outputs.summary import CHAIN
from sitsflow.testing.settings import settings_for
from sitsflow.workflow import batch
from sitsflow.workflow.batch import run_stage
from sitsflow.workflow.context import BatchContext, BatchSettings

SETTINGS = BatchSettings.from_settings(
    settings_for(buffer_m=100, crs="utm", resolution=20), batch_mode=True
)


def test_stages_come_after_their_upstream_stages_and_name_real_settings():
    seen: set[str] = set()
    for stage in STAGES:
        assert set(stage.upstream) <= seen, stage.name
        seen.add(stage.name)
        if stage.settings is not None:
            assert stage.settings in Settings.__dataclass_fields__, stage.name
            assert stage.settings in BatchSettings.__dataclass_fields__, stage.name


def test_every_runner_is_a_function_of_a_feature_and_a_batch_context():
    for stage in STAGES:
        runner = batch._runner(stage.runner)
        assert callable(runner), stage.runner
        assert list(inspect.signature(runner).parameters) == ["feature", "context"], stage.runner


def test_unknown_stages_are_named():
    with pytest.raises(ValueError, match="unknown stage 'search'.*'items'"):
        stage_named("search")
    with pytest.raises(ValueError, match="unknown stage"):
        Layout().pattern("search")


def test_the_items_stage_and_the_group_search_have_distinct_names():
    assert Layout().pattern("items") == "results/items/{fid}.json"
    assert "search" not in {stage.name for stage in STAGES}


def test_a_feature_is_found_from_its_file_of_a_stage():
    for stage in ("bbox", "cube", "timeseries"):
        for fid in ("p1", "field-7.b", "a"):
            assert Layout("zarr").fid_of(stage, Layout("zarr").path(stage, fid)) == fid
    with pytest.raises(ValueError, match="not a timeseries file"):
        Layout().fid_of("timeseries", "results/cubes/p1.nc")
    with pytest.raises(ValueError, match="not a timeseries file"):
        Layout().fid_of("timeseries", "results/timeseries/.csv")


def test_the_summary_chain_is_the_cube_and_what_it_waits_for():
    assert CHAIN == chain_to("cube") == ("bbox", "items", "cube")
    assert chain_to("quicklook") == ("bbox", "items", "cube", "quicklook")
    assert chain_to("bbox") == ("bbox",)


def test_rule_params_are_what_batch_fingerprints_digest():
    assert SETTINGS.rule_params("bbox") == {"grid": SETTINGS.grid.to_params()}
    assert SETTINGS.rule_params("items", "cube") == {
        "search": SETTINGS.search.to_params(),
        "cube": SETTINGS.cube.to_params(),
    }
    assert SETTINGS.rule_params("quicklook") == {}
    for stage in STAGES:
        expected = SETTINGS.rule_params(stage.name).get(stage.settings or "")
        assert SETTINGS.stage_params(stage.name) == expected
    # the batch rule's params: every section once, the cube format and the stages made
    params = SETTINGS.to_params()
    assert set(params) == {"grid", "search", "cube", "timeseries", "cube_extension", "stages"}
    assert BatchSettings.from_params(json.loads(json.dumps(params))) == SETTINGS


def test_quicklooks_are_drawn_outside_batch_mode_unless_asked_otherwise():
    every, without = STAGE_NAMES, tuple(name for name in STAGE_NAMES if name != "quicklook")
    assert settings_for().stages(batch_mode=False) == every
    assert settings_for().stages(batch_mode=True) == without
    assert settings_for(quicklooks=True).stages(batch_mode=True) == every
    assert settings_for(quicklooks=False).stages(batch_mode=False) == without


def test_run_stage_runs_the_declared_function(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    feature = Feature("f1", Point(8.49, 49.85))
    run_stage("bbox", feature, BatchContext(SETTINGS, group_search="unused.json"))
    record = json.loads(Path(Layout().path("bbox", "f1")).read_text())
    assert record["properties"]["grid"]["epsg"] == 32632
