"""Band names: the names a config may use, the one each stands for, and which sensor family
(Sentinel-2 MSI, Landsat TM/ETM+/OLI) measures it.

Settings (config `bands`, `mask.band`) and the catalog's asset keys both speak these names, so
they live with the foundations rather than with any one provider.

A run of Sentinel-2 collections only names its bands as Sentinel-2 does (`red` -> `B04`): the
cube's variables are `B04`, `B08`, as they always were. A run that reads a Landsat collection
(alone or beside Sentinel-2) names them by common name (`red`, `nir08`, `swir16`): the same
variable holds each sensor's band of that name, and Sentinel-2 names are accepted for the
bands both measure (`B04` -> `red`, `B8A` -> `nir08`). There `nir` is the narrow near infrared
(Landsat's only one, Sentinel-2's B8A), as the Harmonized Landsat Sentinel-2 product pairs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sitsflow.core.errors import InputError

SENTINEL_2 = "sentinel-2"
LANDSAT = "landsat"

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
SCL = "SCL"
QA_PIXEL = "QA_PIXEL"
QA_RADSAT = "QA_RADSAT"
CLASSIFICATION_BANDS = (SCL, QA_PIXEL)
# The classification band of each family: what its items are masked with.
FAMILY_CLASS_BAND = {SENTINEL_2: SCL, LANDSAT: QA_PIXEL}

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

# Landsat Collection 2 Level-2 bands by common name: each instrument's file band (`SR_B4` is
# red on OLI, near infrared on TM and ETM+). Surface temperature (`lwir11`) is in kelvin.
LANDSAT_INSTRUMENTS = ("tm", "etm", "oli")
LANDSAT_BANDS: dict[str, dict[str, str]] = {
    "coastal": {"oli": "SR_B1"},
    "blue": {"tm": "SR_B1", "etm": "SR_B1", "oli": "SR_B2"},
    "green": {"tm": "SR_B2", "etm": "SR_B2", "oli": "SR_B3"},
    "red": {"tm": "SR_B3", "etm": "SR_B3", "oli": "SR_B4"},
    "nir08": {"tm": "SR_B4", "etm": "SR_B4", "oli": "SR_B5"},
    "swir16": {"tm": "SR_B5", "etm": "SR_B5", "oli": "SR_B6"},
    "swir22": {"tm": "SR_B7", "etm": "SR_B7", "oli": "SR_B7"},
    "lwir11": {"tm": "ST_B6", "etm": "ST_B6", "oli": "ST_B10"},
}
THERMAL_BANDS = ("lwir11",)
# Names a run with Landsat accepts for its bands besides the common names above.
LANDSAT_ALIASES = {
    "nir": "nir08",
    "lwir": "lwir11",
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B8A": "nir08",
    "B11": "swir16",
    "B12": "swir22",
    "SCL": SCL,
    "QA_PIXEL": QA_PIXEL,
    "QA": QA_PIXEL,
}
# The Sentinel-2 band of each common name of a run with Landsat (what a Sentinel-2 item reads).
S2_BAND_OF = {name: band for band, name in LANDSAT_ALIASES.items() if band in S2_BANDS}
# What a run with Landsat reads for a formula written with Sentinel-2 bands (spectral indices,
# NDVI): the band of that common name, and for B08 the near infrared there is (nir08).
LANDSAT_RUN_BAND = {**{band: name for name, band in S2_BAND_OF.items()}, "B08": "nir08"}
# NDVI's red and near-infrared bands, by the names a run gives them.
NDVI_BANDS = {False: ("B04", "B08"), True: ("red", "nir08")}
# Landsat platforms (STAC `platform`, lower case) -> instrument.
LANDSAT_PLATFORMS = {
    "landsat-4": "tm",
    "landsat-5": "tm",
    "landsat-7": "etm",
    "landsat-8": "oli",
    "landsat-9": "oli",
}


def collection_family(collection: str) -> str:
    """The sensor family of a collection, by its name: `landsat-c2-l2` -> `landsat`."""
    return LANDSAT if "landsat" in collection.lower() else SENTINEL_2


def run_families(collections: Iterable[str]) -> tuple[str, ...]:
    """The sensor families of a run's collections, Sentinel-2 first."""
    found = {collection_family(collection) for collection in collections}
    return tuple(family for family in (SENTINEL_2, LANDSAT) if family in found)


def item_platform(item: Mapping[str, Any]) -> str:
    """The item's platform in STAC's spelling (`landsat-8`, `sentinel-2a`): `platform`, else
    USGS's older `eo:platform` (`LANDSAT_8`); empty when the item says nothing."""
    props = item.get("properties", {})
    platform = props.get("platform") or props.get("eo:platform") or ""
    return str(platform).strip().lower().replace("_", "-")


def item_family(item: Mapping[str, Any]) -> str:
    """`landsat` for an item of a Landsat platform or collection (or with `landsat:*`
    properties), else `sentinel-2`."""
    props = item.get("properties", {})
    platform = item_platform(item)
    if platform.startswith("landsat") or "landsat" in str(item.get("collection", "")).lower():
        return LANDSAT
    if platform.startswith("sentinel-2"):  # no need to look through every property
        return SENTINEL_2
    return LANDSAT if any(str(name).startswith("landsat:") for name in props) else SENTINEL_2


def landsat_instrument(item: Mapping[str, Any]) -> str:
    """`tm`, `etm` or `oli` for a Landsat item, from its platform (or its id's `LC08`/`LE07`
    /`LT05` prefix); InputError naming the item otherwise."""
    platform = item_platform(item)
    if platform in LANDSAT_PLATFORMS:
        return LANDSAT_PLATFORMS[platform]
    prefix = str(item.get("id", ""))[:4].upper()
    by_prefix = {"LT04": "tm", "LT05": "tm", "LE07": "etm", "LC08": "oli", "LC09": "oli"}
    if prefix in by_prefix:
        return by_prefix[prefix]
    raise InputError(
        f"item {item.get('id')!r}: cannot tell its Landsat instrument (platform {platform!r})",
        key="collection",
    )


def canonical_band(name: str, landsat: bool = False) -> str:
    """The name a band goes by in the run: in a Sentinel-2 run `red` -> `B04`, `b8a` -> `B8A`,
    `scl` -> `SCL`; in a run with Landsat `B04` -> `red`, `nir` -> `nir08`, `qa_pixel` ->
    `QA_PIXEL`. InputError listing the valid names otherwise."""
    if landsat:
        return _landsat_run_band(name)
    upper = name.upper()
    if upper in S2_BANDS or upper == SCL:
        return upper
    if name.lower() in COMMON_NAMES:
        return COMMON_NAMES[name.lower()]
    valid = [*S2_BANDS, SCL, *sorted(COMMON_NAMES)]
    hint = (
        " (a Landsat band: add a Landsat collection to `collection`)"
        if name in LANDSAT_BANDS
        else ""
    )
    raise InputError(f"unknown band {name!r}{hint}; valid names: {valid}", key="bands")


def _landsat_run_band(name: str) -> str:
    if name.lower() in LANDSAT_BANDS:
        return name.lower()
    for spelling in (name, name.upper(), name.lower()):
        if spelling in LANDSAT_ALIASES:
            return LANDSAT_ALIASES[spelling]
    valid = [*LANDSAT_BANDS, *LANDSAT_ALIASES]
    only_s2 = name.upper() in S2_BANDS or name.lower() in COMMON_NAMES
    reason = (
        " (measured by Sentinel-2 only; a run with Landsat reads bands both measure)"
        if only_s2
        else ""
    )
    raise InputError(f"unknown band {name!r}{reason}; valid names: {valid}", key="bands")


def s2_band(band: str) -> str:
    """The Sentinel-2 band a run band stands for: `red` -> `B04` (a run with Landsat), `B04`
    -> `B04` (a Sentinel-2 run). InputError for a band Sentinel-2 does not measure."""
    if band in S2_BANDS or band == SCL:
        return band
    if band in S2_BAND_OF:
        return S2_BAND_OF[band]
    raise InputError(f"band {band!r} is not measured by Sentinel-2", key="bands")


def landsat_file_band(band: str, instrument: str) -> str:
    """The file band of a run band on a Landsat instrument: `red` on OLI -> `SR_B4`; the QA
    bands as they are. InputError for a band the instrument lacks (`coastal` on TM)."""
    if band in (QA_PIXEL, QA_RADSAT):
        return band
    native = LANDSAT_BANDS.get(band, {}).get(instrument)
    if native is None:
        raise InputError(
            f"band {band!r} is not measured by Landsat {instrument.upper()}", key="bands"
        )
    return native
