"""Read the pixels of a feature's items onto its grid with stackstac, as reflectance.

Items must be normalised first (`providers.normalise_item`): assets keyed by band name,
`proj:epsg` set and the DN -> reflectance rule recorded per asset.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import dask.array
import numpy as np
import pandas as pd
import rasterio
import stackstac

from sitsflow.errors import AssetError
from sitsflow.grid import Grid
from sitsflow.providers import CLASSIFICATION_BANDS

log = logging.getLogger(__name__)

# GDAL settings for reading COGs over HTTP: no directory listings, merged ranges, a block cache,
# and retries for transient 429/500/502/503/504 answers (GDAL's default retry codes, range
# requests included; the delay grows about 2.4x per retry). An environment variable of the same
# name overrides a value (e.g. GDAL_HTTP_MAX_RETRY=10 on a poor connection).
# GDAL_HTTP_MULTIRANGE=SERIAL: the tiles of a window are read through /vsicurl/'s block cache,
# so bytes that came with the header read (GDAL reads >= 32 KB on open) are not fetched again;
# the default (YES) bypasses that cache and doubled requests and bytes (README, Performance).
GDAL_HTTP_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "SERIAL",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # room for every header `prefetch_headers` brings in (GDAL reads >= 32 KB per file on open)
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 2**20),
}


# Files opened at once by `prefetch_headers`.
PREFETCH_THREADS = 16
# Most reads in flight in one job (dask threads); SITSFLOW_READ_THREADS fixes the number.
MAX_READ_THREADS = 32
# CPU of a read among concurrent ones over that of a lone read (measured, see read_threads_for).
CONTENTION = 2.0


def compute_stack(array: dask.array.Array) -> np.ndarray:
    """Compute stackstac's (time, band, y, x) array with as many reads in flight as pay off.

    Next to the data a read is CPU work and extra threads only add contention; far from it a
    read mostly waits for HTTP round trips. So the first item is read alone (warm-up: GDAL,
    PROJ, connections), the second alone and timed, and the rest with `read_threads_for` dask
    threads (README, Performance).
    """
    fixed = os.environ.get("SITSFLOW_READ_THREADS")
    if fixed:
        return array.compute(scheduler="threads", num_workers=int(fixed))
    if array.shape[0] <= 2:
        return array.compute(scheduler="sync")
    first = array[:1].compute(scheduler="sync")
    wall, cpu = time.perf_counter(), time.thread_time()
    second = array[1:2].compute(scheduler="sync")
    threads = read_threads_for(time.perf_counter() - wall, time.thread_time() - cpu)
    log.info("reading %d more items with %d thread(s)", array.shape[0] - 2, threads)
    rest = array[2:].compute(scheduler="threads" if threads > 1 else "sync", num_workers=threads)
    return np.concatenate([first, second, rest])


def read_threads_for(wall_s: float, cpu_s: float) -> int:
    """Dask threads for reads that took `wall_s` each alone, `cpu_s` of it on the CPU.

    wall/CPU reads in flight would keep a core busy, but concurrent reads cost more CPU each
    (GDAL/PROJ contention: measured 2 to 2.8 times the CPU of a lone read from 4 threads up),
    so half of that: 1 thread next to the data, about 4 at 20 ms and 16 at 80 ms per request.
    """
    ratio = wall_s / max(cpu_s, 1e-3)
    return max(1, min(MAX_READ_THREADS, math.floor(ratio / CONTENTION)))


def prefetch_headers(hrefs: list[str], *, sign_hrefs: bool = False) -> None:
    """Open every remote COG once, PREFETCH_THREADS at a time, and close it again.

    GDAL keeps what an open fetched (file size, and the first >= 32 KB: the header, and for a
    small file all of it) in its process-wide /vsicurl/ cache, so stackstac's own opens and
    reads then wait for no round trip they do not need. Plain opens overlap well in threads
    (the GIL is released while GDAL waits); stackstac's open-and-warp does not (most of it
    holds the GIL), so its reads overlap far less (README, Performance). Errors are left for
    the real read to report.
    """
    remote = [href for href in hrefs if href.startswith(("http://", "https://"))]
    if not remote:
        return
    options = gdal_options()

    def open_once(href: str) -> None:
        try:
            if sign_hrefs:
                from sitsflow.signing import sign_href

                href = sign_href(href)
            with rasterio.Env(**options), rasterio.open(href):
                pass
        except Exception as exc:  # the read itself raises and explains (without a token)
            log.debug("prefetch of %s failed: %s", href.split("?", 1)[0], type(exc).__name__)

    with ThreadPoolExecutor(PREFETCH_THREADS) as pool:
        list(pool.map(open_once, remote))


def gdal_options() -> dict[str, str]:
    """GDAL_HTTP_OPTIONS, with any of them set in the environment taking precedence."""
    overrides = {key: os.environ[key] for key in GDAL_HTTP_OPTIONS if key in os.environ}
    return {**GDAL_HTTP_OPTIONS, **overrides}


def gdal_env() -> stackstac.rio_env.LayeredEnv:
    return stackstac.DEFAULT_GDAL_ENV.updated(always=gdal_options())


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
    sign_hrefs: bool = False,
    skipped: list[dict] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Stack `items` for `bands` on `grid`; one time step per solar day.

    `sign_hrefs` (Planetary Computer) signs each href when its file is opened
    (`sitsflow.signing.SigningReader`); the items themselves stay unsigned.
    `skipped` (config `on_missing_asset: skip`): when given, an asset that cannot be read
    (missing, truncated, still failing after GDAL's retries) does not fail the load; its item is
    left out and `{"item", "asset", "reason"}` appended to `skipped`.

    Returns (data, times, item_ids): data is float32 (time, band, y, x) with reflectance bands
    scaled to reflectance and classification bands left as class values (NaN = no data);
    times are datetime64[ns] (first acquisition of the day); item_ids lists the items merged into
    each time step.
    """
    if not items:
        empty = np.empty((0, len(bands), grid.height, grid.width), dtype=np.float32)
        return empty, np.array([], dtype="datetime64[ns]"), []
    failures: list[tuple[str, str]] | None = [] if skipped is not None else None
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
        reader=_reader(sign_hrefs, failures),
    )
    prefetch_headers(
        [item["assets"][band]["href"] for item in items for band in bands], sign_hrefs=sign_hrefs
    )
    try:
        data = compute_stack(stack.data)
    except RuntimeError as exc:  # stackstac wraps every rasterio open/read error this way
        error = asset_error(exc, items, bands)
        if error is None:
            raise
        raise error from None  # the chained error repeats the (possibly signed) URL
    if data.shape[-2:] != (grid.height, grid.width):
        raise RuntimeError(f"stackstac returned {data.shape[-2:]}, expected grid {grid}")
    if failures:
        data, items = _drop_failed_items(data, items, bands, failures, skipped)
    _apply_radiometry(data, items, bands)
    return _mosaic_by_solar_day(data, items, longitude)


# stackstac's read errors: "Error opening 'HREF': RasterioIOError('...')" and
# "Error reading WINDOW from 'HREF': ...".
_STACKSTAC_ERROR = re.compile(
    r"^Error (?:opening|reading .*? from) '(?P<href>[^']+)': (?P<reason>.*)$", re.S
)
_URL_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")


def asset_error(exc: Exception, items: list[dict], bands: list[str]) -> AssetError | None:
    """An AssetError naming the item and asset behind stackstac's read error `exc`, or None.

    stackstac only names the href; it is mapped back to (item id, band) through the items.
    URLs are shown without their query string, so a signed URL's token never reaches a log.
    """
    match = _STACKSTAC_ERROR.match(str(exc).strip())
    if not match:
        return None
    href = match["href"].split("?", 1)[0]
    reason = re.sub(r"^\w+\((['\"])(.*)\1\)$", r"\2", match["reason"], flags=re.S)
    reason = _URL_QUERY.sub(r"\1", reason)
    owners = {
        item["assets"][band]["href"].split("?", 1)[0]: (item["id"], band)
        for item in items
        for band in bands
    }
    item_id, band = owners.get(href, ("?", "?"))
    return AssetError(
        f"cannot read asset {band!r} of item {item_id!r} ({href}): {reason}. The file is "
        "missing or unreachable: rerun later if the provider had an outage; if it persists, "
        "the item is broken at the provider"
    )


def _reader(sign_hrefs: bool, failures: list[tuple[str, str]] | None = None) -> type:
    """The stackstac reader class: signing hrefs or not, recording failures or raising them."""
    reader: type = stackstac.rio_reader.AutoParallelRioReader
    if sign_hrefs:
        from sitsflow.signing import SigningReader, install_log_redaction

        install_log_redaction()  # GDAL warnings (e.g. retries) name the signed URL
        reader = SigningReader
    return reader if failures is None else _failure_recording(reader, failures)


def _failure_recording(base: type, failures: list[tuple[str, str]]) -> type:
    """A `base` reader that reads an unreadable asset as no data and records (href, reason)."""
    from stackstac.nodata_reader import NodataReader, nodata_for_window

    lock = threading.Lock()

    class FailureRecordingReader(base):
        def _record(self, exc: Exception) -> None:
            with lock:
                failures.append((self.url, str(exc)))

        def _open(self):  # noqa: ANN202 (stackstac's private return type)
            try:
                return super()._open()
            except Exception as exc:
                self._record(exc)
                return NodataReader(dtype=self.dtype, fill_value=self.fill_value)

        def read(self, window, **kwargs):  # noqa: ANN001, ANN201 (stackstac's Reader protocol)
            try:
                return super().read(window, **kwargs)
            except Exception as exc:
                self._record(exc)
                return nodata_for_window(window, self.fill_value, self.dtype)

    return FailureRecordingReader


def _drop_failed_items(
    data: np.ndarray,
    items: list[dict],
    bands: list[str],
    failures: list[tuple[str, str]],
    skipped: list[dict],
) -> tuple[np.ndarray, list[dict]]:
    """Leave out the items whose assets failed; record one `skipped` entry per item."""
    owners = {
        item["assets"][band]["href"].split("?", 1)[0]: (index, band)
        for index, item in enumerate(items)
        for band in bands
    }
    failed: dict[int, dict] = {}
    for href, reason in failures:
        index, band = owners[href.split("?", 1)[0]]
        failed.setdefault(
            index,
            {"item": items[index]["id"], "asset": band, "reason": _URL_QUERY.sub(r"\1", reason)},
        )
    for entry in failed.values():
        log.warning("skipping item %s: asset %s unreadable (%s)", *entry.values())
    skipped.extend(failed[index] for index in sorted(failed))
    keep = [index for index in range(len(items)) if index not in failed]
    return data[keep], [items[index] for index in keep]


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
