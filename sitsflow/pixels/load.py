"""Read the pixels of a feature's items onto its grid with stackstac, as reflectance.

Items must be normalised first (`providers.normalise_item`): assets keyed by band name,
`proj:epsg` set and the DN -> reflectance rule recorded per asset.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import dask.array
import numpy as np
import pandas as pd
import rasterio
import stackstac

from sitsflow.catalog.providers import CLASSIFICATION_BANDS
from sitsflow.catalog.s3 import S3Access
from sitsflow.errors import AssetError
from sitsflow.pixels.overviews import overview_level
from sitsflow.workflow.grid import Grid

log = logging.getLogger(__name__)

# GDAL settings for reading COGs over HTTP: no directory listings, merged ranges, a block cache,
# and retries for transient 429/500/502/503/504 answers (GDAL's default retry codes, range
# requests included; the delay grows about 2.4x per retry). An environment variable of the same
# name overrides a value (e.g. GDAL_HTTP_MAX_RETRY=10 on a poor connection).
# GDAL_HTTP_MULTIRANGE=SERIAL: the tiles of a window are read through /vsicurl/'s block cache,
# so bytes that came with the open's read are not fetched again; the default (YES) bypasses
# that cache and doubled requests and bytes (README, Performance).
GDAL_HTTP_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "SERIAL",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # room for everything a job fetches: stackstac reopens each file in every reading thread
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 2**20),
    # Fetch in 2 KB steps (GDAL: 16 KB) and 4 KB on open (S3 client: a single GET, which for a
    # COG holds the header and the first overview tiles): a cube's window of a small file is
    # then not fetched whole; a large file's tiles are far bigger than a step (README,
    # Performance).
    "CPL_VSIL_CURL_CHUNK_SIZE": "2048",
    "GDAL_INGESTED_BYTES_AT_OPEN": "4096",
}


# Files opened at once by `prefetch_headers`, after PREFETCH_PROBES timed opens; it prefetches
# only if an open waits at least PREFETCH_MIN_WAIT_S for the network (0.5 to 4 ms from a server
# on the same machine, 21 ms with 20 ms latency: measured).
PREFETCH_THREADS = 16
PREFETCH_PROBES = 3
PREFETCH_MIN_WAIT_S = 0.005
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


def prefetch_headers(
    hrefs: list[str], *, sign_hrefs: bool = False, extra_options: dict[str, str] | None = None
) -> None:
    """Open every remote COG once, PREFETCH_THREADS at a time, and close it again.

    GDAL keeps what an open fetched (the file size and the first GDAL_INGESTED_BYTES_AT_OPEN
    bytes: the header and, in a COG, the overview tiles after it) in its process-wide /vsicurl/
    cache, so stackstac's own opens wait for no round trip. Plain opens overlap well in threads
    (the GIL is released while GDAL waits); stackstac's open-and-warp does not (most of it
    holds the GIL), so its reads overlap far less (README, Performance). Errors are left for
    the real read to report.

    The first PREFETCH_PROBES files are opened one by one and timed: if an open waits less
    than PREFETCH_MIN_WAIT_S for the network (a local or very close store), the opens are CPU
    work that stackstac would repeat, and the rest are not prefetched.
    """
    remote = [href for href in hrefs if href.startswith(("http://", "https://", "s3://"))]
    if not remote:
        return
    options = {**gdal_options(), **(extra_options or {})}

    def open_once(href: str) -> None:
        try:
            if sign_hrefs:
                from sitsflow.catalog.signing import sign_href

                href = sign_href(href)
            with rasterio.Env(**options), rasterio.open(href):
                pass
        except Exception as exc:  # the read itself raises and explains (without a token)
            log.debug("prefetch of %s failed: %s", href.split("?", 1)[0], type(exc).__name__)

    waits = []
    for href in remote[:PREFETCH_PROBES]:
        wall, cpu = time.perf_counter(), time.thread_time()
        open_once(href)
        waits.append((time.perf_counter() - wall) - (time.thread_time() - cpu))
    if statistics.median(waits) < PREFETCH_MIN_WAIT_S:
        log.debug("no prefetch: an open waits %.1f ms", 1000 * statistics.median(waits))
        return
    with ThreadPoolExecutor(PREFETCH_THREADS) as pool:
        list(pool.map(open_once, remote[PREFETCH_PROBES:]))


def gdal_options() -> dict[str, str]:
    """GDAL_HTTP_OPTIONS, with any of them set in the environment taking precedence."""
    overrides = {key: os.environ[key] for key in GDAL_HTTP_OPTIONS if key in os.environ}
    return {**GDAL_HTTP_OPTIONS, **overrides}


def gdal_env(extra_options: dict[str, str] | None = None) -> stackstac.rio_env.LayeredEnv:
    options = {**gdal_options(), **(extra_options or {})}
    # stackstac opens files with VSI_CACHE on, which reads in 32 KB blocks: a small window's
    # file is then fetched whole. /vsicurl/'s own cache (CPL_VSIL_CURL_CACHE_SIZE) already
    # serves the reopens in other threads from memory, at CPL_VSIL_CURL_CHUNK_SIZE granularity.
    return stackstac.DEFAULT_GDAL_ENV.updated(always=options, open={"VSI_CACHE": "FALSE"})


def _read_through_s3(
    items: list[dict], bands: list[str], s3: S3Access
) -> tuple[list[dict], dict[str, str]]:
    """`items` with the hrefs of `bands` that `s3` reads through /vsis3/ rewritten to s3:// URLs
    (copies; the input is not changed), and the GDAL options for them."""
    rewrites, options = s3.plan(item["assets"][band]["href"] for item in items for band in bands)
    if not rewrites:
        return items, {}
    log.info("reading %d of the files through GDAL's S3 client (/vsis3/)", len(rewrites))
    rewritten = []
    for item in items:
        assets = dict(item["assets"])
        for band in bands:
            href = assets[band]["href"]
            if href in rewrites:
                assets[band] = {**assets[band], "href": rewrites[href]}
        rewritten.append({**item, "assets": assets})
    return rewritten, options


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
    s3: S3Access | None = None,
    read_overviews: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Stack `items` for `bands` on `grid`; one time step per solar day.

    `sign_hrefs` (Planetary Computer) signs each href when its file is opened
    (`sitsflow.catalog.signing.SigningReader`); the items themselves stay unsigned.
    `skipped` (config `on_missing_asset: skip`): when given, an asset that cannot be read
    (missing, truncated, still failing after GDAL's retries) does not fail the load; its item is
    left out and `{"item", "asset", "reason"}` appended to `skipped`.
    `s3` (config `s3_access`, `s3_endpoint`): which hrefs are read through GDAL's S3 client
    (`sitsflow.catalog.s3`); errors then name the `s3://` URL.
    `read_overviews` (config): open each file at the overview matching the grid's resolution
    (`OverviewReader`), or always at full resolution.

    Returns (data, times, item_ids): data is float32 (time, band, y, x) with reflectance bands
    scaled to reflectance and classification bands left as class values (NaN = no data);
    times are datetime64[ns] (first acquisition of the day); item_ids lists the items merged into
    each time step.
    """
    if not items:
        empty = np.empty((0, len(bands), grid.height, grid.width), dtype=np.float32)
        return empty, np.array([], dtype="datetime64[ns]"), []
    failures: list[tuple[str, str]] | None = [] if skipped is not None else None
    items, s3_options = _read_through_s3(items, bands, s3 or S3Access())
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
        gdal_env=gdal_env(s3_options),
        reader=_reader(sign_hrefs, failures, read_overviews),
    )
    prefetch_headers(
        [item["assets"][band]["href"] for item in items for band in bands],
        sign_hrefs=sign_hrefs,
        extra_options=s3_options,
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


def _reader(
    sign_hrefs: bool,
    failures: list[tuple[str, str]] | None = None,
    read_overviews: bool = True,
) -> type:
    """The stackstac reader class: signing hrefs or not, opening files at the overview that
    matches the grid or at full resolution, recording failures or raising them."""
    reader: type = OverviewReader if read_overviews else stackstac.rio_reader.AutoParallelRioReader
    if sign_hrefs:
        from sitsflow.catalog.signing import SigningReader, install_log_redaction

        install_log_redaction()  # GDAL warnings (e.g. retries) name the signed URL
        if read_overviews:
            reader = type("SigningOverviewReader", (SigningReader, OverviewReader), {})
        else:
            reader = SigningReader
    return reader if failures is None else _failure_recording(reader, failures)


class OverviewReader(stackstac.rio_reader.AutoParallelRioReader):
    """stackstac's reader, opening each file at the overview that matches the grid.

    Why: a 20 m cube needs a 10 m band's 2x overview, which in a COG lies right after the
    header, so the file's tiles at full resolution (4x the bytes) are never fetched. stackstac
    warps from full resolution; this is its `_open` with the open option OVERVIEW_LEVEL
    (kept when stackstac reopens the file in other threads).
    """

    def _open(self):  # noqa: ANN202 (stackstac's private return type)
        from rasterio.vrt import WarpedVRT
        from stackstac.rio_reader import (
            MULTITHREADED_DRIVER_ALLOWLIST,
            SelfCleaningDatasetReader,
            SingleThreadedRioDataset,
            ThreadLocalRioDataset,
        )

        with self.gdal_env.open:
            try:
                ds = SelfCleaningDatasetReader(self.url, sharing=False)
                level = self._overview_level(ds)
                if level is not None:  # the header is cached: reopening fetches nothing
                    ds.close()
                    ds = SelfCleaningDatasetReader(self.url, sharing=False, OVERVIEW_LEVEL=level)
            except Exception as exc:
                raise RuntimeError(f"Error opening {self.url!r}: {exc!r}") from exc
            if ds.count != 1:
                ds.close()
                raise RuntimeError(f"Assets must have exactly 1 band; {self.url!r} has {ds.count}")
            vrt = None
            if self.spec.vrt_params != {
                "crs": ds.crs.to_epsg(),
                "transform": ds.transform,
                "height": ds.height,
                "width": ds.width,
            }:
                with self.gdal_env.open_vrt:
                    vrt = WarpedVRT(
                        ds,
                        sharing=False,
                        resampling=self.resampling,
                        add_alpha=ds.nodata is None,
                        **self.spec.vrt_params,
                    )
        if ds.driver in MULTITHREADED_DRIVER_ALLOWLIST:
            return ThreadLocalRioDataset(self.gdal_env, ds, vrt=vrt)
        return SingleThreadedRioDataset(self.gdal_env, ds, vrt=vrt)

    def _overview_level(self, ds: Any) -> int | None:
        """The overview to read `ds` at for this grid; None for full resolution."""
        factors = ds.overviews(1)
        if not factors or ds.crs is None:
            return None
        source, target = _crs(ds.crs.to_wkt()), _crs(f"EPSG:{self.spec.epsg}")
        if not (_in_metres(source) and _in_metres(target)):
            return None  # resolutions in degrees or feet are not comparable with metres
        return overview_level(min(ds.res), factors, min(self.spec.resolutions_xy))


@functools.lru_cache(maxsize=64)
def _crs(text: str) -> Any:
    from pyproj import CRS

    return CRS.from_user_input(text)


def _in_metres(crs: Any) -> bool:
    return crs.is_projected and all(axis.unit_name in ("metre", "meter") for axis in crs.axis_info)


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
