"""A small synthetic Sentinel-2 L2A archive shaped like the real catalogs, for demos and tests.

The workflow's default run and its tests need an archive to search and to load with stackstac,
without network access. This module writes one small tile per feature (the feature's bounds in
its UTM zone plus a margin) with a time series of items whose metadata and pixels imitate the
real thing closely enough to exercise every code path:

* item layouts of Planetary Computer `sentinel-2-l2a` (asset keys `B04`, no `raster:bands`,
  DN offset decided by `s2:processing_baseline`) or Earth Search `sentinel-2-c1-l2a` (asset
  keys `red`, `raster:bands` scale/offset, every DN carrying the +1000 offset);
* Cloud-Optimized GeoTIFFs (tiled 128 x 128, DEFLATE, internal overviews, nodata 0) on 10 m
  and 20 m grids that align exactly (tile edges are multiples of 60 m);
* surface reflectance with seasonal vegetation curves over land-cover parcels, clouds, cirrus,
  shadows and snow, and an SCL band consistent with the pixels, so that `eo:cloud_cover` is
  exactly the share of SCL 8/9/10 pixels.

Pixel values depend only on the feature's own parameters (id, geometry, dates, seed, ...),
never on the other features or on the number of worker processes. Regeneration is incremental: a
`manifest.json` records what was generated for which parameters.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
import shapely.geometry
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from sitsflow.atomic import atomic_write_text
from sitsflow.projection import reproject, utm_epsg_for

log = logging.getLogger(__name__)

# Bump when the pixels or metadata produced for the same parameters change: the manifest then
# no longer matches and every feature is regenerated.
GENERATOR_VERSION = 1

LAYOUTS = ("planetary-computer", "earth-search-c1")
GRID_STEP_M = 60  # tile edges on multiples of 60 m: the 10, 20 and 60 m grids all align
BLOCKSIZE = 128
REFLECTANCE_RESAMPLING = "NEAREST"  # overview resampling of the reflectance bands
NODATA = 0
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
ITEMS_FILE = "items.json"
MANIFEST_FILE = "manifest.json"
FEATURE_ITEMS_FILE = "feature-items.json"

LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # MGRS bands of 8 degrees from 80 S (X spans 12)
MGRS_COLUMN_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
MGRS_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"

# Processing baselines by first acquisition day (Planetary Computer serves what ESA produced);
# the Earth Search Collection-1 archive is reprocessed to 05.10 / 05.11.
PC_BASELINES = (
    (date(2024, 7, 23), "05.11"),
    (date(2023, 12, 13), "05.10"),
    (date(2022, 12, 6), "05.09"),
    (date(2022, 1, 25), "04.00"),
)
EARLIEST_BASELINE = "03.01"
C1_BASELINES = ((date(2024, 7, 23), "05.11"),)
C1_DEFAULT_BASELINE = "05.10"
BASELINE_OFFSET_DN = 1000

# Absolute orbit references from recorded items (S2A 046141, S2B 037204), and the phase that
# turns an absolute orbit into the relative orbit of the product names (R098, R078 ...).
ORBIT_REFERENCES = {
    "A": (datetime(2024, 4, 22, 17, 39, 11, tzinfo=UTC), 46141, 2),
    "B": (datetime(2024, 4, 20, 17, 49, 9, tzinfo=UTC), 37204, -27),
}
ORBITS_PER_DAY = 14.3


@dataclass(frozen=True)
class _Band:
    """One reflectance band: names on both catalogs, resolution and `eo:bands` fields."""

    name: str
    common_name: str
    gsd: int
    center_wavelength: float
    full_width_half_max: float
    description: str
    earth_search_title: str


REFLECTANCE_BANDS = (
    _Band("B02", "blue", 10, 0.49, 0.098, "Band 2 - Blue", "Blue - 10m"),
    _Band("B03", "green", 10, 0.56, 0.045, "Band 3 - Green", "Green - 10m"),
    _Band("B04", "red", 10, 0.665, 0.038, "Band 4 - Red", "Red - 10m"),
    _Band("B08", "nir", 10, 0.842, 0.145, "Band 8 - NIR", "NIR 1 - 10m"),
    _Band("B11", "swir16", 20, 1.61, 0.143, "Band 11 - SWIR (1.6)", "SWIR 1.6\u03bcm - 20m"),
)
SCL_NAME = "SCL"

# Scene classification values and the property each one's percentage is reported under.
SCL_PERCENTAGES = {
    1: "s2:saturated_defective_pixel_percentage",
    2: "s2:dark_features_percentage",
    3: "s2:cloud_shadow_percentage",
    4: "s2:vegetation_percentage",
    5: "s2:not_vegetated_percentage",
    6: "s2:water_percentage",
    7: "s2:unclassified_percentage",
    8: "s2:medium_proba_clouds_percentage",
    9: "s2:high_proba_clouds_percentage",
    10: "s2:thin_cirrus_percentage",
    11: "s2:snow_ice_percentage",
}
CLOUD_CLASSES = (8, 9, 10)

# Land cover of the synthetic landscape.
WATER, FOREST, GRASS, SUMMER_CROP, WINTER_CROP, BARE = range(6)
PARCEL_CLASSES = (GRASS, SUMMER_CROP, WINTER_CROP, BARE)
PARCEL_CLASS_WEIGHTS = (0.35, 0.25, 0.30, 0.10)
# Greenness g(doy) = base + sum(amplitude * bell(doy; peak, width)), northern hemisphere.
PHENOLOGY = {
    WATER: (0.0, ()),
    FOREST: (0.45, ((0.45, 185, 70),)),
    GRASS: (0.30, ((0.50, 150, 60), (0.10, 260, 40))),
    SUMMER_CROP: (0.05, ((0.85, 200, 35),)),
    WINTER_CROP: (0.15, ((0.75, 130, 40), (0.15, 330, 40))),
    BARE: (0.05, ()),
}
# Spectra (B02 B03 B04 B08 B11) of the "no vegetation" and "full vegetation" end members.
SOIL = (0.075, 0.105, 0.140, 0.215, 0.300)
GREEN = (0.025, 0.065, 0.030, 0.440, 0.180)
LITTER = (0.035, 0.050, 0.045, 0.190, 0.160)
CANOPY = (0.020, 0.045, 0.025, 0.360, 0.150)
BUILT = (0.090, 0.100, 0.110, 0.160, 0.210)
WATER_SPECTRUM = (0.045, 0.050, 0.030, 0.015, 0.008)
SNOW_SPECTRUM = (0.680, 0.670, 0.650, 0.580, 0.060)
END_MEMBERS = {
    WATER: (WATER_SPECTRUM, WATER_SPECTRUM),
    FOREST: (LITTER, CANOPY),
    GRASS: (SOIL, GREEN),
    SUMMER_CROP: (SOIL, GREEN),
    WINTER_CROP: (SOIL, GREEN),
    BARE: (BUILT, GREEN),
}
HAZE_WEIGHTS = (1.0, 0.7, 0.45, 0.2, 0.03)  # per-date path radiance left after correction
CLOUD_WEIGHTS = (1.0, 0.98, 0.96, 0.94, 0.8)  # clouds are a little darker in the SWIR
REFLECTANCE_RANGE = (0.005, 0.7)  # surface reflectance (clouds go up to 0.8)
VEGETATION_NDVI = 0.4  # SCL 4 above, SCL 5 below
PARCEL_SIZE_M = 500
CLOUD_SCALES_M = ((800, 1.0), (280, 0.5))
CLOUD_STEP = 0.05  # cloud reflectance quantum
# Piecewise-constant land cover and quantized clouds keep the archive small (DEFLATE thrives
# on runs); per-pixel noise or a fine texture would multiply its size several times.


# --------------------------------------------------------------------------------------------
# Small deterministic helpers


def _digest(*parts: object) -> int:
    """A stable 64-bit integer from `parts` (Python's hash() is salted per process)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _rng(*parts: object) -> np.random.Generator:
    """A random generator seeded from `parts` only: same parts, same numbers, in any process."""
    return np.random.default_rng(_digest(*parts))


def _as_date(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def acquisition_days(start: str | date, end: str | date, revisit_days: int) -> list[date]:
    """Every `revisit_days` from `start` to `end`, both included."""
    first, last = _as_date(start), _as_date(end)
    count = (last - first).days // revisit_days + 1 if last >= first else 0
    return [first + timedelta(days=revisit_days * i) for i in range(count)]


def processing_baseline(day: date, layout: str = "planetary-computer") -> str:
    """`s2:processing_baseline` of an acquisition on `day` in the given item layout."""
    table, default = (
        (C1_BASELINES, C1_DEFAULT_BASELINE)
        if layout == "earth-search-c1"
        else (PC_BASELINES, EARLIEST_BASELINE)
    )
    for since, baseline in table:
        if day >= since:
            return baseline
    return default


def dn_offset(baseline: str) -> int:
    """DN offset added to reflectance * 10000 by ESA from processing baseline 04.00 on."""
    return BASELINE_OFFSET_DN if float(baseline) >= 4.0 else 0


def latitude_band(lat: float) -> str:
    """MGRS latitude band letter of a latitude."""
    return LATITUDE_BANDS[min(max(int((lat + 80) // 8), 0), len(LATITUDE_BANDS) - 1)]


def tile_name(feature_id: str, zone: int, lat: float, salt: int = 0) -> str:
    """MGRS-looking tile id (`32UNB`): real zone and band, grid square letters from a hash."""
    value = _digest("tile", feature_id, salt)
    column = MGRS_COLUMN_LETTERS[value % len(MGRS_COLUMN_LETTERS)]
    row = MGRS_ROW_LETTERS[(value // len(MGRS_COLUMN_LETTERS)) % len(MGRS_ROW_LETTERS)]
    return f"{zone:02d}{latitude_band(lat)}{column}{row}"


def tile_bounds_utm(
    geometry: BaseGeometry, margin_m: float = 1920.0
) -> tuple[int, tuple[float, float, float, float]]:
    """(EPSG, bounds) of a feature's demo tile: its UTM bounds + margin, snapped outward to 60 m.

    The zone is that of the centroid (as everywhere in sitsflow). Edges are segmentized before
    projecting so that the curved image of a long lon/lat edge is still inside the tile.
    """
    epsg = utm_epsg_for(geometry)
    projected = reproject(shapely.segmentize(geometry, 0.01), 4326, epsg)
    minx, miny, maxx, maxy = projected.bounds
    step = GRID_STEP_M
    return epsg, (
        float(math.floor((minx - margin_m) / step) * step),
        float(math.floor((miny - margin_m) / step) * step),
        float(math.ceil((maxx + margin_m) / step) * step),
        float(math.ceil((maxy + margin_m) / step) * step),
    )


# --------------------------------------------------------------------------------------------
# What is generated for one feature


@dataclass(frozen=True)
class _FeatureSpec:
    """Everything a worker process needs to generate one feature's items (picklable)."""

    fid: str
    tile: str
    epsg: int
    bounds: tuple[float, float, float, float]
    lon: float
    lat: float
    layout: str
    seed: int
    revisit_days: int
    clear_fraction: float

    def shape(self, resolution: int) -> tuple[int, int]:
        minx, miny, maxx, maxy = self.bounds
        return round((maxy - miny) / resolution), round((maxx - minx) / resolution)

    def transform(self, resolution: int) -> Affine:
        return Affine(resolution, 0.0, self.bounds[0], 0.0, -resolution, self.bounds[3])


@dataclass(frozen=True)
class _Acquisition:
    """Time and orbit metadata of one item."""

    day: date
    moment: datetime  # sensing time, UTC
    generated: datetime  # processing time, UTC
    platform: str  # "A" or "B"
    baseline: str
    absolute_orbit: int
    relative_orbit: int


def _acquisition(spec: _FeatureSpec, day: date) -> _Acquisition:
    """Sensing at ~10:30 local solar time (so the solar day is the UTC day in Europe)."""
    jitter_ms = _digest("time", spec.seed, spec.fid) % 60000
    moment = (
        datetime(day.year, day.month, day.day, 10, 30, tzinfo=UTC)
        - timedelta(seconds=round(spec.lon * 240))  # lon / 15 hours
        + timedelta(milliseconds=jitter_ms)
    )
    generated = moment + timedelta(seconds=3600 + _digest("gen", spec.fid, day) % 18000)
    platform = "A" if (day.toordinal() // spec.revisit_days) % 2 == 0 else "B"
    reference, orbit, phase = ORBIT_REFERENCES[platform]
    absolute = orbit + round((moment - reference).total_seconds() / 86400 * ORBITS_PER_DAY)
    return _Acquisition(
        day=day,
        moment=moment,
        generated=generated,
        platform=platform,
        baseline=processing_baseline(day, spec.layout),
        absolute_orbit=absolute,
        relative_orbit=(absolute + phase) % 143 + 1,
    )


def _solar_angles(lat: float, lon: float, moment: datetime) -> tuple[float, float]:
    """Approximate solar (zenith, azimuth) in degrees; azimuth clockwise from north."""
    doy = moment.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365)
    hours = moment.hour + moment.minute / 60 + moment.second / 3600 + lon / 15
    hour_angle = math.radians(15 * (hours - 12))
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(
        declination
    ) * math.cos(hour_angle)
    zenith = math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))
    azimuth = math.degrees(
        math.atan2(
            math.sin(hour_angle),
            math.cos(hour_angle) * math.sin(phi) - math.tan(declination) * math.cos(phi),
        )
    )
    return zenith, (azimuth + 180.0) % 360.0


# --------------------------------------------------------------------------------------------
# Random fields


def _interpolate_axis(lattice: np.ndarray, n: int, cell: float, axis: int) -> np.ndarray:
    """Resample `lattice` along `axis` to `n` pixels, nodes `cell` pixels apart (smoothstep).

    Plain indexing rather than an interpolation-matrix product: the product would go through
    BLAS, whose threads spin and steal the CPU from the other worker processes.
    """
    position = (np.arange(n) + 0.5) / cell
    lower = np.floor(position).astype(int)
    fraction = position - lower
    fraction = fraction * fraction * (3 - 2 * fraction)
    shape = [1, 1]
    shape[axis] = n
    fraction = fraction.reshape(shape)
    below = np.take(lattice, lower, axis=axis)
    above = np.take(lattice, lower + 1, axis=axis)
    return below * (1 - fraction) + above * fraction


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """A smooth random field with features about `cell` pixels across, zero mean, unit std."""
    height, width = shape
    lattice = rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2))
    field = _interpolate_axis(_interpolate_axis(lattice, height, cell, 0), width, cell, 1)
    return (field - field.mean()) / (field.std() + 1e-12)


def _top_fraction(field: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the round(fraction * size) largest values of `field` (exact pixel count)."""
    count = int(round(fraction * field.size))
    mask = np.zeros(field.size, dtype=bool)
    if count > 0:
        mask[np.argpartition(field.ravel(), field.size - count)[field.size - count :]] = True
    return mask.reshape(field.shape)


def _upsample2(array: np.ndarray) -> np.ndarray:
    """Each 20 m pixel as its 2 x 2 block of 10 m pixels."""
    return np.repeat(np.repeat(array, 2, axis=0), 2, axis=1)


def _shift(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`mask` moved by (rows, cols) pixels (positive = south, east), vacated cells False."""
    height, width = mask.shape
    out = np.zeros_like(mask)
    if abs(rows) >= height or abs(cols) >= width:
        return out
    src_r = slice(max(0, -rows), height - max(0, rows))
    dst_r = slice(max(0, rows), height - max(0, -rows))
    src_c = slice(max(0, -cols), width - max(0, cols))
    dst_c = slice(max(0, cols), width - max(0, -cols))
    out[dst_r, dst_c] = mask[src_r, src_c]
    return out


# --------------------------------------------------------------------------------------------
# The static landscape of one tile


@dataclass(frozen=True)
class _Landscape:
    """Land-cover units (parcels, forest stands, water) of one tile and their parameters."""

    unit20: np.ndarray  # unit index of each 20 m pixel
    unit10: np.ndarray  # the same on the 10 m grid
    unit_class: np.ndarray
    unit_shift: np.ndarray  # phenology shift, days
    unit_amplitude: np.ndarray  # phenology amplitude factor
    unit_brightness: np.ndarray
    water20: np.ndarray


def _voronoi_parcels(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Parcel id per pixel: Voronoi cells of one jittered seed per `cell` x `cell` block."""
    height, width = shape
    ny, nx = height // cell + 3, width // cell + 3
    jitter = rng.uniform(0.1, 0.9, size=(2, ny, nx))
    seed_y = (np.arange(ny)[:, None] - 1 + jitter[0]) * cell
    seed_x = (np.arange(nx)[None, :] - 1 + jitter[1]) * cell
    yy = np.arange(height) + 0.5
    xx = np.arange(width) + 0.5
    cell_y = (yy // cell).astype(int)[:, None] + 1
    cell_x = (xx // cell).astype(int)[None, :] + 1
    best = np.full(shape, np.inf)
    label = np.zeros(shape, dtype=np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            gy, gx = cell_y + dy, cell_x + dx
            distance = (yy[:, None] - seed_y[gy, gx]) ** 2 + (xx[None, :] - seed_x[gy, gx]) ** 2
            closer = distance < best
            best = np.where(closer, distance, best)
            label = np.where(closer, gy * nx + gx, label)
    return label


def _make_landscape(spec: _FeatureSpec) -> _Landscape:
    """Parcels of grassland, crops and bare soil, forest blobs and a little water."""
    rng = _rng("landscape", spec.seed, spec.fid)
    shape20 = spec.shape(20)
    parcels = _voronoi_parcels(rng, shape20, PARCEL_SIZE_M // 20)
    n_parcels = int(parcels.max()) + 1
    weights = rng.dirichlet(np.array(PARCEL_CLASS_WEIGHTS) * 20)
    parcel_class = rng.choice(PARCEL_CLASSES, size=n_parcels, p=weights)
    forest = _top_fraction(smooth_field(rng, shape20, 40), rng.uniform(0.1, 0.35))
    water = _top_fraction(smooth_field(rng, shape20, 30), rng.uniform(0.02, 0.07))
    classes = parcel_class[parcels]
    units = parcels.copy()
    classes[forest] = FOREST
    units[forest] += n_parcels
    classes[water] = WATER
    units[water] = 2 * n_parcels
    _, unit20 = np.unique(units, return_inverse=True)
    unit20 = unit20.reshape(shape20).astype(np.int32)
    n_units = int(unit20.max()) + 1
    unit_class = np.zeros(n_units, dtype=np.int64)
    unit_class[unit20.ravel()] = classes.ravel()
    return _Landscape(
        unit20=unit20,
        unit10=_upsample2(unit20),
        unit_class=unit_class,
        unit_shift=np.clip(rng.normal(0, 8, n_units), -20, 20),
        unit_amplitude=rng.uniform(0.85, 1.1, n_units),
        unit_brightness=rng.uniform(0.9, 1.1, n_units),
        water20=unit_class[unit20] == WATER,
    )


def _greenness(doy: float, landscape: _Landscape, southern: bool) -> np.ndarray:
    """Greenness in [0, 1] of every unit on day-of-year `doy` (seasons flipped in the south)."""
    day = doy - (182.5 if southern else 0.0) - landscape.unit_shift
    green = np.zeros(len(landscape.unit_class))
    for cls, (base, bells) in PHENOLOGY.items():
        members = landscape.unit_class == cls
        if not members.any():
            continue
        seasonal = np.zeros(int(members.sum()))
        for amplitude, peak, width in bells:
            distance = (day[members] - peak + 182.5) % 365.0 - 182.5
            seasonal += amplitude * np.exp(-0.5 * (distance / width) ** 2)
        green[members] = base + landscape.unit_amplitude[members] * seasonal
    return np.clip(green, 0.0, 1.0)


def _unit_reflectance(
    landscape: _Landscape, day: date, lat: float, rng: np.random.Generator
) -> np.ndarray:
    """(units, 5) surface reflectance on `day`: end-member mix by greenness, plus haze."""
    green = _greenness(day.timetuple().tm_yday, landscape, lat < 0)
    green = np.clip(green + rng.normal(0, 0.03, green.shape), 0.0, 1.0)
    low = np.array([END_MEMBERS[c][0] for c in range(len(END_MEMBERS))])[landscape.unit_class]
    high = np.array([END_MEMBERS[c][1] for c in range(len(END_MEMBERS))])[landscape.unit_class]
    mix = (1 - green)[:, None] * low + green[:, None] * high
    brightness = landscape.unit_brightness * (1 + rng.normal(0, 0.01, green.shape))
    haze = rng.uniform(0.0, 0.012) * np.array(HAZE_WEIGHTS)
    return mix * brightness[:, None] + haze


# --------------------------------------------------------------------------------------------
# One acquisition: SCL and reflectance


@dataclass(frozen=True)
class _Scene:
    """Pixels of one item: DN of each reflectance band (10 m or 20 m) and the SCL (20 m)."""

    dn: dict[str, np.ndarray]
    scl: np.ndarray


def _sky(
    spec: _FeatureSpec, landscape: _Landscape, acquisition: _Acquisition, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Cloud, cirrus, shadow, snow and unclassified masks on the 20 m grid, plus cloud depth."""
    shape = spec.shape(20)
    clear = rng.random() < spec.clear_fraction
    fraction = rng.uniform(0.0, 0.08) if clear else rng.uniform(0.12, 1.0)
    field = sum(weight * smooth_field(rng, shape, size / 20) for size, weight in CLOUD_SCALES_M)
    cloudy = _top_fraction(field, fraction)
    depth = np.zeros(shape)
    if cloudy.any():
        low, high = field[cloudy].min(), field[cloudy].max()
        depth[cloudy] = (field[cloudy] - low) / max(high - low, 1e-9)
    with_cirrus = rng.random() < 0.3
    cirrus = cloudy & (depth < 0.25) if with_cirrus else np.zeros(shape, dtype=bool)
    medium = cloudy & ~cirrus & (depth < 0.5 if with_cirrus else depth < 0.3)
    high = cloudy & ~cirrus & ~medium

    _, sun_azimuth = _solar_angles(spec.lat, spec.lon, acquisition.moment)
    length = rng.uniform(250, 700) / 20
    toward = math.radians(sun_azimuth + 180.0)
    rows, cols = -round(length * math.cos(toward)), round(length * math.sin(toward))
    shadow = _shift(medium | high, rows, cols) & ~cloudy

    doy = acquisition.day.timetuple().tm_yday
    winter = (152 <= doy <= 243) if spec.lat < 0 else (doy <= 59 or doy >= 335)
    snow = np.zeros(shape, dtype=bool)
    if winter and abs(spec.lat) >= 40 and rng.random() < 0.35:
        snow = _top_fraction(smooth_field(rng, shape, 20), rng.uniform(0.005, 0.05))
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


def _scene_classification(
    landscape: _Landscape, unit_reflectance: np.ndarray, sky: dict[str, np.ndarray]
) -> np.ndarray:
    """SCL on the 20 m grid: land cover (4/5/6) overlaid by 11, 7, 3 and clouds 8/9/10."""
    red, nir = unit_reflectance[:, 2], unit_reflectance[:, 3]
    ndvi = (nir - red) / (nir + red)
    land = np.where(ndvi >= VEGETATION_NDVI, 4, 5)
    land[landscape.unit_class == WATER] = 6
    scl = land[landscape.unit20].astype(np.uint8)
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


def _band_reflectance(surface: np.ndarray, band: int, sky: dict[str, np.ndarray]) -> np.ndarray:
    """Reflectance of one band with snow, shadow, cirrus and clouds applied (`sky` on its grid)."""
    low, high = REFLECTANCE_RANGE
    value = np.clip(surface, low, high)
    value = np.where(sky["snow"], np.float32(SNOW_SPECTRUM[band]), value)
    value = np.where(sky["shadow"], np.maximum(value * np.float32(0.3), np.float32(low)), value)
    value = np.where(sky["cirrus"], np.float32(0.3) + np.float32(0.5) * value, value)
    brightness = 0.3 + 0.5 * sky["sqrt_depth"] * CLOUD_WEIGHTS[band]
    return np.where(sky["thick"], np.round(brightness / CLOUD_STEP) * CLOUD_STEP, value)


def _to_dn(reflectance: np.ndarray, offset: int) -> np.ndarray:
    """DN = round(reflectance * 10000) + offset, clipped to [1, 65535] (0 is nodata)."""
    return np.clip(np.rint(reflectance * 10000.0) + offset, 1, 65535).astype(np.uint16)


def _render(spec: _FeatureSpec, landscape: _Landscape, acquisition: _Acquisition) -> _Scene:
    """All pixels of one item, drawn from a generator seeded by (seed, feature, day)."""
    rng = _rng("scene", spec.seed, spec.fid, acquisition.day.isoformat(), spec.clear_fraction)
    unit_reflectance = _unit_reflectance(landscape, acquisition.day, spec.lat, rng)
    sky = _sky(spec, landscape, acquisition, rng)
    scl = _scene_classification(landscape, unit_reflectance, sky)
    offset = dn_offset(acquisition.baseline)
    masks = ("snow", "shadow", "cirrus", "thick", "sqrt_depth")
    sky20 = {
        **sky,
        "thick": sky["medium"] | sky["high"],
        "sqrt_depth": np.sqrt(sky["depth"]).astype(np.float32),
    }
    sky10 = {name: _upsample2(sky20[name]) for name in masks}
    dn = {}
    for index, band in enumerate(REFLECTANCE_BANDS):
        units, band_sky = (landscape.unit10, sky10) if band.gsd == 10 else (landscape.unit20, sky20)
        surface = unit_reflectance[:, index].astype(np.float32)[units]
        dn[band.name] = _to_dn(_band_reflectance(surface, index, band_sky), offset)
    return _Scene(dn=dn, scl=scl)


# --------------------------------------------------------------------------------------------
# Files


@lru_cache(maxsize=64)
def _crs(epsg: int) -> CRS:
    return CRS.from_epsg(epsg)


def overview_count(height: int, width: int, blocksize: int = BLOCKSIZE) -> int:
    """Overview levels: halve until the smallest fits in 2 x 2 blocks, but always at least one.

    GDAL's OVERVIEWS=AUTO goes on until one block; for the usual ~390 px tiles that second level
    would add ~25 % to the archive for no use.
    """
    size, levels = max(height, width), 0
    while size > 2 * blocksize:
        size = math.ceil(size / 2)
        levels += 1
    return max(levels, 1)


def cog_bytes(array: np.ndarray, transform: Affine, epsg: int, resampling: str) -> bytes:
    """A single-band Cloud-Optimized GeoTIFF (128 px tiles, DEFLATE, overviews, nodata 0).

    No predictor: on piecewise-constant rasters plain DEFLATE is ~15 % smaller than with the
    horizontal-differencing predictor.
    """
    height, width = array.shape
    profile = {
        "driver": "COG",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": _crs(epsg),
        "transform": transform,
        "nodata": NODATA,
        "BLOCKSIZE": BLOCKSIZE,
        "COMPRESS": "DEFLATE",
        "OVERVIEW_COUNT": overview_count(height, width),
        "OVERVIEW_RESAMPLING": resampling,
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dataset:
            dataset.write(array, 1)
        return memfile.read()


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# --------------------------------------------------------------------------------------------
# STAC items


def _item_id(spec: _FeatureSpec, acquisition: _Acquisition) -> str:
    sensed = acquisition.moment.strftime("%Y%m%dT%H%M%S")
    if spec.layout == "earth-search-c1":
        return f"S2{acquisition.platform}_T{spec.tile}_{sensed}_L2A"
    generated = acquisition.generated.strftime("%Y%m%dT%H%M%S")
    return (
        f"S2{acquisition.platform}_MSIL2A_{sensed}_R{acquisition.relative_orbit:03d}"
        f"_T{spec.tile}_{generated}"
    )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _footprint(spec: _FeatureSpec) -> tuple[dict, list[float]]:
    """GeoJSON polygon (counter-clockwise corners) and bbox of the tile in lon/lat.

    Corners suffice: over a few kilometres the image of a straight UTM edge bends by far less
    than a millimetre.
    """
    polygon = reproject(shapely.box(*spec.bounds), spec.epsg, 4326)
    polygon = shapely.transform(polygon, lambda coords: np.round(coords, 8))
    return shapely.geometry.mapping(polygon), [float(v) for v in polygon.bounds]


def _scl_percentages(scl: np.ndarray) -> dict[str, float]:
    """Percentage of tile pixels per SCL class, and eo:cloud_cover = classes 8 + 9 + 10."""
    counts = np.bincount(scl.ravel(), minlength=12)
    total = scl.size
    values = {key: 100.0 * int(counts[cls]) / total for cls, key in SCL_PERCENTAGES.items()}
    values["s2:nodata_pixel_percentage"] = 100.0 * int(counts[0]) / total
    values["s2:degraded_msi_data_percentage"] = 0.0
    values["eo:cloud_cover"] = 100.0 * int(sum(counts[c] for c in CLOUD_CLASSES)) / total
    return values


def _pc_assets(spec: _FeatureSpec, files: dict[str, tuple[str, bytes]]) -> dict[str, dict]:
    """Assets as Planetary Computer writes them: keyed `B04`, `proj:bbox`, no raster:bands."""
    assets = {}
    for band in (*REFLECTANCE_BANDS, None):
        name, gsd = (band.name, band.gsd) if band else (SCL_NAME, 20)
        asset: dict = {
            "href": files[name][0],
            "proj:bbox": list(spec.bounds),
            "proj:shape": list(spec.shape(gsd)),
            "proj:transform": list(spec.transform(gsd))[:6],
            "gsd": gsd if band else float(gsd),
            "type": COG_MEDIA_TYPE,
            "roles": ["data"],
        }
        if band:
            asset["title"] = f"{band.description} - {gsd}m"
            asset["eo:bands"] = [
                {
                    "name": band.name,
                    "common_name": band.common_name,
                    "description": band.description,
                    "center_wavelength": band.center_wavelength,
                    "full_width_half_max": band.full_width_half_max,
                }
            ]
        else:
            asset["title"] = "Scene classfication map (SCL)"  # sic, as PC spells it
        assets[name] = asset
    return assets


def _earth_search_assets(
    spec: _FeatureSpec, files: dict[str, tuple[str, bytes]]
) -> dict[str, dict]:
    """Assets as Earth Search C1 writes them: keyed `red`, raster:bands scale/offset, file:*."""
    assets = {}
    for band in (*REFLECTANCE_BANDS, None):
        name, gsd = (band.name, band.gsd) if band else (SCL_NAME, 20)
        href, data = files[name]
        asset: dict = {"href": href, "type": COG_MEDIA_TYPE}
        raster = {"nodata": NODATA, "data_type": "uint16" if band else "uint8"}
        raster["spatial_resolution"] = gsd
        if band:
            asset["title"] = band.earth_search_title
            asset["eo:bands"] = [
                {
                    "name": band.name,
                    "common_name": band.common_name,
                    "center_wavelength": band.center_wavelength,
                    "full_width_half_max": band.full_width_half_max,
                }
            ]
            raster.update(scale=0.0001, offset=-0.1)
        else:
            asset["title"] = "Scene classification map (SCL)"
        asset.update(
            {
                "gsd": gsd,
                "proj:shape": list(spec.shape(gsd)),
                "proj:transform": list(spec.transform(gsd))[:6],
                "raster:bands": [raster],
                "file:checksum": "1220" + hashlib.sha256(data).hexdigest(),  # sha2-256 multihash
                "file:size": len(data),
                "roles": ["data", "reflectance"] if band else ["data"],
            }
        )
        assets[band.common_name if band else "scl"] = asset
    return assets


def _common_s2_properties(
    spec: _FeatureSpec, acquisition: _Acquisition, scl: np.ndarray, processor: str
) -> dict:
    """`s2:*` identifiers and SCL percentages shared by both layouts (ESA naming)."""
    platform = f"S2{acquisition.platform}"
    sensed = acquisition.moment.strftime("%Y%m%dT%H%M%S")
    generated = acquisition.generated.strftime("%Y%m%dT%H%M%S")
    baseline = acquisition.baseline
    orbit = acquisition.absolute_orbit
    doy = acquisition.day.timetuple().tm_yday
    return {
        "s2:product_type": "S2MSI2A",
        "s2:processing_baseline": baseline,
        "s2:product_uri": (
            f"{platform}_MSIL2A_{sensed}_N{baseline.replace('.', '')}"
            f"_R{acquisition.relative_orbit:03d}_T{spec.tile}_{generated}.SAFE"
        ),
        "s2:generation_time": _iso(acquisition.generated),
        "s2:datatake_id": f"G{platform}_{sensed}_{orbit:06d}_N{baseline}",
        "s2:datatake_type": "INS-NOBS",
        "s2:datastrip_id": (
            f"{platform}_OPER_MSI_L2A_DS_{processor}_{generated}_S{sensed}_N{baseline}"
        ),
        "s2:granule_id": (
            f"{platform}_OPER_MSI_L2A_TL_{processor}_{generated}_A{orbit:06d}"
            f"_T{spec.tile}_N{baseline}"
        ),
        "s2:reflectance_conversion_factor": 1.0
        / (1.0 - 0.01673 * math.cos(0.0172 * (doy - 4))) ** 2,
        **_scl_percentages(scl),
    }


PC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
]
EARTH_SEARCH_EXTENSIONS = [
    f"https://stac-extensions.github.io/{name}/schema.json"
    for name in (
        "eo/v1.1.0",
        "file/v2.1.0",
        "grid/v1.1.0",
        "mgrs/v1.0.0",
        "processing/v1.1.0",
        "projection/v1.1.0",
        "raster/v1.1.0",
        "sentinel-2/v1.0.0",
        "view/v1.0.0",
    )
]


def _pc_properties(spec: _FeatureSpec, acquisition: _Acquisition, scl: np.ndarray) -> dict:
    zenith, azimuth = _solar_angles(spec.lat, spec.lon, acquisition.moment)
    s2 = _common_s2_properties(spec, acquisition, scl, "MSFT")
    return {
        "datetime": _iso(acquisition.moment),
        "platform": f"Sentinel-2{acquisition.platform}",
        "proj:epsg": spec.epsg,
        "instruments": ["msi"],
        "s2:mgrs_tile": spec.tile,
        "constellation": "Sentinel 2",
        "eo:cloud_cover": s2.pop("eo:cloud_cover"),
        "sat:orbit_state": "descending",
        "sat:relative_orbit": acquisition.relative_orbit,
        "s2:mean_solar_zenith": zenith,
        "s2:mean_solar_azimuth": azimuth,
        **s2,
    }


def _earth_search_properties(
    spec: _FeatureSpec, acquisition: _Acquisition, scl: np.ndarray, bbox: list[float]
) -> dict:
    zenith, azimuth = _solar_angles(spec.lat, spec.lon, acquisition.moment)
    s2 = _common_s2_properties(spec, acquisition, scl, "2APS")
    s2["s2:tile_id"] = s2.pop("s2:granule_id")
    updated = _iso(acquisition.generated + timedelta(hours=3))
    view = _rng("view", spec.fid, acquisition.day.isoformat())
    payload = hashlib.md5(_item_id(spec, acquisition).encode()).hexdigest()
    return {
        "created": updated,
        "platform": f"sentinel-2{acquisition.platform.lower()}",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": s2.pop("eo:cloud_cover"),
        "proj:epsg": spec.epsg,
        "proj:centroid": {
            "lat": round((bbox[1] + bbox[3]) / 2, 5),
            "lon": round((bbox[0] + bbox[2]) / 2, 5),
        },
        "mgrs:utm_zone": int(spec.tile[:2]),
        "mgrs:latitude_band": spec.tile[2],
        "mgrs:grid_square": spec.tile[3:],
        "grid:code": f"MGRS-{spec.tile}",
        "view:azimuth": float(view.uniform(100, 290)),
        "view:incidence_angle": float(view.uniform(1, 11)),
        "view:sun_azimuth": azimuth,
        "view:sun_elevation": 90.0 - zenith,
        **s2,
        "datetime": _iso(acquisition.moment),
        "earthsearch:payload_id": (
            f"roda-sentinel-2-c1-l2a/workflow-sentinel-2-c1-l2a-to-stac/{payload}"
        ),
        "processing:software": {"sentinel-2-c1-l2a-to-stac": "v2024.02.01"},
        "updated": updated,
    }


def _build_item(
    spec: _FeatureSpec,
    acquisition: _Acquisition,
    scl: np.ndarray,
    files: dict[str, tuple[str, bytes]],
) -> dict:
    """The STAC item (as a dict) of one acquisition in the requested layout."""
    geometry, bbox = _footprint(spec)
    if spec.layout == "earth-search-c1":
        collection, extensions = "sentinel-2-c1-l2a", EARTH_SEARCH_EXTENSIONS
        properties = _earth_search_properties(spec, acquisition, scl, bbox)
        assets = _earth_search_assets(spec, files)
    else:
        collection, extensions = "sentinel-2-l2a", PC_EXTENSIONS
        properties = _pc_properties(spec, acquisition, scl)
        assets = _pc_assets(spec, files)
    properties["sitsflow:demo_feature"] = spec.fid
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": list(extensions),
        "id": _item_id(spec, acquisition),
        "collection": collection,
        "bbox": bbox,
        "geometry": geometry,
        "properties": properties,
        "links": [],
        "assets": assets,
    }


def _generate_item(spec: _FeatureSpec, landscape: _Landscape, day: date, out_dir: Path) -> dict:
    """Render one acquisition, write its six COGs and return its STAC item."""
    acquisition = _acquisition(spec, day)
    scene = _render(spec, landscape, acquisition)
    item_dir = f"tiles/T{spec.tile}/{_item_id(spec, acquisition)}"
    files: dict[str, tuple[str, bytes]] = {}
    layers = [
        (band.name, scene.dn[band.name], band.gsd, REFLECTANCE_RESAMPLING)
        for band in REFLECTANCE_BANDS
    ]
    layers.append((SCL_NAME, scene.scl, 20, "NEAREST"))
    for name, array, gsd, resampling in layers:
        data = cog_bytes(array, spec.transform(gsd), spec.epsg, resampling)
        href = f"{item_dir}/{name}.tif"
        _write_bytes_atomic(out_dir / href, data)
        files[name] = (href, data)
    return _build_item(spec, acquisition, scene.scl, files)


def _generate_chunk(spec: _FeatureSpec, days: Sequence[date], out_dir: str) -> list[dict]:
    """Worker entry point: the items of `days` for one feature (landscape built once)."""
    landscape = _make_landscape(spec)
    return [_generate_item(spec, landscape, day, Path(out_dir)) for day in days]


# --------------------------------------------------------------------------------------------
# The archive: manifest, reuse, scheduling


def _feature_params(
    geometry: BaseGeometry,
    start: date,
    end: date,
    revisit_days: int,
    layout: str,
    seed: int,
    margin_m: float,
    clear_fraction: float,
) -> dict:
    """Everything that determines a feature's items; a manifest entry is reused only if equal."""
    return {
        "geometry_wkt": shapely_wkt.dumps(geometry, rounding_precision=8),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "revisit_days": int(revisit_days),
        "layout": layout,
        "seed": int(seed),
        "margin_m": float(margin_m),
        "clear_fraction": float(clear_fraction),
        "generator_version": GENERATOR_VERSION,
    }


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _reusable_items(out_dir: Path, entry: dict | None, params: dict) -> list[dict] | None:
    """The feature's previous items if its entry matches `params` and all files still exist."""
    if not entry or entry.get("params") != params:
        return None
    document = _read_json(out_dir / entry.get("items_file", ""))
    if not document:
        return None
    items = document.get("features", [])
    if [item["id"] for item in items] != entry.get("items"):
        return None
    for item in items:
        for asset in item["assets"].values():
            if not (out_dir / asset["href"]).is_file():
                return None
    return items


def _check_arguments(
    features: Sequence[tuple[str, BaseGeometry]],
    revisit_days: int,
    layout: str,
    workers: int,
    clear_fraction: float,
    margin_m: float,
) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if revisit_days < 1:
        raise ValueError(f"revisit_days must be >= 1, got {revisit_days}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not 0.0 <= clear_fraction <= 1.0:
        raise ValueError(f"clear_fraction must be within [0, 1], got {clear_fraction}")
    if margin_m < 0:
        raise ValueError(f"margin_m must be >= 0, got {margin_m}")
    counts = collections.Counter(str(fid) for fid, _ in features)
    duplicates = sorted(fid for fid, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate feature ids: {duplicates[:10]}")
    for fid, geometry in features:
        if geometry is None or geometry.is_empty:
            raise ValueError(f"feature {fid!r} has an empty geometry")


def _chunks(days: list[date], workers: int) -> list[list[date]]:
    """Split a feature's dates so that a few features still keep all workers busy."""
    if workers == 1:
        return [days]
    size = max(4, math.ceil(len(days) / (2 * workers)))
    return [days[i : i + size] for i in range(0, len(days), size)]


@dataclass
class _Plan:
    """One requested feature: its parameters, tile, and its items once known."""

    fid: str
    params: dict
    epsg: int
    bounds: tuple[float, float, float, float]
    lon: float
    lat: float
    tile: str = ""
    items: list[dict] | None = None
    reused: bool = False


def _plan(fid: str, geometry: BaseGeometry, params: dict, margin_m: float) -> _Plan:
    epsg, bounds = tile_bounds_utm(geometry, margin_m)
    centroid = geometry.centroid
    return _Plan(fid, params, epsg, bounds, float(centroid.x), float(centroid.y))


def _assign_tiles(plans: list[_Plan], previous: dict[str, dict]) -> None:
    """Give each feature to generate a tile name no other feature of the archive uses.

    Tile names only have 480 grid squares per zone and band, so two features may hash to the
    same one, and item ids (which contain the tile name) must stay unique. Reused features keep
    their names; a regenerated feature keeps its previous name if still free and in the right
    zone; otherwise it takes the first free name of its salted hash sequence, in input order.
    """
    taken = {plan.tile for plan in plans if plan.reused}
    for plan in plans:
        if plan.reused:
            continue
        zone = plan.epsg % 100
        old = previous.get(plan.fid, {}).get("tile")
        preferred = tile_name(plan.fid, zone, plan.lat)
        candidates = itertools.chain(
            [old] if old and old[:3] == preferred[:3] else [],
            (tile_name(plan.fid, zone, plan.lat, salt) for salt in itertools.count()),
        )
        plan.tile = next(name for name in candidates if name not in taken)
        taken.add(plan.tile)


def _start_method() -> str:
    """`fork` on Linux, else `spawn`.

    spawn and forkserver re-run the caller's main module in every worker, which breaks callers
    without an `if __name__ == "__main__"` guard (Snakemake `script:` files are such callers).
    The parent holds no open GDAL dataset when the pool forks, so fork is safe here; macOS
    (where fork is unsafe) gets spawn.
    """
    return "fork" if sys.platform.startswith("linux") else "spawn"


def _run_chunks(
    tasks: list[tuple[_FeatureSpec, list[date]]], out_dir: Path, workers: int
) -> Iterator[tuple[_FeatureSpec, list[dict]]]:
    """Yield (spec, items) per finished chunk: inline for one worker, else in a process pool."""
    if workers == 1:
        for spec, days in tasks:
            yield spec, _generate_chunk(spec, days, str(out_dir))
        return
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future, _FeatureSpec] = {
            pool.submit(_generate_chunk, spec, days, str(out_dir)): spec for spec, days in tasks
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()


def _generate_features(
    specs: list[_FeatureSpec], days: list[date], out_dir: Path, workers: int
) -> Iterator[tuple[_FeatureSpec, list[dict]]]:
    """Yield (spec, items sorted by datetime) as soon as all chunks of a feature are done."""
    tasks = [(spec, chunk) for spec in specs for chunk in _chunks(days, workers)]
    remaining = {spec.fid: len(_chunks(days, workers)) for spec in specs}
    collected: dict[str, list[dict]] = {spec.fid: [] for spec in specs}
    for spec, items in _run_chunks(tasks, out_dir, workers):
        collected[spec.fid].extend(items)
        remaining[spec.fid] -= 1
        if remaining[spec.fid] == 0:
            finished = collected.pop(spec.fid)
            finished.sort(key=lambda item: item["properties"]["datetime"])
            yield spec, finished


def _save_feature(out_dir: Path, plan: _Plan, items: list[dict]) -> dict:
    """Write the feature's own item list; return its manifest entry."""
    items_file = f"tiles/T{plan.tile}/{FEATURE_ITEMS_FILE}"
    document = {"type": "FeatureCollection", "features": items}
    atomic_write_text(out_dir / items_file, json.dumps(document))
    return {
        "params": plan.params,
        "tile": plan.tile,
        "epsg": plan.epsg,
        "bounds": list(plan.bounds),
        "items_file": items_file,
        "items": [item["id"] for item in items],
    }


def _write_manifest(out_dir: Path, entries: dict[str, dict], order: list[str]) -> None:
    document = {
        "generator": "sitsflow.demo",
        "generator_version": GENERATOR_VERSION,
        "features": {fid: entries[fid] for fid in order if fid in entries},
    }
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(document, indent=1))


def generate_archive(
    features: list[tuple[str, BaseGeometry]],
    out_dir: str | Path,
    start: str | date,
    end: str | date,
    *,
    revisit_days: int = 5,
    margin_m: float = 1920.0,
    layout: str = "planetary-computer",
    seed: int = 0,
    workers: int = 1,
    clear_fraction: float = 0.45,
) -> Path:
    """Write (or update) a synthetic Sentinel-2 L2A archive; return the path of its items.json.

    One tile per feature (geometry in EPSG:4326) covering the geometry + `margin_m` in its UTM
    zone, with one item every `revisit_days` from `start` to `end` (both included). Features
    whose manifest entry matches these parameters are reused as they are; the others are
    (re)generated; features not listed are left out of items.json (their files stay).
    `items.json` lists the items of all features in input order, by datetime within each.
    """
    _check_arguments(features, revisit_days, layout, workers, clear_fraction, margin_m)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first, last = _as_date(start), _as_date(end)
    days = acquisition_days(first, last, revisit_days)
    if not days:
        raise ValueError(f"no acquisition between {first} and {last}")
    previous: dict[str, dict] = (_read_json(out / MANIFEST_FILE) or {}).get("features", {})

    plans = []
    for fid, geometry in features:
        params = _feature_params(
            geometry, first, last, revisit_days, layout, seed, margin_m, clear_fraction
        )
        plan = _plan(str(fid), geometry, params, margin_m)
        plan.items = _reusable_items(out, previous.get(plan.fid), params)
        if plan.items is not None:
            plan.reused, plan.tile = True, previous[plan.fid]["tile"]
        plans.append(plan)
    _assign_tiles(plans, previous)
    entries = {plan.fid: previous[plan.fid] for plan in plans if plan.reused}
    todo = {plan.fid: plan for plan in plans if not plan.reused}
    log.info(
        "demo archive %s: %d features (%d reused, %d to generate) x %d dates, layout %s",
        out,
        len(plans),
        len(entries),
        len(todo),
        len(days),
        layout,
    )

    specs = [
        _FeatureSpec(
            fid=plan.fid,
            tile=plan.tile,
            epsg=plan.epsg,
            bounds=plan.bounds,
            lon=plan.lon,
            lat=plan.lat,
            layout=layout,
            seed=int(seed),
            revisit_days=int(revisit_days),
            clear_fraction=float(clear_fraction),
        )
        for plan in todo.values()
    ]
    order = [plan.fid for plan in plans]
    started = time.perf_counter()
    for done, (spec, items) in enumerate(_generate_features(specs, days, out, workers), 1):
        plan = todo[spec.fid]
        plan.items = items
        entries[plan.fid] = _save_feature(out, plan, items)
        _write_manifest(out, entries, order)  # progress survives an interruption
        log.info(
            "feature %s done (%d/%d): tile %s, %d items, %.1f s",
            plan.fid,
            done,
            len(todo),
            plan.tile,
            len(items),
            time.perf_counter() - started,
        )
    _write_manifest(out, entries, order)
    items_path = out / ITEMS_FILE
    document = {
        "type": "FeatureCollection",
        "features": [item for plan in plans for item in plan.items or []],
        "links": [],
    }
    atomic_write_text(items_path, json.dumps(document))
    return items_path


# --------------------------------------------------------------------------------------------
# Helpers for the command line / Snakemake


def features_from_vector(path: str | Path, id_column: str = "id") -> list[tuple[str, BaseGeometry]]:
    """(id, lon/lat geometry) of every feature of a vector file, read and checked by sitsflow."""
    from sitsflow.workflow.features import load_features

    return [(feature.fid, feature.geometry) for feature in load_features(path, id_column)]


def archive_size(out_dir: str | Path) -> tuple[int, int]:
    """(number of files, total bytes) under `out_dir`."""
    count = size = 0
    for root, _, names in os.walk(out_dir):
        for name in names:
            count += 1
            size += os.path.getsize(os.path.join(root, name))
    return count, size
