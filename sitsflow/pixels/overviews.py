"""Which overview of a COG a read onto a cube grid uses."""

from __future__ import annotations

from collections.abc import Sequence


def overview_level(
    native_resolution: float, factors: Sequence[float], target_resolution: float
) -> int | None:
    """The coarsest overview (index into `factors`) still at least as fine as the target.

    This is GDAL's choice for `gdalwarp -ovr AUTO`: a 20 m cube reads a 10 m band's 2x
    overview, which holds the 20 m pixels; nothing coarser than the cube is ever read. The
    1 % margin absorbs the scale change between the file's and the cube's projections.
    """
    usable = [
        index
        for index, factor in enumerate(factors)
        if native_resolution * factor <= target_resolution * 1.01
    ]
    return max(usable, key=lambda index: factors[index]) if usable else None
