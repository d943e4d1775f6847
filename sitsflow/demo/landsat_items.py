"""Landsat files and STAC items in the Planetary Computer `landsat-c2-l2` layout.

The layout is what stactools-landsat makes (and Planetary Computer publishes): ids like
`LC08_L2SP_195026_20240117_02_T1`, asset keys by common name (`red`, `nir08`, `lwir11` on
OLI, `lwir` on TM / ETM+, `qa_pixel`, `qa_radsat`), `raster:bands` with the scale and offset
of Collection 2 Level-2, `classification:bitfields` on the QA bands, `landsat:*` and
`proj:code` / `proj:shape` / `proj:transform` properties. The geometry is the whole rotated
scene footprint; `proj:shape` and `proj:transform` describe the written window (every asset
shares its grid). Files are named as USGS names them (`..._SR_B4.TIF`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import shapely
import shapely.geometry
from rasterio.transform import Affine

from sitsflow.core.bands import LANDSAT_BANDS
from sitsflow.core.projection import reproject
from sitsflow.core.types import JsonObject, StacAsset, StacItem
from sitsflow.demo.cogs import cog_bytes, striped_bytes, write_bytes_atomic
from sitsflow.demo.fields import digest
from sitsflow.demo.landsat import (
    QA_FILL,
    RESOLUTION,
    SR_NODATA,
    SR_OFFSET,
    SR_SCALE,
    ST_OFFSET,
    ST_SCALE,
    Acquisition,
    LandsatSpec,
    Rendered,
    file_band_number,
    footprint,
    render,
)
from sitsflow.demo.landscape import Landscape
from sitsflow.demo.tiles import solar_angles

COLLECTION = "landsat-c2-l2"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
COG_BLOCKSIZE = 256
ROWS_PER_STRIP = 8
EXTENSIONS = [
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/landsat/v2.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/classification/v1.0.0/schema.json",
    "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
]
DOIS = {
    "oli": ("10.5066/P9OGBGM6", "Landsat 8-9 OLI/TIRS Collection 2 Level-2"),
    "etm": ("10.5066/P9C7I13B", "Landsat 7 ETM+ Collection 2 Level-2"),
    "tm": ("10.5066/P9IAXOVV", "Landsat 4-5 TM Collection 2 Level-2"),
}
SENSOR_LETTERS = {"oli": "LC", "etm": "LE", "tm": "LT"}
INSTRUMENTS = {"oli": ["oli", "tirs"], "etm": ["etm"], "tm": ["tm"]}
BAND_PREFIX = {"oli": "OLI", "etm": "ETM", "tm": "TM"}
# common name -> (title, eo description, OLI centre / fwhm, TM-ETM centre / fwhm)
BAND_INFO: dict[str, tuple[str, str, tuple[float, float], tuple[float, float]]] = {
    "coastal": ("Coastal/Aerosol Band", "Coastal/Aerosol", (0.44, 0.02), (0.44, 0.02)),
    "blue": ("Blue Band", "Visible blue", (0.48, 0.06), (0.49, 0.07)),
    "green": ("Green Band", "Visible green", (0.56, 0.06), (0.56, 0.08)),
    "red": ("Red Band", "Visible red", (0.65, 0.04), (0.66, 0.06)),
    "nir08": ("Near Infrared Band 0.8", "Near infrared", (0.87, 0.03), (0.84, 0.13)),
    "swir16": ("Short-wave Infrared Band 1.6", "Short-wave infrared", (1.61, 0.09), (1.65, 0.2)),
    "swir22": ("Short-wave Infrared Band 2.2", "Short-wave infrared", (2.2, 0.19), (2.22, 0.27)),
    "lwir11": ("Surface Temperature Band", "Long-wave infrared", (10.9, 0.59), (11.45, 2.1)),
}
SR_ORDER = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")

# QA_PIXEL bit fields: (name, description, offset, length, classes (value, name, description)).
_CONFIDENCE = "No confidence level set"
Field = tuple[str, str, int, int, list[tuple[int, str, str]]]
QA_PIXEL_FIELDS: list[Field] = [
    ("fill", "Image or fill data", 0, 1, [(0, "not_fill", "Image data"), (1, "fill", "Fill data")]),
    (
        "dilated_cloud",
        "Dilated cloud",
        1,
        1,
        [(0, "not_dilated", "Cloud is not dilated or no cloud"), (1, "dilated", "Cloud dilation")],
    ),
    (
        "cirrus",
        "Cirrus mask",
        2,
        1,
        [
            (0, "not_cirrus", "Cirrus confidence is not high"),
            (1, "cirrus", "High confidence cirrus"),
        ],
    ),
    (
        "cloud",
        "Cloud mask",
        3,
        1,
        [(0, "not_cloud", "Cloud confidence is not high"), (1, "cloud", "High confidence cloud")],
    ),
    (
        "cloud_shadow",
        "Cloud shadow mask",
        4,
        1,
        [
            (0, "not_shadow", "Cloud shadow confidence is not high"),
            (1, "shadow", "High confidence cloud shadow"),
        ],
    ),
    (
        "snow",
        "Snow/Ice mask",
        5,
        1,
        [
            (0, "not_snow", "Snow/Ice confidence is not high"),
            (1, "snow", "High confidence snow cover"),
        ],
    ),
    (
        "clear",
        "Clear mask",
        6,
        1,
        [
            (0, "not_clear", "Cloud or dilated cloud bits are set"),
            (1, "clear", "Cloud and dilated cloud bits are not set"),
        ],
    ),
    ("water", "Water mask", 7, 1, [(0, "not_water", "Land or cloud"), (1, "water", "Water")]),
]
for _name, _what, _offset, _medium in (
    ("cloud_confidence", "cloud", 8, ("medium", "Medium confidence cloud")),
    ("cloud_shadow_confidence", "cloud shadow", 10, ("reserved", "Reserved - value not used")),
    ("snow_confidence", "snow/ice", 12, ("reserved", "Reserved - value not used")),
    ("cirrus_confidence", "cirrus", 14, ("reserved", "Reserved - value not used")),
):
    QA_PIXEL_FIELDS.append(
        (
            _name,
            f"{_what[0].upper()}{_what[1:]} confidence levels",
            _offset,
            2,
            [
                (0, "not_set", _CONFIDENCE),
                (1, "low", f"Low confidence {_what}"),
                (2, *_medium),
                (3, "high", f"High confidence {_what}"),
            ],
        )
    )


def _bitfields(fields: list[Field]) -> list[JsonObject]:
    return [
        {
            "name": name,
            "description": description,
            "offset": offset,
            "length": length,
            "classes": [{"value": v, "name": n, "description": d} for v, n, d in classes],
        }
        for name, description, offset, length, classes in fields
    ]


def _radsat_fields(instrument: str) -> list[Field]:
    numbers = sorted(
        {file_band_number(n, instrument) for n in LANDSAT_BANDS if instrument in LANDSAT_BANDS[n]}
        | ({9} if instrument == "oli" else set())
    )
    numbers = [n for n in numbers if n <= 9]
    fields = [
        (
            f"band{n}",
            f"Band {n} radiometric saturation",
            n - 1,
            1,
            [
                (0, "not_saturated", f"Band {n} not saturated"),
                (1, "saturated", f"Band {n} saturated"),
            ],
        )
        for n in numbers
    ]
    fields.append(
        (
            "occlusion",
            "Terrain not visible from sensor due to intervening terrain",
            11,
            1,
            [
                (0, "not_occluded", "Terrain is not occluded"),
                (1, "occluded", "Terrain is occluded"),
            ],
        )
    )
    return fields


def _platform_digit(platform: str) -> int:
    return int(platform.rsplit("-", 1)[1])


def product_id(acquisition: Acquisition) -> str:
    """USGS product id: `LC08_L2SP_195026_20240117_20240125_02_T1`."""
    scene = acquisition.scene
    letters = SENSOR_LETTERS[acquisition.instrument]
    return (
        f"{letters}{_platform_digit(acquisition.platform):02d}_L2SP_{scene.path:03d}"
        f"{scene.row:03d}_{acquisition.day:%Y%m%d}_{acquisition.processed:%Y%m%d}_02_"
        f"{acquisition.category}"
    )


def item_id(acquisition: Acquisition) -> str:
    """stactools' item id: the product id without its processing date."""
    parts = product_id(acquisition).split("_")
    return "_".join(parts[:4] + parts[5:])


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_cog(spec: LandsatSpec, identifier: str, key: str) -> bool:
    """Half the files are COGs, the others striped GeoTIFFs: per file, from the seed."""
    return digest("landsat-layout", spec.tile.seed, identifier, key) % 2 == 0


def _file_suffix(key: str, instrument: str) -> str:
    if key == "qa_pixel":
        return "QA_PIXEL"
    if key == "qa_radsat":
        return "QA_RADSAT"
    return LANDSAT_BANDS["lwir11" if key == "lwir" else key][instrument]


def _nodata(key: str) -> int | None:
    if key == "qa_pixel":
        return QA_FILL
    if key == "qa_radsat":
        return None
    return SR_NODATA


def _asset(key: str, href: str, instrument: str) -> StacAsset:
    """One asset as stactools-landsat writes it."""
    asset: StacAsset = {"href": href, "type": COG_MEDIA_TYPE}
    if key == "qa_pixel":
        asset.update(
            title="Pixel Quality Assessment Band",
            description="Collection 2 Level-1 Pixel Quality Assessment Band (QA_PIXEL)",
            **{
                "classification:bitfields": _bitfields(QA_PIXEL_FIELDS),
                "raster:bands": [
                    {
                        "nodata": QA_FILL,
                        "data_type": "uint16",
                        "spatial_resolution": RESOLUTION,
                        "unit": "bit index",
                    }
                ],
            },
            roles=["cloud", "cloud-shadow", "snow-ice", "water-mask"],
        )
        return asset
    if key == "qa_radsat":
        asset.update(
            title="Radiometric Saturation and Terrain Occlusion Quality Assessment Band",
            description=(
                "Collection 2 Level-1 Radiometric Saturation and Terrain Occlusion Quality "
                "Assessment Band (QA_RADSAT)"
            ),
            **{
                "classification:bitfields": _bitfields(_radsat_fields(instrument)),
                "raster:bands": [
                    {"data_type": "uint16", "spatial_resolution": RESOLUTION, "unit": "bit index"}
                ],
            },
            roles=["saturation"],
        )
        return asset
    common = "lwir11" if key == "lwir" else key
    title, description, oli, tm = BAND_INFO[common]
    centre, fwhm = oli if instrument == "oli" else tm
    number = file_band_number(common, instrument)
    prefix = "TIRS" if common == "lwir11" and instrument == "oli" else BAND_PREFIX[instrument]
    band: JsonObject = {
        "name": f"{prefix}_B{number}",
        "common_name": common,
        "description": description,
        "center_wavelength": centre,
        "full_width_half_max": fwhm,
    }
    file_band = LANDSAT_BANDS[common][instrument]
    if common == "lwir11":
        asset.update(
            title=title,
            description=(
                f"Collection 2 Level-2 Thermal Infrared Band ({file_band}) Surface Temperature"
            ),
            **{
                "eo:bands": [band],
                "raster:bands": [
                    {
                        "nodata": SR_NODATA,
                        "data_type": "uint16",
                        "spatial_resolution": RESOLUTION,
                        "unit": "kelvin",
                        "scale": ST_SCALE,
                        "offset": ST_OFFSET,
                    }
                ],
            },
            gsd=100 if instrument == "oli" else (60 if instrument == "etm" else 120),
            roles=["data", "temperature"],
        )
        return asset
    asset.update(
        title=title,
        description=f"Collection 2 Level-2 {title} ({file_band}) Surface Reflectance",
        **{
            "eo:bands": [band],
            "raster:bands": [
                {
                    "nodata": SR_NODATA,
                    "data_type": "uint16",
                    "spatial_resolution": RESOLUTION,
                    "scale": SR_SCALE,
                    "offset": SR_OFFSET,
                }
            ],
        },
        roles=["data", "reflectance"],
    )
    return asset


def asset_keys(instrument: str) -> list[str]:
    """The item's asset keys, in stactools' order."""
    optical = [key for key in SR_ORDER if instrument in LANDSAT_BANDS[key]]
    thermal = "lwir11" if instrument == "oli" else "lwir"
    return ["qa_pixel", "qa_radsat", *optical, thermal]


def _geometry(spec: LandsatSpec, acquisition: Acquisition) -> tuple[JsonObject, list[float]]:
    polygon = reproject(footprint(acquisition.scene), spec.tile.epsg, 4326)
    polygon = shapely.transform(polygon, lambda coords: np.round(coords, 6))
    polygon = shapely.geometry.polygon.orient(polygon, -1.0)  # clockwise, as stactools
    return shapely.geometry.mapping(polygon), [float(v) for v in polygon.bounds]


def build_item(
    spec: LandsatSpec, acquisition: Acquisition, rendered: Rendered, hrefs: dict[str, str]
) -> StacItem:
    """The STAC item of one scene in the layout of Planetary Computer's `landsat-c2-l2`."""
    geometry, bbox = _geometry(spec, acquisition)
    scene = acquisition.scene
    instrument = acquisition.instrument
    zenith, azimuth = solar_angles(spec.tile.lat, spec.tile.lon, acquisition.moment)
    doi, doi_title = DOIS[instrument]
    letters = SENSOR_LETTERS[instrument]
    doy = acquisition.day.timetuple().tm_yday
    generated = datetime.combine(acquisition.processed, datetime.min.time()) + timedelta(
        seconds=digest("landsat-generated", item_id(acquisition)) % 86400
    )
    centre = shapely.geometry.shape(geometry).centroid
    properties: JsonObject = {
        "platform": acquisition.platform,
        "instruments": list(INSTRUMENTS[instrument]),
        "gsd": RESOLUTION,
        "description": "Landsat Collection 2 Level-2",
        "eo:cloud_cover": rendered.cloud_cover,
        "view:off_nadir": 0,
        "view:sun_elevation": round(90.0 - zenith, 7),
        "view:sun_azimuth": round(azimuth, 7),
        "proj:code": f"EPSG:{spec.tile.epsg}",
        "proj:shape": list(spec.shape()),
        "proj:transform": spec.transform(),
        "proj:centroid": {"lat": round(centre.y, 5), "lon": round(centre.x, 5)},
        "landsat:cloud_cover_land": rendered.cloud_cover_land,
        "landsat:wrs_type": "2",
        "landsat:wrs_path": f"{scene.path:03d}",
        "landsat:wrs_row": f"{scene.row:03d}",
        "landsat:collection_category": acquisition.category,
        "landsat:collection_number": "02",
        "landsat:correction": "L2SP",
        "landsat:scene_id": (
            f"{letters[0]}{letters[1]}{_platform_digit(acquisition.platform)}"
            f"{scene.path:03d}{scene.row:03d}{acquisition.day.year}{doy:03d}LGN00"
        ),
        "landsat:product_generated": generated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "grid:code": f"WRS2-{scene.path:03d}{scene.row:03d}",
        "sci:doi": doi,
        "datetime": _iso(acquisition.moment),
        "sitsflow:demo_feature": spec.fid,
    }
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": list(EXTENSIONS),
        "id": item_id(acquisition),
        "geometry": geometry,
        "bbox": bbox,
        "properties": properties,
        "links": [{"rel": "cite-as", "href": f"https://doi.org/{doi}", "title": doi_title}],
        "assets": {key: _asset(key, hrefs[key], instrument) for key in asset_keys(instrument)},
        "collection": COLLECTION,
    }


def write_item(
    spec: LandsatSpec, landscape: Landscape, acquisition: Acquisition, out_dir: Path, folder: str
) -> StacItem:
    """Render one scene's window, write its files under `folder` and return its item."""
    rendered = render(spec, landscape, acquisition)
    product = product_id(acquisition)
    transform = Affine(*spec.transform())
    hrefs = {}
    for key in asset_keys(acquisition.instrument):
        array = rendered.arrays[key]
        href = f"{folder}/{product}/{product}_{_file_suffix(key, acquisition.instrument)}.TIF"
        nodata = _nodata(key)
        if _is_cog(spec, product, key):
            data = cog_bytes(array, transform, spec.tile.epsg, "NEAREST", nodata, COG_BLOCKSIZE)
        else:
            data = striped_bytes(array, transform, spec.tile.epsg, nodata, ROWS_PER_STRIP)
        write_bytes_atomic(out_dir / href, data)
        hrefs[key] = href
    return build_item(spec, acquisition, rendered, hrefs)
