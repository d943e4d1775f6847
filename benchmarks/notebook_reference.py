"""The notebook way of making the seed's cubes: a plain loop per feature, as a user would write it.

    python benchmarks/notebook_reference.py --catalog http://127.0.0.1:8000/api --out DIR \\
        [--loader stackstac|odc] [--vector data/rand_pts.geojson]

For each feature of the vector file: buffer 1 km (in the feature's UTM zone), search the STAC
API with pystac-client (2024, eo:cloud_cover < 10), load B03 B04 B08 + SCL at 20 m in EPSG:3035
with stackstac (`stackstac.stack(..., bounds_latlon=...)` then `.compute()`) or odc-stac
(`odc.stac.load(..., chunks={})` then `.compute()`), both on dask's default scheduler, mask with
SCL, gap-fill with xarray (`interpolate_na` along time, then `ffill`/`bfill`) and write a
netCDF file per feature. No tuning: library defaults throughout. This is reference (a) and (b)
of benchmarks/seed_workload.py, which times it against the workflow on the same archive.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import geopandas as gpd
import pystac_client
import xarray as xr

BANDS = ["B03", "B04", "B08"]
MASK_BAND = "SCL"
MASK_CLASSES = [0, 1, 3, 8, 9, 10]
DATETIME = "2024-01-01/2024-12-31"
QUERY = {"eo:cloud_cover": {"lt": 10}}
EPSG, RESOLUTION, BUFFER_M = 3035, 20, 1000


def buffered_bbox(point: gpd.GeoSeries) -> tuple[float, float, float, float]:
    """Lon/lat bounds of the feature buffered by BUFFER_M metres in its UTM zone."""
    utm = point.estimate_utm_crs()
    return tuple(point.to_crs(utm).buffer(BUFFER_M).to_crs(4326).total_bounds)


def load_stackstac(items: list, bbox: tuple[float, float, float, float]) -> xr.Dataset:
    """stackstac as in its documentation: one DataArray (time, band, y, x), computed."""
    import stackstac

    stack = stackstac.stack(
        items, assets=BANDS + [MASK_BAND], epsg=EPSG, resolution=RESOLUTION, bounds_latlon=bbox
    )
    data = stack.compute()
    # stackstac's per-item coordinates (object arrays) and attributes cannot go to netCDF
    return data.reset_coords(drop=True).to_dataset(dim="band")


def load_odc(items: list, bbox: tuple[float, float, float, float]) -> xr.Dataset:
    """odc-stac as in its documentation: a Dataset with one variable per band, computed."""
    import odc.stac

    data = odc.stac.load(
        items,
        bands=BANDS + [MASK_BAND],
        crs=f"EPSG:{EPSG}",
        resolution=RESOLUTION,
        bbox=bbox,
        chunks={},
    )
    return data.compute()


def mask_and_fill(data: xr.Dataset) -> xr.Dataset:
    """Reflectance bands masked by SCL, gap-filled linearly along time, edges held."""
    clear = ~data[MASK_BAND].isin(MASK_CLASSES)
    cube = xr.Dataset({band: data[band].where(clear & (data[band] != 0)) for band in BANDS})
    cube = cube.interpolate_na(dim="time").ffill("time").bfill("time")
    cube[MASK_BAND] = data[MASK_BAND]
    for variable in cube.variables.values():
        variable.attrs = {}
    return cube


def run(catalog: str, vector: str, out_dir: Path, loader: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    client = pystac_client.Client.open(catalog)
    features = gpd.read_file(vector)
    load = load_stackstac if loader == "stackstac" else load_odc
    for fid, geometry in zip(features["id"], features.geometry, strict=True):
        started = time.perf_counter()
        bbox = buffered_bbox(gpd.GeoSeries([geometry], crs=features.crs))
        items = client.search(
            collections=["sentinel-2-l2a"], bbox=bbox, datetime=DATETIME, query=QUERY
        ).item_collection()
        cube = mask_and_fill(load(items, bbox))
        cube.to_netcdf(out_dir / f"{fid}.nc")
        print(f"{fid}: {len(items)} items in {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True, help="STAC API URL")
    parser.add_argument("--vector", default="data/rand_pts.geojson")
    parser.add_argument("--out", type=Path, required=True, help="directory of the cubes")
    parser.add_argument("--loader", choices=["stackstac", "odc"], default="stackstac")
    args = parser.parse_args(argv)
    run(args.catalog, args.vector, args.out, args.loader)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
