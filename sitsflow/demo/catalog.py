"""STAC items of the archive, in the Planetary Computer or the Earth Search C1 layout.

The two layouts differ where the workflow has to care: asset keys (`B04` vs `red`), the
radiometry (Planetary Computer has no `raster:bands` and the DN offset follows from
`s2:processing_baseline`; Earth Search declares scale 0.0001 and offset -0.1 in
`raster:bands`), the stac_extensions, the item id scheme and the extra properties (`mgrs:*`,
`view:*`, `file:*` checksums). Values that both share (ESA product names, SCL percentages,
`eo:cloud_cover` = the share of SCL 8/9/10) are computed once.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

import numpy as np
import shapely
import shapely.geometry

from sitsflow.core.projection import reproject
from sitsflow.core.types import JsonObject, StacAsset, StacItem
from sitsflow.demo.bands import (
    CLOUD_CLASSES,
    NODATA,
    REFLECTANCE_BANDS,
    SCL_NAME,
    SCL_PERCENTAGES,
)
from sitsflow.demo.fields import seeded_rng
from sitsflow.demo.tiles import Acquisition, FeatureSpec, outside_swath, solar_angles

LAYOUTS = ("planetary-computer", "earth-search-c1")  # item layouts, by the catalog imitated
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def item_id(spec: FeatureSpec, acquisition: Acquisition) -> str:
    """The item id of an acquisition: each catalog's own scheme (both contain the tile)."""
    sensed = acquisition.moment.strftime("%Y%m%dT%H%M%S")
    if spec.layout == "earth-search-c1":
        return f"S2{acquisition.platform}_T{spec.tile}_{sensed}_L2A"
    generated = acquisition.generated.strftime("%Y%m%dT%H%M%S")
    return (
        f"S2{acquisition.platform}_MSIL2A_{sensed}_R{acquisition.relative_orbit:03d}"
        f"_T{spec.tile}_{generated}"
    )


def _iso(moment: datetime) -> str:
    """ISO 8601 UTC timestamp with microseconds and a `Z`, as both catalogs write them."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _footprint(spec: FeatureSpec, acquisition: Acquisition) -> tuple[JsonObject, list[float]]:
    """GeoJSON polygon (counter-clockwise corners) and bbox of the item's data in lon/lat.

    The tile, less the part outside the swath when there is one (as real footprints leave out
    the no-data area). Corners suffice: over a few kilometres the image of a straight UTM edge
    bends by far less than a millimetre.
    """
    data = shapely.box(*spec.bounds)
    outside = outside_swath(spec, acquisition)
    if outside is not None:
        data = shapely.geometry.polygon.orient(data.difference(outside), 1.0)
    polygon = reproject(data, spec.epsg, 4326)
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


def _pc_assets(spec: FeatureSpec, files: dict[str, tuple[str, bytes]]) -> dict[str, StacAsset]:
    """Assets as Planetary Computer writes them: keyed `B04`, `proj:bbox`, no raster:bands."""
    assets = {}
    for band in (*REFLECTANCE_BANDS, None):
        name, gsd = (band.name, band.gsd) if band else (SCL_NAME, 20)
        asset: StacAsset = {
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
    spec: FeatureSpec, files: dict[str, tuple[str, bytes]]
) -> dict[str, StacAsset]:
    """Assets as Earth Search C1 writes them: keyed `red`, raster:bands scale/offset, file:*."""
    assets = {}
    for band in (*REFLECTANCE_BANDS, None):
        name, gsd = (band.name, band.gsd) if band else (SCL_NAME, 20)
        href, data = files[name]
        asset: StacAsset = {"href": href, "type": COG_MEDIA_TYPE}
        raster: JsonObject = {"nodata": NODATA, "data_type": "uint16" if band else "uint8"}
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
    spec: FeatureSpec, acquisition: Acquisition, scl: np.ndarray, processor: str
) -> JsonObject:
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


def _pc_properties(spec: FeatureSpec, acquisition: Acquisition, scl: np.ndarray) -> JsonObject:
    """Item properties as Planetary Computer writes them (key order included)."""
    zenith, azimuth = solar_angles(spec.lat, spec.lon, acquisition.moment)
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
    spec: FeatureSpec, acquisition: Acquisition, scl: np.ndarray, bbox: list[float]
) -> JsonObject:
    """Item properties as Earth Search C1 writes them (`mgrs:*`, `view:*`, payload id ...)."""
    zenith, azimuth = solar_angles(spec.lat, spec.lon, acquisition.moment)
    s2 = _common_s2_properties(spec, acquisition, scl, "2APS")
    s2["s2:tile_id"] = s2.pop("s2:granule_id")
    updated = _iso(acquisition.generated + timedelta(hours=3))
    view = seeded_rng("view", spec.fid, acquisition.day.isoformat())
    payload = hashlib.md5(item_id(spec, acquisition).encode()).hexdigest()
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


def build_item(
    spec: FeatureSpec,
    acquisition: Acquisition,
    scl: np.ndarray,
    files: dict[str, tuple[str, bytes]],
) -> StacItem:
    """The STAC item (as a dict) of one acquisition in the requested layout."""
    geometry, bbox = _footprint(spec, acquisition)
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
        "id": item_id(spec, acquisition),
        "collection": collection,
        "bbox": bbox,
        "geometry": geometry,
        "properties": properties,
        "links": [],
        "assets": assets,
    }
