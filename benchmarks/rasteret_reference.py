"""Reference: the seed's point windows read with rasteret 0.4.1, its "index first" way.

    .venv-rasteret/bin/python benchmarks/rasteret_reference.py \\
        --catalog http://127.0.0.1:8765/api --vector PATH --out DIR [--limit N]

Needs the environment of benchmarks/install_rasteret.sh (rasteret needs Python >= 3.12).
rasteret first builds an index (`rasteret.build_from_stac`): one STAC search over the bbox of
all features (2024, eo:cloud_cover < 10, as sitsflow's job), then it parses the first IFD of
every item's B03 B04 B08 SCL COG into a Parquet table (tile offsets and byte counts). Then, per
feature, `Collection.read_window` reads the items whose footprint meets the feature's search
bbox onto the cube grid sitsflow gives it (the point buffered 1 km in its UTM zone, projected
to EPSG:3035, snapped outward to 20 m) with `group_by="datetime"`, and the result is saved as
DIR/<id>.npy, float32 (time, band, y, x) with bands B03 B04 B08 SCL and NaN where no item
covers a pixel; DIR/dates.json lists each feature's dates (the time axis: sorted, UTC).

How it differs from sitsflow's job: rasteret's index holds only the full-resolution IFD, so it
fetches and decodes the 10 m tiles of B03 B04 B08 (sitsflow reads the 20 m overview: a quarter
of the pixels) and resamples them to 20 m by nearest neighbour (rasterio's warp; rasteret uses
bilinear only for float data); items of one datetime are mosaicked first-valid-pixel. No SCL
mask, no gap-fill, no netCDF: the windows read are what is compared. Its obstore client refuses
plain http:// URLs by default, so it gets an `ObstoreBackend` over an `HTTPStore` with
`allow_http` (rasteret's own `backend=` hook, no patching). The index is rebuilt in a
temporary directory at each run and its time is part of "seconds" (also given as "index_s").
Prints {"features", "seconds", "cpu_s", "index_s", "reads"} as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import geopandas as gpd
import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Point, box

BANDS = ["B03", "B04", "B08", "SCL"]
DATES = ("2024-01-01", "2024-12-31")
QUERY = {"eo:cloud_cover": {"lt": 10}}
EPSG, RESOLUTION, BUFFER_M = 3035, 20.0, 1000.0
DENSIFY_DEGREES = 0.005  # sitsflow.core.grid.DENSIFY_DEGREES


def cube_grid(point: Point) -> tuple[tuple[float, float, float, float], tuple[float, ...]]:
    """(bounds in EPSG:3035, lon/lat search bbox) of the grid sitsflow gives a point
    (`sitsflow.core.bbox.make_aoi_record`, mode image)."""
    zone = min(int((point.x + 180) // 6) + 1, 60)
    utm = (32600 if point.y >= 0 else 32700) + zone
    to_utm = Transformer.from_crs(4326, utm, always_xy=True)
    from_utm = Transformer.from_crs(utm, 4326, always_xy=True)
    aoi = shapely.transform(
        shapely.transform(point, to_utm.transform, interleaved=False).buffer(BUFFER_M, 16),
        from_utm.transform,
        interleaved=False,
    )
    to_cube = Transformer.from_crs(4326, EPSG, always_xy=True)
    projected = shapely.transform(
        shapely.segmentize(aoi, DENSIFY_DEGREES), to_cube.transform, interleaved=False
    )
    minx, miny, maxx, maxy = projected.bounds
    bounds = (
        math.floor(minx / RESOLUTION) * RESOLUTION,
        math.floor(miny / RESOLUTION) * RESOLUTION,
        math.ceil(maxx / RESOLUTION) * RESOLUTION,
        math.ceil(maxy / RESOLUTION) * RESOLUTION,
    )
    lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform_bounds(
        *bounds, densify_pts=21
    )
    return bounds, lonlat


def http_backend(catalog: str):
    """rasteret's `ObstoreBackend` for the server's origin, plain HTTP allowed."""
    from obstore.store import HTTPStore
    from rasteret.cloud import ObstoreBackend

    parts = urlsplit(catalog)
    origin = f"{parts.scheme}://{parts.netloc}/"
    store = HTTPStore.from_url(
        origin, client_options={"allow_http": True, "timeout": "120s", "connect_timeout": "10s"}
    )
    return ObstoreBackend(store, url_prefix=origin)


def run(args: argparse.Namespace) -> dict[str, float | int]:
    import rasteret

    started, cpu_started = time.perf_counter(), time.process_time()
    features = gpd.read_file(args.vector).to_crs(4326)
    if args.limit:
        features = features.head(args.limit)
    pairs = zip(features["id"], features.geometry, strict=True)
    grids = {fid: cube_grid(geom) for fid, geom in pairs}
    boxes = np.array([lonlat for _, lonlat in grids.values()])
    extent = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
    backend = http_backend(args.catalog)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rasteret-index-") as workspace:
        collection = rasteret.build_from_stac(
            name="sitsflow-reference",
            stac_api=args.catalog,
            collection="sentinel-2-l2a",
            data_source="sitsflow/sentinel-2-l2a",  # no built-in band map or cloud config
            band_map={band: band for band in BANDS},
            bbox=tuple(float(v) for v in extent),
            date_range=DATES,
            query=QUERY,
            workspace_dir=workspace,
            force=True,
            max_concurrent=args.max_concurrent,
            backend=backend,
        )
        index_s = time.perf_counter() - started
        records = collection.dataset.to_table(columns=["id", "datetime", "geometry"])
        ids = np.array(records.column("id").to_pylist())
        datetimes = np.array(records.column("datetime").to_pylist())
        footprints = shapely.from_wkb(records.column("geometry").to_numpy(zero_copy_only=False))
        dates, reads = {}, 0
        for fid, (bounds, lonlat) in grids.items():
            hits = np.flatnonzero(shapely.intersects(footprints, box(*lonlat)))
            hits = hits[np.argsort(datetimes[hits], kind="stable")]
            height = round((bounds[3] - bounds[1]) / RESOLUTION)
            width = round((bounds[2] - bounds[0]) / RESOLUTION)
            cube = np.empty((0, len(BANDS), height, width), dtype=np.float32)
            if hits.size:
                cube = collection.read_window(
                    record_ids=list(ids[hits]),
                    bounds=bounds,
                    res=(RESOLUTION, RESOLUTION),
                    bands=BANDS,
                    target_crs=EPSG,
                    max_concurrent=args.max_concurrent,
                    backend=backend,
                    group_by="datetime",
                )
            np.save(args.out / f"{fid}.npy", cube)
            dates[str(fid)] = sorted({datetimes[i].isoformat() for i in hits})
            reads += int(hits.size) * len(BANDS)
            if args.verbose:
                print(f"{fid}: {hits.size} items, {cube.shape}", flush=True)
    (args.out / "dates.json").write_text(json.dumps(dates))
    return {
        "features": len(grids),
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_s": round(time.process_time() - cpu_started, 2),
        "index_s": round(index_s, 2),
        "reads": reads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True, help="STAC API URL of the test server")
    parser.add_argument("--vector", type=Path, required=True, help="points, with an `id` column")
    parser.add_argument("--out", type=Path, required=True, help="directory of the .npy files")
    parser.add_argument("--limit", type=int, default=0, help="only the first N features")
    parser.add_argument("--max-concurrent", type=int, default=50, help="rasteret's default")
    parser.add_argument("--verbose", action="store_true", help="a line per feature")
    args = parser.parse_args(argv)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
