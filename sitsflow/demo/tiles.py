"""Where and when: the demo tile of a feature, its MGRS-like name, and its acquisitions.

A feature gets one UTM tile (its bounds plus a margin, edges on multiples of 60 m so that the
10, 20 and 60 m grids align) named like an MGRS tile (`32UNB`: the real zone and latitude band,
grid square letters from a hash). Its acquisitions follow the real schedule closely enough to
exercise the workflow: sensing at ~10:30 local solar time, alternating S2A / S2B with absolute
and relative orbits consistent with recorded items, and the processing baseline (hence the
+1000 DN offset from 04.00 on) that each catalog serves for that day.

Two options change the geometry (`sitsflow.demo.options`): overlapping tiles give a feature two
neighbouring tiles of one UTM zone, a west and an east one, that both cover it (as neighbouring
MGRS tiles overlap by 9.8 km), and a swath edge leaves part of a tile outside the swath on the
dates of one of the two alternating passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import shapely
from rasterio.transform import Affine
from shapely.geometry.base import BaseGeometry

from sitsflow.core.projection import reproject, utm_epsg_for
from sitsflow.demo.fields import digest
from sitsflow.demo.options import ArchiveOptions

GRID_STEP_M = 60  # tile edges on multiples of 60 m: the 10, 20 and 60 m grids all align
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

# Overlapping tiles: the feature's tile extended by this much to the west (one tile) and to the
# east (the other), so that their overlap is the whole feature tile.
OVERLAP_EXTENSION_M = 1920
# Swath edge: a line through the centre of the feature's tile, tilted from north like a
# sun-synchronous ground track at mid-latitudes; east of it is outside the swath on S2B dates.
SWATH_EDGE_TILT_DEG = 12.0
SWATH_EDGE_PLATFORM = "B"


def as_date(value: str | date) -> date:
    """A date from a date, a datetime (its date) or an ISO string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def acquisition_days(start: str | date, end: str | date, revisit_days: int) -> list[date]:
    """Every `revisit_days` from `start` to `end`, both included."""
    first, last = as_date(start), as_date(end)
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
    value = digest("tile", feature_id, salt)
    column = MGRS_COLUMN_LETTERS[value % len(MGRS_COLUMN_LETTERS)]
    row = MGRS_ROW_LETTERS[(value // len(MGRS_COLUMN_LETTERS)) % len(MGRS_ROW_LETTERS)]
    return f"{zone:02d}{latitude_band(lat)}{column}{row}"


def neighbour_tile(name: str) -> str:
    """The tile east of `name` in the same zone and band: the next grid column letter."""
    letters = MGRS_COLUMN_LETTERS
    column = letters[(letters.index(name[3]) + 1) % len(letters)]
    return f"{name[:3]}{column}{name[4]}"


def overlapping_bounds(
    bounds: tuple[float, float, float, float],
) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """(west, east) tile bounds whose overlap is `bounds`, each extended on its own side."""
    minx, miny, maxx, maxy = bounds
    west = (minx - OVERLAP_EXTENSION_M, miny, maxx, maxy)
    east = (minx, miny, maxx + OVERLAP_EXTENSION_M, maxy)
    return west, east


def grid_shape(bounds: tuple[float, float, float, float], resolution: int) -> tuple[int, int]:
    """(rows, columns) of the grid of `resolution` metres pixels covering `bounds`."""
    minx, miny, maxx, maxy = bounds
    return round((maxy - miny) / resolution), round((maxx - minx) / resolution)


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


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a worker process needs to generate one tile's items of a feature (picklable).

    A feature has one tile, or two with overlapping tiles; `landscape_bounds` is the area of the
    feature: the tile itself, or the union of both tiles. Its landscape is drawn over that area
    (so that both tiles see the same surface) and a swath edge crosses its centre.
    """

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
    options: ArchiveOptions
    landscape_bounds: tuple[float, float, float, float]

    def shape(self, resolution: int) -> tuple[int, int]:
        """(rows, columns) of the tile's grid at `resolution` metres."""
        return grid_shape(self.bounds, resolution)

    def transform(self, resolution: int) -> Affine:
        """Affine transform of the tile's grid at `resolution` metres (north up)."""
        return Affine(resolution, 0.0, self.bounds[0], 0.0, -resolution, self.bounds[3])


@dataclass(frozen=True)
class Acquisition:
    """Time and orbit metadata of one item."""

    day: date
    moment: datetime  # sensing time, UTC
    generated: datetime  # processing time, UTC
    platform: str  # "A" or "B"
    baseline: str
    absolute_orbit: int
    relative_orbit: int


def make_acquisition(spec: FeatureSpec, day: date) -> Acquisition:
    """Sensing at ~10:30 local solar time (so the solar day is the UTC day in Europe)."""
    jitter_ms = digest("time", spec.seed, spec.fid) % 60000
    moment = (
        datetime(day.year, day.month, day.day, 10, 30, tzinfo=UTC)
        - timedelta(seconds=round(spec.lon * 240))  # lon / 15 hours
        + timedelta(milliseconds=jitter_ms)
    )
    generated = moment + timedelta(seconds=3600 + digest("gen", spec.fid, day) % 18000)
    platform = "A" if (day.toordinal() // spec.revisit_days) % 2 == 0 else "B"
    reference, orbit, phase = ORBIT_REFERENCES[platform]
    absolute = orbit + round((moment - reference).total_seconds() / 86400 * ORBITS_PER_DAY)
    return Acquisition(
        day=day,
        moment=moment,
        generated=generated,
        platform=platform,
        baseline=processing_baseline(day, spec.layout),
        absolute_orbit=absolute,
        relative_orbit=(absolute + phase) % 143 + 1,
    )


def solar_angles(lat: float, lon: float, moment: datetime) -> tuple[float, float]:
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


def outside_swath(spec: FeatureSpec, acquisition: Acquisition) -> shapely.Polygon | None:
    """The part of the tile outside the swath on this acquisition (UTM), or None if none is.

    With the swath-edge option, the dates of one platform see the swath end across the tile: a
    line through the centre of the feature's tile, tilted SWATH_EDGE_TILT_DEG from north, with no
    data east of it. Both overlapping tiles of a feature see the same line (the same pass).
    """
    if not spec.options.swath_edge or acquisition.platform != SWATH_EDGE_PLATFORM:
        return None
    minx, miny, maxx, maxy = spec.landscape_bounds
    centre_x, centre_y = (minx + maxx) / 2, (miny + maxy) / 2
    slope = math.tan(math.radians(SWATH_EDGE_TILT_DEG))
    far = 2 * max(maxx - minx, maxy - miny)
    edge_south = centre_x + (miny - far - centre_y) * slope
    edge_north = centre_x + (maxy + far - centre_y) * slope
    east = shapely.Polygon(
        [
            (edge_south, miny - far),
            (maxx + far, miny - far),
            (maxx + far, maxy + far),
            (edge_north, maxy + far),
        ]
    )
    return shapely.intersection(east, shapely.box(*spec.bounds))
