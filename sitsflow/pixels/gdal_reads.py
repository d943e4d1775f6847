"""Reading a file through GDAL (rasterio): the GDAL settings both readers use, and one file read
onto a cube grid, the way sitsflow's reader takes when it cannot read a file exactly itself.

sitsflow's reader (`sitsflow.pixels.tiles`) decodes tiled GeoTIFFs with the codecs it knows.
A striped GeoTIFF, JPEG 2000 (Copernicus Data Space), JPEG, LERC or any other codec, a
pixel-interleaved multi-band file, or a file it fails to parse or decode goes to
`read_file_with_gdal`: the same overview rule (`sitsflow.pixels.overviews.choose_overview`,
class bands never averaged) and GDAL's nearest neighbour onto the same grid (a `WarpedVRT`, as
stackstac reads), so that the cube is the same whichever path read a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sitsflow.core.grid import Grid
from sitsflow.pixels.overviews import RESAMPLING_TAGS, choose_overview, resampling_from

# GDAL settings for reading COGs over HTTP: no directory listings, merged ranges, a block cache,
# and retries for transient 429/500/502/503/504 answers (GDAL's default retry codes, range
# requests included; the delay grows about 2.4x per retry). An environment variable of the same
# name overrides a value (e.g. GDAL_HTTP_MAX_RETRY=10 on a poor connection).
# GDAL_HTTP_MULTIRANGE=SERIAL: the tiles of a window are read through /vsicurl/'s block cache,
# so bytes that came with the open's read are not fetched again; the default (YES) bypasses
# that cache and doubled requests and bytes (docs/performance.md).
GDAL_HTTP_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "SERIAL",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # A store that accepts connections and never answers would otherwise hold a read forever:
    # 20 s per attempt, 6 attempts and their delays end such a read in about 3 minutes.
    "GDAL_HTTP_TIMEOUT": "20",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    # room for everything a job fetches: stackstac reopens each file in every reading thread
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 2**20),
    # Fetch in 2 KB steps (GDAL: 16 KB) and 4 KB on open (S3 client: a single GET, which for a
    # COG holds the header and the first overview tiles): a cube's window of a small file is
    # then not fetched whole; a large file's tiles are far bigger than a step (README,
    # Performance).
    "CPL_VSIL_CURL_CHUNK_SIZE": "2048",
    "GDAL_INGESTED_BYTES_AT_OPEN": "4096",
}


def gdal_options() -> dict[str, str]:
    """GDAL_HTTP_OPTIONS, with any of them set in the environment taking precedence."""
    overrides = {key: os.environ[key] for key in GDAL_HTTP_OPTIONS if key in os.environ}
    return {**GDAL_HTTP_OPTIONS, **overrides}


@dataclass
class GridTarget:
    """Where one file's pixels go: a grid and its (y, x) float32 array (NaN where the file has
    no data), whether the file holds a class band, whether overviews may be read; the read
    sets `description` (the level read, as the cube records it) and, when sitsflow's reader
    handed the file to GDAL, `gdal_reason` (why)."""

    grid: Grid
    out: np.ndarray
    class_band: bool
    read_overviews: bool
    description: str = ""
    gdal_reason: str | None = None


def overview_resampling(ds: Any) -> str | None:
    """How a GDAL dataset's overviews were made, from its metadata tags (upper case; the tags
    `sitsflow.pixels.overviews.resampling_from` reads); None if the file does not say."""
    tags = {}
    for namespace in dict.fromkeys(namespace for namespace, _ in RESAMPLING_TAGS):
        domain = ds.tags(ns=namespace) if namespace else ds.tags()
        tags.update({(namespace, key): value for key, value in domain.items()})
    return resampling_from(tags)


def dataset_level(
    ds: Any, epsg: int, resolution: float, *, class_band: bool, read_overviews: bool
) -> tuple[int | None, str]:
    """The overview of GDAL dataset `ds` to read for a grid in `epsg` at `resolution` (None:
    full resolution), and how the cube says so (`overview 1 (x2, AVERAGE)`)."""
    return choose_overview(
        factors=ds.overviews(1),
        native_resolution=min(ds.res),
        source_crs=None if ds.crs is None else ds.crs.to_wkt(),
        target_crs=epsg,
        target_resolution=resolution,
        resampling=overview_resampling(ds),
        class_band=class_band,
        read_overviews=read_overviews,
    )


def gdal_path(url: str) -> str:
    """What GDAL opens for a URL or a local path: /vsicurl/ for HTTP(S), /vsis3/ for s3://."""
    if url.startswith(("http://", "https://")):
        return f"/vsicurl/{url}"
    if url.startswith("s3://"):
        return "/vsis3/" + url.removeprefix("s3://")
    return url


def read_file_with_gdal(
    url: str, targets: Sequence[GridTarget], settings: Mapping[str, str] | None = None
) -> None:
    """Fill each target's array with the file's first band on its grid, through GDAL: the level
    the overview rule chooses, then GDAL's nearest neighbour (a `WarpedVRT`); pixels the file
    marks as no data, or does not cover, stay NaN. `settings`: GDAL settings of this read on top
    of `gdal_options()` (the S3 client's, `sitsflow.catalog.s3.S3Access.plan`). Raises what
    GDAL raises (rasterio errors)."""
    import rasterio

    path = gdal_path(url)
    with rasterio.Env(**{**gdal_options(), **(settings or {})}):
        for target in targets:
            grid = target.grid
            with rasterio.open(path) as ds:
                level, target.description = dataset_level(
                    ds,
                    grid.epsg,
                    grid.resolution,
                    class_band=target.class_band,
                    read_overviews=target.read_overviews,
                )
            options = {} if level is None else {"OVERVIEW_LEVEL": level}
            with (
                rasterio.open(path, **options) as ds,
                nearest_onto(ds, grid, add_alpha=ds.nodata is None) as warped,
            ):
                values = warped.read(1, masked=True)
            target.out[...] = np.ma.filled(values.astype(np.float32), np.nan)


def nearest_onto(dataset: Any, grid: Grid, **options: Any) -> Any:
    """`dataset` warped onto `grid` by GDAL's nearest neighbour (a rasterio `WarpedVRT`, with
    `options`): how GDAL reads a file onto a cube grid, and how sitsflow's reader learns GDAL's
    choice of source pixel across CRSs (`sitsflow.pixels.tiles.pixel_map`)."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    return WarpedVRT(
        dataset,
        crs=f"EPSG:{grid.epsg}",
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=Resampling.nearest,
        **options,
    )
