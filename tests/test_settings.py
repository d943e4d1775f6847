"""Typed settings (sitsflow/core/settings.py) and command-line values typed by the schema
(sitsflow/workflow/config.py)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from sitsflow.core.errors import InputError
from sitsflow.core.settings import (
    CubeSettings,
    DemoSettings,
    GridSettings,
    SearchSettings,
    Settings,
    TimeseriesSettings,
)
from sitsflow.testing.settings import config_for, settings_for
from sitsflow.workflow.config import coerce_command_line, coerce_to_schema, load_schema
from tests.conftest import REPO

SCHEMA = load_schema()
STAGE_CLASSES = (GridSettings, SearchSettings, CubeSettings, TimeseriesSettings, DemoSettings)


def stage_settings(settings: Settings) -> list[object]:
    return [settings.grid, settings.search, settings.cube, settings.timeseries, settings.demo]


@pytest.mark.parametrize("overrides", [{}, {"mode": "patch", "patch_size": [32, 16]}])
def test_params_round_trip_to_equal_settings(overrides):
    for settings in stage_settings(settings_for(**overrides)):
        params = settings.to_params()
        assert type(settings).from_config(params) == settings
        assert yaml.safe_load(yaml.safe_dump(params)) == params  # plain data


def test_defaults_are_the_schema_defaults():
    config = config_for()
    for key, spec in SCHEMA["properties"].items():
        if "default" in spec and not isinstance(spec["default"], dict):
            assert config[key] == spec["default"], key
    assert (
        config["mask"]["classes"]
        == SCHEMA["properties"]["mask"]["properties"]["classes"]["default"]
    )
    settings = settings_for()
    assert settings.grid.buffer_m == SCHEMA["properties"]["buffer_m"]["default"]
    assert settings.cube.gapfill.method == "linear" and settings.timeseries.method == "pixel"


def test_settings_classes_have_no_defaults_of_their_own():
    for cls in (*STAGE_CLASSES, Settings):
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING, f"{cls.__name__}.{field.name}"
            assert field.default_factory is dataclasses.MISSING, f"{cls.__name__}.{field.name}"


def test_patch_size_counts_only_in_patch_mode():
    assert settings_for(patch_size=[10, 10]).grid == settings_for().grid
    assert settings_for(mode="patch", patch_size=[10, 12]).grid.patch_size == (10, 12)


def test_bands_become_canonical_names():
    cube = settings_for(bands=["green", "b8a", "SCL"]).cube
    assert cube.bands == ("B03", "B8A", "SCL") and cube.reflectance_bands == ["B03", "B8A"]


# ---- `--config` values, which Snakemake reads as strings below the top level -----------------


@pytest.mark.parametrize(
    ("key", "given", "expected"),
    [
        ("query", "null", None),
        ("query", "~", None),
        ("s3_endpoint", "null", None),
        ("patch_size", ["32", "32"], [32, 32]),
        ("mask", {"classes": ["0", "8", "9"]}, {"classes": [0, 8, 9]}),
        ("gapfill", {"max_gap_days": "30"}, {"max_gap_days": 30}),
        ("gapfill", {"max_gap_days": "7.5"}, {"max_gap_days": 7.5}),
        ("gapfill", {"max_gap_days": "null"}, {"max_gap_days": None}),
        ("read_overviews", "false", False),
        ("batch_size", "12", 12),
        ("batch_size", "auto", "auto"),
        ("query", {"eo:cloud_cover": {"lt": "20"}}, {"eo:cloud_cover": {"lt": 20}}),
        ("assets", {"B04": "10"}, {"B04": "10"}),  # the schema says asset keys are strings
        ("bands", ["B04", "B08"], ["B04", "B08"]),
        ("crs", "utm", "utm"),
        ("collection", "null", "null"),  # a string key: a collection may be called that
    ],
)
def test_command_line_strings_get_the_schema_types(key, given, expected):
    assert coerce_to_schema(given, SCHEMA["properties"][key]) == expected


def test_only_command_line_values_are_typed_and_nested_values_merge():
    config = {"query": {"s2:mgrs_tile": {"eq": "31"}}, "mask": {"band": "SCL", "classes": ["8"]}}
    coerce_command_line(config, {"mask": {"classes": ["8"]}}, SCHEMA)
    assert config == {
        "query": {"s2:mgrs_tile": {"eq": "31"}},
        "mask": {"band": "SCL", "classes": [8]},
    }


def test_a_coerced_config_validates():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    command_line = {"query": "null", "patch_size": ["32", "32"], "mode": "patch"}
    config.update(command_line)
    coerce_command_line(config, command_line, SCHEMA)
    settings = Settings.from_config(config_for(**config))
    assert settings.search.query is None and settings.grid.patch_size == (32, 32)


def test_a_value_of_the_wrong_kind_still_fails_validation():
    with pytest.raises(Exception, match="is not of type"):
        config_for(patch_size=coerce_to_schema(["a", "b"], SCHEMA["properties"]["patch_size"]))
    with pytest.raises(InputError, match="not a date"):
        config_for(start="2024-02-30")
