"""Read the pixels of a feature's items onto its grid with stackstac, as reflectance.

Items must be normalised first (`providers.normalise_item`): assets keyed by band name,
`proj:epsg` set and the DN -> reflectance rule recorded per asset.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import stackstac

from sitsflow.grid import Grid
from sitsflow.providers import CLASSIFICATION_BANDS

log = logging.getLogger(__name__)

# GDAL settings for reading COGs over HTTP: no directory listings, merged ranges, a block cache,
# and retries for transient 429/5xx answers.
GDAL_HTTP_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
}


def gdal_env() -> stackstac.rio_env.LayeredEnv:
    return stackstac.DEFAULT_GDAL_ENV.updated(always=GDAL_HTTP_OPTIONS)


def solar_days(items: list[dict], longitude: float) -> list[str]:
    """Local solar date of each acquisition at `longitude` (UTC shifted by lon/15 hours).

    Scenes of one orbit pass over neighbouring tiles share a solar day even when their UTC
    timestamps differ by seconds; grouping on it merges them into one time step.
    """
    shift = timedelta(hours=longitude / 15.0)
    days = []
    for item in items:
        moment = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        days.append((moment + shift).date().isoformat())
    return days


def load_reflectance(
    items: list[dict],
    bands: list[str],
    grid: Grid,
    *,
    longitude: float,
    chunksize: int = 2048,
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Stack `items` for `bands` on `grid`; one time step per solar day.

    Returns (data, times, item_ids): data is float32 (time, band, y, x) with reflectance bands
    scaled to reflectance and classification bands left as class values (NaN = no data);
    times are datetime64[ns] (first acquisition of the day); item_ids lists the items merged into
    each time step.
    """
    if not items:
        empty = np.empty((0, len(bands), grid.height, grid.width), dtype=np.float32)
        return empty, np.array([], dtype="datetime64[ns]"), []
    stack = stackstac.stack(
        items,
        assets=bands,
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        dtype=np.dtype("float32"),
        fill_value=np.float32("nan"),
        rescale=False,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        chunksize=chunksize,
        errors_as_nodata=(),
        gdal_env=gdal_env(),
    )
    data = stack.data.compute()
    if data.shape[-2:] != (grid.height, grid.width):
        raise RuntimeError(f"stackstac returned {data.shape[-2:]}, expected grid {grid}")
    _apply_radiometry(data, items, bands)
    return _mosaic_by_solar_day(data, items, longitude)


def _apply_radiometry(data: np.ndarray, items: list[dict], bands: list[str]) -> None:
    for band_index, band in enumerate(bands):
        if band in CLASSIFICATION_BANDS:
            continue
        for time_index, item in enumerate(items):
            asset = item["assets"][band]
            layer = data[time_index, band_index]
            layer *= np.float32(asset["sitsflow:scale"])
            layer += np.float32(asset["sitsflow:offset"])


def _mosaic_by_solar_day(
    data: np.ndarray, items: list[dict], longitude: float
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Merge items of the same solar day: later items on top where they have data."""
    days = solar_days(items, longitude)
    order = sorted(range(len(items)), key=lambda i: (days[i], items[i]["properties"]["datetime"]))
    groups: dict[str, list[int]] = {}
    for index in order:
        groups.setdefault(days[index], []).append(index)
    merged = np.empty((len(groups),) + data.shape[1:], dtype=np.float32)
    times, ids = [], []
    for step, members in enumerate(groups.values()):
        layer = data[members[0]].copy()
        for index in members[1:]:
            has_data = np.isfinite(data[index])
            layer[has_data] = data[index][has_data]
        merged[step] = layer
        first = items[members[0]]["properties"]["datetime"]
        times.append(pd.Timestamp(first).tz_convert(None).to_datetime64())
        ids.append([items[i]["id"] for i in members])
    return merged, np.array(times, dtype="datetime64[ns]"), ids
