"""The static surface of one tile: land-cover units, their phenology and their reflectance.

The tile is cut into Voronoi parcels of grassland, summer and winter crops and bare soil, with
smooth blobs of forest and water on top. Each unit has a phenology (greenness as a sum of
seasonal bells, shifted and scaled per unit, flipped in the southern hemisphere) and its
surface reflectance on a day is the mix of a "bare" and a "green" end member by greenness,
plus a little per-date haze. The landscape depends on (seed, feature) only, so every date of a
feature sees the same parcels; with overlapping tiles it is drawn once over both tiles and each
tile takes its part, so that both see the same surface.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np

from sitsflow.demo.fields import seeded_rng, smooth_field, top_fraction, upsample2
from sitsflow.demo.tiles import FeatureSpec, grid_shape

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
END_MEMBERS = {
    WATER: (WATER_SPECTRUM, WATER_SPECTRUM),
    FOREST: (LITTER, CANOPY),
    GRASS: (SOIL, GREEN),
    SUMMER_CROP: (SOIL, GREEN),
    WINTER_CROP: (SOIL, GREEN),
    BARE: (BUILT, GREEN),
}
HAZE_WEIGHTS = (1.0, 0.7, 0.45, 0.2, 0.03)  # per-date path radiance left after correction
PARCEL_SIZE_M = 500
# Piecewise-constant land cover (and quantized clouds) keep the archive small (DEFLATE thrives
# on runs); per-pixel noise or a fine texture would multiply its size several times.


@dataclass(frozen=True)
class Landscape:
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


def make_landscape(spec: FeatureSpec) -> Landscape:
    """Parcels of grassland, crops and bare soil, forest blobs and a little water.

    Drawn over `spec.landscape_bounds` and cut to the tile's own bounds when they differ.
    """
    rng = seeded_rng("landscape", spec.seed, spec.fid)
    shape20 = grid_shape(spec.landscape_bounds, 20)
    parcels = _voronoi_parcels(rng, shape20, PARCEL_SIZE_M // 20)
    n_parcels = int(parcels.max()) + 1
    weights = rng.dirichlet(np.array(PARCEL_CLASS_WEIGHTS) * 20)
    parcel_class = rng.choice(PARCEL_CLASSES, size=n_parcels, p=weights)
    forest = top_fraction(smooth_field(rng, shape20, 40), rng.uniform(0.1, 0.35))
    water = top_fraction(smooth_field(rng, shape20, 30), rng.uniform(0.02, 0.07))
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
    landscape = Landscape(
        unit20=unit20,
        unit10=upsample2(unit20),
        unit_class=unit_class,
        unit_shift=np.clip(rng.normal(0, 8, n_units), -20, 20),
        unit_amplitude=rng.uniform(0.85, 1.1, n_units),
        unit_brightness=rng.uniform(0.9, 1.1, n_units),
        water20=unit_class[unit20] == WATER,
    )
    if spec.landscape_bounds == spec.bounds:
        return landscape
    return _cut(landscape, spec.landscape_bounds, spec.bounds)


def _cut(
    landscape: Landscape,
    drawn: tuple[float, float, float, float],
    bounds: tuple[float, float, float, float],
) -> Landscape:
    """The part of a landscape drawn over `drawn` that lies within `bounds` (on its grid).

    Units keep their indices and parameters, so the same unit has the same reflectance in
    every tile that shows it.
    """
    column, row = round((bounds[0] - drawn[0]) / 20), round((drawn[3] - bounds[3]) / 20)
    height, width = grid_shape(bounds, 20)
    window20 = np.s_[row : row + height, column : column + width]
    window10 = np.s_[2 * row : 2 * (row + height), 2 * column : 2 * (column + width)]
    return replace(
        landscape,
        unit20=landscape.unit20[window20],
        unit10=landscape.unit10[window10],
        water20=landscape.water20[window20],
    )


def _greenness(doy: float, landscape: Landscape, southern: bool) -> np.ndarray:
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


def surface_reflectance(
    landscape: Landscape, day: date, lat: float, rng: np.random.Generator
) -> np.ndarray:
    """(units, 5) surface reflectance on `day`: end-member mix by greenness, plus haze."""
    green = _greenness(day.timetuple().tm_yday, landscape, lat < 0)
    green = np.clip(green + rng.normal(0, 0.03, green.shape), 0.0, 1.0)
    low = np.array([END_MEMBERS[c][0] for c in range(len(END_MEMBERS))])[landscape.unit_class]
    high = np.array([END_MEMBERS[c][1] for c in range(len(END_MEMBERS))])[landscape.unit_class]
    mix = (1 - green)[:, None] * low + green[:, None] * high
    brightness = landscape.unit_brightness * (1 + rng.normal(0, 0.01, green.shape))
    haze = rng.uniform(0.0, 0.012) * np.array(HAZE_WEIGHTS)
    return np.asarray(mix * brightness[:, None] + haze)
