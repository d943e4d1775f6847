"""What differs between Sentinel-2 L2A catalogs: asset keys, projection fields, radiometry.

Every item is normalised here before loading, so the rest of sitsflow sees one layout:
assets keyed by band name (`B04`, `SCL`), `proj:epsg` set, and a known DN -> reflectance rule.

Providers (config `provider`, default `auto`) say which asset key holds which band and whether
hrefs must be signed before reading:

* `earth-search-v1` (Element84 `sentinel-2-l2a`) and `earth-search-c1` (`sentinel-2-c1-l2a`):
  assets keyed by common name (`red`, `nir08`, `scl`);
* `planetary-computer` (Microsoft `sentinel-2-l2a`): assets keyed by band (`B04`, `SCL`), hrefs
  signed at read time (`sitsflow.catalog.signing`);
* `copernicus-data-space` (CDSE `sentinel-2-l2a`, https://stac.dataspace.copernicus.eu/v1):
  assets keyed by band and resolution (`B04_10m`, `B8A_20m`, `B01_60m`: each band at its native
  resolution), JPEG 2000 files at `s3://eodata/...` on CDSE's S3 endpoint (credentials needed,
  `sitsflow.catalog.s3`);
* `generic`: any STAC API, with the config's `assets` band -> asset key map.

`auto` recognises the known catalogs by URL and collection, otherwise by what the items say
about themselves (`earthsearch:*` properties, Azure blob storage hrefs, `s3://eodata/` hrefs);
items that match none are read as `generic` with keys inferred from band names, common names or
`eo:bands`.

Radiometry rules (reflectance = DN * scale + offset), decided per item from its metadata and
never from its acquisition date (Collection-1 reprocessing gives old scenes baseline 05.xx):

* Earth Search v1 `sentinel-2-l2a` (has `earthsearch:boa_offset_applied`): Element84 already
  removed the +1000 DN offset when the flag is true, so its declared -0.1 offset must not be
  applied again. With the flag false and baseline >= 04.00 the pixels still carry +1000.
* Assets with `raster:scale` / `raster:offset` (raster extension v2, CDSE) or `raster:bands`
  scale/offset (raster v1: Earth Search `sentinel-2-c1-l2a`, stactools): the declared
  scale/offset are right.
* Items without the raster extension (Planetary Computer): DN / 10000, minus 0.1 where the
  processing baseline (`s2:processing_baseline`, else the processing extension's
  `processing:version`, as CDSE gives it) is >= 04.00.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from sitsflow.core.bands import (
    CLASSIFICATION_BANDS,
    COMMON_NAMES,
    LANDSAT,
    QA_PIXEL,
    QA_RADSAT,
    S2_BANDS,
    SCL,
    SENTINEL_2,
    THERMAL_BANDS,
    canonical_band,
    item_family,
    landsat_file_band,
    landsat_instrument,
    run_families,
    s2_band,
)
from sitsflow.core.errors import AssetError, InputError
from sitsflow.core.settings import collection_list
from sitsflow.core.types import JsonObject, StacAsset, StacItem

# Earth Search v1 keys its assets by common name.
EARTH_SEARCH_KEYS = {band: name for name, band in COMMON_NAMES.items()}

BASELINE_OFFSET_DN = 1000
DEFAULT_SCALE = 1e-4
BASELINE_WITH_OFFSET = 4.0


def infer_asset_key(item: StacItem, band: str) -> str:
    """The key under which `item` stores `band`, guessed from the item's own layout.

    Tried in order: the band name (`B04`, Planetary Computer), its Earth Search common-name key
    (`red`), the lower-case band name, then a single-band data asset whose `eo:bands` names it.
    """
    assets: dict[str, StacAsset] = item.get("assets", {})
    for key in (band, EARTH_SEARCH_KEYS.get(band), band.lower()):
        if key and key in assets:
            return key
    for key, asset in assets.items():
        names = [b.get("name") for b in asset.get("eo:bands", [])]
        if band in names and "data" in asset.get("roles", ["data"]) and len(names) == 1:
            return key
    raise AssetError(
        f"item {item.get('id')!r} has no asset for band {band!r}; its assets are {sorted(assets)}"
    )


PROVIDERS = (
    "earth-search-v1",
    "earth-search-c1",
    "planetary-computer",
    "copernicus-data-space",
    "usgs-landsat",
    "generic",
)
PROVIDER_SETTINGS = ("auto", *PROVIDERS)
ALL_BANDS = (*S2_BANDS, SCL)
# CDSE gives each band at several resolutions (`B04_10m`, `B04_20m`, `B04_60m`); the native one
# is read (the 20 m and 60 m copies of a 10 m band are ESA's downsampled products).
NATIVE_RESOLUTION_M = {
    **dict.fromkeys(("B02", "B03", "B04", "B08"), 10),
    **dict.fromkeys(("B05", "B06", "B07", "B8A", "B11", "B12", "SCL"), 20),
    **dict.fromkeys(("B01", "B09"), 60),
}
PROVIDER_ASSET_KEYS: dict[str, dict[str, str]] = {
    "earth-search-v1": dict(EARTH_SEARCH_KEYS),
    "earth-search-c1": dict(EARTH_SEARCH_KEYS),
    "planetary-computer": {band: band for band in ALL_BANDS},
    "copernicus-data-space": {band: f"{band}_{NATIVE_RESOLUTION_M[band]}m" for band in ALL_BANDS},
    "usgs-landsat": {},
    "generic": {},
}
# Landsat C2 L2 items (Planetary Computer's `landsat-c2-l2`, made by stactools-landsat; USGS's
# `landsat-c2l2-sr`) key their assets by common name (`red`, `nir08`) and `qa_pixel`; TM and
# ETM+ items call their thermal band `lwir`. Older USGS items key them by file (`SR_B4.TIF`).
LANDSAT_QA_KEYS = {QA_PIXEL: "qa_pixel", QA_RADSAT: "qa_radsat"}
LANDSAT_THERMAL_KEYS = ("lwir11", "lwir")
# Landsat Collection 2 Level-2 product definition: SR and ST DN -> physical value, for items
# that do not say (USGS items of STAC 0.x).
LANDSAT_SR = (2.75e-05, -0.2)
LANDSAT_ST = (0.00341802, 149.0)
# USGS's requester-pays bucket, which the `alternate.s3` hrefs of USGS items point into.
USGS_BUCKET_PREFIX = "s3://usgs-landsat/"
USGS_HOST = "landsatlook.usgs.gov"
# (API host, collection) -> provider, for `provider: auto`.
KNOWN_CATALOGS = {
    ("earth-search.aws.element84.com", "sentinel-2-l2a"): "earth-search-v1",
    ("earth-search.aws.element84.com", "sentinel-2-c1-l2a"): "earth-search-c1",
    # Element84: "baseline < 05.00, with data and metadata matching collection sentinel-2-c1-l2a"
    ("earth-search.aws.element84.com", "sentinel-2-pre-c1-l2a"): "earth-search-c1",
    ("planetarycomputer.microsoft.com", "sentinel-2-l2a"): "planetary-computer",
    ("stac.dataspace.copernicus.eu", "sentinel-2-l2a"): "copernicus-data-space",
    ("planetarycomputer.microsoft.com", "landsat-c2-l2"): "planetary-computer",
    ("landsatlook.usgs.gov", "landsat-c2l2-sr"): "usgs-landsat",
}
AZURE_BLOB_SUFFIX = ".blob.core.windows.net"
# CDSE's S3 bucket (`s3://eodata/Sentinel-2/MSI/L2A...`): its items' hrefs point into it.
CDSE_HREF_PREFIX = "s3://eodata/"


@dataclass(frozen=True)
class Provider:
    """How to read one catalog's items: band -> asset key map, and whether hrefs need signing.

    An empty `asset_keys` means "infer the key from each item" (auto-detected `generic`).
    `detected_by` records how the provider was chosen (`config`, `catalog URL`, `item layout`).
    """

    name: str
    asset_keys: Mapping[str, str] = field(default_factory=dict)
    detected_by: str = "config"
    # The config's `assets` map for Landsat items (keyed by common name).
    landsat_keys: Mapping[str, str] = field(default_factory=dict)
    # Landsat items' `alternate.s3` hrefs (USGS's requester-pays bucket) are read instead of
    # their https hrefs only when the user says they pay (config `requester_pays`).
    requester_pays: bool = False

    @property
    def signs_hrefs(self) -> bool:
        """Planetary Computer blobs are private: every href needs a SAS token to be read."""
        return self.name == "planetary-computer"

    def valid_bands(self) -> list[str]:
        return list(self.asset_keys) if self.asset_keys else list(ALL_BANDS)

    def check_bands(self, bands: Iterable[str], key: str = "bands") -> list[str]:
        """Canonical names of `bands`; InputError listing this provider's valid bands otherwise."""
        canonical = [canonical_band(band) for band in bands]
        valid = self.valid_bands()
        unknown = [band for band in canonical if band not in valid]
        if unknown:
            raise InputError(
                f"band(s) {unknown} not available from provider {self.name!r}; "
                f"valid bands: {valid}",
                key=key,
            )
        return canonical

    def asset_key(self, item: StacItem, band: str) -> str:
        """The key of `band` (a run band: `B04`, or `red` in a run with Landsat) in `item`:
        the provider's map, or inferred from the item; a Landsat item's by its layout."""
        if item_family(item) == LANDSAT:
            return landsat_asset_key(item, band, self.landsat_keys)
        band = s2_band(band)
        if not self.asset_keys:
            return infer_asset_key(item, band)
        self.check_bands([band])
        key = self.asset_keys[band]
        assets = item.get("assets", {})
        if key not in assets:
            raise AssetError(
                f"item {item.get('id')!r} has no asset {key!r} (band {band!r}, provider "
                f"{self.name!r}); its assets are {sorted(assets)}"
            )
        return key

    def describe(self) -> str:
        """Provenance string, e.g. `planetary-computer (catalog URL)`."""
        return f"{self.name} ({self.detected_by})"


def landsat_asset_key(item: StacItem, band: str, overrides: Mapping[str, str]) -> str:
    """The key of run band `band` (`red`, `QA_PIXEL`) in a Landsat item: the config's `assets`
    map, the common-name key (`red`; `lwir11` or `lwir` for surface temperature), `qa_pixel`
    and `qa_radsat`, the file band (`SR_B4`, `SR_B4.TIF`: older USGS items), or the single-band
    asset whose `eo:bands` gives that common name. AssetError naming the item otherwise."""
    assets: dict[str, StacAsset] = item.get("assets", {})
    instrument = landsat_instrument(item)
    native = landsat_file_band(band, instrument)
    candidates = [
        overrides.get(band),
        LANDSAT_QA_KEYS.get(band),
        *(LANDSAT_THERMAL_KEYS if band in THERMAL_BANDS else (band,)),
        native,
        f"{native}.TIF",
        native.lower(),
    ]
    for key in candidates:
        if key and key in assets:
            return str(key)
    listed = item.get("properties", {}).get("eo:bands", [])
    for key, asset in assets.items():
        entries = asset.get("eo:bands", [])
        if len(entries) != 1:
            continue
        entry = entries[0]
        if isinstance(entry, int) and 0 <= entry < len(listed):  # STAC 0.x: an index
            entry = listed[entry]
        if isinstance(entry, Mapping) and band in (entry.get("common_name"), entry.get("name")):
            return key
    raise AssetError(
        f"Landsat item {item.get('id')!r} ({instrument.upper()}) has no asset for band "
        f"{band!r} (file band {native}); its assets are {sorted(assets)}"
    )


def provider_for_catalog(catalog: str, collection: str) -> str | None:
    """The known provider of a STAC API URL + collection, or None."""
    host = (urlsplit(catalog).hostname or "").lower()
    for (known_host, known_collection), name in KNOWN_CATALOGS.items():
        if collection == known_collection and (
            host == known_host or host.endswith("." + known_host)
        ):
            return name
    return None


def provider_from_items(items: Iterable[StacItem]) -> str:
    """The provider whose layout the items show; `generic` when they identify none.

    Earth Search v1 items carry `earthsearch:boa_offset_applied`; Earth Search Collection-1
    items other `earthsearch:*` properties; Planetary Computer items hrefs on Azure blob
    storage; Copernicus Data Space items hrefs in CDSE's `eodata` bucket (`s3://eodata/`).
    Anything else (a private catalog, the demo archive) is read as `generic`.
    """
    for item in items:
        props = item.get("properties", {})
        assets = item.get("assets", {}).values()
        if _usgs_layout(item):
            return "usgs-landsat"
        if "earthsearch:boa_offset_applied" in props:
            return "earth-search-v1"
        if any(name.startswith("earthsearch:") for name in props):
            return "earth-search-c1"
        hosts = {_host_containing(str(a.get("href", "")), AZURE_BLOB_SUFFIX) for a in assets}
        if any(host.endswith(AZURE_BLOB_SUFFIX) for host in hosts):
            return "planetary-computer"
        if any(str(a.get("href", "")).startswith(CDSE_HREF_PREFIX) for a in assets):
            return "copernicus-data-space"
    return "generic"


def _usgs_layout(item: StacItem) -> bool:
    """A USGS Landsat item: hrefs on landsatlook.usgs.gov, or `alternate.s3` hrefs into the
    requester-pays `usgs-landsat` bucket."""
    for asset in item.get("assets", {}).values():
        alternate = str(asset.get("alternate", {}).get("s3", {}).get("href", ""))
        if alternate.startswith(USGS_BUCKET_PREFIX):
            return True
        if _host_containing(str(asset.get("href", "")), USGS_HOST) == USGS_HOST:
            return True
    return False


def _host_containing(href: str, part: str) -> str:
    """The host name of `href` (lower case, as `urlsplit` gives it) when it may contain `part`
    (lower case), else "": a run's layout is told from every asset of every item of each
    feature, and most hrefs are parsed for nothing."""
    if part not in href.lower():
        return ""
    return urlsplit(href).hostname or ""


def _asset_overrides(assets: Mapping[str, str] | None, landsat: bool) -> dict[str, str]:
    """The config's `assets` map keyed by the band names of one family's items: Sentinel-2's
    (`{red: B04_10m}` -> `B04`) or a run with Landsat's (`{B04: SR_B4}` -> `red`). Names that
    do not apply to the family are left out; a name neither knows is an error."""
    overrides = {}
    for band, key in (assets or {}).items():
        try:
            overrides[canonical_band(band, landsat)] = str(key)
        except InputError:
            try:
                canonical_band(band, not landsat)
            except InputError:
                canonical_band(band)  # raises, naming the valid names
    return overrides


def resolve_provider(
    setting: str = "auto",
    *,
    catalog: str = "",
    collection: str = "",
    assets: Mapping[str, str] | None = None,
    items: Iterable[StacItem] | None = None,
    requester_pays: bool = False,
) -> Provider:
    """The provider to read one collection's items with: the configured one, or (`auto`) the
    detected one.

    `assets` (band -> asset key) overrides the provider's keys; it is required for `generic`.
    With `auto` and an unknown catalog, `items` decide (see `provider_from_items`); without
    items (at config-check time) an unknown catalog resolves to an inferring `generic`.
    """
    if setting not in PROVIDER_SETTINGS:
        raise InputError(
            f"unknown provider {setting!r}; use one of {list(PROVIDER_SETTINGS)}", key="provider"
        )
    overrides = _asset_overrides(assets, landsat=False)
    landsat_overrides = _asset_overrides(assets, landsat=True)
    if setting == "generic" and not (overrides or landsat_overrides):
        raise InputError(
            "provider 'generic' needs an `assets` map from band names to the catalog's asset "
            "keys, e.g. {B04: red, SCL: scl}",
            key="assets",
        )
    if setting != "auto":
        name, detected_by = setting, "config"
    elif known := provider_for_catalog(catalog, collection):
        name, detected_by = known, "catalog URL"
    else:
        name, detected_by = provider_from_items(items or []), "item layout"
    return Provider(
        name,
        {**PROVIDER_ASSET_KEYS[name], **overrides},
        detected_by,
        landsat_keys=landsat_overrides,
        requester_pays=requester_pays,
    )


def check_provider_config(config: Mapping[str, Any]) -> Provider:
    """Check `provider`, `assets` and the bands against each other when the workflow is parsed.

    With `auto` and an unknown catalog the provider is only known once items are found, so
    bands are then checked against every Sentinel-2 band name (again per item at cube time).
    A run with Landsat checks its bands by their common names (`canonical_band`), and a
    Sentinel-2 collection beside it each band against Sentinel-2's.
    """
    names = collection_list(config.get("collection", ""))
    families = run_families(names)
    provider = resolve_provider(
        config.get("provider", "auto"),
        catalog=str(config.get("catalog", "")),
        collection=names[0] if names else "",
        assets=config.get("assets") or {},
    )
    if provider.detected_by == "item layout":  # decided per item at cube time
        provider = replace(provider, name="generic", asset_keys={})
    if LANDSAT in families:
        bands = [canonical_band(band, landsat=True) for band in config["bands"]]
        if SENTINEL_2 in families:
            wanted = [band for band in bands if band not in CLASSIFICATION_BANDS]
            for band in wanted:
                try:
                    s2_band(band)
                except InputError as exc:
                    raise InputError(
                        f"{exc}: a run of {list(names)} reads every band from both sensors",
                        key="bands",
                    ) from None
            provider.check_bands([s2_band(band) for band in wanted], key="bands")
    else:
        provider.check_bands(config["bands"], key="bands")
    provider.check_bands([config["mask"]["band"]], key="mask.band")
    return provider


def processing_baseline(item: StacItem) -> float | None:
    """The item's Sentinel-2 processing baseline (`05.11` -> 5.11): `s2:processing_baseline`,
    else the processing extension's `processing:version` (CDSE items have only that)."""
    props = item.get("properties", {})
    value = props.get("s2:processing_baseline", props.get("processing:version"))
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Radiometry:
    """DN -> reflectance for one asset: reflectance = DN * scale + offset; `rule` says why."""

    scale: float
    offset: float
    rule: str


def radiometry(item: StacItem, key: str, band: str = "") -> Radiometry:
    """Scale and offset that turn this asset's DN into surface reflectance (surface temperature
    in kelvin for a Landsat thermal `band`)."""
    if item_family(item) == LANDSAT:
        return landsat_radiometry(item, key, band)
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
    asset = item["assets"][key]
    if "raster:scale" in asset or "raster:offset" in asset:
        return Radiometry(
            float(asset.get("raster:scale", DEFAULT_SCALE)),
            float(asset.get("raster:offset", 0.0)),
            "asset raster:scale/raster:offset (raster extension v2)",
        )
    if "scale" in declared or "offset" in declared:
        return Radiometry(scale, float(declared.get("offset", 0.0)), "raster:bands scale/offset")
    offset = -BASELINE_OFFSET_DN * DEFAULT_SCALE if carries_offset else 0.0
    return Radiometry(DEFAULT_SCALE, offset, f"processing baseline {baseline}")


def landsat_radiometry(item: StacItem, key: str, band: str) -> Radiometry:
    """A Landsat asset's scale and offset: as declared (`raster:bands`, or raster v2's asset
    `raster:scale`/`raster:offset`), else the Collection 2 Level-2 product definition (SR:
    DN * 2.75e-05 - 0.2; ST: DN * 0.00341802 + 149.0 kelvin)."""
    asset = item["assets"][key]
    declared = (asset.get("raster:bands") or [{}])[0]
    if "raster:scale" in asset or "raster:offset" in asset:
        return Radiometry(
            float(asset.get("raster:scale", 1.0)),
            float(asset.get("raster:offset", 0.0)),
            "asset raster:scale/raster:offset (raster extension v2)",
        )
    if "scale" in declared or "offset" in declared:
        return Radiometry(
            float(declared.get("scale", 1.0)),
            float(declared.get("offset", 0.0)),
            "raster:bands scale/offset",
        )
    scale, offset = LANDSAT_ST if band in THERMAL_BANDS else LANDSAT_SR
    product = "surface temperature (K)" if band in THERMAL_BANDS else "surface reflectance"
    return Radiometry(scale, offset, f"Landsat Collection 2 Level-2 {product}")


def item_epsg(item: StacItem) -> int | None:
    """EPSG code from `proj:epsg` or the projection v2 `proj:code` (`EPSG:32633`)."""
    props = item.get("properties", {})
    if props.get("proj:epsg"):
        return int(props["proj:epsg"])
    code = props.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


def normalise_item(
    item: StacItem, bands: Sequence[str], provider: Provider | None = None
) -> StacItem:
    """A copy of `item` with assets keyed by band name and `proj:epsg` set, ready for stackstac.

    stackstac reads only `proj:epsg`; an item that has only `proj:code` would otherwise be
    placed on a wrong grid without any error. Each kept asset records its radiometry under
    `sitsflow:scale` / `sitsflow:offset` / `sitsflow:rule`. Asset keys come from `provider`
    (default: inferred from the item). Raises AssetError when the item lacks a band's asset.
    """
    provider = provider or Provider("generic", {}, "item layout")
    # a copy of what changes (the properties, the assets); the rest is shared with `item`
    out = {k: v for k, v in item.items() if k != "assets"}
    props = out["properties"] = dict(item.get("properties", {}))
    epsg = item_epsg(item)
    if epsg is not None:
        props["proj:epsg"] = epsg
    out["assets"] = {}
    for band in bands:
        key = provider.asset_key(item, band)
        asset = dict(item["assets"][key])  # its own keys change, nothing nested
        code = asset.get("proj:code")
        if "proj:epsg" not in asset and isinstance(code, str) and code.upper().startswith("EPSG:"):
            asset["proj:epsg"] = int(code.split(":", 1)[1])
        asset["sitsflow:asset_key"] = key
        alternate = str(asset.get("alternate", {}).get("s3", {}).get("href", ""))
        if provider.requester_pays and alternate.startswith(USGS_BUCKET_PREFIX):
            asset["href"] = alternate
        if band not in (*CLASSIFICATION_BANDS, QA_RADSAT):
            rule = radiometry(item, key, band)
            asset.update(
                {
                    "sitsflow:scale": rule.scale,
                    "sitsflow:offset": rule.offset,
                    "sitsflow:rule": rule.rule,
                }
            )
        out["assets"][band] = asset
    return out


def normalise_items(
    items: Iterable[StacItem],
    bands: Sequence[str],
    provider: Provider,
    skipped: list[JsonObject] | None = None,
) -> list[StacItem]:
    """`normalise_item` for each item; with `skipped` given, items lacking a band's asset are
    left out and recorded there (`on_missing_asset: skip`) instead of failing the feature."""
    normalised = []
    for item in items:
        try:
            normalised.append(normalise_item(item, bands, provider))
        except AssetError as exc:
            if skipped is None:
                raise
            skipped.append({"item": item.get("id"), "asset": None, "reason": str(exc)})
    return normalised
