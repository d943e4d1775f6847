"""Cloud masking with the Sentinel-2 scene classification (SCL) band, item by item.

A pixel of an item is clear when its class is known, is not one of `mask.classes`, is not
within `mask.dilate_m` of a cloud or shadow pixel, and every band has a value there.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

SCL_CLASSES = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
# `mask.classes` presets: the seed's (default), and a strict one that also masks dark areas,
# unclassified pixels and snow, as R `sits` does for Planetary Computer.
MASK_PRESETS: dict[str, tuple[int, ...]] = {
    "default": (0, 1, 3, 8, 9, 10),
    "strict": (0, 1, 2, 3, 7, 8, 9, 10, 11),
}
DEFAULT_MASK_CLASSES = MASK_PRESETS["default"]
# The classes `mask.dilate_m` grows: clouds, cirrus and their shadows (openEO's
# mask_scl_dilation grows the same kind of classes); no data and snow are not grown.
DILATED_CLASSES = frozenset({3, 8, 9, 10})


def masked_classes(
    classification: np.ndarray,
    mask_classes: Collection[int],
    dilate_px: float = 0.0,
) -> np.ndarray:
    """True where a pixel's class is masked, or lies within `dilate_px` pixels (a disk) of a
    pixel whose class is masked and one of DILATED_CLASSES. NaN (no data) is masked.

    `classification` is (..., y, x); the dilation works on the last two axes.
    """
    finite = np.isfinite(classification)
    classes = np.where(finite, classification, 0).astype(np.int64)
    masked: np.ndarray = _is_in(classes, mask_classes) | ~finite
    grown = sorted(DILATED_CLASSES & set(mask_classes))
    if dilate_px > 0 and grown:
        masked |= dilate(_is_in(classes, grown) & finite, dilate_px)
    return masked


CLASS_TABLE_SIZE = 256  # SCL's classes (0-11) and any 8-bit class band


def _is_in(classes: np.ndarray, chosen: Collection[int]) -> np.ndarray:
    """`np.isin(classes, chosen)`, by a lookup table when the classes are 8-bit: on a 23-date
    101 x 101 SCL stack, 0.26 against 3.1 ms."""
    if classes.size and classes.min() >= 0 and classes.max() < CLASS_TABLE_SIZE:
        table = np.zeros(CLASS_TABLE_SIZE, bool)
        table[[c for c in chosen if 0 <= c < CLASS_TABLE_SIZE]] = True
        found: np.ndarray = table[classes]
        return found
    return np.isin(classes, list(chosen))


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """`mask` (..., y, x) grown by a disk of `radius` pixels: True where a True pixel's centre
    is at most `radius` away. Row by row of the disk, a running window along x (via cumulative
    sums) and a shift along y: O(radius * pixels)."""
    reach = int(math.floor(radius))
    if reach < 1:
        return mask.copy()
    height = mask.shape[-2]
    grown = np.zeros_like(mask)
    counts = np.cumsum(mask, axis=-1, dtype=np.int32)
    padded = np.concatenate([np.zeros_like(counts[..., :1]), counts], axis=-1)
    width = mask.shape[-1]
    columns = np.arange(width)
    for dy in range(-reach, reach + 1):
        half = int(math.floor(math.sqrt(radius * radius - dy * dy)))
        right = np.minimum(columns + half + 1, width)
        left = np.maximum(columns - half, 0)
        row_hits = (padded[..., right] - padded[..., left]) > 0
        if dy >= 0:
            grown[..., : height - dy, :] |= row_hits[..., dy:, :]
        else:
            grown[..., -dy:, :] |= row_hits[..., : height + dy, :]
    return grown


def clear_pixels(
    classification: np.ndarray,
    mask_classes: Collection[int],
    dilate_px: float = 0.0,
) -> np.ndarray:
    """True where the pixel has a class (not NaN) that is not masked (see `masked_classes`)."""
    return ~masked_classes(classification, mask_classes, dilate_px)
