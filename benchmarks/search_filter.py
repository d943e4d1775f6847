"""Search benchmark: the time of one item search over a large archive (local search, test server).

    python benchmarks/search_filter.py [--n 50000] [--repeat 5]

`sitsflow.catalog.filters.filter_items` is what both the local search and the test STAC server
(`sitsflow.testing.stac_server`) run for every search; in the scale benchmarks the server
filters tens of thousands of items per search. The archive: `--n` copies of the real items
recorded in tests/fixtures/stac/ (Earth Search and Planetary Computer, assets and all), each
moved to a cell of a 1 degree grid and given its own date and cloud cover, so that a small
bbox finds a few dozen of them.

Each search is timed `--repeat` times; the table gives the fastest run in milliseconds and the
number of items found. The `query` and `filter` searches over every item measure the CQL2 match
itself (the feature search tests space and time first, which leaves it few items). Not a test:
timings depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from shapely import affinity
from shapely.geometry import mapping, shape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitsflow.catalog.filters import filter_items, parse_datetime_interval  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "stac"
GRID_COLUMNS, GRID_ROWS = 100, 50  # 1 degree cells, longitudes -50..50, latitudes -25..25
FIRST_DAY = date(2024, 1, 1)
QUERY = {"eo:cloud_cover": {"lt": 10}}
FILTER = "eo:cloud_cover < 10"  # the same as CQL2 text
FEATURE_BBOX = [10.2, 5.2, 10.3, 5.3]  # inside one grid cell, like a buffered point feature


def recorded_items() -> list[dict]:
    """Every recorded item with a footprint, from the fixtures' ItemCollections and items."""
    items = []
    for path in sorted(FIXTURES.rglob("*.json")) + sorted(FIXTURES.rglob("*.geojson")):
        document = json.loads(path.read_text())
        if document.get("type") == "Feature":
            items.append(document)
        else:
            items.extend(document.get("features") or [])
    return [item for item in items if item.get("geometry")]


def make_archive(n: int) -> list[dict]:
    """`n` items: recorded ones moved over the grid, each with its own id, date and cloud cover.

    Assets and links are shared between the copies (they are only read), which keeps 50 000
    items within a few hundred MB.
    """
    templates = recorded_items()
    archive = []
    for index in range(n):
        template = templates[index % len(templates)]
        cell = index % (GRID_COLUMNS * GRID_ROWS)
        west = -50 + cell % GRID_COLUMNS
        south = -25 + cell // GRID_COLUMNS
        footprint = shape(template["geometry"])
        minx, miny, _, _ = footprint.bounds
        moved = affinity.translate(footprint, west - minx, south - miny)
        item = dict(template)
        item["id"] = f"{template['id']}-{index}"
        item["geometry"] = mapping(moved)
        item["bbox"] = list(moved.bounds)
        item["properties"] = {
            **copy.deepcopy(template["properties"]),
            "datetime": f"{FIRST_DAY + timedelta(days=index % 365)}T10:00:00Z",
            "eo:cloud_cover": float(index * 37 % 100),
        }
        archive.append(item)
    return archive


def best_of(repeat: int, search: Callable[[], list[dict]]) -> tuple[float, int]:
    """Fastest of `repeat` runs of `search`, in milliseconds, and the number of items found."""
    times, found = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        found = len(search())
        times.append((time.perf_counter() - start) * 1000)
    return min(times), found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="items in the archive")
    parser.add_argument("--repeat", type=int, default=5, help="runs per search")
    args = parser.parse_args(argv)
    items = make_archive(args.n)
    year = parse_datetime_interval("2024-01-01/2024-12-31")
    searches: dict[str, Callable[[], list[dict]]] = {
        "feature: collection+bbox+datetime+query": lambda: filter_items(
            items,
            collections=["sentinel-2-l2a"],
            bbox=FEATURE_BBOX,
            datetime_range=year,
            query=QUERY,
        ),
        "datetime+query, every item": lambda: filter_items(items, datetime_range=year, query=QUERY),
        "query, every item": lambda: filter_items(items, query=QUERY),
        "filter (CQL2 text), every item": lambda: filter_items(items, filter=FILTER),
    }
    print(f"{args.n} items, best of {args.repeat} runs")
    print(f"{'search':<45} {'ms':>9} {'found':>7}")
    for name, search in searches.items():
        milliseconds, found = best_of(args.repeat, search)
        print(f"{name:<45} {milliseconds:>9.1f} {found:>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
