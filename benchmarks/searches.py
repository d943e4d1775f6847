"""Search benchmark (issue 14): how many `/search` requests a run sends, per feature set.

    python benchmarks/searches.py [--sets clustered150 rand_pts europe10k] [--per-feature]

A footprint-only catalog (no COGs: a search never reads one) of Sentinel-2 tiles laid out as
the real grid is, 100 km apart on every UTM zone from 29 to 35 (109.8 km footprints, so
neighbours overlap), one item per tile every `--revisit-days` over 2024, each a copy of a real
Earth Search v1 item (`../shared/fixtures/stac/earth-search-v1`) with its own id, footprint,
date, tile and a cloud cover drawn uniformly. It is served over 127.0.0.1 by sitsflow's test
STAC server (pages of at most 500 items, the schema's `stac.page_size`), and each feature set
runs only the workflow's `search` job (the run-wide checkpoint): the server counts the
requests.

Feature sets: `clustered150` (150 points within 5 km of the centres of three tiles, field
plots), `rand_pts` (the 24 points of ../shared/data/rand_pts.geojson, one per tile) and
`europe10k` (10 000 points drawn uniformly over 10 W..30 E, 36..62 N). The job's config is the
tutorial's (2024, `eo:cloud_cover < 10`; `--no-filter`: none) with the schema's defaults
otherwise (`stac.group_degrees` 2, `stac.page_size` 500). `--per-feature` adds the same run with
`stac.group_degrees: 0` (one search per feature, what every peer does) for the sets of at most
`--per-feature-max` features.

Prints one table: features, groups, items found, `/search` requests (pages included),
requests per feature, wall time of the search job. Not a test: counts depend on the catalog.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml
from pyproj import Transformer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import check, snakemake  # noqa: E402
from sitsflow.testing.stac_server import StacServer  # noqa: E402

SHARED = REPO.parent / "shared"
TEMPLATE = SHARED / "fixtures/stac/earth-search-v1/search_s2l2a+landsat_point_13TDE_2023-10-08.json"
RAND_PTS = SHARED / "data/rand_pts.geojson"
YEAR_START, YEAR_END = date(2024, 1, 1), date(2024, 12, 31)
ZONES = range(29, 36)  # 12 W .. 30 E
NORTHINGS_KM = range(3900, 7000, 100)  # 35 N .. 63 N
EASTINGS_KM = range(100, 900, 100)
TILE_KM = 109.8
CLUSTER_CENTRES = [(8.49, 49.85), (11.18, 50.01), (-1.25, 44.55)]
CLUSTER_RADIUS_DEG = 0.045  # about 5 km


def tile_footprints() -> list[tuple[str, int, list[list[float]]]]:
    """(tile name, EPSG, lon/lat ring) of the grid's tiles: every zone's 100 km cells whose
    centre lies within a degree of the zone (real MGRS tiles overlap the zone edges too)."""
    tiles = []
    for zone in ZONES:
        epsg = 32600 + zone
        to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
        west = -180 + 6 * (zone - 1)
        for north in NORTHINGS_KM:
            for east in EASTINGS_KM:
                x0, y0 = east * 1000.0, north * 1000.0
                x1, y1 = x0 + TILE_KM * 1000, y0 + TILE_KM * 1000
                centre_lon, _ = to_lonlat.transform((x0 + x1) / 2, (y0 + y1) / 2)
                if not west - 1 <= centre_lon <= west + 7:
                    continue
                ring = [list(to_lonlat.transform(x, y)) for x, y in
                        ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]  # fmt: skip
                tiles.append((f"{zone}T{east // 100:02d}{north // 100:02d}", epsg, ring))
    return tiles


def build_catalog(root: Path, revisit_days: int, seed: int = 0) -> int:
    """Write `root/items.json`; the number of items."""
    template = json.loads(TEMPLATE.read_text())["features"][0]
    # the assets a cube reads and the properties a search filters on: 91 000 copies of the
    # whole item (35 assets) would take gigabytes
    assets = {key: template["assets"][key] for key in ("green", "red", "nir", "scl")}
    template = {**template, "links": [], "assets": assets}
    rng = random.Random(seed)
    items = []
    days = [YEAR_START + timedelta(d) for d in range(0, 366, revisit_days)]
    for name, epsg, ring in tile_footprints():
        lons, lats = [p[0] for p in ring], [p[1] for p in ring]
        for day in days:
            item = copy.deepcopy(template)
            item["id"] = f"S2B_{name}_{day:%Y%m%d}_0_L2A"
            item["geometry"] = {"type": "Polygon", "coordinates": [ring]}
            item["bbox"] = [min(lons), min(lats), max(lons), max(lats)]
            properties = item["properties"]
            properties.update(
                {
                    "datetime": f"{day:%Y-%m-%d}T10:30:00Z",
                    "eo:cloud_cover": round(rng.uniform(0, 100), 2),
                    "proj:epsg": epsg,
                    "mgrs:utm_zone": epsg - 32600,
                    "grid:code": f"MGRS-{name}",
                    "s2:mgrs_tile": name,
                }
            )
            items.append(item)
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return len(items)


def feature_sets(seed: int = 0) -> dict[str, list[tuple[float, float]]]:
    rng = random.Random(seed)
    clustered = [
        (
            lon + rng.uniform(-1, 1) * CLUSTER_RADIUS_DEG,
            lat + rng.uniform(-1, 1) * CLUSTER_RADIUS_DEG,
        )
        for index in range(150)
        for lon, lat in [CLUSTER_CENTRES[index % 3]]
    ]
    rand_pts = [
        tuple(feature["geometry"]["coordinates"][:2])
        for feature in json.loads(RAND_PTS.read_text())["features"]
    ]
    europe = [(rng.uniform(-10, 30), rng.uniform(36, 62)) for _ in range(10_000)]
    return {"clustered150": clustered, "rand_pts": rand_pts, "europe10k": europe}  # type: ignore[dict-item]


def write_workdir(
    workdir: Path,
    catalog: str,
    points: list[tuple[float, float]],
    degrees: float | None,
    query: dict[str, Any] | None,
) -> None:
    workdir.mkdir(parents=True)
    features = [
        {"type": "Feature", "properties": {"id": f"p{i:05d}"},
         "geometry": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}}
        for i, (lon, lat) in enumerate(points)
    ]  # fmt: skip
    (workdir / "features.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    config: dict[str, Any] = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        vector="features.geojson",
        catalog=catalog,
        start=f"{YEAR_START}",
        end=f"{YEAR_END}",
        query=query,
    )
    if degrees is not None:
        config["stac"] = {**(config.get("stac") or {}), "group_degrees": degrees}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def run_search(workdir: Path) -> float:
    """Wall seconds of the workflow's search job alone (its checkpoint's index as target)."""
    result = snakemake(workdir, "--quiet", "all", "--", "results/searches/index.json", cores=1)
    check(result, "the search job")
    return result.seconds


def measure(
    server: StacServer,
    root: Path,
    name: str,
    points: list,
    degrees: float | None,
    query: dict[str, Any] | None,
) -> dict:
    workdir = root / f"{name}-{'per-feature' if degrees == 0 else 'grouped'}"
    write_workdir(workdir, server.url, points, degrees, query)
    server.reset_stats()
    seconds = run_search(workdir)
    stats = server.reset_stats()
    index = json.loads((workdir / "results/searches/index.json").read_text())
    groups = index["groups"]
    return {
        "set": name,
        "searching": "per feature" if degrees == 0 else "per group",
        "features": len(points),
        "groups": len(groups),
        "items": sum(info["n_items"] for info in groups.values()),
        "searches": stats["search_requests"],
        "per_feature": stats["search_requests"] / len(points),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["clustered150", "rand_pts", "europe10k"])
    parser.add_argument("--revisit-days", type=int, default=5)
    parser.add_argument("--per-feature", action="store_true")
    parser.add_argument("--per-feature-max", type=int, default=200)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument(
        "--no-filter", action="store_true", help="no `eo:cloud_cover < 10` query: every item"
    )
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="sitsflow-searches-"))
    root.mkdir(parents=True, exist_ok=True)
    catalog = root / "catalog"
    catalog.mkdir(exist_ok=True)
    count = build_catalog(catalog, args.revisit_days)
    print(
        f"catalog: {count} items, {len(tile_footprints())} tiles, "
        f"every {args.revisit_days} days of 2024",
        file=sys.stderr,
    )
    sets = feature_sets()
    query = None if args.no_filter else {"eo:cloud_cover": {"lt": 10}}
    rows = []
    with StacServer(catalog, page_size_max=500, paging_style="earth-search") as server:
        for name in args.sets:
            rows.append(measure(server, root, name, sets[name], None, query))
            print(rows[-1], file=sys.stderr, flush=True)
            if args.per_feature and len(sets[name]) <= args.per_feature_max:
                rows.append(measure(server, root, name, sets[name], 0, query))
                print(rows[-1], file=sys.stderr, flush=True)
    columns = ["set", "searching", "features", "groups", "items", "/search", "per feature", "job s"]
    print(" | ".join(columns))
    for row in rows:
        values = [row["set"], row["searching"], row["features"], row["groups"], row["items"]]
        values += [row["searches"], f"{row['per_feature']:.3f}", f"{row['seconds']:.1f}"]
        print(" | ".join(str(value) for value in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
