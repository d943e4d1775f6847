"""The run-wide disk cache of fetched byte ranges (sitsflow/catalog/range_cache.py): a job finds
what another job of the run fetched, a file that changed is never read from two versions, the
cache stays within its bound, and concurrent jobs never see half a range."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import threading
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest
from shapely.geometry import Point

from sitsflow.catalog.range_cache import FileVersion, RangeCache, remove_range_cache
from sitsflow.catalog.ranges import RangeError, RangeStore
from sitsflow.testing.compare import compare_results
from sitsflow.testing.stac_server import StacServer
from tests.conftest import shared_run_config
from tests.helpers import dry_run_jobs, local_http_server

FILE = bytes(range(256)) * 64  # 16 KiB


class Files(BaseHTTPRequestHandler):
    """Serves `Files.body` at any path with byte ranges, `Content-Range` and `ETag`
    (`Files.etag`); counts the requests."""

    protocol_version = "HTTP/1.1"
    body = FILE
    etag = '"v1"'
    requests = 0
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        with self.lock:
            type(self).requests += 1
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        assert match, self.headers
        body = type(self).body
        first, last = int(match[1]), min(int(match[2]), len(body) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
        self.send_header("ETag", type(self).etag)
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self.wfile.write(body[first : last + 1])

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def server():
    Files.body, Files.etag, Files.requests = FILE, '"v1"', 0
    with local_http_server(Files) as url:
        yield url


def read_as_a_job(url: str, cache: RangeCache, ranges: list[tuple[int, int]]) -> RangeStore:
    """What a job's reader does with a file: its header (the first request), then tiles,
    which must be the file's bytes; returns the store, whose counters say what came from
    where."""

    async def scenario() -> RangeStore:
        store = RangeStore(prefix_bytes=1024, cache=cache)
        try:
            header = await store.get_range_async(url, start=0, end=16)
            starts, stops = zip(*ranges, strict=True)
            tiles = await store.get_ranges_async(url, starts=list(starts), ends=list(stops))
        finally:
            await store.close()
        assert [header, *tiles] == [Files.body[:16], *(Files.body[a:b] for a, b in ranges)]
        return store

    return asyncio.run(scenario())


def test_a_job_reads_what_another_job_fetched_from_disk(server, tmp_path):
    url = f"{server}/T31UFS/B04.tif"
    directory = tmp_path / "cache"
    first = read_as_a_job(url, RangeCache(directory, 10**6), [(4000, 5000), (9000, 9100)])
    assert first.counters.requests == 3 and first.counters.from_disk == 0
    # another job (another store, the same directory): header and tiles from disk
    second = read_as_a_job(url, RangeCache(directory, 10**6), [(9000, 9100), (4000, 5000)])
    assert second.counters.requests == 0 and second.counters.from_disk == 3
    # a tile nobody fetched yet is fetched, and the file's version checked against the cache
    third = read_as_a_job(url, RangeCache(directory, 10**6), [(4000, 5000), (12000, 12500)])
    assert third.counters.requests == 1 and third.counters.from_disk == 2
    assert Files.requests == 4
    assert directory.exists()  # a run-wide cache stays for the run's other jobs
    remove_range_cache(directory)
    assert not directory.exists()


def test_a_file_that_changed_is_never_read_from_two_versions(server, tmp_path):
    url = f"{server}/T31UFS/B04.tif"
    read_as_a_job(url, RangeCache(tmp_path / "cache"), [(4000, 5000)])
    Files.body, Files.etag = bytes(reversed(FILE)), '"v2"'  # same size, new ETag
    # a job that took the header from the cache, then fetches a tile of the new version: it
    # would mix two versions, so that read fails and the cached bytes are dropped
    with pytest.raises(RangeError, match=r"changed during the run.*\"v1\".*\"v2\""):
        read_as_a_job(url, RangeCache(tmp_path / "cache"), [(6000, 6100)])
    assert RangeCache(tmp_path / "cache").version(url) is None
    # the next attempt reads the new version, header included, and caches it
    fresh = read_as_a_job(url, RangeCache(tmp_path / "cache"), [(6000, 6100), (4000, 5000)])
    assert fresh.counters.from_disk == 0
    assert RangeCache(tmp_path / "cache").version(url) == FileVersion(len(FILE), '"v2"')


def test_a_job_that_used_nothing_cached_replaces_an_old_version(tmp_path, server):
    url = f"{server}/a.tif"
    cache = RangeCache(tmp_path / "cache")
    old = cache.record(url, FileVersion(len(FILE), '"v0"'))
    cache.put(url, 4000, 5000, b"old bytes", version=old)
    # its header is not cached: fetched, the old version's tiles dropped, nothing mixed
    store = read_as_a_job(url, RangeCache(tmp_path / "cache"), [(4000, 5000)])
    assert store.counters.from_disk == 0
    assert cache.version(url) == FileVersion(len(FILE), '"v1"')
    assert cache.get(url, 4000, 5000, version=FileVersion(len(FILE), '"v1"')) == FILE[4000:5000]
    assert cache.get(url, 4000, 5000, version=old) is None


@pytest.mark.parametrize("tile_ranges", [True, False])
def test_a_job_keeps_tiles_one_by_one_not_the_runs_it_fetched(server, tmp_path, tile_ranges):
    """Neighbouring tiles are fetched as one run of bytes, but kept tile by tile (what later
    reads look up); a reader that keeps tiles decoded (`keep_tile_ranges` off) keeps none of
    their bytes, only the header."""
    url = f"{server}/T31UFS/B04.tif"

    async def job() -> None:
        store = RangeStore(prefix_bytes=1024, cache=RangeCache(tmp_path / "cache"))
        store.keep_tile_ranges = tile_ranges
        await store.get_range_async(url, start=0, end=16)
        await store.get_ranges_async(url, starts=[4000, 5000], ends=[5000, 6000])
        await store.close()
        assert store.counters.requests == 2  # the header, then one run of both tiles

    asyncio.run(job())
    kept = {path.name for path in (tmp_path / "cache").rglob("*-*") if path.is_file()}
    assert kept == ({"4000-5000", "5000-6000"} if tile_ranges else set())


def test_a_decoded_tile_is_kept_as_decoded_and_only_for_its_file_version(server, tmp_path):
    url = f"{server}/T31UFS/B04.tif"
    tile = np.arange(64, dtype=np.uint16).reshape(8, 8)

    async def job(keep: bool, first: int = 0) -> tuple[np.ndarray | None, RangeStore]:
        store = RangeStore(prefix_bytes=1024, cache=RangeCache(tmp_path / "cache"))
        await store.get_range_async(url, start=first, end=first + 16)  # the header, or other
        if keep:
            assert store.claim_tile(url, 4000, 5000)
            store.keep_tile(url, 4000, 5000, tile)
            (entry,) = (tmp_path / "cache").rglob("4000-5000.tile")
            assert entry.stat().st_nlink == 2  # written through the claim
            store.release_tile(url, 4000, 5000)
            assert entry.stat().st_nlink == 1
        found = store.cached_tile(url, 4000, 5000)
        await store.close()
        return (found.values if found is not None else None), store

    asyncio.run(job(keep=True))
    again, store = asyncio.run(job(keep=False))
    assert again is not None and again.dtype == np.uint16 and (again == tile).all()
    assert store.counters.tiles_from_disk == 1
    Files.body, Files.etag = bytes(reversed(FILE)), '"v2"'
    # the file changed: a job whose first request (not cached) says so finds no tile of the
    # old version (within a run, a file is not fetched again only to see whether it changed)
    stale, _ = asyncio.run(job(keep=False, first=8000))
    assert stale is None and RangeCache(tmp_path / "cache").version(url) is not None
    assert RangeCache(tmp_path / "cache").version(url) == FileVersion(len(FILE), '"v2"')


@pytest.mark.parametrize("damage", ["empty", "header only", "short", "not a tile"])
def test_a_damaged_decoded_tile_is_not_found(tmp_path, damage):
    """An entry that is not a whole decoded tile (a disk that filled, a file from elsewhere)
    is a miss, never values; a whole one maps the tile as it was kept."""
    from sitsflow.catalog.range_cache import TILE_HEADER

    cache, version = RangeCache(tmp_path / "cache"), FileVersion(100, '"v1"')
    url, tile = "https://example.com/B04.tif", np.arange(64, dtype=">u2").reshape(8, 8)
    cache.put_array(url, 10, 90, tile, version=version)
    kept = cache.get_array(url, 10, 90, version=version)
    assert kept.dtype == tile.dtype and (kept == tile).all()
    (entry,) = (tmp_path / "cache").rglob("10-90.tile")
    data = entry.read_bytes()
    damaged = {
        "empty": b"",
        "header only": data[: TILE_HEADER.size],
        "short": data[:-2],
        "not a tile": b"\x93NUMPY" + data[7:],
    }[damage]
    entry.write_bytes(damaged)
    assert cache.get_array(url, 10, 90, version=version) is None


def test_a_decoded_tile_is_read_only_in_the_rows_asked_for(tmp_path):
    """`get_rows` reads rows first..stop of a kept tile (clipped to those it has) and says
    which they are; an entry shorter than its header says is a miss even when the rows asked
    for are all there."""
    cache, version = RangeCache(tmp_path / "cache"), FileVersion(100, '"v1"')
    url, tile = "https://example.com/B04.tif", np.arange(80, dtype=np.uint16).reshape(10, 8)
    cache.put_array(url, 10, 90, tile, version=version)
    middle = cache.get_rows(url, 10, 90, (3, 6), version=version)
    assert (middle.first, middle.height) == (3, 10)
    np.testing.assert_array_equal(middle.values, tile[3:6])
    bottom = cache.get_rows(url, 10, 90, (7, 40), version=version)
    assert bottom.first == 7 and (bottom.values == tile[7:]).all()
    (entry,) = (tmp_path / "cache").rglob("10-90.tile")
    entry.write_bytes(entry.read_bytes()[:-2])
    assert cache.get_rows(url, 10, 90, (0, 2), version=version) is None


def test_a_tile_is_claimed_by_one_job_until_released_or_stale(tmp_path):
    """A job claims a tile before fetching it: another job's claim fails while the first
    holds it, succeeds once it is released, and takes over a claim left by a dead job; claims
    are not counted as cached bytes."""
    import os
    import time

    from sitsflow.catalog.range_cache import CLAIM_STALE_S

    url, version = "https://example.com/B04.tif", FileVersion(100, '"v1"')
    first, second = RangeCache(tmp_path / "cache"), RangeCache(tmp_path / "cache")
    assert first.claim(url, 10, 90, version=version)
    assert not second.claim(url, 10, 90, version=version)
    assert second.claimed(url, 10, 90, version=version)
    assert second.claim(url, 90, 170, version=version)  # another tile
    first.release(url, 10, 90, version=version)
    assert not second.claimed(url, 10, 90, version=version)
    assert second.claim(url, 10, 90, version=version)
    (claim,) = (tmp_path / "cache").rglob("10-90.claim")
    old = time.time() - CLAIM_STALE_S - 1
    os.utime(claim, (old, old))  # its job died
    assert not first.claimed(url, 10, 90, version=version)
    assert first.claim(url, 10, 90, version=version)
    assert first.claimed(url, 10, 90, version=version)
    first.count()
    assert first.usage() == (0, 0)


def test_a_claimed_tile_is_kept_through_its_claim(tmp_path):
    """The job holding a tile's claim writes the tile into the claim file and links it into
    place: whole, counted once, and still there once the claim is released; a claim taken
    over from a job that wrote part of it is rewritten in place, never read half written."""
    url, version = "https://example.com/B04.tif", FileVersion(100, '"v1"')
    tile = np.arange(64, dtype=np.uint16).reshape(8, 8)
    cache = RangeCache(tmp_path / "cache", count_every=1)
    assert cache.claim(url, 10, 90, version=version)
    (claim,) = (tmp_path / "cache").rglob("10-90.claim")
    claim.write_bytes(b"\xff" * 40)  # a dead job's start
    assert cache.get_rows(url, 10, 90, version=version) is None
    cache.put_array(url, 10, 90, tile, version=version, claimed=True)
    (entry,) = (tmp_path / "cache").rglob("10-90.tile")
    assert entry.stat().st_ino == claim.stat().st_ino  # one file, no temporary of its own
    cache.release(url, 10, 90, version=version)
    assert not claim.exists() and not list((tmp_path / "cache").rglob("*.part"))
    np.testing.assert_array_equal(cache.get_array(url, 10, 90, version=version), tile)
    assert cache.usage()[0] == tile.nbytes == entry.stat().st_size - 32
    # a claim that went (another job took it over and released it): kept the usual way
    assert cache.claim(url, 90, 170, version=version)
    next((tmp_path / "cache").rglob("90-170.claim")).unlink()
    cache.put_array(url, 90, 170, tile, version=version, claimed=True)
    np.testing.assert_array_equal(cache.get_array(url, 90, 170, version=version), tile)


def test_versions_differ_only_in_what_both_know():
    assert FileVersion(10, '"a"').same_as(FileVersion(10, None))
    assert FileVersion(None, None).same_as(FileVersion(10, '"a"'))
    assert not FileVersion(10, '"a"').same_as(FileVersion(11, '"a"'))
    assert not FileVersion(10, '"a"').same_as(FileVersion(10, '"b"'))


def test_the_cache_stays_within_its_bound_dropping_the_least_recently_used(tmp_path):
    cache = RangeCache(tmp_path / "cache", max_bytes=10_000, count_every=1)
    url = "https://example.org/a.tif"
    version = cache.record(url, FileVersion(10**6, None))
    for index in range(30):
        cache.put(url, index * 1000, index * 1000 + 1000, bytes([index]) * 1000, version=version)
        if index == 5:
            assert cache.get(url, 0, 1000, version=version) is not None  # recently used
        held, peak = cache.usage()
        assert held <= 10_000 and peak <= 10_000
    on_disk = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*-*") if f.is_file())
    assert on_disk == cache.usage()[0] <= 10_000
    assert cache.get(url, 29000, 30000, version=version) == bytes([29]) * 1000  # the newest
    assert cache.get(url, 1000, 2000, version=version) is None  # an old one, unused since


def test_a_job_counts_what_it_stored_in_steps_and_when_it_closes(tmp_path):
    cache = RangeCache(tmp_path / "cache", count_every=5_000)
    url = "https://example.org/a.tif"
    version = cache.record(url, FileVersion(10**6, None))
    for index in range(4):
        cache.put(url, index * 1000, index * 1000 + 1000, bytes(1000), version=version)
    assert cache.usage() == (0, 0)  # not a step yet
    cache.put(url, 4000, 5000, bytes(1000), version=version)
    assert cache.usage() == (5000, 5000)
    cache.put(url, 5000, 6000, bytes(1000), version=version)
    cache.put(url, 0, 1000, bytes(1000), version=version)  # stored already: not counted again
    cache.close()
    on_disk = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*-*") if f.is_file())
    assert cache.usage() == (6000, 6000) and on_disk == 6000


def _put_many(directory: str, worker: int) -> None:
    cache = RangeCache(directory, max_bytes=400_000, count_every=10_000)
    url = "https://example.org/shared.tif"
    version = cache.record(url, FileVersion(10**6, '"x"'))
    for index in range(200):
        start = (index * 7 + worker) % 100 * 1000
        cache.put(url, start, start + 1000, bytes([start // 1000]) * 1000, version=version)
        data = cache.get(url, start, start + 1000, version=version)
        assert data is None or data == bytes([start // 1000]) * 1000
    cache.close()


def test_concurrent_jobs_never_see_half_a_range_and_keep_the_bound(tmp_path):
    directory = str(tmp_path / "cache")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_put_many, args=(directory, w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    cache = RangeCache(directory)
    url = "https://example.org/shared.tif"
    for start in range(0, 100_000, 1000):
        data = cache.get(url, start, start + 1000, version=FileVersion(10**6, '"x"'))
        assert data is None or data == bytes([start // 1000]) * 1000
    held, peak = cache.usage()
    on_disk = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*-*") if f.is_file())
    assert held == on_disk and peak <= 400_000


def test_local_files_are_read_from_where_they_are(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(FILE)
    cache = RangeCache(tmp_path / "cache")

    async def scenario() -> None:
        store = RangeStore(prefix_bytes=1024, cache=cache)
        await store.get_range_async(str(path), start=0, end=16)
        await store.get_ranges_async(str(path), starts=[4000], ends=[5000])
        await store.close()

    asyncio.run(scenario())
    assert cache.usage() == (0, 0) and not list((tmp_path / "cache").rglob("*-*"))


# ---- in a run -------------------------------------------------------------------------------

NEIGHBOURS = {  # three points within 700 m (as test_dataset's): their windows share tiles
    "p1": Point(8.491383, 49.854370),
    "p1-east": Point(8.497383, 49.854370),
    "p1-north": Point(8.491383, 49.859370),
}


@pytest.mark.slow  # three workflow runs over HTTP, about 20 s on 2 cores
def test_jobs_of_a_run_fetch_shared_tiles_once_and_make_the_same_cubes(
    demo_archive, make_workdir, snakemake
):
    """Per-feature jobs, and batches of one feature each, fetch a tile their neighbours
    fetched before from the run's cache: fewer bytes from the server, the same cubes, and no
    cache left when the run ends."""
    results = {}
    with StacServer(demo_archive.parent) as server:
        for name, overrides in {
            "uncached": {"range_cache": {"max_gb": 0}, "batch_size": 0},
            "per-feature": {"batch_size": 0},
            "batches": {"batch_size": 1},
        }.items():
            workdir = make_workdir(
                f"cache-{name}",
                NEIGHBOURS,
                **{**shared_run_config(server.url), "indices": [], **overrides},
            )
            server.reset_stats()
            snakemake(workdir, "--cores", "1")
            results[name] = (workdir, server.stats["data_bytes"])
    for name in ("per-feature", "batches"):
        workdir, fetched = results[name]
        assert fetched < 0.75 * results["uncached"][1], (name, fetched, results["uncached"][1])
        assert compare_results(workdir / "results", results["uncached"][0] / "results") == {}
        assert not (workdir / ".sitsflow" / "range-cache").exists()
    batches = results["batches"][0]
    logs = "".join(p.read_text() for p in (batches / "logs" / "cube").iterdir())
    assert re.search(r"[1-9]\d* decoded tiles from the disk cache", logs), logs[-2000:]
    # batch mode draws no quicklook by default (config `quicklooks`), and misses none
    assert not (batches / "results" / "quicklooks").exists()
    assert dry_run_jobs(snakemake(batches, "--dry-run")) == {}


def test_the_members_of_a_feature_s_search_group_come_from_the_search_index(tmp_path):
    """A per-feature cube job keeps its tiles in the run-wide cache only when its search group
    has other members (scripts/cube.py)."""
    from sitsflow.workflow.stages import group_members

    index = tmp_path / "index.json"
    groups = {"e008n48": {"members": 1}, "e010n50": {"members": 3}}
    index.write_text(json.dumps({"groups": groups}))
    assert group_members("results/searches/e008n48.json", index) == 1
    assert group_members("results/searches/e010n50.json", index) == 3
    assert group_members("results/searches/w030n40.json", index) is None
    assert group_members("results/searches/e008n48.json", tmp_path / "missing.json") is None
