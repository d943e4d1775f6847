"""Choosing the overview a file is read at (the reader's rule,
sitsflow.pixels.overviews.overview_level).

That the chosen overview gives the right cube from fewer bytes is tested against the local
server in tests/test_network_faults.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from sitsflow.pixels.overviews import overview_level


@pytest.mark.parametrize(
    ("native", "factors", "target", "expected"),
    [
        (10, [2, 4, 8], 10, None),  # the cube's resolution: full resolution
        (10, [2, 4, 8], 20, 0),  # a 20 m cube from a 10 m band: the 2x overview
        (10, [2, 4, 8], 30, 0),  # 40 m would be coarser than the cube
        (10, [2, 4, 8], 40, 1),
        (10, [2, 4, 8], 1000, 2),  # the coarsest there is
        (20, [2, 4], 20, None),  # the 20 m SCL in a 20 m cube
        (10, [2], 19.9, 0),  # within 1 %: the scale change between projections
        (10, [2], 19.7, None),
        (10, [], 60, None),  # no overviews
        (10, [4, 2], 20, 1),  # factors in any order
    ],
)
def test_overview_level_is_the_coarsest_not_coarser_than_the_cube(
    native, factors, target, expected
):
    assert overview_level(native, factors, target) == expected


def test_pixels_are_placed_from_their_tiles_edge_tiles_and_views_included():
    """`pixel_map` + `_place` against plain indexing of the mosaic of the level's tiles: a 10 x 7
    level in 4 x 4 tiles (its right and bottom tiles stored smaller, as a COG may), a grid that
    starts inside it and runs past its edge, written into a contiguous array and into a view."""
    from affine import Affine

    from sitsflow.core.grid import Grid
    from sitsflow.pixels.tiles import Level, _place, pixel_map

    level = Level(0, 10, 7, 4, 4, Affine(10.0, 0.0, 0.0, 0.0, -10.0, 70.0), 32632)
    values = np.arange(70, dtype=np.uint16).reshape(7, 10)
    tiles = {
        (col, row): values[row * 4 : row * 4 + 4, col * 4 : col * 4 + 4].copy()
        for row in range(2)
        for col in range(3)
    }
    grid = Grid(32632, 10.0, (20.0, -10.0, 120.0, 50.0))  # 10 x 6 px from column 2, row 2
    pixels = pixel_map(level, grid)
    expected = np.full((grid.height, grid.width), np.nan, np.float32)
    expected[:5, :8] = values[2:7, 2:10]
    contiguous = np.full((grid.height, grid.width), np.nan, np.float32)
    assert _place(contiguous, pixels, level, tiles) == 6
    np.testing.assert_array_equal(contiguous, expected)
    stack = np.full((grid.height, grid.width, 2), np.nan, np.float32)
    view = stack[:, :, 1]
    assert not view.flags.c_contiguous
    _place(view, pixels, level, tiles)
    np.testing.assert_array_equal(view, expected)


@pytest.mark.parametrize(
    ("resolution", "west", "north", "copied_as_blocks"),
    [
        (10.0, 10.0, 60.0, True),  # the level's pixel grid: rectangles copied one to one
        (10.0, 13.0, 57.0, True),  # shifted by a fraction of a pixel: still one to one
        (5.0, 20.0, 50.0, False),  # finer: each source pixel repeated
        (20.0, 0.0, 70.0, None),  # coarser: every other source pixel (a lone one is a block)
    ],
)
def test_placing_copies_the_pixel_under_each_centre(resolution, west, north, copied_as_blocks):
    """`_place` (slice copies where a tile's pixels are a one-to-one rectangle, else a gather
    placed by a slice where the grid pixels are a rectangle, else scattered)
    against the source pixel under each grid pixel's centre, computed pixel by pixel, on a
    level in 4 x 4 tiles with smaller edge tiles."""
    from affine import Affine

    from sitsflow.catalog.range_cache import TileRows
    from sitsflow.core.grid import Grid
    from sitsflow.pixels.tiles import Level, _place, pixel_map

    level = Level(0, 10, 7, 4, 4, Affine(10.0, 0.0, 0.0, 0.0, -10.0, 70.0), 32632)
    values = np.arange(1, 71, dtype=np.uint16).reshape(7, 10)
    tiles = {
        (col, row): values[row * 4 : row * 4 + 4, col * 4 : col * 4 + 4].copy()
        for row in range(2)
        for col in range(3)
    }
    grid = Grid(32632, resolution, (west, north - 60.0, west + 60.0, north))
    pixels = pixel_map(level, grid)
    if copied_as_blocks is not None:
        assert any(p.block for p in pixels.by_tile.values()) == copied_as_blocks
    if copied_as_blocks is False:  # each tile's grid pixels a rectangle: placed by a slice
        assert all(p.rectangle for p in pixels.by_tile.values())
    expected = np.full((grid.height, grid.width), np.nan, np.float32)
    for r in range(grid.height):
        for c in range(grid.width):
            x = west + (c + 0.5) * resolution
            y = north - (r + 0.5) * resolution
            col, row = int(x // 10.0), int((70.0 - y) // 10.0)
            if 0 <= col < 10 and 0 <= row < 7:
                expected[r, c] = values[row, col]
    out = np.full((grid.height, grid.width), np.nan, np.float32)
    _place(out, pixels, level, tiles)
    np.testing.assert_array_equal(out, expected)
    # from only the rows of each tile the map needs, as a tile kept on disk is read
    parts = {
        key: TileRows(tile[here.rows[0] : here.rows[1]], here.rows[0], tile.shape[0])
        for key, tile in tiles.items()
        if (here := pixels.by_tile.get(key)) is not None
    }
    from_rows = np.full((grid.height, grid.width), np.nan, np.float32)
    _place(from_rows, pixels, level, parts)
    np.testing.assert_array_equal(from_rows, expected)
    key, part = next((k, p) for k, p in parts.items() if len(p.values) > 1)
    short = {key: TileRows(part.values[1:], part.first + 1, part.height)}
    with pytest.raises(RuntimeError, match="needed"):
        _place(out, pixels, level, short)


def test_a_file_beside_the_grid_needs_no_tile():
    """An item whose footprint meets the feature but whose raster does not cover its grid (a
    partial scene, a footprint drawn generously): no tile, nothing placed, no error (it was
    `zip() argument 2 is longer than argument 1`, and the file went to GDAL)."""
    from affine import Affine

    from sitsflow.core.grid import Grid
    from sitsflow.pixels.tiles import Level, _place, pixel_map

    level = Level(0, 10, 7, 4, 4, Affine(10.0, 0.0, 0.0, 0.0, -10.0, 70.0), 32632)
    grid = Grid(32632, 10.0, (200.0, 0.0, 260.0, 60.0))  # east of the file
    pixels = pixel_map(level, grid)
    assert pixels.tiles == () and pixels.by_tile == {}
    out = np.full((grid.height, grid.width), np.nan, np.float32)
    assert _place(out, pixels, level, {}) == 0
    assert np.isnan(out).all()


# The facts of one file: its EPSG code and pixel size, its overviews' size factors (GDAL's
# integers; the COG's levels are its width divided by them, rounded up as GDAL does), how the
# overviews were made as a metadata item (domain, key, value) or None, and the read: class band,
# read_overviews, the grid's EPSG code and resolution.
FILE_FACTS = {
    "reflectance, 20 m grid": (32632, 10.0, [2, 4], ("", "OVR_RESAMPLING_ALG", "average"),
                               False, True, 32632, 20.0),
    "reflectance, 40 m grid in another UTM zone": (
        32632, 10.0, [2, 4], ("", "OVERVIEW_RESAMPLING", "AVERAGE"), False, True, 32633, 40.0),
    "reflectance, resampling not recorded": (32632, 10.0, [2, 4], None, False, True, 32632, 20.0),
    "file in degrees": (4326, 0.0001, [2, 4], ("", "OVR_RESAMPLING_ALG", "AVERAGE"),
                        False, True, 32632, 20.0),
    "grid in degrees": (32632, 10.0, [2, 4], ("", "OVR_RESAMPLING_ALG", "AVERAGE"),
                        False, True, 4326, 0.0002),
    "class band, averaged overviews": (32632, 20.0, [2, 4], ("", "OVR_RESAMPLING_ALG", "AVERAGE"),
                                       True, True, 32632, 40.0),
    "class band, nearest overviews": (
        32632, 20.0, [2, 4], ("IMAGE_STRUCTURE", "OVERVIEW_RESAMPLING", "NEAREST"),
        True, True, 32632, 40.0),
    "class band, resampling not recorded": (32632, 20.0, [2, 4], None, True, True, 32632, 40.0),
    "no overviews": (32632, 10.0, [], ("", "OVR_RESAMPLING_ALG", "AVERAGE"),
                     False, True, 32632, 20.0),
    "no overview fine enough": (32632, 10.0, [2, 4], ("", "OVR_RESAMPLING_ALG", "AVERAGE"),
                                False, True, 32632, 15.0),
    "read_overviews off": (32632, 10.0, [2, 4], ("", "OVR_RESAMPLING_ALG", "AVERAGE"),
                           False, False, 32632, 20.0),
}  # fmt: skip
EXPECTED_LEVEL = {
    "reflectance, 20 m grid": (0, "overview 1 (x2, AVERAGE)"),
    "reflectance, 40 m grid in another UTM zone": (1, "overview 2 (x4, AVERAGE)"),
    "reflectance, resampling not recorded": (0, "overview 1 (x2, resampling not recorded)"),
    "class band, nearest overviews": (0, "overview 1 (x2, NEAREST)"),
}


@pytest.mark.parametrize("case", FILE_FACTS)
def test_both_readers_choose_the_same_overview_and_say_it_in_the_same_words(case):
    """sitsflow's reader (levels and the GDAL_METADATA tag, as async-tiff gives them) and the
    stackstac reader (GDAL's overview factors and tags, as rasterio gives them) follow one rule
    (sitsflow.pixels.overviews.choose_overview) and record the same words for the same file."""
    from types import SimpleNamespace

    from affine import Affine
    from rasterio.crs import CRS

    from sitsflow.core.grid import Grid
    from sitsflow.pixels.load import OverviewReader
    from sitsflow.pixels.tiles import Level, choose_level

    epsg, native, factors, tag, class_band, read_overviews, grid_epsg, resolution = FILE_FACTS[case]
    width = 1095  # odd: an overview's size ratio is not whole (1095 / 548), GDAL says x2
    transform = Affine(native, 0.0, 300000.0, 0.0, -native, 5000000.0)
    if epsg == 4326:
        transform = Affine(native, 0.0, 9.0, 0.0, -native, 45.0)
    levels = [
        Level(index, -(-width // factor), -(-width // factor), 256, 256, transform, epsg)
        for index, factor in enumerate([1, *factors])
    ]
    metadata = ""
    if tag is not None:
        domain, key, value = tag
        where = f' domain="{domain}"' if domain else ""
        metadata = f'<GDALMetadata><Item name="{key}"{where}>{value}</Item></GDALMetadata>'
    grid = Grid(grid_epsg, resolution, (0.0, 0.0, 100 * resolution, 100 * resolution))
    chosen, sitsflow_words = choose_level(
        levels, SimpleNamespace(gdal_metadata=metadata), grid, class_band, read_overviews
    )

    class Dataset:  # what OverviewReader._level asks of a rasterio dataset
        crs = CRS.from_epsg(epsg)
        res = (native, native)

        def overviews(self, band):
            return factors

        def tags(self, ns=None):
            return {tag[1]: tag[2]} if tag is not None and tag[0] == (ns or "") else {}

    href = "https://example.com/file.tif"
    reader = SimpleNamespace(
        read_overviews=read_overviews,
        class_hrefs=frozenset({href} if class_band else ()),
        url=f"{href}?token=1",
        spec=SimpleNamespace(epsg=grid_epsg, resolutions_xy=(resolution, resolution)),
    )
    overview, stackstac_words = OverviewReader._level(reader, Dataset())

    expected = EXPECTED_LEVEL.get(case, (None, "full resolution"))
    assert (overview, stackstac_words) == expected
    assert (chosen, sitsflow_words) == (0 if overview is None else overview + 1, stackstac_words)


@pytest.mark.parametrize(
    ("resolution", "west", "south", "size"),
    [
        (10.0, 4780000.0, 3050000.0, 1010.0),  # a cube's window inside the level
        (20.0, 4776000.0, 3066000.0, 6000.0),  # across the level's northern edge
        (7.5, 4781000.0, 3040000.0, 450.0),  # finer than the level
    ],
)
def test_the_in_memory_warp_picks_the_pixels_a_warped_geotiff_does(
    resolution, west, south, size, monkeypatch
):
    """`_warped_indices` through a MEM dataset over the index array and through a GeoTIFF
    written to memory (the fallback): the same source pixel for every grid pixel, -1 off the
    level."""
    from affine import Affine

    import sitsflow.pixels.tiles as tiles
    from sitsflow.core.grid import Grid

    level = tiles.Level(0, 10980, 10980, 512, 512, Affine(10, 0, 600000, 0, -10, 5600000), 32633)
    grid = Grid(3035, resolution, (west, south, west + size, south + size))
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    row, col, finite = tiles._source_pixels(level, grid, rows, cols)
    inside = finite & (row >= 0) & (row < level.height) & (col >= 0) & (col < level.width)
    assert inside.any()
    in_memory = tiles._warped_indices(level, grid, row[inside], col[inside])
    monkeypatch.setattr(tiles, "_warp_in_memory", lambda *args: None)
    through_geotiff = tiles._warped_indices(level, grid, row[inside], col[inside])
    for ours, theirs in zip(in_memory, through_geotiff, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert (in_memory[0] >= 0).any()
