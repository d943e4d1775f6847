"""sitsflow's reader (`loader: sitsflow`): the tiles a feature's grid needs, read directly.

For every item and band: open the COG with async-tiff over a `RangeStore` (one request for the
header, which for a COG also brings its coarsest overviews' tiles), choose the level the grid
needs (the rule of `sitsflow.pixels.overviews`, which the stackstac reader follows too),
fetch and decode only the tiles under the grid's pixels (async-tiff decodes in its own thread
pool), and give each grid pixel the value of the source pixel under its centre.

Why not GDAL's warper, as stackstac does: on the small windows of a time-series cube, opening a
file and setting up a warp costs ~20 ms of CPU per file, for files a local store hands over in
well under a millisecond; here the nearest-neighbour map from grid pixels to source pixels is
computed once per (source grid, cube grid) and reused by every date of a tile, and reads run
concurrently without the GIL. The map follows GDAL's nearest neighbour (`GWKNearest`): the
source pixel containing the transformed centre of each grid pixel, with GDAL's 1e-10 pixel
tolerance at pixel edges, so the cubes equal stackstac's (tested on the demo archive).

A batch job reads its features together (`TileReader.prefetch`): each file is opened once and
each tile it needs for any of them fetched and decoded once; a file's parsed header is kept
for the later rounds that read it again (`KEPT_HEADERS`). Decoded tiles in memory are bounded
(`ByteBudget`), as are the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np
from affine import Affine

from sitsflow.catalog.range_cache import TileRows
from sitsflow.catalog.ranges import Counters, RangeStore, resolve_href, without_query
from sitsflow.catalog.s3 import REQUESTER_PAYS_BUCKETS, S3Access
from sitsflow.core.bands import CLASSIFICATION_BANDS
from sitsflow.core.errors import AssetError
from sitsflow.core.grid import Grid
from sitsflow.core.projection import epsg_transformer
from sitsflow.core.types import StacItem
from sitsflow.pixels.gdal_reads import GridTarget, nearest_onto, read_file_with_gdal
from sitsflow.pixels.overviews import choose_overview, resampling_from
from sitsflow.pixels.stack import ItemStack

if TYPE_CHECKING:
    from async_tiff import TIFF, DecoderRegistry, ImageFileDirectory


log = logging.getLogger(__name__)
T = TypeVar("T")

# GDAL's nearest neighbour floors source pixel coordinates with this tolerance (gdalwarpkernel:
# a centre exactly on a pixel edge belongs to the pixel after it despite rounding).
EDGE_TOLERANCE = 1e-10
PIXEL_IS_POINT = 2  # GeoTIFF RasterType
MAX_IN_FLIGHT = 64  # reads (files, then tiles) in progress at once
# decoded tiles in memory at once: 24 full-size (1024 x 1024, 16-bit) tiles
DECODE_BUDGET_BYTES = 48 * 2**20
# A tile another job of the run claimed (`sitsflow.catalog.range_cache`) is looked for in the
# disk cache this often, for at most this long, before this job fetches it too: a block takes
# a request's latency and a few milliseconds of decoding.
CLAIM_POLL_S = 0.02
CLAIM_WAIT_S = 10.0
# Parsed headers a reader keeps for its later reads of the same files (a batch reads a round's
# files again in the next round): a few kilobytes each (a 10980 px COG's directories and tile
# offsets), so at most this many.
KEPT_HEADERS = 1024
# What sitsflow's reader decodes itself (TIFF codes): anything else goes to GDAL.
DECODED_COMPRESSIONS = {1: "none", 5: "LZW", 8: "DEFLATE", 32946: "DEFLATE", 50000: "ZSTD"}
DECODED_PREDICTORS = (None, 1, 2)  # none, horizontal differencing
DECODED_SAMPLES = {1: (8, 16, 32), 2: (8, 16, 32), 3: (32, 64)}  # format: bits (uint, int, float)
BLACK_IS_ZERO = 1  # PhotometricInterpretation of a plain band
# async-tiff reads a file's directories (IFDs) as one run of bytes from its start: a directory
# further in than this (written after the data, as plain GeoTIFFs and appended overviews are)
# would cost every byte before it, so such a file goes to GDAL, which seeks. A COG keeps them
# all in its first kilobytes (Earth Search's 10980 px files within the first 4 KB).
DIRECTORY_LIMIT_BYTES = 2**20


class FileReadError(Exception):
    """A file of an item could not be read; `what` says what happened, `remedy` what to do."""

    what = "cannot be read"
    remedy = ""

    def __str__(self) -> str:
        return f"{self.what}: {self.args[0]}. {self.remedy}"


class FileUnreachable(FileReadError):
    what = "unreachable"
    remedy = (
        "The file is missing or the store did not answer (after the retries): rerun later if "
        "the provider had an outage; if it persists, the item is broken at the provider"
    )


class FileUnreadable(FileReadError):
    what = "not a raster sitsflow or GDAL can read"
    remedy = (
        "Check the asset's href and type (config `assets` maps bands to asset keys); "
        "`on_missing_asset: skip` reads the other items"
    )


class FileCorrupt(FileReadError):
    what = "corrupt data"
    remedy = (
        "The file is damaged at the provider (a truncated or garbled block): report it to "
        "them; `on_missing_asset: skip` reads the other items"
    )


class TileDecodeError(Exception):
    """A tile that sitsflow's reader fetched but could not decode (GDAL gets the file)."""


@dataclass(frozen=True)
class Level:
    """One resolution level of a COG: its IFD index, size, tile size and georeferencing."""

    index: int
    width: int
    height: int
    tile_width: int
    tile_height: int
    transform: Affine
    epsg: int

    def geometry(self) -> tuple[Any, ...]:
        """What a pixel map depends on: the level's georeferencing, size and tile size (not
        its IFD index). Two files share a map only when these are equal."""
        return (
            self.epsg,
            tuple(self.transform),
            self.width,
            self.height,
            self.tile_width,
            self.tile_height,
        )


@dataclass(frozen=True)
class TilePixels:
    """The grid pixels one tile serves, as flat indices into the grid and into a full tile
    (int32: a batch keeps the maps of all its features, 8 bytes a pixel).

    `block`, when those pixels are a rectangle of the grid copied one to one from a rectangle
    of the tile (the grid in the level's CRS at its pixel size, the usual case for a cube's
    10 m bands): (grid row, grid column, tile row, tile column, height, width), placed as one
    slice copy rather than a gather and a scatter of every pixel."""

    grid_flat: np.ndarray
    tile_flat: np.ndarray
    # the tile rows (first, stop) these pixels are in: a tile kept decoded on disk is read
    # only there
    rows: tuple[int, int]
    block: tuple[int, int, int, int, int, int] | None = None
    # (grid row, grid column, height, width) when the grid pixels are a full rectangle, in row
    # order, but not copied one to one (another CRS, another pixel size): the pixels gathered
    # from the tile are placed by a slice, not scattered (a quarter of the CPU; most of a
    # small cube's grid lies in one tile)
    rectangle: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class PixelMap:
    """Grid pixel -> source pixel at one level, tile by tile: `tiles` the (tile col, tile row)
    of the tiles the grid needs, `by_tile` the pixels each serves (worked out once: every date
    of a tile reuses the map). Grid pixels whose centre lies outside the level are in none."""

    tiles: tuple[tuple[int, int], ...]
    by_tile: dict[tuple[int, int], TilePixels] = field(default_factory=dict, compare=False)
    # the `Level.geometry` it was made for: placing it on another level's tiles is refused
    made_for: tuple[Any, ...] = ()


class ByteBudget:
    """Bytes of decoded tiles in memory at once, across concurrent reads: a full-size COG's
    1024 x 1024 tile is 2 MB decoded, and 64 reads of 4 such tiles in flight would hold half a
    gigabyte. A request larger than the budget waits until it is alone."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed: asyncio.Condition | None = None

    async def acquire(self, amount: int) -> int:
        amount = min(amount, self.capacity)
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + amount <= self.capacity)
            self.used += amount
        return amount

    async def release(self, amount: int) -> None:
        assert self._changed is not None
        async with self._changed:
            self.used -= amount
            self._changed.notify_all()


@dataclass(frozen=True)
class ReadRequest:
    """One feature's read: its items' bands on its grid (what `TileReader.read` takes)."""

    items: list[StacItem]
    bands: list[str]
    grid: Grid
    class_bands: tuple[str, ...] = tuple(CLASSIFICATION_BANDS)
    read_overviews: bool = True

    def key(self) -> tuple[Any, ...]:
        hrefs = tuple(item["assets"][band]["href"] for item in self.items for band in self.bands)
        return (self.grid, hrefs, self.class_bands, self.read_overviews)


@dataclass(frozen=True)
class OpenedTiff:
    """A file this reader decodes itself (`gdal_reason` None), parsed: its levels and how its
    overviews were made, worked out once per job."""

    tiff: TIFF
    levels: list[Level]
    resampling: str | None


@dataclass
class TileReader:
    """Reads items onto grids; one per job, so that its connections serve every feature the
    job builds. Not thread-safe: one `read` (or `prefetch`) at a time.

    A batch job `prefetch`es the reads of several features at once: each file is opened once
    and each of its tiles fetched and decoded once for all of them, then every feature's
    `read` returns its share. With a disk range cache on the store (batch mode), tiles needed
    again by a later prefetch are read from local disk, not fetched again.
    """

    sign: Callable[[str], str] | None = None
    s3_endpoint: str | None = None
    # config `s3_access` / `s3_endpoint`: a file that is not a TIFF (CDSE's JPEG 2000) at an
    # href it reads through GDAL's S3 client goes straight to GDAL's /vsis3/, which signs.
    s3: S3Access | None = None
    max_in_flight: int = MAX_IN_FLIGHT
    store: RangeStore | None = None
    decode_budget_bytes: int = DECODE_BUDGET_BYTES

    def __post_init__(self) -> None:
        self._maps: dict[tuple[Any, ...], PixelMap] = {}
        # request key -> its stack and how many reads will still ask for it (features with the
        # same grid and items: each gets its own copy, as the cube modifies it in place)
        self._prefetched: dict[tuple[Any, ...], tuple[ItemStack, int]] = {}
        self._budget = ByteBudget(self.decode_budget_bytes)
        # href -> why its prefetch failed (after the store's retries): a feature's own read
        # reports it without waiting for the same timeouts again
        self._failed: dict[str, Exception] = {}
        # href -> why GDAL reads that file: the next read of it goes there without a probe
        self._gdal_files: dict[str, str] = {}
        # href -> its parsed header, for the job's later reads of the file (unsigned hrefs
        # only: a signed URL's token expires); what the job reads of a file is of the version
        # it first saw (`RangeStore`), so the header stays valid
        self._headers: OrderedDict[str, OpenedTiff] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.tiles_decoded = 0
        self.tiles_placed = 0
        self.tiles_waited_for = 0  # of those from the disk cache: claimed by another job
        if self.store is not None:  # its disk cache keeps the tiles decoded (`_tiles`)
            self.store.keep_tile_ranges = False

    def read(
        self,
        items: list[StacItem],
        bands: list[str],
        grid: Grid,
        *,
        class_bands: Sequence[str] = CLASSIFICATION_BANDS,
        read_overviews: bool = True,
        skipped: list[dict[str, Any]] | None = None,
        sign_hrefs: bool = False,
    ) -> ItemStack:
        """Every item's `bands` on `grid`: `sitsflow.pixels.stack.ItemStack`, as stackstac's
        read gives it (DNs and classes as float32, NaN where a file has no data).
        `sign_hrefs` (Planetary Computer): each href gets a SAS token when it is opened."""
        request = ReadRequest(items, list(bands), grid, tuple(class_bands), read_overviews)
        prefetched = self._take_prefetched(request.key())
        if prefetched is not None:
            log.info(
                "%d files: read before, with the batch's other features",
                prefetched.data.shape[0] * prefetched.data.shape[1],
            )
            return prefetched
        self._use_signing(sign_hrefs)
        with self._measure(len(items) * len(bands)):
            return self._run(self._read(request, skipped))

    def prefetch(self, requests: Sequence[ReadRequest], *, sign_hrefs: bool = False) -> int:
        """Read `requests` together (each file opened once, each tile decoded once) and keep
        each one's stack for its `read`; returns how many were kept. A request one of whose
        files fails is not kept: its own `read` then reads it again and reports the failure
        as usual (or skips the item, with `on_missing_asset: skip`)."""
        self._use_signing(sign_hrefs)
        files = len({i["assets"][b]["href"] for r in requests for i in r.items for b in r.bands})
        with self._measure(files, f"for {len(requests)} features"):
            stacks = self._run(self._prefetch(list(requests)))
        for request, stack in zip(requests, stacks, strict=True):
            if stack is not None:
                key = request.key()
                _, readers = self._prefetched.get(key, (stack, 0))
                self._prefetched[key] = (stack, readers + 1)
        return sum(stack is not None for stack in stacks)

    def _take_prefetched(self, key: tuple[Any, ...]) -> ItemStack | None:
        entry = self._prefetched.pop(key, None)
        if entry is None:
            return None
        stack, readers = entry
        if readers == 1:
            return stack
        self._prefetched[key] = (stack, readers - 1)
        return ItemStack(
            stack.data.copy(), list(stack.items), list(stack.bands), dict(stack.sources)
        )

    def close(self) -> None:
        """Close the connections and the event loop (a reader is done after this)."""
        self._prefetched.clear()
        if self._loop is None:
            if self.store is not None:
                self.store.close_cache()
            return
        if self.store is not None:
            self._loop.run_until_complete(self.store.close())
            self.store = None
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()
        self._loop = None

    def __enter__(self) -> TileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _measure(self, files: int, what: str = "") -> Iterator[None]:
        """Log the files read, the wall and CPU time per file, and what the store did."""
        counters = self.store.counters if self.store else Counters()
        before = (
            counters.requests,
            counters.bytes,
            counters.from_disk,
            counters.tiles_from_disk,
            self.tiles_decoded,
            self.tiles_waited_for,
        )
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counters = self.store.counters if self.store else counters
        log.info(
            "read %d files%s in %.2f s, %.2f ms CPU per file: %d requests, %.2f MB, %d ranges "
            "and %d decoded tiles from the disk cache (%d after waiting for another job), %d "
            "tiles decoded",
            files,
            f" {what}" if what else "",
            wall,
            1000 * cpu / max(files, 1),
            counters.requests - before[0],
            (counters.bytes - before[1]) / 1e6,
            counters.from_disk - before[2],
            counters.tiles_from_disk - before[3],
            self.tiles_waited_for - before[5],
            self.tiles_decoded - before[4],
        )

    def _use_signing(self, sign_hrefs: bool) -> None:
        if sign_hrefs:
            from sitsflow.catalog.signing import sign_href

            self.sign = sign_href

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(work)

    async def _read(self, request: ReadRequest, skipped: list[dict[str, Any]] | None) -> ItemStack:
        if self.store is None:
            self.store = RangeStore(max_in_flight=self.max_in_flight)
        items, bands, grid = request.items, request.bands, request.grid
        data = np.full((len(items), len(bands), grid.height, grid.width), np.nan, np.float32)
        sources: dict[str, Counter[str]] = {band: Counter() for band in bands}
        through_gdal: dict[str, dict[str, str]] = {}
        slots = asyncio.Semaphore(self.max_in_flight)

        async def one(index: int, band_index: int) -> tuple[int, str, str] | None:
            item, band = items[index], bands[band_index]
            href = item["assets"][band]["href"]
            target = GridTarget(
                grid, data[index, band_index], band in request.class_bands, request.read_overviews
            )
            async with slots:
                try:
                    if href in self._failed:
                        raise self._failed[href]
                    await self._read_asset(href, [target])
                except Exception as exc:  # anything about this file: async-tiff wraps them
                    reason = without_query(str(exc))
                    if skipped is None:
                        raise AssetError(
                            f"cannot read asset {band!r} of item {item['id']!r} "
                            f"({without_query(href)}): {reason}"
                        ) from None
                    return index, band, reason
            _note_read(target, item["id"], band, sources, through_gdal)
            return None

        tasks = [
            asyncio.ensure_future(one(i, b)) for i in range(len(items)) for b in range(len(bands))
        ]
        try:
            outcomes = await asyncio.gather(*tasks)
        except BaseException:
            # The feature fails with its first unreadable file: the reads still under way (a
            # store that stopped answering would hold each for its timeouts) are abandoned,
            # and ended before the error is raised, so no request is left behind in the loop.
            self.store.abandon("abandoned: another file of the feature failed")
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                self.store.resume()
            raise
        failures = [outcome for outcome in outcomes if outcome is not None]
        keep = list(range(len(items)))
        if failures and skipped is not None:
            failed: dict[int, dict[str, Any]] = {}
            for index, band, reason in failures:
                failed.setdefault(
                    index, {"item": items[index]["id"], "asset": band, "reason": reason}
                )
            for entry in failed.values():
                log.warning("skipping item %s: asset %s unreadable (%s)", *entry.values())
            skipped.extend(failed[index] for index in sorted(failed))
            keep = [index for index in keep if index not in failed]
        kept = [items[i] for i in keep]
        gdal = {item["id"]: through_gdal[item["id"]] for item in kept if item["id"] in through_gdal}
        return ItemStack(data[keep], kept, list(bands), sources, gdal)

    async def _prefetch(self, requests: list[ReadRequest]) -> list[ItemStack | None]:
        if self.store is None:
            self.store = RangeStore(max_in_flight=self.max_in_flight)
        arrays = [
            np.full((len(r.items), len(r.bands), r.grid.height, r.grid.width), np.nan, np.float32)
            for r in requests
        ]
        sources: list[dict[str, Counter[str]]] = [
            {band: Counter() for band in r.bands} for r in requests
        ]
        through_gdal: list[dict[str, dict[str, str]]] = [{} for _ in requests]
        # href -> every (request, item, band) that reads it: features of one batch share files
        users: dict[str, list[tuple[int, int, int]]] = {}
        for number, request in enumerate(requests):
            for i, item in enumerate(request.items):
                for b, band in enumerate(request.bands):
                    users.setdefault(item["assets"][band]["href"], []).append((number, i, b))
        failed: set[int] = set()
        slots = asyncio.Semaphore(self.max_in_flight)

        async def one(href: str, uses: list[tuple[int, int, int]]) -> None:
            targets = [
                GridTarget(
                    requests[n].grid,
                    arrays[n][i, b],
                    requests[n].bands[b] in requests[n].class_bands,
                    requests[n].read_overviews,
                )
                for n, i, b in uses
            ]
            async with slots:
                try:
                    await self._read_asset(href, targets)
                except Exception as exc:
                    log.info("prefetch of %s failed: %s", without_query(href), exc)
                    self._failed[href] = exc
                    failed.update(n for n, _, _ in uses)
                    return
            for (n, i, b), target in zip(uses, targets, strict=True):
                item_id, band = requests[n].items[i]["id"], requests[n].bands[b]
                _note_read(target, item_id, band, sources[n], through_gdal[n])

        await asyncio.gather(*(one(href, uses) for href, uses in users.items()))
        return [
            None
            if number in failed
            else ItemStack(
                arrays[number], list(r.items), list(r.bands), sources[number], through_gdal[number]
            )
            for number, r in enumerate(requests)
        ]

    async def _read_asset(self, href: str, targets: list[GridTarget]) -> None:
        """Fill each target's array (grid-shaped, NaN) with the asset's pixels, fetching and
        decoding each tile they need once; set each target's level description.

        A file this reader cannot read exactly (`gdal_reason`: not a GeoTIFF, striped, another
        codec...) or whose header or tiles it fails to parse or decode is read through GDAL
        instead (`read_file_with_gdal`: same overview rule, same nearest neighbour), and each
        target says why (`gdal_reason`). Raises a `FileReadError` saying what happened."""
        from async_tiff import TIFF

        assert self.store is not None
        if (through_s3 := self._not_tiff_on_s3(href)) is not None:
            s3_url, s3_reason, options = through_s3
            await self._read_through_gdal(s3_url, s3_reason, options, targets=targets)
            return
        url = resolve_href(href, sign=self.sign, s3_endpoint=self.s3_endpoint)
        if href in self._gdal_files:
            await self._read_through_gdal(url, self._gdal_files[href], targets=targets)
            return
        opened = self._headers.get(href) if self.sign is None else None
        if opened is not None:
            self._headers.move_to_end(href)
            tiff: TIFF = opened.tiff
        else:
            try:
                # the header, kept by the store for the parser: no request of its own
                head = await self.store.get_range_async(url, start=0, end=self.store.prefix_bytes)
            except Exception:
                self._raise_if_unreachable(url)
                raise
            far = directories_far_in(head)
            if far is not None:
                self._gdal_files[href] = far
                await self._read_through_gdal(url, far, targets=targets)
                return
            try:
                tiff = await TIFF.open(url, store=self.store, prefetch=self.store.prefix_bytes)
            except Exception as exc:
                self._raise_if_unreachable(url)
                self._gdal_files[href] = _not_read_reason(self.store, url, exc)
                await self._read_through_gdal(url, self._gdal_files[href], targets=targets)
                return
        reason = None if opened is not None else gdal_reason(tiff)
        if reason is None:
            try:
                if opened is None:
                    opened = OpenedTiff(tiff, cog_levels(tiff), overview_resampling(tiff.ifds[0]))
                    self._keep_header(href, opened)
                await self._read_tiff(opened, url, targets)
                return
            except (TileDecodeError, ValueError) as exc:
                self._raise_if_unreachable(url)
                reason = str(exc)
            except Exception:
                self._raise_if_unreachable(url)
                raise
        self._headers.pop(href, None)
        self._gdal_files[href] = reason
        await self._read_through_gdal(url, reason, targets=targets)

    def _keep_header(self, href: str, opened: OpenedTiff) -> None:
        """Keep a file's parsed header for the job's later reads of it (at most KEPT_HEADERS,
        the least recently read dropped first); not for signed hrefs."""
        if self.sign is not None:
            return
        self._headers[href] = opened
        if len(self._headers) > KEPT_HEADERS:
            self._headers.popitem(last=False)

    def _not_tiff_on_s3(self, href: str) -> tuple[str, str, dict[str, str]] | None:
        """How GDAL reads `href` when it is not a TIFF and `s3` reads it through GDAL's S3 client
        (its s3:// URL, the reason, the S3 options), else None: such a file is not probed over
        plain HTTP first, which could not authenticate (CDSE's `s3://eodata/...jp2`)."""
        if self.s3 is None:
            return None
        parts = urlsplit(href)
        suffix = PurePosixPath(parts.path).suffix.lower()
        requester_pays = parts.scheme == "s3" and parts.netloc in REQUESTER_PAYS_BUCKETS
        if suffix in TIFF_SUFFIXES and not requester_pays:
            return None
        rewrites, options = self.s3.plan([href])
        if href not in rewrites:
            return None
        if requester_pays:
            reason = "in a requester-pays bucket: read through GDAL's S3 client, which signs"
        else:
            reason = f"not a GeoTIFF ({suffix or 'no suffix'}): read through GDAL's S3 client"
        return rewrites[href], reason, options

    def _raise_if_unreachable(self, url: str) -> None:
        """A file whose bytes did not come (or whose read was abandoned) is not GDAL's to
        read: GDAL would wait for the same store."""
        assert self.store is not None
        failure = self.store.failures.get(url) or self.store.abandoned
        if failure is not None:
            raise FileUnreachable(failure)

    async def _read_through_gdal(
        self,
        url: str,
        reason: str,
        options: Mapping[str, str] | None = None,
        *,
        targets: list[GridTarget],
    ) -> None:
        """Read the file through GDAL for every target (in a thread: GDAL blocks); `options`:
        extra GDAL settings (GDAL's S3 client's)."""
        for target in targets:
            target.out[...] = np.nan  # whatever a failed attempt placed
            target.gdal_reason = reason
        started = time.perf_counter()
        try:
            await asyncio.to_thread(read_file_with_gdal, url, targets, options)
        except Exception as exc:
            message = f"{reason}; GDAL cannot read it either: {without_query(str(exc))}"
            if reason.startswith(CORRUPT):
                raise FileCorrupt(message) from None
            raise FileUnreadable(message) from None
        log.info(
            "%s read through GDAL in %.2f s: %s",
            without_query(url),
            time.perf_counter() - started,
            reason,
        )

    async def _read_tiff(self, opened: OpenedTiff, url: str, targets: list[GridTarget]) -> None:
        """sitsflow's own read of a tiled GeoTIFF it decodes (`gdal_reason` is None)."""
        tiff, levels, resampling = opened.tiff, opened.levels, opened.resampling
        by_level: dict[int, list[tuple[GridTarget, PixelMap]]] = {}
        for target in targets:
            chosen, target.description = choose_level_for(
                levels, resampling, target.grid, target.class_band, target.read_overviews
            )
            level = levels[chosen]
            by_level.setdefault(chosen, []).append((target, self._pixel_map(level, target.grid)))
        nodata = tiff.ifds[0].gdal_nodata
        for chosen, placements in by_level.items():
            level = levels[chosen]
            counts = tiff.ifds[level.index].tile_byte_counts or []
            tiles_across = -(-level.width // level.tile_width)
            needed = sorted({tile for _, pixels in placements for tile in pixels.tiles})
            # a sparse tile (no bytes) holds no data: it stays NaN, as GDAL reads it as nodata
            wanted = [
                (col, row)
                for col, row in needed
                if row * tiles_across + col >= len(counts) or counts[row * tiles_across + col] > 0
            ]
            if not wanted:
                continue
            # the rows of each tile some target uses: a tile kept on disk is read only there
            spans: dict[tuple[int, int], tuple[int, int]] = {}
            for _, pixels in placements:
                for tile, here in pixels.by_tile.items():
                    first, stop = spans.get(tile, here.rows)
                    spans[tile] = (min(first, here.rows[0]), max(stop, here.rows[1]))
            size = len(wanted) * level.tile_width * level.tile_height * 2
            held = await self._budget.acquire(size)
            try:
                found = await self._tiles(tiff, url, level, wanted, spans)
                for target, pixels in placements:
                    self.tiles_placed += _place(target.out, pixels, level, found)
            finally:
                await self._budget.release(held)
        if nodata is not None and nodata.strip().lower() not in ("", "nan"):
            value = np.float32(float(nodata))
            for target in targets:
                target.out[target.out == value] = np.nan

    async def _tiles(
        self,
        tiff: TIFF,
        url: str,
        level: Level,
        wanted: list[tuple[int, int]],
        spans: Mapping[tuple[int, int], tuple[int, int]],
    ) -> dict[tuple[int, int], TileRows]:
        """The decoded tiles of `level` at (col, row): from the disk cache when a job of the
        run decoded them before (keyed by the file and each tile's byte range, the file's
        version checked by the store), only their `spans` rows (first, stop), else fetched
        and decoded, whole, and kept there."""
        assert self.store is not None
        ifd = tiff.ifds[level.index]
        offsets, counts = ifd.tile_offsets or [], ifd.tile_byte_counts or []
        across = -(-level.width // level.tile_width)
        ranges = {}
        for col, row in wanted:
            index = row * across + col
            if index < len(offsets) and index < len(counts):
                ranges[(col, row)] = (int(offsets[index]), int(offsets[index] + counts[index]))
        found = {
            tile: kept
            for tile, (start, stop) in ranges.items()
            if (kept := self.store.cached_tile(url, start, stop, spans.get(tile))) is not None
        }
        missing = [tile for tile in wanted if tile not in found]
        # a tile another job of the run is fetching: wait for it, after this job's own
        theirs = [t for t in missing if t in ranges and not self.store.claim_tile(url, *ranges[t])]
        mine = [tile for tile in missing if tile not in theirs]
        await self._decode_and_keep(tiff, url, level, mine, ranges, found)
        if theirs:
            found.update(await self._wait_for_tiles(url, theirs, ranges, spans))
            late = [tile for tile in theirs if tile not in found]
            await self._decode_and_keep(tiff, url, level, late, ranges, found, claimed=False)
        return found

    async def _decode_and_keep(
        self,
        tiff: TIFF,
        url: str,
        level: Level,
        tiles: list[tuple[int, int]],
        ranges: dict[tuple[int, int], tuple[int, int]],
        found: dict[tuple[int, int], TileRows],
        *,
        claimed: bool = True,
    ) -> None:
        """Fetch and decode `tiles` into `found` and keep them in the disk cache; give up
        this job's claims on them (`claimed`), kept or not."""
        assert self.store is not None
        try:
            if tiles:
                decoded = await _fetch(tiff, level, tiles)
                self.tiles_decoded += len(tiles)
                for tile, array in zip(tiles, decoded, strict=True):
                    found[tile] = TileRows(array, 0, array.shape[0])
                    if tile in ranges:
                        self.store.keep_tile(url, *ranges[tile], array)
        finally:
            if claimed:
                for tile in tiles:
                    if tile in ranges:
                        self.store.release_tile(url, *ranges[tile])

    async def _wait_for_tiles(
        self,
        url: str,
        tiles: list[tuple[int, int]],
        ranges: dict[tuple[int, int], tuple[int, int]],
        spans: Mapping[tuple[int, int], tuple[int, int]],
    ) -> dict[tuple[int, int], TileRows]:
        """The tiles other jobs claimed (their `spans` rows), from the disk cache once they
        keep them; those whose claim went without the tile (that job failed) or that are not
        there within CLAIM_WAIT_S are left out (this job fetches them).

        A job keeps its tile, then releases its claim: a tile not kept at the first look and
        no longer claimed at the second may have been kept in between, so the cache is
        looked at once more before the tile is left out."""
        assert self.store is not None
        store = self.store
        got: dict[tuple[int, int], TileRows] = {}
        pending, deadline = list(tiles), time.monotonic() + CLAIM_WAIT_S
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(CLAIM_POLL_S)
            waiting = []
            for tile in pending:
                start, stop = ranges[tile]
                kept = store.cached_tile(url, start, stop, spans.get(tile))
                if kept is None and not store.tile_claimed(url, start, stop):
                    kept = store.cached_tile(url, start, stop, spans.get(tile))
                    if kept is None:
                        continue  # released without keeping it: this job fetches it
                if kept is not None:
                    got[tile] = kept
                else:
                    waiting.append(tile)
            pending = waiting
        self.tiles_waited_for += len(got)
        return got

    def _pixel_map(self, level: Level, grid: Grid) -> PixelMap:
        key = (level.geometry(), grid)
        if key not in self._maps:
            self._maps[key] = pixel_map(level, grid)
        return self._maps[key]


def _note_read(
    target: GridTarget,
    item_id: str,
    band: str,
    sources: dict[str, Counter[str]],
    through_gdal: dict[str, dict[str, str]],
) -> None:
    """Record for an `ItemStack` what one file's read was: the level it was read at, and
    whether it went to GDAL and why."""
    sources[band][target.description] += 1
    if target.gdal_reason is not None:
        through_gdal.setdefault(item_id, {})[band] = target.gdal_reason


# ---- what this reader reads itself -------------------------------------------------------

CORRUPT = "a tile does not decode"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
TIFF_SUFFIXES = (".tif", ".tiff")
OTHER_MAGIC = {
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
    b"\xff\x4f\xff\x51": "a JPEG 2000 codestream",
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG": "PNG",
    b"CDF": "netCDF",
    b"\x89HDF": "HDF5",
}


def directories_far_in(head: bytes, limit: int = DIRECTORY_LIMIT_BYTES) -> str | None:
    """Why the file's directories are too far in for this reader (see DIRECTORY_LIMIT_BYTES),
    from its first bytes: the chain of IFD offsets followed as far as `head` holds it. None for
    a COG's header, or when `head` is not a TIFF (the parser says what it is)."""
    if not head.startswith(TIFF_MAGIC):
        return None
    endian: Literal["little", "big"] = "little" if head[:2] == b"II" else "big"

    def number(start: int, size: int) -> int | None:
        return (
            int.from_bytes(head[start : start + size], endian)
            if start + size <= len(head)
            else None
        )

    big = head[2:4] in (b"+\x00", b"\x00+")
    count_size, entry_size, pointer_size = (8, 20, 8) if big else (2, 12, 4)
    offset = number(8 if big else 4, pointer_size)
    seen: set[int] = set()
    while offset and offset not in seen:
        if offset >= limit:
            return f"its directory is {offset:,} bytes in, after the data (not cloud-optimised)"
        seen.add(offset)
        count = number(offset, count_size)
        if count is None:
            return None  # further than the header holds, within the limit: the parser reads it
        offset = number(offset + count_size + count * entry_size, pointer_size)
    return None


def image_ifds(tiff: TIFF) -> list[ImageFileDirectory]:
    """The IFDs of the image and its overviews (not masks, not other images)."""
    ifds = tiff.ifds
    return [
        ifd
        for index, ifd in enumerate(ifds)
        if not index or ((ifd.new_subfile_type or 0) & 1 and not (ifd.new_subfile_type or 0) & 4)
    ]


def gdal_reason(tiff: TIFF) -> str | None:
    """Why this reader leaves the file to GDAL (None: it reads it exactly itself): a layout
    or codec it does not decode, in the image or any of its overviews."""
    for ifd in image_ifds(tiff):
        where = "the image" if ifd is tiff.ifds[0] else "an overview"
        if ifd.tile_width is None or ifd.tile_height is None:
            return f"a striped GeoTIFF ({where} has no tiles)"
        compression = int(ifd.compression)
        if compression not in DECODED_COMPRESSIONS:
            return f"compression {_compression_name(compression)} in {where}"
        predictor = None if ifd.predictor is None else int(ifd.predictor)
        if predictor not in DECODED_PREDICTORS:
            return f"predictor {predictor} in {where}"
        if ifd.samples_per_pixel != 1:
            return f"{ifd.samples_per_pixel} samples per pixel in {where} (interleaved bands)"
        formats = [int(value) for value in ifd.sample_format or ()] or [1]  # none: unsigned
        bits = [int(value) for value in ifd.bits_per_sample or ()]
        if len(bits) != 1 or bits[0] not in DECODED_SAMPLES.get(formats[0], ()):
            return f"samples of {bits} bits, format {formats}, in {where}"
        photometric = ifd.photometric_interpretation
        if photometric is not None and int(photometric) > BLACK_IS_ZERO:
            return f"photometric interpretation {int(photometric)} in {where}"
    return None


def _compression_name(code: int) -> str:
    from async_tiff.enums import Compression

    names = {34887: "LERC", 34712: "JPEG 2000", 50001: "WebP", 34925: "LZMA"}
    try:
        return names.get(code) or Compression(code).name
    except ValueError:
        return f"TIFF code {code}"


def _not_read_reason(store: RangeStore, url: str, exc: Exception) -> str:
    """Why a file did not open as a GeoTIFF: its format by its first bytes, or the parser's
    error."""
    head = store.head(url)
    if head is not None and not head.startswith(TIFF_MAGIC):
        for magic, name in OTHER_MAGIC.items():
            if head.startswith(magic):
                return f"not a GeoTIFF: {name}"
        return f"not a GeoTIFF (it starts with {head[:8]!r})"
    return f"its GeoTIFF header does not parse ({without_query(str(exc))})"


# ---- levels ----------------------------------------------------------------------------------


def cog_levels(tiff: TIFF) -> list[Level]:
    """The COG's full-resolution image and its overviews (IFDs of the same image, not masks),
    with each overview's transform scaled from the full resolution's, as GDAL does."""
    ifds = tiff.ifds
    first = ifds[0]
    if first.tile_width is None or first.tile_height is None:
        raise ValueError("not a tiled GeoTIFF (a COG has tiles)")
    transform, epsg = georeference(first)
    levels = []
    for index, ifd in enumerate(ifds):
        subfile = ifd.new_subfile_type or 0
        if index and (subfile & 4 or not subfile & 1):  # a mask, or another image
            continue
        if ifd.tile_width is None or ifd.tile_height is None:
            continue
        scale_x = first.image_width / ifd.image_width
        scale_y = first.image_height / ifd.image_height
        levels.append(
            Level(
                index=index,
                width=ifd.image_width,
                height=ifd.image_height,
                tile_width=ifd.tile_width,
                tile_height=ifd.tile_height,
                transform=transform @ Affine.scale(scale_x, scale_y),
                epsg=epsg,
            )
        )
    return levels


def georeference(ifd: ImageFileDirectory) -> tuple[Affine, int]:
    """The affine transform and EPSG code of a GeoTIFF's first image."""
    keys = ifd.geo_key_directory
    epsg = None
    if keys is not None:
        epsg = keys.projected_type or keys.geographic_type
    if not epsg or epsg == 32767:
        raise ValueError("the GeoTIFF has no EPSG code")
    matrix = ifd.model_transformation
    if matrix:
        transform = Affine(matrix[0], matrix[1], matrix[3], matrix[4], matrix[5], matrix[7])
    else:
        scale, tiepoint = ifd.model_pixel_scale, ifd.model_tiepoint
        if not scale or not tiepoint:
            raise ValueError("the GeoTIFF has no georeferencing")
        i, j, _, x, y, _ = tiepoint[:6]
        transform = Affine(scale[0], 0.0, x - i * scale[0], 0.0, -scale[1], y + j * scale[1])
    if keys is not None and keys.raster_type == PIXEL_IS_POINT:  # GDAL: the pixel's corner
        transform = transform @ Affine.translation(-0.5, -0.5)
    return transform, int(epsg)


def overview_resampling(ifd: ImageFileDirectory) -> str | None:
    """How the overviews were made, from the GDAL_METADATA tag (its items, read as
    `sitsflow.pixels.overviews.resampling_from` says); None when the file does not say."""
    text = ifd.gdal_metadata
    if not text:
        return None
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    found = {}
    for element in root.iter("Item"):
        name, domain = element.get("name"), element.get("domain") or ""
        if element.get("sample") is None and name and element.text:
            found[(domain, name)] = element.text
    return resampling_from(found)


def choose_level(
    levels: Sequence[Level],
    first: ImageFileDirectory,
    grid: Grid,
    class_band: bool,
    read_overviews: bool,
) -> tuple[int, str]:
    """The position in `levels` to read for `grid`, and how the cube records it (the rule and
    words of `sitsflow.pixels.overviews.choose_overview`: `overview 1 (x2, AVERAGE)`,
    `full resolution`)."""
    return choose_level_for(levels, overview_resampling(first), grid, class_band, read_overviews)


def choose_level_for(
    levels: Sequence[Level],
    resampling: str | None,
    grid: Grid,
    class_band: bool,
    read_overviews: bool,
) -> tuple[int, str]:
    """`choose_level` for a file whose overviews were made by `resampling` (GDAL's name)."""
    first = levels[0]
    overview, description = choose_overview(
        factors=[first.width / level.width for level in levels[1:]],
        native_resolution=abs(first.transform.a),
        source_crs=first.epsg,
        target_crs=grid.epsg,
        target_resolution=grid.resolution,
        resampling=resampling,
        class_band=class_band,
        read_overviews=read_overviews,
    )
    return (0 if overview is None else overview + 1), description


# ---- pixels --------------------------------------------------------------------------------


def pixel_map(level: Level, grid: Grid) -> PixelMap:
    """For every grid pixel, the source pixel of `level` under its centre (nearest neighbour).

    In the level's own CRS the map is exact (GDAL's rule: floor of the source coordinates plus
    EDGE_TOLERANCE). Across CRSs GDAL's warper does not transform every pixel: it interpolates
    along each row between exactly transformed points, within 1/8 pixel, so for pixels near a
    source pixel's edge the exact transform and GDAL can pick neighbours. The map is then GDAL's
    own, read from a warp of source pixel indices (`_warped_indices`), so that cubes equal the
    ones read through GDAL (stackstac).
    """
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    if level.epsg == grid.epsg:
        row, col, _ = _source_pixels(level, grid, rows, cols)
    else:
        # GDAL's map; the exact one only bounds the source pixels it can pick, and the
        # extremes of a projection over the grid lie on its edge: transform only the edge
        edge = np.zeros(rows.shape, bool)
        edge[[0, -1], :] = edge[:, [0, -1]] = True
        row, col, finite = _source_pixels(level, grid, rows[edge], cols[edge])
        if not finite.all():  # beyond the projection's domain: bound by every pixel
            row, col, finite = _source_pixels(level, grid, rows, cols)
        if finite.any():
            row, col = _warped_indices(level, grid, row[finite], col[finite])
        else:
            row, col = np.full(rows.shape, -1, np.int64), np.full(rows.shape, -1, np.int64)
    inside = (col >= 0) & (col < level.width) & (row >= 0) & (row < level.height)
    grid_rows, grid_cols = np.nonzero(inside)
    source_rows, source_cols = row[inside], col[inside]
    tile_ids = (source_rows // level.tile_height) * (1 << 32) + source_cols // level.tile_width
    order = np.argsort(tile_ids, kind="stable")
    ids, starts = np.unique(tile_ids[order], return_index=True)
    by_tile = {}
    # no pixel inside (a file whose item footprint meets the grid but whose raster does not):
    # no tile; np.split would give one empty group for no id
    groups = np.split(order, starts[1:]) if len(ids) else []
    for tile_id, members in zip(ids, groups, strict=True):
        tile_col, tile_row = int(tile_id % (1 << 32)), int(tile_id // (1 << 32))
        local_rows = source_rows[members] - tile_row * level.tile_height
        local_cols = source_cols[members] - tile_col * level.tile_width
        rectangle = _grid_rectangle(grid_rows[members], grid_cols[members])
        block = (
            _one_to_one_block(
                rectangle, grid_rows[members], grid_cols[members], local_rows, local_cols
            )
            if rectangle is not None
            else None
        )
        by_tile[(tile_col, tile_row)] = TilePixels(
            grid_flat=(grid_rows[members] * grid.width + grid_cols[members]).astype(np.int32),
            tile_flat=(local_rows * level.tile_width + local_cols).astype(np.int32),
            rows=(int(local_rows.min()), int(local_rows.max()) + 1),
            block=block,
            rectangle=rectangle if block is None else None,
        )
    return PixelMap(tiles=tuple(by_tile), by_tile=by_tile, made_for=level.geometry())


def _source_pixels(
    level: Level, grid: Grid, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (row, column) of `level`'s pixel containing the centre of each grid pixel at
    (`rows`, `cols`) (pixel coordinates of centres), by the exact transform and GDAL's floor
    with EDGE_TOLERANCE, -1 where the transform is not finite; and where it is."""
    centres: Any = (cols, rows)  # Affine maps arrays too; its type hints say floats
    xs, ys = grid.transform @ centres
    if level.epsg != grid.epsg:
        forward = epsg_transformer(grid.epsg, level.epsg)
        xs, ys = forward.transform(xs, ys)
    source_cols, source_rows = ~level.transform @ (np.asarray(xs), np.asarray(ys))
    col = np.floor(np.asarray(source_cols) + EDGE_TOLERANCE)
    row = np.floor(np.asarray(source_rows) + EDGE_TOLERANCE)
    finite = np.isfinite(col) & np.isfinite(row)
    row = np.where(finite, row, -1).astype(np.int64)
    col = np.where(finite, col, -1).astype(np.int64)
    return row, col, finite


def _grid_rectangle(
    grid_rows: np.ndarray, grid_cols: np.ndarray
) -> tuple[int, int, int, int] | None:
    """`TilePixels.rectangle` for these grid pixels (each once, in row order, as `pixel_map`
    lists them), or None when they do not fill a rectangle of the grid."""
    top, left = int(grid_rows.min()), int(grid_cols.min())
    height, width = int(grid_rows.max()) - top + 1, int(grid_cols.max()) - left + 1
    if height * width != grid_rows.size:
        return None
    return top, left, height, width


def _one_to_one_block(
    rectangle: tuple[int, int, int, int],
    grid_rows: np.ndarray,
    grid_cols: np.ndarray,
    tile_rows: np.ndarray,
    tile_cols: np.ndarray,
) -> tuple[int, int, int, int, int, int] | None:
    """`TilePixels.block` for these pixels, which fill `rectangle` of the grid, or None when
    they are not at a constant offset from their tile pixels."""
    top, left, height, width = rectangle
    row_shift, col_shift = int(tile_rows[0] - grid_rows[0]), int(tile_cols[0] - grid_cols[0])
    if (tile_rows - grid_rows != row_shift).any() or (tile_cols - grid_cols != col_shift).any():
        return None
    return top, left, top + row_shift, left + col_shift, height, width


def _warped_indices(
    level: Level, grid: Grid, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's nearest-neighbour choice of source pixel for every grid pixel: warp a raster whose
    values are the source pixel indices onto the grid, as stackstac's WarpedVRT warps a file.

    The raster covers the source pixels the exact transform picked, plus a margin of two pixels
    (GDAL's choice differs by at most one), in the level's georeferencing shifted by whole
    pixels; pixels GDAL maps outside the level come back as -1.
    """
    import rasterio
    from rasterio.io import MemoryFile

    margin = 2
    top, left = max(int(rows.min()) - margin, 0), max(int(cols.min()) - margin, 0)
    bottom = min(int(rows.max()) + margin + 1, level.height)
    right = min(int(cols.max()) + margin + 1, level.width)
    if bottom <= top or right <= left:
        empty = np.full((grid.height, grid.width), -1, np.int64)
        return empty, empty.copy()
    height, width = bottom - top, right - left
    index = np.arange(height * width, dtype=np.int32).reshape(height, width)
    transform = level.transform @ Affine.translation(left, top)
    with rasterio.Env(GDAL_NUM_THREADS="1"):
        chosen = _warp_in_memory(index, transform, level.epsg, grid)
        if chosen is None:
            profile = {
                "driver": "GTiff",
                "width": width,
                "height": height,
                "count": 1,
                "dtype": "int32",
                "crs": f"EPSG:{level.epsg}",
                "transform": transform,
                "nodata": -1,
            }
            with MemoryFile() as memory:
                with memory.open(**profile) as indices:
                    indices.write(index, 1)
                with memory.open() as indices, nearest_onto(indices, grid) as warped:
                    chosen = warped.read(1)
    chosen = chosen.astype(np.int64)
    outside = chosen < 0
    row = np.where(outside, -1, chosen // width + top)
    col = np.where(outside, -1, chosen % width + left)
    return row, col


# GDAL opens a MEM dataset over an array with its georeferencing (GEOTRANSFORM,
# SPATIALREFERENCE) from 3.7 on
MEM_OPEN_GDAL = (3, 7)


def _warp_in_memory(
    index: np.ndarray, transform: Affine, epsg: int, grid: Grid
) -> np.ndarray | None:
    """`index` (int32, C order), georeferenced by `transform` in `epsg`, warped onto `grid` by
    nearest neighbour (-1 outside it), through a GDAL MEM dataset over the array itself: a
    GeoTIFF written to memory and opened again costs 3.8 against 2.1 ms per pixel map. None
    where GDAL cannot (before 3.7), or when the dataset it opened is not georeferenced as
    asked: the caller warps a GeoTIFF instead."""
    import rasterio

    version = tuple(int(part) for part in rasterio.__gdal_version__.split(".")[:2])
    if version < MEM_OPEN_GDAL or not index.flags.c_contiguous or index.dtype != np.int32:
        return None
    height, width = index.shape
    name = (
        f"MEM:::DATAPOINTER={index.ctypes.data},PIXELS={width},LINES={height},BANDS=1,"
        f"DATATYPE=Int32,GEOTRANSFORM={'/'.join(repr(v) for v in transform.to_gdal())},"
        f"SPATIALREFERENCE=EPSG:{epsg}"
    )
    # opening a MEM::: name is refused unless allowed (it reads any address): allowed for
    # this array only, which outlives the dataset
    with rasterio.Env(GDAL_MEM_ENABLE_OPEN="YES"), rasterio.open(name) as indices:
        if indices.transform != transform or indices.crs is None or indices.crs.to_epsg() != epsg:
            return None
        with nearest_onto(indices, grid, src_nodata=-1) as warped:
            return np.asarray(warped.read(1))


@functools.cache
def _decoders() -> DecoderRegistry:
    """async-tiff's decoders, made once per job: without a registry, each decode makes its
    own (measured on 512 x 512 DEFLATE tiles: 3.7 against 3.3 ms of CPU per tile)."""
    from async_tiff import DecoderRegistry

    return DecoderRegistry()


async def _fetch(tiff: TIFF, level: Level, tiles: list[tuple[int, int]]) -> list[np.ndarray]:
    """The decoded tiles (2-D arrays) of `level` at (col, row); TileDecodeError naming the
    first tile that does not decode."""
    fetched = await tiff.fetch_tiles(tiles, level.index)
    registry = _decoders()
    decoded = await asyncio.gather(
        *(tile.decode(decoder_registry=registry) for tile in fetched), return_exceptions=True
    )
    for (col, row), outcome in zip(tiles, decoded, strict=True):
        if isinstance(outcome, BaseException):
            where = "the image" if level.index == 0 else f"IFD {level.index} (an overview)"
            raise TileDecodeError(
                f"{CORRUPT}: tile column {col}, row {row} of {where}: {outcome}"
            ) from outcome
    arrays = []
    for array in decoded:
        values = np.asarray(array)
        if values.ndim == 3:  # (height, width, samples) for chunky data
            values = values[..., 0]
        arrays.append(values)
    return arrays


def _place(
    out: np.ndarray,
    pixels: PixelMap,
    level: Level,
    tiles: Mapping[tuple[int, int], np.ndarray | TileRows],
) -> int:
    """Copy the source pixel of every grid pixel inside the level from its tile (a whole
    decoded tile, or the rows of one read from disk) into `out` (a tile the file lacks,
    sparse, stays NaN); returns the number of tiles used. Tile by tile, so no mosaic of the
    tiles is ever built. Raises RuntimeError when the rows read lack some the map needs."""
    if pixels.made_for != level.geometry():
        raise RuntimeError(
            f"a pixel map made for {pixels.made_for} placed on a level {level.geometry()}"
        )
    used = 0
    for key, kept in tiles.items():
        here = pixels.by_tile.get(key)
        if here is None:
            continue
        used += 1
        if not isinstance(kept, TileRows):
            kept = TileRows(kept, 0, kept.shape[0])
        tile, first = kept.values, kept.first
        if here.rows[0] < first or min(here.rows[1], kept.height) > first + len(tile):
            raise RuntimeError(
                f"tile {key}: rows {here.rows} needed, rows {first} to {first + len(tile)} read"
            )
        if here.block is not None:
            top, left, tile_top, tile_left, height, width = here.block
            if tile_top + height <= kept.height and tile_left + width <= tile.shape[1]:
                out[top : top + height, left : left + width] = tile[
                    tile_top - first : tile_top - first + height, tile_left : tile_left + width
                ]
                continue
        if (kept.height, tile.shape[1]) == (level.tile_height, level.tile_width):
            placed = np.take(
                tile, here.tile_flat - first * level.tile_width if first else here.tile_flat
            )
        else:  # an edge tile may be stored smaller than the tile size: pixels beyond stay NaN
            tile_rows, tile_cols = np.divmod(here.tile_flat, level.tile_width)
            fits = (tile_rows < kept.height) & (tile_cols < tile.shape[1])
            placed = np.full(here.tile_flat.shape, np.nan, np.float32)
            placed[fits] = tile[tile_rows[fits] - first, tile_cols[fits]]
        if here.rectangle is not None:
            top, left, height, width = here.rectangle
            out[top : top + height, left : left + width] = placed.reshape(height, width)
        elif out.flags.c_contiguous:
            out.reshape(-1)[here.grid_flat] = placed
        else:
            out[np.divmod(here.grid_flat, out.shape[1])] = placed
    return used
