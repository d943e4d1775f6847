"""The sky of one acquisition and the scene classification (SCL) that describes it.

Clouds are the top share of a smooth two-scale field (the share drawn per date: mostly clear
or cloudy dates), split by depth into thin cirrus (10), medium (8) and high (9) probability
clouds; shadows are the clouds shifted away from the sun; snow falls on some winter dates at
high latitude; a few pixels are unclassified (7). The SCL is the land cover (vegetation 4,
not vegetated 5, water 6) overlaid by these, and the reflectance of each band is modified
under the same masks, so that the SCL is consistent with the pixels.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np

from sitsflow.demo.fields import shift_mask, smooth_field, top_fraction
from sitsflow.demo.landscape import WATER, Landscape
from sitsflow.demo.tiles import Acquisition, FeatureSpec, solar_angles

# Spectra (B02 B03 B04 B08 B11) and reflectance effects of what the sky adds to the surface.
SNOW_SPECTRUM = (0.680, 0.670, 0.650, 0.580, 0.060)
CLOUD_WEIGHTS = (1.0, 0.98, 0.96, 0.94, 0.8)  # clouds are a little darker in the SWIR
REFLECTANCE_RANGE = (0.005, 0.7)  # surface reflectance (clouds go up to 0.8)
VEGETATION_NDVI = 0.4  # SCL 4 above, SCL 5 below
CLOUD_SCALES_M = ((800, 1.0), (280, 0.5))
CLOUD_STEP = 0.05  # cloud reflectance quantum: quantized clouds compress well


def draw_sky(
    spec: FeatureSpec, landscape: Landscape, acquisition: Acquisition, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Cloud, cirrus, shadow, snow and unclassified masks on the 20 m grid, plus cloud depth."""
    shape = spec.shape(20)
    clear = rng.random() < spec.clear_fraction
    fraction = rng.uniform(0.0, 0.08) if clear else rng.uniform(0.12, 1.0)
    # An array: CLOUD_SCALES_M is not empty (sum's start value 0 is never returned alone).
    field = cast(
        np.ndarray,
        sum(weight * smooth_field(rng, shape, size / 20) for size, weight in CLOUD_SCALES_M),
    )
    cloudy = top_fraction(field, fraction)
    depth = np.zeros(shape)
    if cloudy.any():
        low, high = field[cloudy].min(), field[cloudy].max()
        depth[cloudy] = (field[cloudy] - low) / max(high - low, 1e-9)
    with_cirrus = rng.random() < 0.3
    cirrus = cloudy & (depth < 0.25) if with_cirrus else np.zeros(shape, dtype=bool)
    medium = cloudy & ~cirrus & (depth < 0.5 if with_cirrus else depth < 0.3)
    high = cloudy & ~cirrus & ~medium

    _, sun_azimuth = solar_angles(spec.lat, spec.lon, acquisition.moment)
    length = rng.uniform(250, 700) / 20
    toward = math.radians(sun_azimuth + 180.0)
    rows, cols = -round(length * math.cos(toward)), round(length * math.sin(toward))
    shadow = shift_mask(medium | high, rows, cols) & ~cloudy

    doy = acquisition.day.timetuple().tm_yday
    winter = (152 <= doy <= 243) if spec.lat < 0 else (doy <= 59 or doy >= 335)
    snow = np.zeros(shape, dtype=bool)
    if winter and abs(spec.lat) >= 40 and rng.random() < 0.35:
        snow = top_fraction(smooth_field(rng, shape, 20), rng.uniform(0.005, 0.05))
        snow &= ~landscape.water20
    unclassified = rng.random(shape) < rng.uniform(0.0, 0.003)
    return {
        "depth": depth,
        "cirrus": cirrus,
        "medium": medium,
        "high": high,
        "shadow": shadow,
        "snow": snow,
        "unclassified": unclassified,
    }


def scene_classification(
    landscape: Landscape, unit_reflectance: np.ndarray, sky: dict[str, np.ndarray]
) -> np.ndarray:
    """SCL on the 20 m grid: land cover (4/5/6) overlaid by 11, 7, 3 and clouds 8/9/10."""
    red, nir = unit_reflectance[:, 2], unit_reflectance[:, 3]
    ndvi = (nir - red) / (nir + red)
    land = np.where(ndvi >= VEGETATION_NDVI, 4, 5)
    land[landscape.unit_class == WATER] = 6
    scl: np.ndarray = land[landscape.unit20].astype(np.uint8)
    for name, value in (
        ("snow", 11),
        ("unclassified", 7),
        ("shadow", 3),
        ("medium", 8),
        ("high", 9),
        ("cirrus", 10),
    ):
        scl[sky[name]] = value
    return scl


def band_reflectance(surface: np.ndarray, band: int, sky: dict[str, np.ndarray]) -> np.ndarray:
    """Reflectance of one band with snow, shadow, cirrus and clouds applied (`sky` on its grid)."""
    low, high = REFLECTANCE_RANGE
    value = np.clip(surface, low, high)
    value = np.where(sky["snow"], np.float32(SNOW_SPECTRUM[band]), value)
    value = np.where(sky["shadow"], np.maximum(value * np.float32(0.3), np.float32(low)), value)
    value = np.where(sky["cirrus"], np.float32(0.3) + np.float32(0.5) * value, value)
    brightness = 0.3 + 0.5 * sky["sqrt_depth"] * CLOUD_WEIGHTS[band]
    return np.where(sky["thick"], np.round(brightness / CLOUD_STEP) * CLOUD_STEP, value)
