"""Which overview of a COG a read onto a cube grid uses: the rule both readers follow
(`sitsflow.pixels.tiles`, `sitsflow.pixels.load`), and the words a cube records for it.

A class band (SCL) is read from an overview only if the file says its overviews were made by
nearest or mode resampling: an overview made by averaging holds class numbers that are means
(a mean of 5 and 9 is 7, "unclassified").
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyproj import CRS

FULL_RESOLUTION = "full resolution"
# Overview resampling tags as (metadata domain, key), in the order they are looked for:
# rio-cogeo < 6 (Earth Search's sentinel-cogs), rio-cogeo >= 6, GDAL >= 3.12. GDAL before 3.12
# records nothing.
RESAMPLING_TAGS = (
    ("", "OVR_RESAMPLING_ALG"),
    ("", "OVERVIEW_RESAMPLING"),
    ("IMAGE_STRUCTURE", "OVERVIEW_RESAMPLING"),
)
# Overviews a class band may be read from: each value is one of the full-resolution values.
CLASS_SAFE_RESAMPLING = frozenset({"NEAREST", "MODE"})


def resampling_from(tags: Mapping[tuple[str, str], str]) -> str | None:
    """How a file's overviews were made (GDAL's name, upper case), from its metadata items
    keyed by (domain, key); None when the file does not say."""
    for key in RESAMPLING_TAGS:
        value = tags.get(key)
        if value:
            return str(value).upper()
    return None


@functools.lru_cache(maxsize=256)
def in_metres(crs: int | str | CRS) -> bool:
    """Whether `crs` is projected with axes in metres: an EPSG code, a pyproj CRS, or a text
    pyproj reads (a file's WKT, which may have no EPSG code)."""
    from pyproj import CRS

    if isinstance(crs, int):
        crs = CRS.from_epsg(crs)
    elif isinstance(crs, str):
        crs = CRS.from_user_input(crs)
    return bool(crs.is_projected) and all(
        axis.unit_name in ("metre", "meter") for axis in crs.axis_info
    )


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


def choose_overview(
    *,
    factors: Sequence[float],
    native_resolution: float,
    source_crs: int | str | CRS | None,
    target_crs: int | str | CRS,
    target_resolution: float,
    resampling: str | None,
    class_band: bool,
    read_overviews: bool,
) -> tuple[int | None, str]:
    """The overview (index into `factors`; None: full resolution) a file is read at for a
    grid, and how the cube records it: `full resolution`, `overview 1 (x2, AVERAGE)`.

    The file: its overviews' size `factors`, its pixel size and CRS (None: the file has
    none), how its overviews were made (`resampling`, GDAL's name; None when not recorded),
    whether it is a class band. Full resolution when overviews are not to be read, the file
    has none, either CRS is not in metres (degrees or feet do not compare with metres), none
    is fine enough (`overview_level`), or a class band's overviews were not made by nearest or
    mode resampling.
    """
    if not read_overviews or not factors or source_crs is None:
        return None, FULL_RESOLUTION
    if not (in_metres(source_crs) and in_metres(target_crs)):
        return None, FULL_RESOLUTION
    level = overview_level(native_resolution, factors, target_resolution)
    if level is None:
        return None, FULL_RESOLUTION
    if class_band and resampling not in CLASS_SAFE_RESAMPLING:
        return None, FULL_RESOLUTION
    # GDAL names the factor of an overview by its integer size ratio (x2 for 195 -> 97 px)
    factor = round(factors[level])
    made_by = resampling or "resampling not recorded"
    return level, f"overview {level + 1} (x{factor}, {made_by})"
