"""The pixels of one acquisition: the tile's landscape on that day under that day's sky, as DN.

Everything random in a scene is drawn from one generator seeded by (seed, feature, day,
clear fraction), in a fixed order, so that a scene is the same whichever process renders it.
Reflectance becomes DN = round(reflectance * 10000) + the baseline's offset, never 0 (nodata).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sitsflow.demo.bands import REFLECTANCE_BANDS
from sitsflow.demo.clouds import band_reflectance, draw_sky, scene_classification
from sitsflow.demo.fields import seeded_rng, upsample2
from sitsflow.demo.landscape import Landscape, surface_reflectance
from sitsflow.demo.tiles import Acquisition, FeatureSpec, dn_offset


@dataclass(frozen=True)
class Scene:
    """Pixels of one item: DN of each reflectance band (10 m or 20 m) and the SCL (20 m)."""

    dn: dict[str, np.ndarray]
    scl: np.ndarray


def _to_dn(reflectance: np.ndarray, offset: int) -> np.ndarray:
    """DN = round(reflectance * 10000) + offset, clipped to [1, 65535] (0 is nodata)."""
    return np.clip(np.rint(reflectance * 10000.0) + offset, 1, 65535).astype(np.uint16)


def render(spec: FeatureSpec, landscape: Landscape, acquisition: Acquisition) -> Scene:
    """All pixels of one item, drawn from a generator seeded by (seed, feature, day)."""
    rng = seeded_rng("scene", spec.seed, spec.fid, acquisition.day.isoformat(), spec.clear_fraction)
    unit_reflectance = surface_reflectance(landscape, acquisition.day, spec.lat, rng)
    sky = draw_sky(spec, landscape, acquisition, rng)
    scl = scene_classification(landscape, unit_reflectance, sky)
    offset = dn_offset(acquisition.baseline)
    masks = ("snow", "shadow", "cirrus", "thick", "sqrt_depth")
    sky20 = {
        **sky,
        "thick": sky["medium"] | sky["high"],
        "sqrt_depth": np.sqrt(sky["depth"]).astype(np.float32),
    }
    sky10 = {name: upsample2(sky20[name]) for name in masks}
    dn = {}
    for index, band in enumerate(REFLECTANCE_BANDS):
        units, band_sky = (landscape.unit10, sky10) if band.gsd == 10 else (landscape.unit20, sky20)
        surface = unit_reflectance[:, index].astype(np.float32)[units]
        dn[band.name] = _to_dn(band_reflectance(surface, index, band_sky), offset)
    return Scene(dn=dn, scl=scl)
