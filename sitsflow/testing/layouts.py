"""Real Sentinel-2 pixels written in the file layouts real archives serve (issue 20).

Earth Search serves cloud-optimised GeoTIFFs; other providers, mirrors and reprocessings serve
plain tiled GeoTIFFs whose directory follows the data, other tile sizes and codecs, BigTIFF,
big-endian files, striped GeoTIFFs and (Copernicus Data Space) JPEG 2000. One archive can mix
them. `write_layout` writes one band in each of them, on one grid, so that a test can read every
layout alone and beside the others and compare the values with GDAL's.

The pixels are a real BigEarthNet patch (`../shared/data/bigearthnet-s2`, 120 x 120 px at
10 m), mirrored to the size asked for: real values and texture, tiles of several sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayoutSpec:
    """How to write one layout: GDAL driver and creation options, and the factors of
    overviews built after the data (averaged, as `gdaladdo` adds them to a file; a COG gets
    its own from the COG driver)."""

    driver: str
    options: Mapping[str, Any]
    overviews: tuple[int, ...] = ()
    # the directory rewritten at the end of the file (as editing a file's tags in place does)
    directory_last: bool = False
    suffix: str = ".tif"
    # whether sitsflow's own reader reads it (rather than GDAL), at any size: a directory
    # after the data is read by it only within the first MB (`tiles.DIRECTORY_LIMIT_BYTES`)
    fast: bool = True
    notes: str = ""


LAYOUTS: dict[str, LayoutSpec] = {
    "cog": LayoutSpec(
        "COG",
        {"BLOCKSIZE": 256, "COMPRESS": "DEFLATE", "OVERVIEW_RESAMPLING": "AVERAGE"},
        notes="Earth Search's layout: DEFLATE, AVERAGE overviews, header first",
    ),
    "tiled-512-ifd-last": LayoutSpec(
        "GTiff",
        {"TILED": "YES", "BLOCKXSIZE": 512, "BLOCKYSIZE": 512, "COMPRESS": "DEFLATE"},
        directory_last=True,
        notes="a plain tiled GeoTIFF whose directory was rewritten after the data",
    ),
    "tiled-512-ifd-last-overviews": LayoutSpec(
        "GTiff",
        {"TILED": "YES", "BLOCKXSIZE": 512, "BLOCKYSIZE": 512, "COMPRESS": "DEFLATE"},
        overviews=(2, 4),
        directory_last=True,
        notes="the same, with overviews appended after the data",
    ),
    "lzw-predictor-256": LayoutSpec(
        "GTiff",
        {
            "TILED": "YES",
            "BLOCKXSIZE": 256,
            "BLOCKYSIZE": 256,
            "COMPRESS": "LZW",
            "PREDICTOR": 2,
        },
    ),
    "zstd": LayoutSpec(
        "GTiff",
        {"TILED": "YES", "BLOCKXSIZE": 512, "BLOCKYSIZE": 512, "COMPRESS": "ZSTD"},
    ),
    "bigtiff": LayoutSpec(
        "GTiff",
        {
            "TILED": "YES",
            "BLOCKXSIZE": 256,
            "BLOCKYSIZE": 256,
            "COMPRESS": "DEFLATE",
            "BIGTIFF": "YES",
        },
    ),
    "big-endian": LayoutSpec(
        "GTiff",
        {
            "TILED": "YES",
            "BLOCKXSIZE": 256,
            "BLOCKYSIZE": 256,
            "COMPRESS": "DEFLATE",
            "ENDIANNESS": "BIG",
        },
    ),
    "striped": LayoutSpec(
        "GTiff", {"TILED": "NO", "COMPRESS": "DEFLATE"}, fast=False, notes="no tiles"
    ),
    "lerc": LayoutSpec(
        "GTiff",
        {"TILED": "YES", "BLOCKXSIZE": 256, "BLOCKYSIZE": 256, "COMPRESS": "LERC"},
        fast=False,
        notes="a codec sitsflow's reader does not decode",
    ),
    "jp2-lossless": LayoutSpec(
        "JP2OpenJPEG",
        {"REVERSIBLE": "YES", "QUALITY": 100, "BLOCKXSIZE": 256, "BLOCKYSIZE": 256},
        suffix=".jp2",
        fast=False,
        notes="Copernicus Data Space's products are JPEG 2000",
    ),
}


def source_band(path: str | Path, size: int) -> tuple[np.ndarray, Any, int]:
    """A real band mirrored to `size` x `size` pixels, its transform and EPSG code.

    The patch is repeated with every other copy flipped, so that neighbouring pixels stay
    neighbours across the seams: real values and texture on a grid larger than any tile.
    """
    import rasterio

    with rasterio.open(path) as source:
        patch = source.read(1)
        transform, epsg = source.transform, int(source.crs.to_epsg())
    row = np.concatenate([patch, patch[:, ::-1]], axis=1)
    block = np.concatenate([row, row[::-1, :]], axis=0)
    reps = -(-size // block.shape[0])
    return np.tile(block, (reps, reps))[:size, :size].copy(), transform, epsg


def class_band(values: np.ndarray) -> np.ndarray:
    """A scene-classification-like band (uint8) from reflectance DNs, by their quartiles:
    vegetation (4) and bare soil (5) for the lower three quarters, cloud (8, 9) above, so that
    averaged overviews would hold class numbers that are means (as Earth Search's SCL)."""
    half, three_quarters, ninety = np.quantile(values, [0.5, 0.75, 0.9])
    return np.select(
        [values < half, values < three_quarters, values < ninety], [4, 5, 8], 9
    ).astype(np.uint8)


def write_layout(
    name: str,
    values: np.ndarray,
    transform: Any,
    epsg: int,
    path: str | Path,
    nodata: float | None = 0,
) -> Path:
    """Write `values` (one band) in layout `name` (`LAYOUTS`) to `path` (its suffix added);
    returns the file's path."""
    import rasterio
    from rasterio.enums import Resampling

    spec = LAYOUTS[name]
    target = Path(path).with_suffix(spec.suffix)
    profile = {
        "driver": spec.driver,
        "width": values.shape[1],
        "height": values.shape[0],
        "count": 1,
        "dtype": str(values.dtype),
        "crs": f"EPSG:{epsg}",
        "transform": transform,
        "nodata": nodata,
        **spec.options,
    }
    if spec.driver == "COG":  # the COG driver copies from a dataset: write through memory
        import rasterio.shutil
        from rasterio.io import MemoryFile

        with MemoryFile() as memory:
            plain = {**profile, "driver": "GTiff"}
            for key in spec.options:
                plain.pop(key)
            with memory.open(**plain) as staged:
                staged.write(values, 1)
            with memory.open() as staged:
                rasterio.shutil.copy(staged, target, driver="COG", **spec.options)
        return target
    with rasterio.open(target, "w", **profile) as output:
        output.write(values, 1)
    if spec.overviews:
        with rasterio.open(target, "r+") as output:
            output.build_overviews(list(spec.overviews), Resampling.average)
    if spec.directory_last:  # a grown directory no longer fits where it was: GDAL appends it
        with rasterio.open(target, "r+") as output:
            output.update_tags(NOTE="directory rewritten after the data " * 200)
    return target
