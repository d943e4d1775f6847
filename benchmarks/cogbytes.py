"""Which bytes of a Cloud-Optimized GeoTIFF a read of a window needs: the physical floor.

For a cube pixel grid and one COG, the floor of what any reader must fetch is

* the *header*: TIFF header, IFDs and their tag arrays, i.e. everything before the first tile's
  data (a COG keeps all of that at the start of the file, which is what GDAL reads on open);
* the tiles, at the overview level a reader should use, that hold the source pixel of at least
  one cube pixel (nearest-neighbour resampling: the source pixel under each cube pixel centre).

`needed_ranges` returns these as byte ranges, merged where they touch or are separated by less
than `max_gap` bytes (GDAL's COG layout puts a 4-byte leader and trailer around each tile, so
consecutive tiles are 8 bytes apart and are fetched as one range). The number of ranges is the
fewest HTTP range requests a reader could make (given the header, one request per range, or one
multi-range request); their total length is the fewest bytes.

Tile offsets and sizes come from GDAL's ``TIFF`` metadata domain (``BLOCK_OFFSET_x_y``,
``BLOCK_SIZE_x_y``) of each level, opened with the ``OVERVIEW_LEVEL`` open option.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS

from sitsflow.core.projection import transformer
from sitsflow.pixels.overviews import overview_level

# Consecutive tiles of a GDAL COG are separated by a 4-byte leader + 4-byte trailer.
DEFAULT_MAX_GAP = 16


@dataclass(frozen=True)
class Level:
    """One resolution level of a COG (full resolution or an overview)."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    transform: Affine
    offsets: np.ndarray  # (tile rows, tile cols) byte offset of each tile's data; 0 = sparse
    sizes: np.ndarray  # (tile rows, tile cols) byte count of each tile's data

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)


@dataclass(frozen=True)
class CogLayout:
    """Where a COG's header and tiles are: `levels[0]` is full resolution, then overviews."""

    size: int
    crs: CRS
    levels: tuple[Level, ...]

    @property
    def header_bytes(self) -> int:
        """Bytes before the first tile's data: what must be read before any tile can be."""
        starts = [level.offsets[level.sizes > 0] for level in self.levels]
        nonempty = [values.min() for values in starts if values.size]
        return int(min(nonempty)) if nonempty else self.size


def read_layout(path: str | Path) -> CogLayout:
    """The layout of a tiled GeoTIFF (local path or any GDAL-readable name)."""
    with rasterio.open(path) as src:
        crs = CRS.from_user_input(src.crs)
        overview_count = len(src.overviews(1))
        levels = [_level(src)]
        size = _file_size(path)
    for overview in range(overview_count):
        with rasterio.open(path, overview_level=overview) as src:
            levels.append(_level(src))
    return CogLayout(size=size, crs=crs, levels=tuple(levels))


def _file_size(path: str | Path) -> int:
    return Path(path).stat().st_size if Path(path).exists() else 0


def _level(src: rasterio.io.DatasetReader) -> Level:
    """Tile offsets and sizes of the open dataset's first band, by (tile row, tile col)."""
    tile_height, tile_width = src.block_shapes[0]
    rows = -(-src.height // tile_height)
    cols = -(-src.width // tile_width)
    offsets = np.zeros((rows, cols), dtype=np.int64)
    sizes = np.zeros((rows, cols), dtype=np.int64)
    for row in range(rows):
        for col in range(cols):
            offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
            size = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)
            offsets[row, col] = int(offset) if offset else 0
            sizes[row, col] = int(size) if size else 0
    return Level(src.width, src.height, tile_width, tile_height, src.transform, offsets, sizes)


def choose_level(layout: CogLayout, resolution: float) -> int:
    """The level (0: full resolution) `overview_level` picks for `resolution` in the COG's
    units: the one sitsflow's reader reads, and the least data that still gives every cube
    pixel its own source pixel value."""
    native = layout.levels[0].resolution
    factors = [level.resolution / native for level in layout.levels[1:]]
    overview = overview_level(native, factors, resolution)
    return 0 if overview is None else overview + 1


def pixel_centres(transform: Affine, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of every pixel centre of a grid (flattened, row-major)."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs, ys = transform @ (cols.ravel(), rows.ravel())
    return np.asarray(xs), np.asarray(ys)


def needed_tiles(level: Level, xs: np.ndarray, ys: np.ndarray) -> set[tuple[int, int]]:
    """(tile row, tile col) of the tiles holding the pixels under the points (xs, ys).

    Points are in the COG's CRS; points outside the image need no tile.
    """
    cols, rows = ~level.transform @ (xs, ys)
    cols, rows = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)
    inside = (cols >= 0) & (cols < level.width) & (rows >= 0) & (rows < level.height)
    tile_rows = rows[inside] // level.tile_height
    tile_cols = cols[inside] // level.tile_width
    tile_count = -(-level.width // level.tile_width)
    unique = np.unique(tile_rows * tile_count + tile_cols)  # one number per tile: far fewer
    return {(int(index // tile_count), int(index % tile_count)) for index in unique.tolist()}


def merge_ranges(
    ranges: Iterable[tuple[int, int]], max_gap: int = DEFAULT_MAX_GAP
) -> list[tuple[int, int]]:
    """Sorted half-open byte ranges, merged where they overlap or are < `max_gap` bytes apart."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if end <= start:
            continue
        if merged and start - merged[-1][1] < max_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def needed_tile_ranges(
    layout: CogLayout,
    grid_transform: Affine,
    grid_width: int,
    grid_height: int,
    grid_crs: CRS | int | str,
    *,
    max_gap: int = DEFAULT_MAX_GAP,
) -> list[tuple[int, int]]:
    """Byte ranges of the tiles a nearest-neighbour read onto the grid needs, merged.

    The level is the coarsest one not coarser than the grid's resolution (measured in the
    COG's CRS, which for UTM and equal-area grids of a few km differs by well under 1 %).
    """
    xs, ys = pixel_centres(grid_transform, grid_width, grid_height)
    source_crs, target_crs = layout.crs, CRS.from_user_input(grid_crs)
    if source_crs != target_crs:
        xs, ys = transformer(target_crs, source_crs).transform(xs, ys)
    resolution = abs(grid_transform.a)
    level = layout.levels[choose_level(layout, resolution)]
    pieces = []
    for row, col in needed_tiles(level, np.asarray(xs), np.asarray(ys)):
        size = int(level.sizes[row, col])
        if size:
            offset = int(level.offsets[row, col])
            pieces.append((offset, offset + size))
    return merge_ranges(pieces, max_gap)


def needed_ranges(
    layout: CogLayout,
    grid_transform: Affine,
    grid_width: int,
    grid_height: int,
    grid_crs: CRS | int | str,
    *,
    max_gap: int = DEFAULT_MAX_GAP,
) -> list[tuple[int, int]]:
    """Byte ranges of `layout` that a nearest-neighbour read onto the grid needs (see module):
    the header and the tiles, merged where they touch."""
    tiles = needed_tile_ranges(
        layout, grid_transform, grid_width, grid_height, grid_crs, max_gap=max_gap
    )
    return merge_ranges([(0, layout.header_bytes), *tiles], max_gap)


def total_bytes(ranges: Sequence[tuple[int, int]]) -> int:
    return sum(end - start for start, end in ranges)
