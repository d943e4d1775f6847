"""Read the pixels of a feature's items onto its grid with stackstac: one layer per item and
band, the files' values as they are (DNs, class numbers), NaN where a file has no data.

Items must be normalised first (`providers.normalise_item`): assets keyed by band name and
`proj:epsg` set. Turning DNs into reflectance, masking and mosaicking come after
(`sitsflow.pixels.values`, `sitsflow.pixels.mosaic`), per item, so that every pixel's bands and
class come from one item.

Files are opened at the overview matching the grid's resolution (`read_overviews`), except for
class bands (SCL): an overview made by averaging holds class numbers that are means (a mean
of 5 and 9 is 7, "unclassified"), so a class band is read at full resolution unless the file
says its overviews were made by nearest or mode resampling (`overview_resampling`; the rule
is `sitsflow.pixels.overviews.choose_overview`, which sitsflow's reader follows too).
"""

from __future__ import annotations

import logging
import math
import os
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import dask.array
import numpy as np
import rasterio
import stackstac

from sitsflow.catalog.s3 import S3Access
from sitsflow.core.bands import CLASSIFICATION_BANDS
from sitsflow.core.errors import AssetError
from sitsflow.core.grid import Grid
from sitsflow.core.types import JsonObject, StacItem
from sitsflow.pixels.gdal_reads import dataset_level, gdal_options
from sitsflow.pixels.stack import ItemStack

if TYPE_CHECKING:
    from rasterio.windows import Window
    from stackstac.rio_reader import ThreadsafeRioDataset

log = logging.getLogger(__name__)

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
    threads (docs/performance.md).
    """
    fixed = os.environ.get("SITSFLOW_READ_THREADS")
    if fixed:
        return np.asarray(array.compute(scheduler="threads", num_workers=int(fixed)))
    if array.shape[0] <= 2:
        return np.asarray(array.compute(scheduler="sync"))
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
    holds the GIL), so its reads overlap far less (docs/performance.md). Errors are left for
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


def gdal_env(extra_options: dict[str, str] | None = None) -> stackstac.rio_env.LayeredEnv:
    options = {**gdal_options(), **(extra_options or {})}
    # stackstac opens files with VSI_CACHE on, which reads in 32 KB blocks: a small window's
    # file is then fetched whole. /vsicurl/'s own cache (CPL_VSIL_CURL_CACHE_SIZE) already
    # serves the reopens in other threads from memory, at CPL_VSIL_CURL_CHUNK_SIZE granularity.
    return stackstac.DEFAULT_GDAL_ENV.updated(always=options, open={"VSI_CACHE": "FALSE"})


def _read_through_s3(
    items: list[StacItem], bands: list[str], s3: S3Access
) -> tuple[list[StacItem], dict[str, str]]:
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


def read_items(
    items: list[dict[str, Any]],
    bands: list[str],
    grid: Grid,
    *,
    class_bands: Sequence[str] = CLASSIFICATION_BANDS,
    chunksize: int = 2048,
    sign_hrefs: bool = False,
    skipped: list[dict[str, Any]] | None = None,
    s3: S3Access | None = None,
    read_overviews: bool = True,
) -> ItemStack:
    """Read `bands` of every item onto `grid` (nearest neighbour), one layer per item.

    `class_bands` are never read from an overview that may be averaged (module docstring).
    `sign_hrefs` (Planetary Computer) signs each href when its file is opened
    (`sitsflow.catalog.signing.SigningReader`); the items themselves stay unsigned.
    `skipped` (config `on_missing_asset: skip`): when given, an asset that cannot be read
    (missing, truncated, still failing after GDAL's retries) does not fail the load; its item is
    left out and `{"item", "asset", "reason"}` appended to `skipped`.
    `s3` (config `s3_access`, `s3_endpoint`): which hrefs are read through GDAL's S3 client
    (`sitsflow.catalog.s3`); errors then name the `s3://` URL.
    `read_overviews` (config): open each file at the overview matching the grid's resolution
    (`OverviewReader`), or always at full resolution.

    The layers follow `items` by id: an item stackstac leaves out (its assets' bounds miss the
    grid) gets all-NaN layers rather than shifting the others.
    """
    sources: dict[str, Counter[str]] = {band: Counter() for band in bands}
    if not items:
        empty = np.empty((0, len(bands), grid.height, grid.width), dtype=np.float32)
        return ItemStack(empty, [], list(bands), sources)
    failures: list[tuple[str, str]] | None = [] if skipped is not None else None
    items, s3_options = _read_through_s3(items, bands, s3 or S3Access())
    band_of = {
        item["assets"][band]["href"].split("?", 1)[0]: band for item in items for band in bands
    }
    lock = threading.Lock()

    def record(href: str, description: str) -> None:
        with lock:
            sources[band_of.get(href.split("?", 1)[0], "?")][description] += 1

    class_hrefs = frozenset(href for href, band in band_of.items() if band in class_bands)
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
        reader=_reader(sign_hrefs, failures, read_overviews, class_hrefs, record),
    )
    prefetch_headers(
        [item["assets"][band]["href"] for item in items for band in bands],
        sign_hrefs=sign_hrefs,
        extra_options=s3_options,
    )
    try:
        read = compute_stack(stack.data) if stack.shape[0] else np.empty(stack.shape, np.float32)
    except RuntimeError as exc:  # stackstac wraps every rasterio open/read error this way
        error = asset_error(exc, items, bands)
        if error is None:
            raise
        raise error from None  # the chained error repeats the (possibly signed) URL
    if read.shape[-2:] != (grid.height, grid.width):
        raise RuntimeError(f"stackstac returned {read.shape[-2:]}, expected grid {grid}")
    data = _by_item_and_band(
        read, [str(i) for i in stack["id"].values], [str(b) for b in stack["band"].values],
        items, bands,
    )  # fmt: skip
    if failures and skipped is not None:  # failures are recorded only when skipping
        data, items = _drop_failed_items(data, items, bands, failures, skipped)
    return ItemStack(data, items, list(bands), sources)


def _by_item_and_band(
    read: np.ndarray,
    read_ids: list[str],
    read_bands: list[str],
    items: list[dict[str, Any]],
    bands: list[str],
) -> np.ndarray:
    """stackstac's array in the order of `items` and `bands`, by id: stackstac drops items
    (and bands) whose assets' bounds miss the grid, which would shift every layer after."""
    if read_ids == [item["id"] for item in items] and read_bands == list(bands):
        return read
    data = np.full((len(items), len(bands), *read.shape[-2:]), np.nan, dtype=np.float32)
    row_of = {item_id: row for row, item_id in enumerate(read_ids)}
    column_of = {band: column for column, band in enumerate(read_bands)}
    for index, item in enumerate(items):
        if item["id"] not in row_of:
            log.info("item %s: its assets miss the grid; no data read", item["id"])
            continue
        for band_index, band in enumerate(bands):
            if band in column_of:
                data[index, band_index] = read[row_of[item["id"]], column_of[band]]
    return data


# stackstac's read errors: "Error opening 'HREF': RasterioIOError('...')" and
# "Error reading WINDOW from 'HREF': ...".
_STACKSTAC_ERROR = re.compile(
    r"^Error (?:opening|reading .*? from) '(?P<href>[^']+)': (?P<reason>.*)$", re.S
)
_URL_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")


def asset_error(exc: Exception, items: list[StacItem], bands: list[str]) -> AssetError | None:
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
    failures: list[tuple[str, str]] | None,
    read_overviews: bool,
    class_hrefs: frozenset[str],
    record: Callable[[str, str], None],
) -> type:
    """The stackstac reader class: signing hrefs or not, opening files at the overview that
    matches the grid (never an averaged one for `class_hrefs`) or at full resolution, telling
    `record` which level each file was read at, recording failures or raising them."""
    settings = {
        "read_overviews": read_overviews,
        "class_hrefs": class_hrefs,
        "record": staticmethod(record),
    }
    reader: type = type("Reader", (OverviewReader,), settings)
    if sign_hrefs:
        from sitsflow.catalog.signing import SigningReader, install_log_redaction

        install_log_redaction()  # GDAL warnings (e.g. retries) name the signed URL
        reader = type("SigningReader", (SigningReader, OverviewReader), settings)
    return reader if failures is None else _failure_recording(reader, failures)


class OverviewReader(stackstac.rio_reader.AutoParallelRioReader):  # type: ignore[misc]
    """stackstac's reader, opening each file at the overview that matches the grid.

    Why: a 20 m cube needs a 10 m band's 2x overview, which in a COG lies right after the
    header, so the file's tiles at full resolution (4x the bytes) are never fetched. stackstac
    warps from full resolution; this is its `_open` with the open option OVERVIEW_LEVEL
    (kept when stackstac reopens the file in other threads). Class bands (`class_hrefs`) use an
    overview only if the file says it was made by nearest or mode resampling. `record` hears
    which level each file was read at; `_reader` sets these class attributes.
    """

    read_overviews: bool = True
    class_hrefs: frozenset[str] = frozenset()
    record: Callable[[str, str], None] | None = None

    def _open(self) -> ThreadsafeRioDataset:
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
                level, description = self._level(ds)
                if level is not None:  # the header is cached: reopening fetches nothing
                    ds.close()
                    ds = SelfCleaningDatasetReader(self.url, sharing=False, OVERVIEW_LEVEL=level)
            except Exception as exc:
                raise RuntimeError(f"Error opening {self.url!r}: {exc!r}") from exc
            if ds.count != 1:
                ds.close()
                raise RuntimeError(f"Assets must have exactly 1 band; {self.url!r} has {ds.count}")
            if self.record is not None:
                self.record(self.url, description)
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

    def _level(self, ds: Any) -> tuple[int | None, str]:
        """The overview to read `ds` at for this grid (None: full resolution), and how to say
        so in the cube (`full resolution`, `overview 1 (x2, AVERAGE)`)."""
        return dataset_level(
            ds,
            self.spec.epsg,
            min(self.spec.resolutions_xy),
            class_band=self.url.split("?", 1)[0] in self.class_hrefs,
            read_overviews=self.read_overviews,
        )


def _failure_recording(base: type, failures: list[tuple[str, str]]) -> type:
    """A `base` reader that reads an unreadable asset as no data and records (href, reason)."""
    from stackstac.nodata_reader import NodataReader, nodata_for_window

    lock = threading.Lock()

    class FailureRecordingReader(base):  # type: ignore[misc]  # stackstac is untyped
        def _record(self, exc: Exception) -> None:
            with lock:
                failures.append((self.url, str(exc)))

        def _open(self) -> ThreadsafeRioDataset:
            try:
                return cast("ThreadsafeRioDataset", super()._open())
            except Exception as exc:
                self._record(exc)
                return NodataReader(dtype=self.dtype, fill_value=self.fill_value)

        def read(self, window: Window, **kwargs: Any) -> np.ndarray:
            try:
                # a masked array as a rule (stackstac reads with masked=True): cast, don't convert
                return cast(np.ndarray, super().read(window, **kwargs))
            except Exception as exc:
                self._record(exc)
                return cast(np.ndarray, nodata_for_window(window, self.fill_value, self.dtype))

    return FailureRecordingReader


def _drop_failed_items(
    data: np.ndarray,
    items: list[StacItem],
    bands: list[str],
    failures: list[tuple[str, str]],
    skipped: list[StacItem],
) -> tuple[np.ndarray, list[StacItem]]:
    """Leave out the items whose assets failed; record one `skipped` entry per item."""
    owners = {
        item["assets"][band]["href"].split("?", 1)[0]: (index, band)
        for index, item in enumerate(items)
        for band in bands
    }
    failed: dict[int, JsonObject] = {}
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
