"""Settings for tests and benchmarks: the schema's defaults plus the values a test names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sitsflow.core.settings import CubeSettings, GridSettings, Settings
from sitsflow.workflow.config import load_config

# The keys the schema requires; a test that needs other values overrides them.
REQUIRED = {
    "vector": "features.geojson",
    "catalog": "items.json",
    "start": "2024-01-01",
    "end": "2024-12-31",
}


def config_for(**overrides: Any) -> dict[str, Any]:
    """A validated config: REQUIRED and `overrides` (nested mappings merged), with the
    schema's defaults for everything else."""
    config: dict[str, Any] = dict(REQUIRED)
    _merge(config, overrides)
    return load_config(config)


def settings_for(**overrides: Any) -> Settings:
    return Settings.from_config(config_for(**overrides))


def cube_settings(**overrides: Any) -> CubeSettings:
    return settings_for(**overrides).cube


def grid_settings(**overrides: Any) -> GridSettings:
    return settings_for(**overrides).grid


def _merge(target: dict[str, Any], updates: Mapping[str, Any]) -> None:
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value
