"""Sentinel-2 L2A band names: the names a config may use and the one each stands for.

Settings (config `bands`, `mask.band`) and the catalog's asset keys both speak these names, so
they live with the foundations rather than with any one provider.
"""

from __future__ import annotations

from sitsflow.core.errors import InputError

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
CLASSIFICATION_BANDS = ("SCL",)

COMMON_NAMES = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
}


def canonical_band(name: str) -> str:
    """`red` -> `B04`, `b8a` -> `B8A`, `scl` -> `SCL`; error listing valid names otherwise."""
    upper = name.upper()
    if upper in S2_BANDS or upper in CLASSIFICATION_BANDS:
        return upper
    if name.lower() in COMMON_NAMES:
        return COMMON_NAMES[name.lower()]
    valid = list(S2_BANDS) + list(CLASSIFICATION_BANDS) + sorted(COMMON_NAMES)
    raise InputError(f"unknown band {name!r}; valid names: {valid}", key="bands")
