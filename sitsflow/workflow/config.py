"""The workflow config: command-line values typed by the schema, and the checks a JSON schema
cannot express, with messages naming the key.

The schema (`schemas/config.schema.yaml`) is the one place defaults live. `load_config` runs
`coerce_command_line`, Snakemake's `validate` (which fills in the defaults), then `check_config`,
for the workflow (rules/common.smk) and for code outside Snakemake alike.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pyproj import CRS
from pyproj.exceptions import CRSError

from sitsflow.catalog.filters import parse_filter
from sitsflow.catalog.providers import check_provider_config
from sitsflow.core.bands import LANDSAT, NDVI_BANDS, canonical_band, run_families
from sitsflow.core.errors import InputError
from sitsflow.core.settings import collection_list
from sitsflow.pixels.timeaxis import parse_duration

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
DATE_KEYS = ("start", "end")
# YAML 1.1's spellings (what a config file would mean by them).
_NULLS = {"null", "Null", "NULL", "~"}
_TRUE = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}
_INTEGER = re.compile(r"^[-+]?\d+$")


def normalise_config(config: dict[str, Any]) -> dict[str, Any]:
    """Turn YAML-parsed dates (`--config start=2024-03-01` gives a date) back into ISO strings."""
    for key in DATE_KEYS:
        if isinstance(config.get(key), dt.date):
            config[key] = config[key].isoformat()
    return config


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load(SCHEMA_PATH.read_text())
    return schema


def _types(schema: Mapping[str, Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def coerce_to_schema(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """`value` from the command line with its strings turned into the types `schema` allows.

    Snakemake reads `--config` values as plain strings below the top level (`'[32, 32]'` gives
    `['32', '32']`, `null` gives `'null'`), so a value the config file would spell the same way
    fails validation. Strings become null, booleans, integers or numbers where the schema allows
    that type (and not only a string); where the schema says nothing (`query`, `filter`), YAML
    decides, as it would in the config file.
    """
    if schema is None or not schema:
        return _yaml_typed(value)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            for option in schema[key]:
                coerced = coerce_to_schema(value, option)
                if coerced != value or type(coerced) is not type(value):
                    return coerced
            return value
    types = _types(schema)
    if isinstance(value, str):
        return _coerce_string(value, types) if types else _yaml_typed(value)
    if isinstance(value, list) and "array" in types:
        return [coerce_to_schema(item, schema.get("items")) for item in value]
    if isinstance(value, dict) and "object" in types:
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            key: coerce_to_schema(
                item, properties.get(key, extra if isinstance(extra, dict) else None)
            )
            for key, item in value.items()
        }
    return value


def _coerce_string(value: str, types: set[str]) -> Any:
    if "null" in types and value in _NULLS:
        return None
    if "boolean" in types and value in _TRUE | _FALSE:
        return value in _TRUE
    if types & {"integer", "number"} and _INTEGER.match(value):
        return int(value)
    if "number" in types:
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _yaml_typed(value: Any) -> Any:
    """Strings in a free-form value typed as YAML would type them (`'10'` -> 10)."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            return value
    if isinstance(value, list):
        return [_yaml_typed(item) for item in value]
    if isinstance(value, dict):
        return {key: _yaml_typed(item) for key, item in value.items()}
    return value


def coerce_command_line(
    config: dict[str, Any], command_line: Mapping[str, Any], schema: Mapping[str, Any]
) -> dict[str, Any]:
    """Re-type in `config` the values given with `--config` (`command_line`) by the schema.

    Only command-line values are touched: a string the config file wrote in quotes stays a
    string.
    """
    properties = schema.get("properties", {})
    typed = {
        key: coerce_to_schema(value, properties.get(key)) for key, value in command_line.items()
    }
    _assign(config, typed)
    return config


def _assign(target: dict[str, Any], updates: Mapping[str, Any]) -> None:
    """Set the leaves of `updates` in `target`, keeping keys `updates` does not name (Snakemake
    merged nested `--config` values into the config file's the same way)."""
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _assign(target[key], value)
        else:
            target[key] = value


def load_config(
    config: Mapping[str, Any], command_line: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A copy of `config` with its `--config` values (`command_line`) typed by the schema
    (`coerce_command_line`), validated with the schema's defaults filled in, and checked
    (`check_config`): what the workflow reads when it is parsed (rules/common.smk), and what
    code outside Snakemake reads (the demo script, tests, benchmarks)."""
    from snakemake.utils import validate

    validated = copy.deepcopy(dict(config))
    if command_line:
        coerce_command_line(validated, command_line, load_schema())
    normalise_config(validated)
    validate(validated, schema=str(SCHEMA_PATH))
    check_config(validated)
    return validated


def runs_landsat(config: Mapping[str, Any]) -> bool:
    """Whether the config's collections include a Landsat one (its bands then go by common
    name: `sitsflow.core.bands.canonical_band`)."""
    return LANDSAT in run_families(collection_list(config.get("collection", "")))


def check_config(config: Mapping[str, Any]) -> None:
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
    landsat = runs_landsat(config)
    for band in config["bands"]:
        canonical_band(band, landsat)
    try:
        canonical_band(config["mask"]["band"], landsat)
    except InputError as exc:
        raise InputError(exc.message, key="mask.band") from None
    check_provider_config(config)
    if config.get("filter"):
        try:
            parse_filter(config["filter"])
        except ValueError as exc:
            raise InputError(str(exc), key="filter") from None
    if config.get("indices"):
        # spyndex brings xarray and dask: 0.5 s of every run's parse without indices
        from sitsflow.pixels.indices import check_indices

        check_indices(config["indices"], config["bands"], runs_landsat(config))
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
    check_time_axis(config)
    check_compression(config)
    check_dataset(config)
    check_attribute_names(config)
    if config["mode"] == "patch":
        nx, ny = config["patch_size"]
        if nx * ny > config["max_pixels"]:
            raise InputError(
                f"patch_size {nx} x {ny} = {nx * ny} pixels exceeds max_pixels "
                f"{config['max_pixels']}; use a smaller patch_size or raise max_pixels",
                key="patch_size",
            )


# Names the time-series tables and the dataset use themselves: an attribute column cannot be
# one of them (nor a band or index, the wide table's columns).
RESERVED_COLUMNS = frozenset(
    {"id", "time", "band", "value", "observed", "n_pixels", "feature", "lon", "lat", "epsg"}
    | {"valid_fraction", "grid_x", "grid_y", "x", "y", "inside", "spatial_ref", "geometry"}
)


def check_time_axis(config: Mapping[str, Any]) -> None:
    """`time_step` is a duration sitsflow supports; `composite: max_ndvi` has its bands."""
    if config["time_step"] is None:
        return
    try:
        parse_duration(config["time_step"])
    except ValueError as exc:
        raise InputError(f"{exc}; or null for the acquisition dates", key="time_step") from None
    if config["composite"] == "max_ndvi":
        landsat = runs_landsat(config)
        bands = {canonical_band(band, landsat) for band in config["bands"]}
        red, nir = NDVI_BANDS[landsat]
        missing = [band for band in (red, nir) if band not in bands]
        if missing:
            raise InputError(
                f"composite max_ndvi picks the observation with the highest NDVI, from {red} "
                f"and {nir}; add {missing} to bands, or use composite median or first",
                key="composite",
            )


def check_compression(config: Mapping[str, Any]) -> None:
    """`compression: zstd` needs a netCDF library built with it and HDF5's zstd plugin where
    HDF5 looks (netCDF4's wheels bring one and point `HDF5_PLUGIN_PATH` to it unless it is
    set): a small file written with the cubes' zstd settings and read back when the parse
    starts, not a failure per cube."""
    if config["compression"] != "zstd" or config["format"] != "netcdf":
        return
    import tempfile

    import netCDF4
    import numpy as np

    from sitsflow.outputs.write import CODECS

    library = f"netCDF4 {netCDF4.__version__}, netCDF-C {netCDF4.__netcdf4libversion__}"
    if not getattr(netCDF4, "__has_zstandard_support__", False):
        raise InputError(
            f"compression zstd: this netCDF library ({library}) was built without zstd; use "
            "compression zlib, or a netCDF4 with zstd (its wheels on PyPI have it)",
            key="compression",
        )
    values = np.arange(64, dtype=np.float32).reshape(8, 8)
    with tempfile.TemporaryDirectory(prefix="sitsflow-zstd-") as directory:
        path = f"{directory}/check.nc"
        try:
            with netCDF4.Dataset(path, "w") as nc:
                nc.createDimension("y", 8)
                nc.createDimension("x", 8)
                codec: dict[str, Any] = dict(CODECS["zstd"])
                variable = nc.createVariable("v", "f4", ("y", "x"), **codec)
                variable[...] = values
            with netCDF4.Dataset(path) as nc:
                read = np.asarray(nc["v"][...])
        except (OSError, RuntimeError) as exc:
            raise InputError(
                f"compression zstd: {library} cannot write and read zstd here ({exc}); HDF5 "
                "looks for its zstd plugin in HDF5_PLUGIN_PATH (now "
                f"{os.environ.get('HDF5_PLUGIN_PATH')!r}): point it to the directory holding "
                "lib__nch5zstd, or use compression zlib",
                key="compression",
            ) from None
    if not np.array_equal(read, values):
        raise InputError(f"compression zstd: {library} read back other values", key="compression")


def check_dataset(config: Mapping[str, Any]) -> None:
    """`dataset: true` stacks the cubes as (feature, time, y, x): every cube needs the same
    grid size (patch mode) and the same time axis (a `time_step`)."""
    if not config["dataset"]:
        return
    if config["mode"] != "patch":
        raise InputError(
            "dataset: true stacks every cube as (feature, time, y, x) and needs cubes of one "
            f"size; mode {config['mode']!r} sizes each cube to its feature: set mode: patch "
            "(with patch_size)",
            key="dataset",
        )
    if config["time_step"] is None:
        raise InputError(
            "dataset: true stacks every cube on one time axis, but with time_step: null each "
            "cube keeps its own acquisition dates, which differ between features: set "
            "time_step (e.g. P10D)",
            key="dataset",
        )


def check_attribute_names(config: Mapping[str, Any]) -> None:
    """Attribute columns must not clash with the columns and coordinates sitsflow writes."""
    landsat = runs_landsat(config)
    taken = RESERVED_COLUMNS | {canonical_band(band, landsat) for band in config["bands"]}
    taken |= set(config["indices"]) | {canonical_band(config["mask"]["band"], landsat)}
    clashing = [name for name in config["attributes"] if name in taken]
    if config["id_column"] in config["attributes"]:
        raise InputError(
            f"{config['id_column']!r} is the id_column: every table and cube has the feature "
            "id already; remove it from attributes",
            key="attributes",
        )
    if clashing:
        raise InputError(
            f"attribute column(s) {clashing} clash with names the time-series tables and the "
            f"dataset use ({sorted(RESERVED_COLUMNS)}, the bands and indices); rename them in "
            "the vector file",
            key="attributes",
        )
