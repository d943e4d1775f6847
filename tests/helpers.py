"""Plain helpers of the tests (no fixtures: those are in tests/conftest.py, see docs/testing.md).

Also the description of the shared small demo archive and of the two workflow runs made on it
once per session (fixtures `demo_archive`, `netcdf_run` and `zarr_run`), which the result tests
(quicklooks, time series, indices, Zarr, report, batch, SLURM) check against. Features: a point
(`p1`), a polygon (`poly`) and, in the netCDF run, a point far from any tile (`nowhere`, no
items: an empty time axis).
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from shapely.geometry import Point, box, mapping
from shapely.geometry.base import BaseGeometry

from sitsflow.catalog.providers import Provider
from sitsflow.core.bands import SENTINEL_2
from sitsflow.pixels.cube import ReadGroup

# The shared small archive and the runs on it.
START, END = "2022-01-10", "2022-03-10"
BANDS = ["B02", "B03", "B04", "B08"]
INDICES = ["NDVI", "NDWI", "EVI"]
ARCHIVE_FEATURES: dict[str, BaseGeometry] = {
    "p1": Point(8.491383, 49.854370),
    "poly": box(11.170, 50.010, 11.185, 50.020),
}
EMPTY_FEATURE = ("nowhere", Point(-30.0, 40.0))  # mid-Atlantic: the archive has no tile there
ARCHIVE_OPTIONS: dict[str, object] = {"revisit_days": 5, "seed": 11, "clear_fraction": 0.6}

# A feature of a vector file: a shapely geometry, or a point as (lon, lat).
FeatureGeometry = BaseGeometry | tuple[float, float]


def as_geometry(geometry: FeatureGeometry) -> BaseGeometry:
    """`geometry` itself, or the point of a (lon, lat) pair."""
    return geometry if isinstance(geometry, BaseGeometry) else Point(geometry)


def write_features(
    path: Path,
    features: Mapping[str, FeatureGeometry],
    properties: Mapping[str, Mapping[str, object]] | None = None,
) -> None:
    """Write `features` (id -> geometry or (lon, lat), EPSG:4326) as a GeoJSON vector file whose
    id column is `id`, the default `id_column`; `properties` (id -> column -> value) adds
    columns (config `attributes`)."""
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": fid, **(properties or {}).get(fid, {})},
                "geometry": mapping(as_geometry(g)),
            }
            for fid, g in features.items()
        ],
    }
    path.write_text(json.dumps(collection))


@contextlib.contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 (a free port) in a daemon thread; yield the root URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # a short poll: `shutdown` waits for the next one
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def expected_cube(
    archive: Path,
    items: list[dict],
    cube: xr.Dataset,
    bands: Sequence[str],
    mask_classes: Sequence[int],
    max_edge_days: float | None,
) -> dict[str, np.ndarray]:
    """What a cube of the default config must hold, computed without sitsflow: DN read from the
    demo archive's local COGs, converted to reflectance (offset removed from baseline 04.00 on),
    masked by the SCL classes `mask_classes`, linearly interpolated along real time, held
    constant before the first and after the last observation up to `max_edge_days`.

    Returns `observed` (time, y, x), `times` and each band's values (time, y, x)."""
    xs, ys = cube["x"].values, cube["y"].values
    per_item = []
    for item in items:
        baseline = float(item["properties"]["s2:processing_baseline"])
        offset = -0.1 if baseline >= 4.0 else 0.0
        layers = {}
        for band in [*bands, "SCL"]:
            href = archive / item["assets"][band]["href"].split("/data/", 1)[1]
            with rasterio.open(href) as src:
                full = src.read(1)
                # The pixel whose area contains each cube pixel centre (grids are aligned).
                rows = np.floor((src.transform.f - ys) / -src.transform.e).astype(int)
                cols = np.floor((xs - src.transform.c) / src.transform.a).astype(int)
            data = full[np.ix_(rows, cols)]
            if band == "SCL":
                layers[band] = data.astype(np.float32)
            else:
                layers[band] = np.where(data == 0, np.nan, data * 1e-4 + offset)
        per_item.append((item["properties"]["datetime"], layers))
    per_item.sort(key=lambda pair: pair[0])
    times = np.array([np.datetime64(t.replace("Z", "")) for t, _ in per_item], "datetime64[ns]")
    days = (times - times[0]).astype("timedelta64[s]").astype(float) / 86400
    clear = np.stack([~np.isin(layers["SCL"], list(mask_classes)) for _, layers in per_item])
    result = {"observed": clear, "times": times}
    for band in bands:
        values = np.stack([layers[band] for _, layers in per_item]).astype(np.float32)
        values[~clear] = np.nan
        filled = np.empty_like(values)
        for j in range(values.shape[1]):
            for i in range(values.shape[2]):
                ok = np.isfinite(values[:, j, i])
                filled[:, j, i] = np.nan
                if not ok.any():
                    continue
                filled[:, j, i] = np.interp(days, days[ok], values[ok, j, i])
                if max_edge_days is not None:
                    seen = days[ok]
                    too_far = (days < seen.min() - max_edge_days) | (
                        days > seen.max() + max_edge_days
                    )
                    filled[too_far, j, i] = np.nan
        result[band] = filled
    return result


def feature_items(
    catalog: str,
    record: Mapping,
    start: str,
    end: str,
    query: dict | None = None,
    collection: str = "sentinel-2-l2a",
) -> list[dict]:
    """The items of `collection` in `catalog` over a bbox record's search bbox, as the search
    stage asks for them (without its solar-day trim)."""
    from sitsflow.catalog.search import search

    return search(
        catalog,
        collection=collection,
        bbox=record["properties"]["search_bbox_wgs84"],
        start=start,
        end=end,
        query=query,
    )


def search_alone(bbox_path: str | Path, search_settings, output: str | Path, workdir: Path) -> None:
    """The search job for the bbox record's feature alone (its own group), then the feature's
    items from that group's result, as the workflow's search and cube jobs do; the search
    job's files go under `workdir`."""
    import dataclasses
    import os

    from shapely import wkt

    from sitsflow.core.features import Feature
    from sitsflow.core.layout import Layout
    from sitsflow.testing.settings import settings_for
    from sitsflow.workflow.stages import feature_items, read_bbox, search_groups

    record = read_bbox(bbox_path)
    properties = record["properties"]
    fid = properties["feature_id"]
    feature = Feature(fid, wkt.loads(properties["feature_wkt"]))
    settings = settings_for(catalog=search_settings.catalog, stac={"group_degrees": 0})
    grid = dataclasses.replace(
        settings.grid,
        buffer_m=properties["buffer_m"],
        mode=properties["mode"],
        resolution=properties["grid"]["resolution"],
    )
    group = f"f-{fid}"
    bbox_path, output = Path(bbox_path).resolve(), Path(output).resolve()
    here = Path.cwd()
    os.chdir(workdir)
    try:
        search_groups(
            {fid: feature}, {group: [fid]}, grid, search_settings, settings.stac, 0, Layout()
        )
        feature_items(Layout.group_search(group), str(bbox_path), search_settings, str(output))
    finally:
        os.chdir(here)


def dry_run_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> number of jobs in the job table of a `--dry-run`'s output (empty when there is
    nothing to do). Jobs after the search checkpoint are in it only when the search needs not
    run; when it does, Snakemake lists them all as pending."""
    out = result.stdout
    table = out.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in out else ""
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M) if m[0] != "total"}


def jobs_run(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> number of jobs a (real) run started, from the job headers of its log."""
    headers = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", result.stderr, re.M)
    return dict(collections.Counter(headers))


def s2_group(items: list[dict], bands: list[str], class_band: str = "SCL") -> ReadGroup:
    """Normalised Sentinel-2 `items` as the cube stage reads them: `bands` and the SCL."""
    return ReadGroup(SENTINEL_2, Provider("generic"), items, [*bands, class_band], (class_band,))
