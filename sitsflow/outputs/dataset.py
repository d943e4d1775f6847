"""`results/dataset.zarr`: every feature's cube stacked along `feature`, for training a model.

With `dataset: true` (which needs `mode: patch` and a `time_step`, checked when the workflow is
parsed) every cube has the same grid size and the same regular time axis, so the cubes stack
into one Zarr v2 store (consolidated metadata, as the Zarr cubes) that `xr.open_zarr` reads:

* one variable per band, index, class band and `observed`, dimensions `(feature, time, y, x)`,
  values exactly the cubes'; `inside` as `(feature, y, x)`;
* `feature` coordinates: `feature` (the id, the index: `ds.sel(feature="17")`), `lon`, `lat`
  (the feature's centroid), `epsg` (its grid's CRS), `valid_fraction` and one coordinate per
  column of config `attributes`; `grid_x (feature, x)` and `grid_y (feature, y)`, the pixel
  centres in that CRS (each patch lies elsewhere, so x and y are positions, not coordinates);
* `time`, the regular axis the cubes share.

**Incremental.** The store holds a record of which feature is at which index and the
fingerprint (size and modification time) of the cube it was written from. A later run opens
only the cubes whose fingerprint changed, rewrites those features' regions in place
(`to_zarr(region=...)`) and appends new features along `feature` (`append_dim`): adding one
feature writes its own chunks (one feature per chunk of every variable) and the last chunk of
each 1-D coordinate (4096 features a chunk), nothing of the other features. The store is
rebuilt from every cube instead, in a temporary directory renamed into place, when it is
missing or unreadable, when a feature was removed, or when the cubes' shape changed (another
time axis, patch size, band, attribute column, or an attribute value of another type).

**Interrupted writes.** Before rewriting a feature's region its fingerprint is cleared in the
record, and set again once the region is written; an append extends every array, then the
record. A job killed in between leaves a feature marked unfinished (rewritten by the next run)
or arrays longer than the record (the next run rebuilds the store): never a store that claims
values it does not hold. The consolidated metadata is written last.

Features are in the order they were first added (a fresh store: the vector file's order).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from sitsflow.core.atomic import atomic_write_text, replace_directory, temporary_for
from sitsflow.outputs.timeseries import feature_attributes
from sitsflow.outputs.write import CHUNK_TIME, CHUNK_XY, open_cube
from sitsflow.pixels.cube_model import GRID_MAPPING

log = logging.getLogger(__name__)

RECORD_ATTR = "sitsflow_features"  # JSON [[id, fingerprint or null], ...] in feature order
STRUCTURE_ATTR = "sitsflow_structure"  # JSON: the shape every cube must have
CHUNK_FEATURES = 4096  # features per chunk of the 1-D feature coordinates
APPEND_GROUP = 32  # features loaded and appended at once
TIME_ENCODING = {
    "units": "milliseconds since 1970-01-01 00:00:00",
    "calendar": "proleptic_gregorian",
    "dtype": "int64",
}
# Cube attributes the dataset repeats (the same for every cube of a run).
RUN_ATTRS = (
    "catalog",
    "collection",
    "bands",
    "indices",
    "mask_band",
    "mask_classes",
    "mask_dilate_m",
    "time_step",
    "time_axis",
    "composite",
    "gapfill_method",
    "gapfill_max_gap_days",
    "gapfill_max_edge_days",
    "resampling",
)


class StackError(ValueError):
    """Cubes that cannot be stacked (different time axes or grid sizes)."""


@dataclass
class DatasetUpdate:
    """What `update_dataset` did."""

    features: int = 0
    rebuilt: bool = False
    reason: str = ""
    appended: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    unchanged: int = 0
    time_steps: int = 0
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# One feature


def cube_fingerprint(path: str | Path) -> str:
    """`size:mtime_ns` of a netCDF cube, or of a Zarr cube's files (total size, newest
    modification): what changes whenever the cube is written again."""
    target = Path(path)
    if target.is_dir():
        stats = [entry.stat() for entry in target.rglob("*") if entry.is_file()]
        return f"{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"
    stat = target.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def attribute_kind(value: Any) -> str:
    """The kind of one attribute value: bool, int, float, str or missing."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "missing" if np.isnan(value) else "float"
    return "str"


def merged_kind(kinds: set[str]) -> str:
    """The coordinate type that holds values of all `kinds`: integers with missing values or
    floats become float (NaN), booleans with anything else and any text become str ('')."""
    present = kinds - {"missing"}
    if not present:
        return "str"
    if present == {"bool"}:
        return "str" if "missing" in kinds else "bool"
    if present == {"int"}:
        return "float" if "missing" in kinds else "int"
    if present <= {"int", "float"}:
        return "float"
    return "str"


def attribute_array(values: Sequence[Any], kind: str) -> np.ndarray:
    """Attribute values as the coordinate array of `kind` (see `merged_kind`)."""
    if kind == "bool":
        return np.array(values, dtype=bool)
    if kind == "int":
        return np.array(values, dtype=np.int64)
    if kind == "float":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def describe_cube(cube: xr.Dataset) -> dict[str, Any]:
    """The shape a cube gives the dataset: its time axis, grid size, variables with their
    dtypes, attribute columns and the run's settings it records (`RUN_ATTRS`). Cubes stack
    only when these are equal, so that every feature of a store was made the same way."""
    return {
        "settings": {key: _json_value(cube.attrs[key]) for key in RUN_ATTRS if key in cube.attrs},
        "time": [str(value) for value in cube["time"].values.astype("datetime64[s]")],
        "y": int(cube.sizes["y"]),
        "x": int(cube.sizes["x"]),
        "variables": {
            str(name): str(variable.dtype)
            for name, variable in cube.data_vars.items()
            if variable.dims in (("time", "y", "x"), ("y", "x"))
        },
        "attributes": sorted(feature_attributes(cube)),
    }


def _json_value(value: Any) -> Any:
    """An attribute as read back (numpy scalars, arrays) as plain JSON data."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _centroid(cube: xr.Dataset) -> tuple[float, float]:
    from shapely import wkt

    centroid = wkt.loads(cube.attrs["geometry_wkt"]).centroid
    return round(float(centroid.x), 7), round(float(centroid.y), 7)


def _epsg(cube: xr.Dataset) -> int:
    from pyproj import CRS

    code = CRS.from_wkt(cube[GRID_MAPPING].attrs["crs_wkt"]).to_epsg()
    return int(code) if code is not None else -1


def feature_slab(cube: xr.Dataset, fid: str, kinds: dict[str, str]) -> xr.Dataset:
    """The cube as one feature of the dataset: dimensions (feature: 1, time, y, x), its
    feature coordinates, the attribute columns typed by `kinds`."""
    variables = {}
    for name, variable in cube.data_vars.items():
        if variable.dims not in (("time", "y", "x"), ("y", "x")):
            continue
        attrs = {k: v for k, v in variable.attrs.items() if k not in ("source_level",)}
        variables[str(name)] = xr.Variable(
            ("feature", *variable.dims), np.asarray(variable.values)[None], attrs
        )
    lon, lat = _centroid(cube)
    attributes = feature_attributes(cube)
    coords: dict[str, Any] = {
        "time": ("time", cube["time"].values, dict(cube["time"].attrs)),
        "feature": ("feature", np.array([fid], dtype=object), {"long_name": "feature id"}),
        "lon": ("feature", [lon], {"long_name": "longitude of the feature's centroid",
                                   "units": "degrees_east", "standard_name": "longitude"}),
        "lat": ("feature", [lat], {"long_name": "latitude of the feature's centroid",
                                   "units": "degrees_north", "standard_name": "latitude"}),
        "epsg": ("feature", np.array([_epsg(cube)], dtype=np.int32),
                 {"long_name": "EPSG code of the feature's grid (grid_x, grid_y)"}),
        "valid_fraction": ("feature", [float(cube.attrs.get("valid_fraction", 0.0))],
                           {"long_name": "share of the cube's pixels observed before gap-fill"}),
        "grid_x": (("feature", "x"), cube["x"].values[None].astype(np.float64),
                   {"long_name": "x of each pixel centre in the feature's grid CRS (epsg)",
                    "units": "metre"}),
        "grid_y": (("feature", "y"), cube["y"].values[None].astype(np.float64),
                   {"long_name": "y of each pixel centre in the feature's grid CRS (epsg)",
                    "units": "metre"}),
    }  # fmt: skip
    for name in sorted(attributes):
        coords[name] = (
            "feature",
            attribute_array([attributes[name]], kinds[name]),
            {"long_name": f"vector file column {name!r}"},
        )
    return xr.Dataset(variables, coords=coords)


def _encoding(slab: xr.Dataset) -> dict[str, dict[str, Any]]:
    """One feature per chunk of every (feature, ...) variable, time and space chunked as the
    cubes; CHUNK_FEATURES per chunk of the 1-D coordinates; time stored as the cubes store it."""
    sizes = {"feature": 1, "time": CHUNK_TIME, "y": CHUNK_XY, "x": CHUNK_XY}
    encoding: dict[str, dict[str, Any]] = {"time": dict(TIME_ENCODING)}
    for name, variable in slab.variables.items():
        if "feature" not in variable.dims:
            continue
        if variable.dims == ("feature",):
            chunks: tuple[int, ...] = (CHUNK_FEATURES,)
        else:
            chunks = tuple(
                min(max(slab.sizes[str(dim)], 1), sizes[str(dim)]) for dim in variable.dims
            )
        entry: dict[str, Any] = {"chunks": chunks}
        if variable.dtype == np.float32:
            entry["_FillValue"] = np.float32("nan")
        encoding[str(name)] = entry
    return encoding


# --------------------------------------------------------------------------------------------
# The store's record


def read_store_record(store: Path) -> tuple[list[list[Any]], dict[str, Any]] | None:
    """The store's record and structure, or None when the store is missing, unreadable, or
    its arrays do not have as many features as the record (an interrupted append)."""
    import zarr

    if not (store / ".zgroup").is_file():
        return None
    try:
        group = zarr.open_group(str(store), mode="r", zarr_format=2, use_consolidated=False)
        record = json.loads(str(group.attrs[RECORD_ATTR]))
        structure = json.loads(str(group.attrs[STRUCTURE_ATTR]))
        for _, array in group.arrays():
            dims = [str(dim) for dim in cast(list[str], array.attrs.get("_ARRAY_DIMENSIONS", []))]
            if "feature" in dims and array.shape[dims.index("feature")] != len(record):
                return None
    except Exception as exc:  # any damage: the store is rebuilt
        log.warning("%s is unreadable (%s): rebuilding it", store, exc)
        return None
    return record, structure


def _read_attrs(store: Path) -> dict[str, Any]:
    """The store's global attributes (xarray replaces them with the written dataset's own on
    every append: each append carries them, see `_append`)."""
    import zarr

    group = zarr.open_group(str(store), mode="r", zarr_format=2, use_consolidated=False)
    return dict(group.attrs)


def _write_attrs(store: Path, attrs: dict[str, Any]) -> None:
    import zarr

    group = zarr.open_group(str(store), mode="r+", zarr_format=2, use_consolidated=False)
    group.attrs.update(attrs)


def _consolidate(store: Path) -> None:
    import zarr

    zarr.consolidate_metadata(str(store), zarr_format=2)


def _record_attrs(record: Sequence[Sequence[Any]]) -> dict[str, str]:
    return {RECORD_ATTR: json.dumps([list(entry) for entry in record])}


# --------------------------------------------------------------------------------------------
# Updating


def update_dataset(cubes: Sequence[tuple[str, str | Path]], store: str | Path) -> DatasetUpdate:
    """Bring the store up to date with `cubes` (feature id, cube path), rewriting only what
    changed (module docstring). Raises StackError when the cubes cannot be stacked."""
    started = time.perf_counter()
    target = Path(store)
    paths = {fid: Path(path) for fid, path in cubes}
    fingerprints = {fid: cube_fingerprint(path) for fid, path in paths.items()}
    state = read_store_record(target)
    update = DatasetUpdate(features=len(paths))
    if state is None:
        update = _rebuild(paths, fingerprints, target, "no readable store")
    else:
        record, structure = state
        removed = [fid for fid, _ in record if fid not in paths]
        known = {fid for fid, _ in record}
        changed = [fid for fid, printed in record if fid in paths and printed != fingerprints[fid]]
        new = [fid for fid in paths if fid not in known]
        reason = (
            f"feature(s) removed: {removed[:5]}"
            if removed
            else _incompatible(paths, changed + new, structure)
        )
        if reason:
            update = _rebuild(paths, fingerprints, target, reason)
        else:
            update.unchanged = len(record) - len(changed)
            update.time_steps = len(structure["cube"]["time"])
            _rewrite(paths, fingerprints, target, record, structure, changed)
            _append(paths, fingerprints, target, record, structure, new)
            if changed or new:
                _consolidate(target)
            update.rewritten, update.appended = changed, new
    update.seconds = round(time.perf_counter() - started, 3)
    return update


def _incompatible(paths: dict[str, Path], fids: Sequence[str], structure: dict[str, Any]) -> str:
    """Why the cubes of `fids` do not fit the store (empty: they fit)."""
    kinds: dict[str, str] = structure["kinds"]
    for fid in fids:
        with open_cube(paths[fid]) as cube:
            shape = describe_cube(cube)
            attributes = feature_attributes(cube)
        if shape != structure["cube"]:
            differs = _what_differs(structure["cube"], shape)
            return f"the cube of {fid!r} differs from the store's: {differs}"
        for name, value in attributes.items():
            if merged_kind({kinds[name], attribute_kind(value)}) != kinds[name]:
                return f"attribute {name!r} of {fid!r} ({value!r}) is not a {kinds[name]}"
    return ""


def _loaded(path: Path, fid: str, kinds: dict[str, str]) -> xr.Dataset:
    with open_cube(path) as cube:
        return feature_slab(cube.load(), fid, kinds)


def _rewrite(
    paths: dict[str, Path],
    fingerprints: dict[str, str],
    store: Path,
    record: list[list[Any]],
    structure: dict[str, Any],
    changed: Sequence[str],
) -> None:
    """Rewrite the regions of the `changed` features, each marked unfinished meanwhile."""
    if not changed:
        return
    index = {fid: position for position, (fid, _) in enumerate(record)}
    for fid in changed:
        record[index[fid]][1] = None
    _write_attrs(store, _record_attrs(record))
    for fid in changed:
        slab = _loaded(paths[fid], fid, structure["kinds"]).drop_vars("time")
        slab.attrs = _read_attrs(store)
        position = index[fid]
        slab.to_zarr(
            str(store),
            mode="r+",
            region={"feature": slice(position, position + 1)},
            zarr_format=2,
            consolidated=False,
        )
        record[position][1] = fingerprints[fid]
        log.info("rewrote feature %s (index %d) from %s", fid, position, paths[fid])
    _write_attrs(store, _record_attrs(record))


def _groups(fids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(fids), APPEND_GROUP):
        yield fids[start : start + APPEND_GROUP]


def _append(
    paths: dict[str, Path],
    fingerprints: dict[str, str],
    store: Path,
    record: list[list[Any]],
    structure: dict[str, Any],
    new: Sequence[str],
) -> None:
    """Append the `new` features along `feature`, APPEND_GROUP at a time, the record after
    each group."""
    for group in _groups(new):
        slabs = [_loaded(paths[fid], fid, structure["kinds"]) for fid in group]
        stacked = xr.concat(slabs, "feature", data_vars="all", coords="different", compat="equals")
        stacked.attrs = _read_attrs(store)
        stacked.to_zarr(
            str(store), mode="a", append_dim="feature", zarr_format=2, consolidated=False
        )
        record.extend([fid, fingerprints[fid]] for fid in group)
        _write_attrs(store, _record_attrs(record))
        log.info("appended %d feature(s): %s", len(group), ", ".join(group))


def _rebuild(
    paths: dict[str, Path], fingerprints: dict[str, str], store: Path, reason: str
) -> DatasetUpdate:
    """Write the whole store from every cube into a temporary directory, then rename it into
    place. Raises StackError, naming the feature, when the cubes do not share a shape."""
    if not paths:
        raise StackError("no cube to stack: the run has no feature")
    log.info("building %s from %d cubes: %s", store, len(paths), reason)
    shapes: dict[str, dict[str, Any]] = {}
    values: dict[str, list[Any]] = {}
    for fid, path in paths.items():
        with open_cube(path) as cube:
            shapes[fid] = describe_cube(cube)
            for name, value in feature_attributes(cube).items():
                values.setdefault(name, []).append(value)
    first = next(iter(paths))
    run_attrs = shapes[first]["settings"]
    for fid, shape in shapes.items():
        if shape != shapes[first]:
            raise StackError(_difference(first, shapes[first], fid, shape))
    kinds = {
        name: merged_kind({attribute_kind(v) for v in found}) for name, found in values.items()
    }
    structure = {"cube": shapes[first], "kinds": kinds}
    temporary = temporary_for(store)
    shutil.rmtree(temporary, ignore_errors=True)
    store.parent.mkdir(parents=True, exist_ok=True)
    try:
        fids = list(paths)
        record: list[list[Any]] = []
        for number, group in enumerate(_groups(fids)):
            slabs = [_loaded(paths[fid], fid, kinds) for fid in group]
            stacked = xr.concat(
                slabs, "feature", data_vars="all", coords="different", compat="equals"
            )
            if number == 0:
                stacked.attrs = _dataset_attrs(run_attrs, structure)
                stacked.to_zarr(
                    str(temporary),
                    mode="w",
                    zarr_format=2,
                    consolidated=False,
                    encoding=_encoding(stacked),
                )
            else:
                stacked.attrs = _read_attrs(temporary)
                stacked.to_zarr(
                    str(temporary), mode="a", append_dim="feature", zarr_format=2,
                    consolidated=False,
                )  # fmt: skip
            record.extend([fid, fingerprints[fid]] for fid in group)
        _write_attrs(temporary, _record_attrs(record))
        _consolidate(temporary)
        replace_directory(temporary, store)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return DatasetUpdate(
        features=len(paths),
        rebuilt=True,
        reason=reason,
        appended=list(paths),
        time_steps=len(structure["cube"]["time"]),
    )


def _dataset_attrs(run_attrs: dict[str, Any], structure: dict[str, Any]) -> dict[str, Any]:
    from sitsflow.pixels.cube_model import package_versions

    return {
        "Conventions": "CF-1.8",
        "title": "Sentinel-2 L2A time series of every feature, stacked for training (sitsflow)",
        "date_created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "software_versions": json.dumps(package_versions()),
        **run_attrs,
        STRUCTURE_ATTR: json.dumps(structure),
        RECORD_ATTR: "[]",
    }


def _difference(first: str, a: dict[str, Any], fid: str, b: dict[str, Any]) -> str:
    """Why the cube of `fid` cannot be stacked with the cube of `first`."""
    if a["time"] != b["time"]:
        return (
            f"the cubes of {first!r} and {fid!r} have different time axes ({len(a['time'])} "
            f"and {len(b['time'])} steps, from {a['time'][:1]} and {b['time'][:1]}): a dataset "
            "needs a time_step, with which every cube shares one axis"
        )
    if (a["y"], a["x"]) != (b["y"], b["x"]):
        return (
            f"the cubes of {first!r} ({a['x']} x {a['y']}) and {fid!r} ({b['x']} x {b['y']}) "
            "differ in size: a dataset needs mode: patch"
        )
    return (
        f"the cubes of {first!r} and {fid!r} differ: {_what_differs(a, b)}; rerun the cubes "
        "with one config"
    )


def _what_differs(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The parts of two `describe_cube` results that differ, for a message."""
    parts = []
    for key in ("time", "y", "x", "variables", "attributes"):
        if a[key] != b[key]:
            shown = (len(a[key]), len(b[key])) if key == "time" else (a[key], b[key])
            parts.append(f"{key} {shown[0]} != {shown[1]}")
    for key in sorted(set(a["settings"]) | set(b["settings"])):
        if a["settings"].get(key) != b["settings"].get(key):
            parts.append(f"{key} {a['settings'].get(key)!r} != {b['settings'].get(key)!r}")
    return ", ".join(parts) or "nothing"


def write_dataset_manifest(update: DatasetUpdate, store: str, generation: int, path: str) -> None:
    """The `dataset` job's declared output: what the job did to the store (which is not itself
    a Snakemake output: Snakemake would delete it before every run, rules/dataset.smk)."""
    document = {"generation": generation, "store": store, **update.__dict__}
    atomic_write_text(path, json.dumps(document, indent=1))
