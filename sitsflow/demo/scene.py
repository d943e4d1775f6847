"""The pixels of one acquisition: the tile's landscape on that day under that day's sky, as DN.

Everything random in a scene is drawn from one generator seeded by (seed, feature, day,
clear fraction), in a fixed order, so that a scene is the same whichever process renders it.
Reflectance becomes DN = round(reflectance * 10000) + the baseline's offset, never 0 (nodata).

The options of `sitsflow.demo.options` that change pixels are applied here, each from its own
generator so that the default scene stays exactly what it was: with overlapping tiles each tile
draws its own sky over the shared surface; a checkerboard SCL, a swath edge (DN 0 and SCL 0)
and saturated pixels (DN 65535, not flagged in the SCL) are laid over the rendered scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from sitsflow.demo.bands import CLOUD_CLASSES, NODATA, REFLECTANCE_BANDS
from sitsflow.demo.clouds import band_reflectance, draw_sky, scene_classification
from sitsflow.demo.fields import seeded_rng, upsample2
from sitsflow.demo.landscape import Landscape, surface_reflectance
from sitsflow.demo.tiles import Acquisition, FeatureSpec, dn_offset, outside_swath

SATURATED_DN = 65535
SATURATED_CLASS = 1  # SCL "saturated or defective": the class that would flag them
# Checkerboard SCL: 2 x 2 means of these two classes are 7, a class absent at full resolution.
CHECKERBOARD_CLASSES = (5, 9)
CLEAR_DATE_CLOUD_PERCENT = 10.0  # a date is clear below this SCL cloud share


@dataclass(frozen=True)
class Scene:
    """Pixels of one item: DN of each reflectance band (10 m or 20 m) and the SCL (20 m)."""

    dn: dict[str, np.ndarray]
    scl: np.ndarray


def _to_dn(reflectance: np.ndarray, offset: int) -> np.ndarray:
    """DN = round(reflectance * 10000) + offset, clipped to [1, 65535] (0 is nodata)."""
    return np.asarray(np.clip(np.rint(reflectance * 10000.0) + offset, 1, 65535).astype(np.uint16))


def render(spec: FeatureSpec, landscape: Landscape, acquisition: Acquisition) -> Scene:
    """All pixels of one item, drawn from a generator seeded by (seed, feature, day)."""
    day = acquisition.day.isoformat()
    rng = seeded_rng("scene", spec.seed, spec.fid, day, spec.clear_fraction)
    unit_reflectance = surface_reflectance(landscape, acquisition.day, spec.lat, rng)
    if spec.options.overlapping_tiles:
        # Same surface (drawn above) in both tiles of the feature, an independent sky in each.
        rng = seeded_rng("sky", spec.seed, spec.fid, day, spec.clear_fraction, spec.tile)
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
    if spec.options.scl_pattern == "checkerboard":
        scl = _checkerboard(scl)
    outside = outside_swath(spec, acquisition)
    if outside is not None:
        _blank(spec, outside, dn, scl)
    if spec.options.saturated_fraction > 0:
        _saturate(spec, acquisition, dn, scl)
    return Scene(dn=dn, scl=scl)


def _checkerboard(scl: np.ndarray) -> np.ndarray:
    """On a clear date, an SCL alternating CHECKERBOARD_CLASSES pixel by pixel; else `scl`.

    The reflectance stays that of the scene: this SCL exists to show what averaged overviews
    of a class band do, not to describe the pixels.
    """
    if 100.0 * np.isin(scl, CLOUD_CLASSES).mean() >= CLEAR_DATE_CLOUD_PERCENT:
        return scl
    rows, cols = np.indices(scl.shape)
    even, odd = CHECKERBOARD_CLASSES
    return np.where((rows + cols) % 2 == 0, even, odd).astype(scl.dtype)


def _blank(
    spec: FeatureSpec, outside: shapely.Polygon, dn: dict[str, np.ndarray], scl: np.ndarray
) -> None:
    """Set DN and SCL to 0 (no data) on the 20 m pixels whose centre lies outside the swath.

    The 10 m bands take the 20 m pixels' 2 x 2 blocks, so that no band has data where the SCL
    has none.
    """
    minx, _, _, maxy = spec.bounds
    rows, cols = np.indices(scl.shape)
    blank20 = shapely.contains_xy(outside, minx + 20 * (cols + 0.5), maxy - 20 * (rows + 0.5))
    blank10 = upsample2(blank20)
    scl[blank20] = NODATA
    for band in REFLECTANCE_BANDS:
        dn[band.name][blank20 if band.gsd == 20 else blank10] = NODATA


def _saturate(
    spec: FeatureSpec, acquisition: Acquisition, dn: dict[str, np.ndarray], scl: np.ndarray
) -> None:
    """Set exactly round(saturated_fraction * n) of each band's n eligible pixels to 65535.

    Eligible: pixels with data that the SCL does not flag as saturated (class 1), chosen
    independently per band (as L2A saturation is per band) and per tile.
    """
    rng = seeded_rng("saturation", spec.seed, spec.fid, acquisition.day.isoformat(), spec.tile)
    eligible20 = ~np.isin(scl, (NODATA, SATURATED_CLASS))
    eligible10 = upsample2(eligible20)
    for band in REFLECTANCE_BANDS:
        pixels = np.flatnonzero(eligible20 if band.gsd == 20 else eligible10)
        count = round(spec.options.saturated_fraction * pixels.size)
        np.put(dn[band.name], rng.choice(pixels, size=count, replace=False), SATURATED_DN)
