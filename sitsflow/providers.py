"""What differs between Sentinel-2 L2A catalogs: asset keys, projection fields, radiometry.

Every item is normalised here before loading, so the rest of sitsflow sees one layout:
assets keyed by band name (`B04`, `SCL`), `proj:epsg` set, and a known DN -> reflectance rule.

Radiometry rules (reflectance = DN * scale + offset), decided per item from its metadata and
never from its acquisition date (Collection-1 reprocessing gives old scenes baseline 05.xx):

* Earth Search v1 `sentinel-2-l2a` (has `earthsearch:boa_offset_applied`): Element84 already
  removed the +1000 DN offset when the flag is true, so its declared -0.1 offset must not be
  applied again. With the flag false and baseline >= 04.00 the pixels still carry +1000.
* Items with `raster:bands` scale/offset (Earth Search `sentinel-2-c1-l2a`, stactools):
  the declared scale/offset are right.
* Items without the raster extension (Planetary Computer): DN / 10000, minus 0.1 where
  `s2:processing_baseline` >= 04.00.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from sitsflow.errors import InputError

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
CLASSIFICATION_BANDS = ("SCL",)

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
# Earth Search v1 keys its assets by common name.
EARTH_SEARCH_KEYS = {band: name for name, band in COMMON_NAMES.items()}

BASELINE_OFFSET_DN = 1000
DEFAULT_SCALE = 1e-4
BASELINE_WITH_OFFSET = 4.0


def canonical_band(name: str) -> str:
    """`red` -> `B04`, `b8a` -> `B8A`, `scl` -> `SCL`; error listing valid names otherwise."""
    upper = name.upper()
    if upper in S2_BANDS or upper in CLASSIFICATION_BANDS:
        return upper
    if name.lower() in COMMON_NAMES:
        return COMMON_NAMES[name.lower()]
    valid = list(S2_BANDS) + list(CLASSIFICATION_BANDS) + sorted(COMMON_NAMES)
    raise InputError(f"unknown band {name!r}; valid names: {valid}", key="bands")


def asset_key(item: dict, band: str) -> str:
    """The key under which `item` stores `band` (e.g. `B04` on PC, `red` on Earth Search)."""
    assets = item.get("assets", {})
    for key in (band, EARTH_SEARCH_KEYS.get(band), band.lower()):
        if key and key in assets:
            return key
    for key, asset in assets.items():
        names = [b.get("name") for b in asset.get("eo:bands", [])]
        if band in names and "data" in asset.get("roles", ["data"]) and len(names) == 1:
            return key
    raise InputError(
        f"item {item.get('id')!r} has no asset for band {band!r}; its assets are {sorted(assets)}",
        key="bands",
    )


def processing_baseline(item: dict) -> float | None:
    value = item.get("properties", {}).get("s2:processing_baseline")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Radiometry:
    """DN -> reflectance for one asset: reflectance = DN * scale + offset; `rule` says why."""

    scale: float
    offset: float
    rule: str


def radiometry(item: dict, key: str) -> Radiometry:
    """Scale and offset that turn this asset's DN into surface reflectance."""
    props = item.get("properties", {})
    baseline = processing_baseline(item)
    carries_offset = baseline is not None and baseline >= BASELINE_WITH_OFFSET
    declared = (item["assets"][key].get("raster:bands") or [{}])[0]
    scale = float(declared.get("scale", DEFAULT_SCALE))
    if "earthsearch:boa_offset_applied" in props:
        if props["earthsearch:boa_offset_applied"]:
            return Radiometry(scale, 0.0, "earth-search: boa offset already applied by provider")
        offset = -BASELINE_OFFSET_DN * scale if carries_offset else 0.0
        return Radiometry(scale, offset, f"earth-search: baseline {baseline}, offset not applied")
    if "scale" in declared or "offset" in declared:
        return Radiometry(scale, float(declared.get("offset", 0.0)), "raster:bands scale/offset")
    offset = -BASELINE_OFFSET_DN * DEFAULT_SCALE if carries_offset else 0.0
    return Radiometry(DEFAULT_SCALE, offset, f"processing baseline {baseline}")


def item_epsg(item: dict) -> int | None:
    """EPSG code from `proj:epsg` or the projection v2 `proj:code` (`EPSG:32633`)."""
    props = item.get("properties", {})
    if props.get("proj:epsg"):
        return int(props["proj:epsg"])
    code = props.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


def normalise_item(item: dict, bands: list[str]) -> dict:
    """A copy of `item` with assets keyed by band name and `proj:epsg` set, ready for stackstac.

    stackstac reads only `proj:epsg`; an item that has only `proj:code` would otherwise be
    placed on a wrong grid without any error. Each kept asset records its radiometry under
    `sitsflow:scale` / `sitsflow:offset` / `sitsflow:rule`.
    """
    out = copy.deepcopy({k: v for k, v in item.items() if k != "assets"})
    props = out.setdefault("properties", {})
    epsg = item_epsg(item)
    if epsg is not None:
        props["proj:epsg"] = epsg
    out["assets"] = {}
    for band in bands:
        key = asset_key(item, band)
        asset = copy.deepcopy(item["assets"][key])
        code = asset.get("proj:code")
        if "proj:epsg" not in asset and isinstance(code, str) and code.upper().startswith("EPSG:"):
            asset["proj:epsg"] = int(code.split(":", 1)[1])
        if band not in CLASSIFICATION_BANDS:
            rule = radiometry(item, key)
            asset.update(
                {
                    "sitsflow:scale": rule.scale,
                    "sitsflow:offset": rule.offset,
                    "sitsflow:rule": rule.rule,
                }
            )
        out["assets"][band] = asset
    return out
