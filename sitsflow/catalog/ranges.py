"""Byte ranges of the files behind STAC assets, fetched asynchronously: the store that
sitsflow's reader (`sitsflow.pixels.tiles`) hands to async-tiff.

One `RangeStore` serves one job. It keeps one HTTP connection pool (aiohttp) for every host,
at most `max_in_flight` requests at once, and for each file the bytes its first request fetched
(a COG's header and, right behind it, the tiles of its coarsest overviews), so that a tile
inside them costs no request. Local paths (a local catalog's items) are read from disk.

Failures a server may recover from (a timeout, a reset connection, 5xx) are retried with
exponential backoff, `max_retries` times; a throttled answer (429, 503) up to
`THROTTLE_RETRIES` times besides, as a busy store is alive; a `Retry-After` header sets the
wait. A store that answers 429 or 503 throttles the client, not one file, and the client is
every job of the run: the pause is kept run-wide (`sitsflow.catalog.pauses.SharedPause`), so
every request to that host, in every job, waits it out. Errors name the URL without its query
string (a signed URL's token never reaches a message).

With a `RangeCache` (`sitsflow.catalog.range_cache`: the run-wide one of config
`range_cache`, or a batch job's own) the store takes a remote file's header and tiles from
local disk when a job of the run fetched them before, and keeps what it fetches there: a
batch's later rounds and the run's other jobs find it. Every answer of the server is checked
against the file's cached version (size, ETag), so bytes of two versions of one file are
never mixed.

Hrefs are turned into URLs once (`resolve_href`): `s3://BUCKET/KEY` into the bucket's public
HTTPS address, Planetary Computer's blobs signed with a SAS token (`sitsflow.catalog.signing`).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sitsflow.catalog.range_cache import FileVersion, RangeCache, TileRows

if TYPE_CHECKING:
    import aiohttp
    import numpy as np

    from sitsflow.catalog.pauses import SharedPause

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
THROTTLE_STATUS = frozenset({429, 503})
MAX_RETRIES = 5
# retries of a throttled answer (429, 503), beside `max_retries` for every other failure
THROTTLE_RETRIES = 10
RETRY_BACKOFF_S = 0.5
MAX_RETRY_WAIT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
# Ranges closer than this are fetched as one request (a COG's consecutive tiles are 8 bytes
# apart: GDAL's leader and trailer).
MERGE_GAP = 16
_URL_QUERY = re.compile(r"\?.*$")


class RangeError(OSError):
    """A byte range could not be fetched (after the retries)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = without_query(url)
        self.reason = reason
        super().__init__(f"{self.url}: {reason}")


def without_query(url: str) -> str:
    return _URL_QUERY.sub("", url)


@dataclass
class Counters:
    """What a store did: requests sent, bytes received, retries, ranges served from memory."""

    requests: int = 0
    bytes: int = 0
    retries: int = 0
    from_memory: int = 0
    from_disk: int = 0
    tiles_from_disk: int = 0
    waited_s: float = 0.0


@dataclass
class _Prefix:
    """The first bytes of a file, kept from its first request."""

    data: bytes
    size: int | None = None


class RangeStore:
    """An obspec-style store (`get_range_async`, `get_ranges_async`) over HTTP(S) and local
    files; paths are URLs or file paths."""

    def __init__(
        self,
        *,
        max_in_flight: int = 32,
        prefix_bytes: int = 4096,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_retries: int = MAX_RETRIES,
        cache: RangeCache | None = None,
        shared_pause: SharedPause | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.cache = cache
        # tile ranges (`get_ranges_async`) kept in the cache as fetched; sitsflow's reader
        # keeps them decoded instead (`keep_tile`) and turns this off
        self.keep_tile_ranges = True
        self.shared_pause = shared_pause
        self.prefix_bytes = prefix_bytes
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_retries = max_retries
        self.counters = Counters()
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._prefixes: dict[str, _Prefix] = {}
        self._paused_until = 0.0
        # path -> why a request for it failed for good (after the retries): what a reader
        # reports as unreachable, whatever its parser made of the error
        self.failures: dict[str, str] = {}
        # the requests under way (`abandon` ends them) and why they were abandoned
        self._running: set[asyncio.Task[Any]] = set()
        self._abandoned: str | None = None
        # URL (without query) -> the file's version its answers reported in this job, and the
        # files some of whose bytes came from the cache
        self._versions: dict[str, FileVersion] = {}
        self._used_cached: set[str] = set()
        # URL (without query) -> the version whose bytes the disk cache holds, read once
        self._cache_versions: dict[str, FileVersion | None] = {}
        # (path, start, stop) -> where this job claimed that tile (`claim_tile`)
        self._claims: dict[tuple[str, int, int], tuple[RangeCache, FileVersion]] = {}

    def __repr__(self) -> str:  # async-tiff formats its store: keep it short
        return f"RangeStore({len(self._prefixes)} files, {self.counters})"

    async def __aenter__(self) -> RangeStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.close_cache()

    def close_cache(self) -> None:
        """Let go of the disk cache of ranges (a private one is removed)."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    # ---- obspec ---------------------------------------------------------------------------

    async def get_range_async(
        self, path: str, *, start: int, end: int | None = None, length: int | None = None
    ) -> bytes:
        stop = end if end is not None else start + (length or 0)
        return await self._get_range(path, start, stop, keep=True)

    async def _get_range(self, path: str, start: int, stop: int, *, keep: bool) -> bytes:
        """Bytes `start:stop` of `path`; with `keep`, from the disk cache or kept there."""
        prefix = self._prefixes.get(path)
        if prefix is None and start == 0:
            # the file's first request: the header and whatever follows it up to prefix_bytes
            data = self._cached(path, None, None)
            if data is None or self.prefix_bytes <= len(data) < stop:
                data = await self._fetch(path, 0, max(stop, self.prefix_bytes))
                self._keep(path, None, None, data)
            self._prefixes[path] = _Prefix(data)
            return data[:stop]
        if prefix is not None and start < len(prefix.data):
            self.counters.from_memory += 1
            known = prefix.data[start:stop]
            if stop <= len(prefix.data) or len(prefix.data) < self.prefix_bytes:
                return known  # all of it was there (or the file ends there)
            return known + await self._fetch(path, len(prefix.data), stop)
        if not keep:
            return await self._fetch(path, start, stop)
        data = self._cached(path, start, stop)
        if data is None:
            data = await self._fetch(path, start, stop)
            self._keep(path, start, stop, data)
        return data

    async def get_ranges_async(
        self,
        path: str,
        *,
        starts: Sequence[int],
        ends: Sequence[int] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> list[bytes]:
        if ends is None:
            ends = [start + length for start, length in zip(starts, lengths or [], strict=True)]
        stops = list(ends)
        wanted = list(zip(starts, stops, strict=True))
        known: dict[tuple[int, int], bytes] = {}
        for start, stop in wanted:
            data = self._cached(path, start, stop)
            if data is not None:
                known[(start, stop)] = data
        missing = [(start, stop) for start, stop in wanted if (start, stop) not in known]
        merged = merge_ranges(missing)
        # tiles' bytes are looked up and kept one by one, not as the runs they are fetched in
        # (which no later read asks for); not kept at all when the reader keeps them decoded
        fetched = await asyncio.gather(
            *(self._get_range(path, start, stop, keep=False) for start, stop in merged)
        )
        for start, stop in missing:
            for (low, high), data in zip(merged, fetched, strict=True):
                if low <= start and stop <= high:
                    known[(start, stop)] = data[start - low : stop - low]
                    if self.keep_tile_ranges:
                        self._keep(path, start, stop, known[(start, stop)])
                    break
        return [known[(start, stop)] for start, stop in wanted]

    # ---- the disk cache -------------------------------------------------------------------

    def cached_tile(
        self, path: str, start: int, stop: int, rows: tuple[int, int] | None = None
    ) -> TileRows | None:
        """The tile stored in bytes `start:stop` of `path`, decoded, from the disk cache (see
        `_cached`): its `rows` (first, stop) only, when given."""
        usable = self._usable_cache(path)
        kept = usable[0].get_rows(path, start, stop, rows, version=usable[1]) if usable else None
        if kept is not None:
            self._used_cached.add(without_query(path))
            self.counters.tiles_from_disk += 1
        return kept

    def keep_tile(self, path: str, start: int, stop: int, array: np.ndarray) -> None:
        """Put a tile decoded from bytes `start:stop` of `path` in the disk cache (through
        this job's claim on it, when it holds one for the version it records)."""
        recording = self._recording_cache(path)
        if recording is not None:
            claimed = self._claims.get((path, start, stop)) == recording
            cache, version = recording
            cache.put_array(path, start, stop, array, version=version, claimed=claimed)

    def claim_tile(self, path: str, start: int, stop: int) -> bool:
        """Whether this job is to fetch and decode the tile in bytes `start:stop` of `path`:
        it claimed it in the disk cache (`RangeCache.claim`), or there is no cache to share
        it through. False: another job of the run is at it (`tile_claimed`, `cached_tile`)."""
        usable = self._usable_cache(path)
        if usable is None:
            return True
        if not usable[0].claim(path, start, stop, version=usable[1]):
            return False
        self._claims[(path, start, stop)] = usable
        return True

    def tile_claimed(self, path: str, start: int, stop: int) -> bool:
        """Whether another job still holds its claim on that tile."""
        usable = self._usable_cache(path)
        return usable is not None and usable[0].claimed(path, start, stop, version=usable[1])

    def release_tile(self, path: str, start: int, stop: int) -> None:
        """Give up this job's claim on that tile (kept or not: see `keep_tile`)."""
        claimed = self._claims.pop((path, start, stop), None)
        if claimed is not None:
            claimed[0].release(path, start, stop, version=claimed[1])

    def _cached_version(self, path: str, fresh: bool = False) -> FileVersion | None:
        """The version of `path` whose bytes the disk cache holds: read once per job (`fresh`:
        again), as its bytes are under that version's name."""
        assert self.cache is not None
        key = without_query(path)
        if fresh or key not in self._cache_versions:
            self._cache_versions[key] = self.cache.version(path)
        return self._cache_versions[key]

    def _usable_cache(self, path: str) -> tuple[RangeCache, FileVersion] | None:
        """The disk cache and the version of a remote `path` it holds, when that is the
        version this job has seen of the file (any, before the job fetched any of it)."""
        if self.cache is None or "://" not in path:
            return None
        cached = self._cached_version(path)
        seen = self._versions.get(without_query(path))
        if cached is None or (seen is not None and not seen.same_as(cached)):
            return None
        return self.cache, cached

    def _recording_cache(self, path: str) -> tuple[RangeCache, FileVersion] | None:
        """The disk cache and the version of `path` this job fetched, recorded there; None
        when another version is recorded there (or the bytes are local, or no cache)."""
        version = self._versions.get(without_query(path))
        if self.cache is None or version is None:
            return None
        recorded = self._cached_version(path)
        if recorded is None or not recorded.same_as(version):
            recorded = self.cache.version(path) or self.cache.record(path, version)
            self._cache_versions[without_query(path)] = recorded
        return (self.cache, recorded) if recorded.same_as(version) else None

    def _cached(self, path: str, start: int | None, stop: int | None) -> bytes | None:
        """Bytes `start:stop` of a remote `path` (its prefix without a range) from the disk
        cache, if they are there and of the version this job has seen of the file."""
        usable = self._usable_cache(path)
        data = usable[0].get(path, start, stop, version=usable[1]) if usable else None
        if data is not None:
            self._used_cached.add(without_query(path))
            self.counters.from_disk += 1
        return data

    def _keep(self, path: str, start: int | None, stop: int | None, data: bytes) -> None:
        """Put fetched bytes of a remote `path` in the disk cache, under its version."""
        recording = self._recording_cache(path)
        if recording is not None:
            recording[0].put(path, start, stop, data, version=recording[1])

    def _check_version(self, url: str, version: FileVersion) -> None:
        """Compare the version of `url` an answer reports with the one this job saw before
        and the one whose bytes the cache holds: a file that changed during the job fails its
        read; cached bytes of another version are dropped, and fail the read when the job
        used some of them."""
        key = without_query(url)
        seen = self._versions.setdefault(key, version)
        if not seen.same_as(version):
            raise RangeError(
                url,
                f"the file changed while it was read ({seen.describe()}, now {version.describe()})",
            )
        cached = self._cached_version(url, fresh=True) if self.cache is not None else None
        if self.cache is None or cached is None or cached.same_as(version):
            return
        self.cache.forget(url)
        self._cache_versions.pop(key, None)
        if key in self._used_cached:
            raise RangeError(
                url,
                f"the file changed during the run: bytes cached from it were of another version "
                f"({cached.describe()}, now {version.describe()}); a new attempt reads it afresh",
            )

    # ---- fetching -------------------------------------------------------------------------

    def head(self, path: str) -> bytes | None:
        """The first bytes of `path` fetched so far (its header), None before any."""
        prefix = self._prefixes.get(path)
        return None if prefix is None else prefix.data

    def abandon(self, reason: str) -> None:
        """End every request under way and refuse new ones with `reason`, until `resume`.

        A reader whose feature failed with one file abandons the reads of its other files
        rather than cancelling them from outside: the TIFF parser drives them (async-tiff, in
        Rust), and a task cancelled under it leaves coroutines of this store never awaited and
        requests running on a session about to close. Abandoned, each request ends at once
        with an error the parser passes on, and the reader waits for them all."""
        self._abandoned = reason
        for task in list(self._running):
            task.cancel()

    @property
    def abandoned(self) -> str | None:
        """Why the requests were abandoned (`abandon`), None while they are served."""
        return self._abandoned

    def resume(self) -> None:
        """Serve requests again after `abandon`."""
        self._abandoned = None

    async def _fetch(self, path: str, start: int, stop: int) -> bytes:
        if self._abandoned is not None:
            raise RangeError(path, self._abandoned)
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            if "://" not in path:
                try:
                    return await asyncio.to_thread(_read_file, path, start, stop)
                except OSError as exc:
                    raise RangeError(path, f"{type(exc).__name__}: {exc.strerror}") from None
            return await self._fetch_http(path, start, stop)
        except RangeError as exc:
            self.failures.setdefault(path, exc.reason)
            raise
        except asyncio.CancelledError:
            if self._abandoned is None:
                raise
            raise RangeError(path, self._abandoned) from None  # the parser passes it on
        finally:
            if task is not None:
                self._running.discard(task)

    async def _fetch_http(self, url: str, start: int, stop: int) -> bytes:
        import aiohttp

        session = self._client()
        assert self._slots is not None
        headers = {"Range": f"bytes={start}-{stop - 1}"}
        # A throttled answer (429, 503) says the store is alive and busy: it has its own, larger
        # budget of retries, so that a run sharing a busy store waits instead of failing.
        failures = throttles = 0
        while True:
            await self._wait_if_paused(url)
            attempt = failures + throttles
            try:
                async with self._slots, session.get(url, headers=headers) as response:
                    self.counters.requests += 1
                    if response.status in (200, 206):
                        data = await response.read()
                        self.counters.bytes += len(data)
                        self._check_version(url, _answer_version(response, len(data)))
                        # a server ignoring Range answers 200 with the whole file
                        return data[start:stop] if response.status == 200 else data
                    if response.status == 416:  # past the end: what there is, which is nothing
                        return b""
                    throttled = response.status in THROTTLE_STATUS
                    exhausted = (
                        throttles >= THROTTLE_RETRIES if throttled else failures >= self.max_retries
                    )
                    if response.status not in RETRY_STATUS or exhausted:
                        raise RangeError(url, f"HTTP {response.status} {response.reason}")
                    wait = retry_after(response.headers.get("Retry-After"))
                    reason = f"HTTP {response.status}"
                    if throttled:
                        throttles += 1
                        if wait is None:  # throttled: everyone backs off
                            wait = RETRY_BACKOFF_S * 2 ** min(throttles - 1, 6)
                    else:
                        failures += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                if failures >= self.max_retries:
                    raise RangeError(url, _describe(exc)) from None
                failures += 1
                wait, reason = None, _describe(exc)
            delay = wait if wait is not None else RETRY_BACKOFF_S * 2**attempt
            delay = min(delay, MAX_RETRY_WAIT_S)
            self.counters.retries += 1
            log.info("%s: %s, retry %d in %.1f s", without_query(url), reason, attempt + 1, delay)
            if wait is not None:  # the store asked everyone to wait: every job of the run
                self._paused_until = max(self._paused_until, time.monotonic() + delay)
                if self.shared_pause is not None:
                    self.shared_pause.hold(url, delay)
            else:
                await asyncio.sleep(delay)

    async def _wait_if_paused(self, url: str) -> None:
        pause = self._paused_until - time.monotonic()
        if self.shared_pause is not None:
            pause = max(pause, self.shared_pause.remaining(url))
        if pause > 0:
            self.counters.waited_s += pause
            await asyncio.sleep(pause)

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                connect=self.connect_timeout_s, sock_read=self.read_timeout_s
            )
            connector = aiohttp.TCPConnector(limit=self.max_in_flight, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, auto_decompress=False
            )
            self._slots = asyncio.Semaphore(self.max_in_flight)
        return self._session


_CONTENT_RANGE_SIZE = re.compile(r"/(\d+)\s*$")


def _answer_version(response: aiohttp.ClientResponse, length: int) -> FileVersion:
    """The file's version as an answer reports it: its size (`Content-Range`, or the body of
    a whole-file answer) and its ETag, else its Last-Modified."""
    size: int | None = length if response.status == 200 else None
    match = _CONTENT_RANGE_SIZE.search(response.headers.get("Content-Range", ""))
    if match:
        size = int(match.group(1))
    tag = response.headers.get("ETag") or response.headers.get("Last-Modified")
    return FileVersion(size, tag)


def _read_file(path: str, start: int, stop: int) -> bytes:
    with open(path, "rb") as handle:
        return os.pread(handle.fileno(), stop - start, start)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return without_query(f"{type(exc).__name__}: {exc}")


def retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date); None when
    there is none or it does not parse."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def merge_ranges(ranges: Sequence[tuple[int, int]], gap: int = MERGE_GAP) -> list[tuple[int, int]]:
    """Half-open byte ranges sorted and merged where they overlap or are less than `gap`
    apart: what to request."""
    merged: list[list[int]] = []
    for start, stop in sorted(ranges):
        if merged and start - merged[-1][1] < gap:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(start, stop) for start, stop in merged]


# ---- hrefs to URLs ---------------------------------------------------------------------------

_S3 = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")
S3_REGION = os.environ.get("AWS_REGION", "us-west-2")


def resolve_href(
    href: str,
    *,
    sign: Callable[[str], str] | None = None,
    s3_endpoint: str | None = None,
) -> str:
    """The URL (or local path) to fetch `href` from.

    `s3://BUCKET/KEY`: under `s3_endpoint` (path style) when set, else the bucket's public
    HTTPS address (Earth Search's buckets are public; a private bucket needs GDAL's S3 client,
    which signs: the stackstac loader, or sitsflow's reader for files that are not TIFFs, such
    as CDSE's JPEG 2000, `sitsflow.pixels.tiles`). `sign` (Planetary Computer) adds the SAS
    token.
    """
    match = _S3.match(href)
    if match:
        if s3_endpoint:
            href = f"{s3_endpoint.rstrip('/')}/{match['bucket']}/{match['key']}"
        else:
            href = f"https://{match['bucket']}.s3.{S3_REGION}.amazonaws.com/{match['key']}"
    if href.startswith("file://"):
        href = href.removeprefix("file://")
    if sign is not None and href.startswith(("http://", "https://")):
        href = sign(href)
    return href


def url_counters(store: RangeStore) -> dict[str, Any]:
    """The store's counters as a plain dict (for logs)."""
    counters = store.counters
    return {
        "requests": counters.requests,
        "MB": round(counters.bytes / 1e6, 3),
        "retries": counters.retries,
        "from memory": counters.from_memory,
    }
