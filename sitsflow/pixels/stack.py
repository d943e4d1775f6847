"""What a read of a feature's items gives, whichever loader read them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from sitsflow.core.types import StacItem


@dataclass
class ItemStack:
    """What a feature's read gave: `data[i, b]` is item `items[i]`'s band `bands[b]` on the
    grid (float32; NaN where the file has no data, outside it, or a failed read with
    `on_missing_asset: skip`); `sources[band]` counts the files read at each level;
    `through_gdal[item id][band]` says why sitsflow's reader left that file to GDAL."""

    data: np.ndarray
    items: list[StacItem]
    bands: list[str]
    sources: dict[str, Counter[str]]
    through_gdal: dict[str, dict[str, str]] = field(default_factory=dict)
