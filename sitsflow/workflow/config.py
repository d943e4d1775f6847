"""Checks on the workflow config that a JSON schema cannot express, with messages naming the key."""

from __future__ import annotations

import datetime as dt

from pyproj import CRS
from pyproj.exceptions import CRSError

from sitsflow.catalog.filters import parse_filter
from sitsflow.catalog.providers import canonical_band, check_provider_config
from sitsflow.errors import InputError
from sitsflow.pixels.indices import check_indices

DATE_KEYS = ("start", "end")


def normalise_config(config: dict) -> dict:
    """Turn YAML-parsed dates (`--config start=2024-03-01` gives a date) back into ISO strings."""
    for key in DATE_KEYS:
        if isinstance(config.get(key), dt.date):
            config[key] = config[key].isoformat()
    return config


def check_config(config: dict) -> None:
    """Raise InputError for values the schema accepts but the workflow cannot use."""
    dates = {}
    for key in DATE_KEYS:
        try:
            dates[key] = dt.date.fromisoformat(str(config[key]))
        except ValueError:
            raise InputError(f"{config[key]!r} is not a date; write YYYY-MM-DD", key=key) from None
    if dates["start"] > dates["end"]:
        raise InputError(
            f"start {dates['start']} is after end {dates['end']}; swap them", key="start"
        )
    for band in config["bands"]:
        canonical_band(band)
    try:
        canonical_band(config["mask"]["band"])
    except InputError as exc:
        raise InputError(exc.message, key="mask.band") from None
    check_provider_config(config)
    if config.get("filter"):
        try:
            parse_filter(config["filter"])
        except ValueError as exc:
            raise InputError(str(exc), key="filter") from None
    check_indices(config.get("indices") or [], config["bands"])
    crs = str(config["crs"])
    if crs.lower() != "utm":
        try:
            parsed = CRS.from_user_input(crs)
        except CRSError:
            raise InputError(f"unknown CRS {crs!r}; use 'utm' or 'EPSG:nnnn'", key="crs") from None
        if not parsed.is_projected:
            raise InputError(
                f"CRS {crs!r} is not projected; cubes need a metric grid ('utm' or e.g. EPSG:3035)",
                key="crs",
            )
    if config["mode"] == "patch":
        nx, ny = config["patch_size"]
        if nx * ny > config["max_pixels"]:
            raise InputError(
                f"patch_size {nx} x {ny} = {nx * ny} pixels exceeds max_pixels "
                f"{config['max_pixels']}; use a smaller patch_size or raise max_pixels",
                key="patch_size",
            )
