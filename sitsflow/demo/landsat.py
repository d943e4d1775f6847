"""Landsat Collection 2 Level-2 scenes of a feature: WRS-2-like geometry, dates, pixels, files.

A run whose collections include a Landsat one (`landsat-c2-l2`) gets, beside or instead of the
Sentinel-2 tiles, the Landsat scenes that cover each feature. They are synthetic but have the
real layout:

* Geometry: a scene is a ~185 km x 180 km box rotated SCENE_TILT_DEG off north-south (a
  descending sun-synchronous track), on a north-up 30 m UTM grid of the feature's zone whose
  pixel corners lie at 15 m modulo 30 m (as USGS grids do: they never align with the 10/20/60 m
  Sentinel-2 grids). Only a window of the scene grid around the feature is written, as the
  Sentinel-2 generator writes part of a tile; pixels of the window outside the scene footprint
  are fill. Each feature lies in the overlap of two rows of a path (R and R + 1, both acquired
  in the same pass: two items of the same day, each with its own sky, so different QA on the
  overlap; the edge of one of them crosses the feature's window) and in the sidelap of the
  next path west (P + 1, one row, 7 days later).
* Dates: 16 days per platform on each path, two platforms 8 days apart: Landsat 8 and 9 (from
  2021-11), Landsat 8 and 7 (2013-04 .. 2021-10), Landsat 5 and 7 before (Landsat 5 until
  2011-11). Landsat 7 scenes after 2003-05-31 have the SLC-off gaps: diagonal stripes of fill,
  wider toward the scene's east and west edges.
* Pixels: the Sentinel-2 generator's landscape of the feature (the same parcels, drawn over the
  feature's Sentinel-2 tile) sampled at the 30 m pixel centres, and its sky: SR DN with
  reflectance = DN * 2.75e-05 - 0.2, surface temperature DN with K = DN * 0.00341802 + 149,
  QA_PIXEL bits (fill, dilated cloud, cirrus (OLI only), cloud, shadow, snow, clear, water and
  the four confidences) and QA_RADSAT bits on a few bright cloud pixels.
* Files: one single-band uint16 GeoTIFF per asset, a COG (256 px tiles, DEFLATE, overviews) or
  a striped GeoTIFF (8 rows per strip, LZW, no overview), chosen per file from the seed.

Everything random comes from generators seeded by (seed, feature, day, path, row), so a scene is
the same in any worker process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import shapely

from sitsflow.core.bands import LANDSAT_BANDS, LANDSAT_PLATFORMS
from sitsflow.demo.clouds import band_reflectance, draw_sky
from sitsflow.demo.fields import digest, seeded_rng, shift_mask
from sitsflow.demo.landscape import BARE, FOREST, WATER, Landscape, surface_reflectance
from sitsflow.demo.tiles import FeatureSpec, make_acquisition

RESOLUTION = 30
GRID_OFFSET_M = 15  # USGS pixel corners: 15 m modulo 30 m
MAX_WINDOW_PX = 1024
SCENE_WIDTH_M = 185_000  # across track
SCENE_HEIGHT_M = 180_000  # along track
ROW_SPACING_M = 160_000  # adjacent rows overlap by 20 km
PATH_SPACING_EQUATOR_M = 172_000  # adjacent paths at the equator; * cos(latitude) elsewhere
SCENE_TILT_DEG = 12.0
REVISIT_DAYS = 16
PLATFORM_OFFSET_DAYS = 8  # the second platform of a pair
NEXT_PATH_DAYS = 7  # the path west of a path is acquired 7 days later by the same platform
ROW_SECONDS = 24.0  # a row's scene centre to the next one's
SLC_OFF_SINCE = date(2003, 5, 31)
SLC_GAP_PERIOD_PX = 35
SLC_GAP_MAX_PX = 14.0
# Platforms in service: (first day, last day) of their acquisitions in this archive.
SERVICE = {
    "landsat-5": (date(1984, 3, 1), date(2011, 11, 18)),
    "landsat-7": (date(1999, 5, 28), date(2021, 10, 31)),
    "landsat-8": (date(2013, 4, 11), date(9999, 12, 31)),
    "landsat-9": (date(2021, 11, 1), date(9999, 12, 31)),
}

SR_SCALE, SR_OFFSET = 2.75e-05, -0.2
ST_SCALE, ST_OFFSET = 0.00341802, 149.0
SR_NODATA = 0
QA_FILL = 1
# QA_PIXEL bits and confidence fields (value << offset)
BIT_DILATED, BIT_CIRRUS, BIT_CLOUD, BIT_SHADOW, BIT_SNOW, BIT_CLEAR, BIT_WATER = (
    1 << 1,
    1 << 2,
    1 << 3,
    1 << 4,
    1 << 5,
    1 << 6,
    1 << 7,
)
CLOUD_CONFIDENCE, SHADOW_CONFIDENCE, SNOW_CONFIDENCE, CIRRUS_CONFIDENCE = 8, 10, 12, 14
LOW, MEDIUM, HIGH = 1, 2, 3
DILATION_PX = 3
RADSAT_CLOUD_FRACTION = 0.01  # share of thick-cloud pixels saturated in the visible bands

# Reflective bands: common name -> (index of the Sentinel-2 landscape's spectrum, factor).
# The landscape has B02 B03 B04 B08 B11; swir22 is a share of swir16, coastal of blue.
REFLECTIVE = {
    "coastal": (0, 1.08),
    "blue": (0, 1.0),
    "green": (1, 1.0),
    "red": (2, 1.0),
    "nir08": (3, 1.0),
    "swir16": (4, 1.0),
    "swir22": (4, 0.55),
}
THERMAL = "lwir11"


def instrument_of(platform: str) -> str:
    """`tm`, `etm` or `oli` of a Landsat platform."""
    return LANDSAT_PLATFORMS[platform]


def asset_bands(instrument: str) -> list[str]:
    """The common names of an instrument's SR and ST bands, in file band order."""
    return [name for name, files in LANDSAT_BANDS.items() if instrument in files]


def file_band_number(name: str, instrument: str) -> int:
    """The number of a band in the product (`red` on OLI -> 4, `lwir11` on TM -> 6)."""
    return int(LANDSAT_BANDS[name][instrument].split("_B")[1])


@dataclass(frozen=True)
class Scene:
    """One WRS-2 scene: path, row, centre and orientation (UTM of the feature's zone)."""

    path: int
    row: int
    centre: tuple[float, float]


@dataclass(frozen=True)
class LandsatSpec:
    """Everything a worker needs for a feature's Landsat items (picklable).

    `tile` is the feature's Sentinel-2 tile spec (its landscape and sky are drawn on that
    tile's 20 m grid); `window` the bounds of the 30 m grid written; `scenes` the primary
    path's two rows and the next path's row.
    """

    tile: FeatureSpec
    window: tuple[float, float, float, float]
    path: int
    row: int
    scenes: tuple[Scene, ...]
    phase: int  # day ordinal modulo 16 of the primary path's first platform

    @property
    def fid(self) -> str:
        return self.tile.fid

    def shape(self) -> tuple[int, int]:
        minx, miny, maxx, maxy = self.window
        return round((maxy - miny) / RESOLUTION), round((maxx - minx) / RESOLUTION)

    def transform(self) -> list[float]:
        return [RESOLUTION, 0.0, self.window[0], 0.0, -RESOLUTION, self.window[3]]


def _axes() -> tuple[np.ndarray, np.ndarray]:
    """(across-track east-ish, along-track north-ish) unit vectors of a scene."""
    tilt = math.radians(SCENE_TILT_DEG)
    return np.array([math.cos(tilt), -math.sin(tilt)]), np.array([math.sin(tilt), math.cos(tilt)])


def window_bounds(
    bounds: tuple[float, float, float, float],
) -> tuple[float, float, float, float]:
    """The 30 m grid (corners at 15 m mod 30 m) inside `bounds`, at most MAX_WINDOW_PX wide."""
    minx, miny, maxx, maxy = bounds

    def snap_up(value: float) -> float:
        return math.ceil((value - GRID_OFFSET_M) / RESOLUTION) * RESOLUTION + GRID_OFFSET_M

    def snap_down(value: float) -> float:
        return math.floor((value - GRID_OFFSET_M) / RESOLUTION) * RESOLUTION + GRID_OFFSET_M

    x0, y0, x1, y1 = snap_up(minx), snap_up(miny), snap_down(maxx), snap_down(maxy)
    limit = MAX_WINDOW_PX * RESOLUTION
    if x1 - x0 > limit:
        x0 = snap_up((x0 + x1) / 2 - limit / 2)
        x1 = x0 + limit
    if y1 - y0 > limit:
        y0 = snap_up((y0 + y1) / 2 - limit / 2)
        y1 = y0 + limit
    return float(x0), float(y0), float(x1), float(y1)


def wrs_path_row(lon: float, lat: float) -> tuple[int, int]:
    """A WRS-2-looking (path, row) near a point: paths grow westward from path 1 at 64.6 W,
    row 60 at the equator on the descending (daytime) pass, ~1.44 degrees per row."""
    path = int(((-64.6 - lon) % 360.0) / 360.0 * 233) + 1
    row = min(max(int(60 - lat / 1.44), 1), 247)
    return path, row


def plan_scenes(tile: FeatureSpec, path: int, row: int) -> LandsatSpec:
    """The scenes covering a feature (its tile's centre) with path/row labels `path`, `row`.

    The feature lies in the overlap of rows `row` and `row + 1` of `path`, near the end of one
    of them (whose edge crosses the window: part of that item is fill), and in the sidelap of
    `path + 1`, west.
    """
    across, along = _axes()
    minx, miny, maxx, maxy = tile.bounds
    feature = np.array([(minx + maxx) / 2, (miny + maxy) / 2])
    rng = seeded_rng("landsat-scenes", tile.seed, tile.fid)
    spacing = PATH_SPACING_EQUATOR_M * math.cos(math.radians(tile.lat))
    jitter_across = rng.uniform(-5000, 5000)
    # near one row's end: that row's edge crosses the feature's window (0.2 to 1.5 km from it)
    jitter_along = rng.uniform(8500, 9800) * rng.choice((-1.0, 1.0))
    next_along = rng.uniform(-50_000, 50_000)
    centre = feature + (spacing / 2 - jitter_across) * across
    middle = centre + jitter_along * along
    west = centre - spacing * across + next_along * along
    scenes = (
        Scene(path, row, tuple(middle + ROW_SPACING_M / 2 * along)),
        Scene(path, row + 1, tuple(middle - ROW_SPACING_M / 2 * along)),
        Scene(path + 1, row + (0 if next_along > 0 else 1), tuple(west)),
    )
    return LandsatSpec(
        tile=tile,
        window=window_bounds(tile.bounds),
        path=path,
        row=row,
        scenes=scenes,
        phase=digest("landsat-phase", tile.seed, tile.fid) % REVISIT_DAYS,
    )


def footprint(scene: Scene) -> shapely.Polygon:
    """The scene's rotated footprint (UTM), corners counter-clockwise from the north one."""
    across, along = _axes()
    centre = np.array(scene.centre)
    half_w, half_h = SCENE_WIDTH_M / 2, SCENE_HEIGHT_M / 2
    corners = [
        centre + sign_a * half_w * across + sign_b * half_h * along
        for sign_a, sign_b in ((-1, 1), (-1, -1), (1, -1), (1, 1))
    ]
    return shapely.Polygon([(float(x), float(y)) for x, y in corners])


def platforms_on(day: date) -> tuple[str | None, str | None]:
    """(first, second) platform of the pair in service on `day` (None where there is none)."""

    def active(name: str) -> bool:
        first, last = SERVICE[name]
        return first <= day <= last

    first = "landsat-8" if active("landsat-8") else ("landsat-5" if active("landsat-5") else None)
    second = "landsat-9" if active("landsat-9") else ("landsat-7" if active("landsat-7") else None)
    return first, second


@dataclass(frozen=True)
class Acquisition:
    """One Landsat item: a scene on a day by a platform."""

    day: date
    platform: str
    scene: Scene
    moment: datetime
    processed: date
    category: str

    @property
    def instrument(self) -> str:
        return instrument_of(self.platform)


def acquisitions(spec: LandsatSpec, start: date, end: date) -> list[Acquisition]:
    """Every acquisition of the feature's scenes from `start` to `end`, by date then row.

    Scenes whose footprint misses the window are left out (a feature at the edge of a path).
    """
    window = shapely.box(*spec.window)
    found = []
    day = start
    while day <= end:
        offset = (day.toordinal() - spec.phase) % REVISIT_DAYS
        first, second = platforms_on(day)
        for scene in spec.scenes:
            shift = NEXT_PATH_DAYS if scene.path != spec.path else 0
            if offset == shift % REVISIT_DAYS:
                platform = first
            elif offset == (shift + PLATFORM_OFFSET_DAYS) % REVISIT_DAYS:
                platform = second
            else:
                continue
            if platform is None or not footprint(scene).intersects(window):
                continue
            found.append(_acquisition(spec, day, platform, scene))
        day += timedelta(days=1)
    return found


def _acquisition(spec: LandsatSpec, day: date, platform: str, scene: Scene) -> Acquisition:
    """Sensing at ~10:10 local solar time, a row ROW_SECONDS after the one north of it."""
    jitter_ms = digest("landsat-time", spec.tile.seed, spec.fid, scene.path) % 20000
    moment = (
        datetime(day.year, day.month, day.day, 10, 10, tzinfo=UTC)
        - timedelta(seconds=round(spec.tile.lon * 240))
        + timedelta(seconds=(scene.row - spec.row) * ROW_SECONDS, milliseconds=jitter_ms)
    )
    value = digest("landsat-product", spec.fid, day, scene.path, scene.row)
    return Acquisition(
        day=day,
        platform=platform,
        scene=scene,
        moment=moment,
        processed=day + timedelta(days=7 + value % 9),
        category="T2" if value % 10 == 0 else "T1",
    )


@dataclass(frozen=True)
class Rendered:
    """The pixels of one item: DN per asset key (SR, ST, qa_pixel, qa_radsat)."""

    arrays: dict[str, np.ndarray]
    cloud_cover: float  # percent of data pixels with the cloud bit
    cloud_cover_land: float


def _pixel_centres(spec: LandsatSpec) -> tuple[np.ndarray, np.ndarray]:
    height, width = spec.shape()
    minx, _, _, maxy = spec.window
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    return minx + RESOLUTION * (cols + 0.5), maxy - RESOLUTION * (rows + 0.5)


def _sample20(spec: LandsatSpec, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the 20 m tile pixels under the 30 m pixel centres."""
    minx, _, _, maxy = spec.tile.bounds
    height, width = spec.tile.shape(20)
    rows = np.clip(((maxy - y) // 20).astype(int), 0, height - 1)
    cols = np.clip(((x - minx) // 20).astype(int), 0, width - 1)
    return rows, cols


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            if (dr or dc) and dr * dr + dc * dc <= radius * radius:
                out |= shift_mask(mask, dr, dc)
    return out


def _bits(mask: np.ndarray, value: int, otherwise: int = 0) -> np.ndarray:
    """QA bits: `value` where `mask`, else `otherwise` (uint16)."""
    return np.where(mask, np.uint16(value), np.uint16(otherwise)).astype(np.uint16)


def _fill_mask(spec: LandsatSpec, acquisition: Acquisition) -> np.ndarray:
    """Pixels without data: outside the scene footprint, and Landsat 7's SLC-off gaps."""
    x, y = _pixel_centres(spec)
    across, along = _axes()
    dx, dy = x - acquisition.scene.centre[0], y - acquisition.scene.centre[1]
    u = dx * across[0] + dy * across[1]
    v = dx * along[0] + dy * along[1]
    fill = (np.abs(u) > SCENE_WIDTH_M / 2) | (np.abs(v) > SCENE_HEIGHT_M / 2)
    if acquisition.platform == "landsat-7" and acquisition.day > SLC_OFF_SINCE:
        width = SLC_GAP_MAX_PX * np.abs(u) / (SCENE_WIDTH_M / 2)
        phase = (v / RESOLUTION + u / RESOLUTION * math.tan(math.radians(6.0))) % SLC_GAP_PERIOD_PX
        fill |= phase < width
    return np.asarray(fill)


def _temperature(
    landscape: Landscape, units: np.ndarray, day: date, lat: float, green: np.ndarray
) -> np.ndarray:
    """Surface temperature (K) of the land cover under each pixel, by season and latitude."""
    doy = day.timetuple().tm_yday - (182.5 if lat < 0 else 0.0)
    base = 283.0 + 12.0 * math.cos(2 * math.pi * (doy - 200) / 365.0) - 0.3 * (abs(lat) - 45)
    cls = landscape.unit_class
    unit_k = base + np.where(cls == WATER, -3.0, 0.0) + np.where(cls == FOREST, -2.0, 0.0)
    unit_k = unit_k + np.where(cls == BARE, 4.0, 0.0) - 4.0 * green
    kelvin: np.ndarray = (np.round(unit_k * 2) / 2)[units]
    return kelvin


def render(spec: LandsatSpec, landscape: Landscape, acquisition: Acquisition) -> Rendered:
    """All pixels of one item (the landscape is the feature's tile's, `make_landscape`)."""
    tile = spec.tile
    day = acquisition.day.isoformat()
    scene = acquisition.scene
    rng = seeded_rng("landsat-surface", tile.seed, tile.fid, day, tile.clear_fraction)
    unit_reflectance = surface_reflectance(landscape, acquisition.day, tile.lat, rng)
    green_index = np.clip(
        (unit_reflectance[:, 3] - unit_reflectance[:, 2])
        / (unit_reflectance[:, 3] + unit_reflectance[:, 2]),
        0.0,
        1.0,
    )
    sky_rng = seeded_rng(
        "landsat-sky", tile.seed, tile.fid, day, tile.clear_fraction, scene.path, scene.row
    )
    s2_like = replace(make_acquisition(tile, acquisition.day), moment=acquisition.moment)
    sky20 = draw_sky(tile, landscape, s2_like, sky_rng)

    x, y = _pixel_centres(spec)
    rows, cols = _sample20(spec, x, y)
    units = landscape.unit20[rows, cols]
    sky = {name: value[rows, cols] for name, value in sky20.items()}
    thick = sky["medium"] | sky["high"]
    oli = acquisition.instrument == "oli"
    masks = {
        "snow": sky["snow"],
        "shadow": sky["shadow"],
        "cirrus": sky["cirrus"],
        "thick": thick,
        "sqrt_depth": np.sqrt(sky["depth"]).astype(np.float32),
    }
    fill = _fill_mask(spec, acquisition)
    arrays: dict[str, np.ndarray] = {}
    for name in asset_bands(acquisition.instrument):
        if name == THERMAL:
            continue
        index, factor = REFLECTIVE[name]
        surface = (unit_reflectance[:, index] * factor).astype(np.float32)[units]
        reflectance = band_reflectance(surface, index, masks)
        dn = np.clip(np.rint((reflectance - SR_OFFSET) / SR_SCALE), 1, 65535).astype(np.uint16)
        dn[fill] = SR_NODATA
        arrays[name] = dn
    kelvin = _temperature(landscape, units, acquisition.day, tile.lat, green_index)
    kelvin = np.where(thick, np.round(2 * (250.0 + 12.0 * (1 - masks["sqrt_depth"]))) / 2, kelvin)
    kelvin = np.where(sky["shadow"] & ~thick, kelvin - 2.0, kelvin)
    kelvin = np.where(sky["snow"] & ~thick, 268.0, kelvin)
    st = np.clip(np.rint((kelvin - ST_OFFSET) / ST_SCALE), 1, 65535).astype(np.uint16)
    st[fill] = SR_NODATA
    arrays["lwir11" if oli else "lwir"] = st

    water = landscape.water20[rows, cols]
    dilated = _dilate(thick, DILATION_PX) & ~thick
    cirrus = sky["cirrus"] & ~thick
    shadow = sky["shadow"] & ~thick
    snow = sky["snow"] & ~thick
    qa = (
        _bits(thick, BIT_CLOUD | HIGH << CLOUD_CONFIDENCE)
        | _bits(dilated, BIT_DILATED)
        | _bits(~thick & ~cirrus, LOW << CLOUD_CONFIDENCE)
        | _bits(cirrus, MEDIUM << CLOUD_CONFIDENCE)
        | _bits(shadow, BIT_SHADOW | HIGH << SHADOW_CONFIDENCE, LOW << SHADOW_CONFIDENCE)
        | _bits(snow, BIT_SNOW | HIGH << SNOW_CONFIDENCE, LOW << SNOW_CONFIDENCE)
        | _bits(~thick & ~dilated, BIT_CLEAR)
        | _bits(water & ~thick & ~snow, BIT_WATER)
    )
    if oli:
        qa |= _bits(cirrus, BIT_CIRRUS | HIGH << CIRRUS_CONFIDENCE, LOW << CIRRUS_CONFIDENCE)
    qa[fill] = QA_FILL
    arrays["qa_pixel"] = qa

    radsat_rng = seeded_rng("landsat-radsat", tile.seed, tile.fid, day, scene.path, scene.row)
    radsat = np.zeros(fill.shape, dtype=np.uint16)
    for name in ("blue", "green", "red"):
        saturated = thick & ~fill & (radsat_rng.random(fill.shape) < RADSAT_CLOUD_FRACTION)
        bit = 1 << (file_band_number(name, acquisition.instrument) - 1)
        radsat[saturated] |= np.uint16(bit)
    arrays["qa_radsat"] = radsat

    data = ~fill
    count = max(int(data.sum()), 1)
    cloud = 100.0 * int((thick & data).sum()) / count
    land = data & ~water
    cloud_land = 100.0 * int((thick & land).sum()) / max(int(land.sum()), 1)
    return Rendered(
        arrays=arrays, cloud_cover=round(cloud, 2), cloud_cover_land=round(cloud_land, 2)
    )
