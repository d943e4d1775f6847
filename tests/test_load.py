"""Choosing the overview a file is read at (the reader's rule,
sitsflow.pixels.overviews.overview_level).

That the chosen overview gives the right cube from fewer bytes is tested against the local
server in tests/test_network_faults.py.
"""

from __future__ import annotations

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
