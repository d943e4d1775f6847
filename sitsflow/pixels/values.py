"""From the files' values to reflectance: invalid DNs out, then the provider's scale/offset.

Sentinel-2 L2A reserves two DNs in every band: 0 for no data and 65535 for saturated pixels.
Both are invalid whatever the file says: a COG without a nodata tag (the STAC item's
`raster:bands.nodata` then says 0) would otherwise turn DN 0 into reflectance -0.1, and a
saturated pixel into 6.45, and count them as observed. A value the item declares as nodata is
invalid too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from sitsflow.core.bands import CLASSIFICATION_BANDS, QA_RADSAT
from sitsflow.pixels.stack import ItemStack

NODATA_DN = 0
SATURATED_DN = 65535
RESERVED_DNS = (NODATA_DN, SATURATED_DN)


def invalid_values(asset: dict[str, Any], band: str) -> list[float]:
    """The values of `band`'s file that are no data: L2A's reserved DNs (reflectance bands),
    no data 0 (class bands; Landsat's QA_RADSAT 0 means nothing saturated), and the `nodata`
    the asset's `raster:bands` declares (QA_PIXEL: 1, fill)."""
    if band == QA_RADSAT:  # 0: nothing saturated
        values: set[float] = set()
    elif band in CLASSIFICATION_BANDS:
        values = {NODATA_DN}
    else:
        values = set(RESERVED_DNS)
    for declared in asset.get("raster:bands") or []:
        nodata = declared.get("nodata") if isinstance(declared, dict) else None
        if isinstance(nodata, (int, float)) and np.isfinite(nodata):
            values.add(float(nodata))
    return sorted(values)


def mark_invalid(stack: ItemStack) -> dict[str, int]:
    """Set every invalid value of `stack` to NaN, in place; return the count per band. A band
    whose items all declare the same invalid values (the usual case) is done in one pass."""
    counts = dict.fromkeys(stack.bands, 0)
    for band_index, band in enumerate(stack.bands):
        values = [invalid_values(item["assets"][band], band) for item in stack.items]
        if values and all(v == values[0] for v in values):
            counts[band] += _mark(stack.data[:, band_index], values[0])
            continue
        for item_index, invalid in enumerate(values):
            counts[band] += _mark(stack.data[item_index, band_index], invalid)
    return counts


def _mark(layers: np.ndarray, values: list[float]) -> int:
    """Set `values` in `layers` (a view) to NaN; how many there were."""
    if not values:
        return 0
    invalid = layers == np.float32(values[0])
    for value in values[1:]:
        invalid |= layers == np.float32(value)
    count = int(np.count_nonzero(invalid))
    if count:
        layers[invalid] = np.nan
    return count


def to_reflectance(stack: ItemStack, bands: Iterable[str]) -> None:
    """Scale the DNs of `bands` to surface reflectance, in place, with each item's rule
    (`sitsflow.catalog.providers.radiometry`, recorded on the asset when it was normalised)."""
    for band_index, band in enumerate(stack.bands):
        if band not in set(bands):
            continue
        for item_index, item in enumerate(stack.items):
            asset = item["assets"][band]
            layer = stack.data[item_index, band_index]
            layer *= np.float32(asset["sitsflow:scale"])
            layer += np.float32(asset["sitsflow:offset"])
