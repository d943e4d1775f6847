"""Cloud-Optimized GeoTIFF bytes of one band, and their atomic writing.

Files are written by GDAL's COG driver in memory (tiled 128 x 128, DEFLATE, internal
overviews, nodata 0), so they have the layout a reader of real Sentinel-2 COGs relies on: all
headers first, then the overviews, then full resolution, each a run of tiles a range request
can fetch. The number of overview levels is chosen here rather than by GDAL to keep the
archive small.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from sitsflow.demo.bands import NODATA

BLOCKSIZE = 128
# The overview resampling as Earth Search's sentinel-cogs record it (rio-cogeo's tag, default
# metadata domain): GDAL's COG driver before 3.12 records none, 3.12 writes OVERVIEW_RESAMPLING
# in the IMAGE_STRUCTURE domain, which older GDAL neither writes nor reads back. Nearest-
# neighbour overviews carry no tag, as the default archive's files always have.
OVERVIEW_RESAMPLING_TAG = "OVR_RESAMPLING_ALG"


@lru_cache(maxsize=64)
def _crs(epsg: int) -> CRS:
    """The CRS of an EPSG code, built once per process (every COG of a tile shares it)."""
    return CRS.from_epsg(epsg)


def overview_count(height: int, width: int, blocksize: int = BLOCKSIZE) -> int:
    """Overview levels: halve until the smallest fits in 2 x 2 blocks, but always at least one.

    GDAL's OVERVIEWS=AUTO goes on until one block; for the usual ~390 px tiles that second level
    would add ~25 % to the archive for no use.
    """
    size, levels = max(height, width), 0
    while size > 2 * blocksize:
        size = math.ceil(size / 2)
        levels += 1
    return max(levels, 1)


def cog_bytes(
    array: np.ndarray,
    transform: Affine,
    epsg: int,
    resampling: str,
    nodata: int | None = NODATA,
    blocksize: int = BLOCKSIZE,
) -> bytes:
    """A single-band Cloud-Optimized GeoTIFF (128 px tiles, DEFLATE, overviews, nodata 0).

    `resampling` is GDAL's overview resampling (NEAREST, AVERAGE); averaged overviews are
    recorded in the OVERVIEW_RESAMPLING_TAG metadata item. `nodata` None writes no nodata tag.
    No predictor: on piecewise-constant rasters plain DEFLATE is ~15 % smaller than with the
    horizontal-differencing predictor.
    """
    height, width = array.shape
    profile = {
        **_single_band(array, transform, epsg, nodata),
        "driver": "COG",
        "BLOCKSIZE": blocksize,
        "COMPRESS": "DEFLATE",
        "OVERVIEW_COUNT": overview_count(height, width, blocksize),
        "OVERVIEW_RESAMPLING": resampling,
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dataset:
            dataset.write(array, 1)
            if resampling != "NEAREST":
                dataset.update_tags(**{OVERVIEW_RESAMPLING_TAG: resampling})
        data: bytes = memfile.read()
        return data


def striped_bytes(
    array: np.ndarray, transform: Affine, epsg: int, nodata: int | None, rows_per_strip: int = 8
) -> bytes:
    """A single-band striped GeoTIFF (`rows_per_strip` rows per strip, LZW, no overview), as
    many files of real archives are although their items call them cloud-optimized."""
    profile = {
        **_single_band(array, transform, epsg, nodata),
        "driver": "GTiff",
        "tiled": False,
        "blockysize": rows_per_strip,
        "compress": "lzw",
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dataset:
            dataset.write(array, 1)
        data: bytes = memfile.read()
        return data


def _single_band(
    array: np.ndarray, transform: Affine, epsg: int, nodata: int | None
) -> dict[str, object]:
    """The profile every demo file shares: one band of `array` on its grid, `nodata` if any."""
    height, width = array.shape
    profile: dict[str, object] = {
        "width": width,
        "height": height,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": _crs(epsg),
        "transform": transform,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
