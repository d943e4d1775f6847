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
