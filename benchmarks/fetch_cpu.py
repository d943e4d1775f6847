"""CPU of fetching alone: what any reader pays to move the bytes, apart from decoding them.

    python benchmarks/fetch_cpu.py results/benchmarks/heldout/sentinel-2-l2a \\
        [--megabytes 1570] [--range-kb 280] [--in-flight 32] [--repeat 2]

Fetches `--megabytes` in ranges of `--range-kb` (the held-out archive's 1 575 MB of distinct
blocks are 5 272 ranges of about that size) from the archive's band files, on the test STAC
server in another process at 50 ms per request, with obstore's HTTP store (what the floor tool
and async_tiff use) and with aiohttp (sitsflow's `RangeStore`), alternately, `--in-flight` at
once; prints the wall and CPU seconds of each (this process, every thread). Nothing is decoded
or kept. `benchmarks/tile_aware.py` counts this in sitsflow's CPU beyond decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.full_archive import ALIASES_FILE  # noqa: E402
from sitsflow.testing.stac_server import ServerProcess  # noqa: E402

Ranges = list[tuple[str, int, int]]


def plan_ranges(archive: Path, total: int, size: int) -> Ranges:
    """(path under /data, start, stop) of `total` bytes in ranges of `size`, spread over the
    archive's band files (not the small SCL files), each range inside its file."""
    aliases = json.loads((archive / ALIASES_FILE).read_text())
    files = [
        (alias, (archive / target).stat().st_size)
        for alias, target in aliases.items()
        if "SCL" not in alias
    ]
    ranges = []
    for i in range(total // size):
        alias, length = files[i % len(files)]
        start = (i * 7919 * size) % (length - size)
        ranges.append((alias, start, start + size))
    return ranges


async def with_obstore(base: str, ranges: Ranges, in_flight: int) -> int:
    from obstore.store import HTTPStore

    store = HTTPStore.from_url(base, client_options={"allow_http": True})
    slots = asyncio.Semaphore(in_flight)

    async def one(path: str, start: int, stop: int) -> int:
        async with slots:
            data = await store.get_range_async(path, start=start, end=stop)
        return len(memoryview(data))

    return sum(await asyncio.gather(*(one(*r) for r in ranges)))


async def with_aiohttp(base: str, ranges: Ranges, in_flight: int) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(path: str, start: int, stop: int) -> int:
            headers = {"Range": f"bytes={start}-{stop - 1}"}
            async with session.get(f"{base}/{path}", headers=headers) as response:
                response.raise_for_status()
                return len(await response.read())

        return sum(await asyncio.gather(*(one(*r) for r in ranges)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archive", type=Path, help="a full_archive.py directory")
    parser.add_argument("--megabytes", type=float, default=1570)
    parser.add_argument("--range-kb", type=float, default=280)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    ranges = plan_ranges(args.archive, int(args.megabytes * 1e6), int(args.range_kb * 1e3))
    clients: dict[str, Callable[[str, Ranges, int], Awaitable[int]]] = {
        "obstore": with_obstore,
        "aiohttp": with_aiohttp,
    }
    server = ServerProcess(args.archive, args.latency_ms)
    try:
        for _ in range(args.repeat):
            for name, fetch in clients.items():
                wall, cpu = time.perf_counter(), time.process_time()
                got = asyncio.run(fetch(server.data_url, ranges, args.in_flight))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                print(
                    f"{name:<8} {len(ranges)} ranges, {got / 1e6:.0f} MB: wall {wall:.1f} s, "
                    f"CPU {cpu:.2f} s ({1e3 * cpu / (got / 1e6):.2f} ms per MB)",
                    flush=True,
                )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
