"""Providers, band mapping and radiometry, checked on real items recorded from each catalog.

Every DN -> reflectance expectation below is for a pixel value of 2500 DN: 0.25 where the
pixels carry no +1000 offset, 0.15 where they do.
"""

import copy

import pytest

from sitsflow.catalog.providers import (
    Provider,
    check_provider_config,
    infer_asset_key,
    normalise_item,
    processing_baseline,
    provider_from_items,
    radiometry,
    resolve_provider,
)
from sitsflow.core.bands import canonical_band
from sitsflow.core.errors import AssetError, InputError

ES_V1 = "earth-search-v1/search_s2l2a+landsat_point_13TDE_2023-10-08.json"
ES_MIXED_PAGE1 = "earth-search-v1/search_cql2_cloudcover_page1_2025-07-31.json"
ES_C1 = "es_c1l2a_itemcollection_13TDE_2024-03-31_to_04-22_10dates.json"
PC_PB0212_2015 = (
    "planetary-computer/item_S2A_MSIL2A_20150704T101006_R022_T35XQA_GET_2025-03-12.json"
)
PC_PB0212 = "pc_s2l2a_itemcollection_35MNM_2020-06-01_to_07-31_13dates.geojson"
PC_PB0400 = "planetary-computer/search_s2l2a_limit10_2022-07-28_pb04.00.json"
PC_PB0509 = "planetary-computer/search_s2l2a_limit10_2023-04-20_pb05.09.json"
PC_PB0511 = "planetary-computer/itemcollection_s2l2a_13TDE_2024-08-23+25_pb05.11.json"
PROJ_CODE = "stactools-sentinel2_expected_item_S2B_20220413_N0400_T33XWJ_projcode.json"
CDSE_SEARCH = "cdse/xcube-stac_HEAD_search_FeatureCollection_4items.json"
CDSE_N0500 = (
    "cdse/xcube-stac_HEAD_item_S2A_MSIL2A_20200301T090901_N0500_R050_T35UPU_20230630T033416.json"  # noqa: E501
)
CDSE_N0511 = (
    "cdse/xcube-stac_HEAD_item_S2A_MSIL2A_20241107T113311_N0511_R080_T32VKR_20241107T123948.json"  # noqa: E501
)
CDSE_N0510 = (
    "cdse/eometadatatool_example_S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440.json"  # noqa: E501
)

ES_URL = "https://earth-search.aws.element84.com/v1"
PC_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
CDSE_URL = "https://stac.dataspace.copernicus.eu/v1"
DN = 2500


def first_of(fixture_items, name: str, collection: str = "sentinel-2-l2a") -> dict:
    return next(i for i in fixture_items(name) if i.get("collection", collection) == collection)


def reflectance_of(item: dict, band: str, provider: Provider) -> float:
    """DN 2500 of `band` in `item` as reflectance, through the normalisation the loader uses."""
    asset = normalise_item(item, [band], provider)["assets"][band]
    return DN * asset["sitsflow:scale"] + asset["sitsflow:offset"]


@pytest.mark.parametrize(
    "name,expected",
    [("red", "B04"), ("b8a", "B8A"), ("scl", "SCL"), ("B03", "B03"), ("swir16", "B11")],
)
def test_canonical_band(name, expected):
    assert canonical_band(name) == expected


def test_unknown_band_lists_valid_names():
    with pytest.raises(InputError, match="unknown band 'B13'.*B8A"):
        canonical_band("B13")


# ---- provider choice -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "catalog,collection,expected",
    [
        (ES_URL, "sentinel-2-l2a", "earth-search-v1"),
        (ES_URL, "sentinel-2-c1-l2a", "earth-search-c1"),
        (ES_URL, "sentinel-2-pre-c1-l2a", "earth-search-c1"),
        (PC_URL, "sentinel-2-l2a", "planetary-computer"),
        (CDSE_URL, "sentinel-2-l2a", "copernicus-data-space"),
    ],
)
def test_auto_detects_known_catalogs_by_url(catalog, collection, expected):
    provider = resolve_provider("auto", catalog=catalog, collection=collection)
    assert (provider.name, provider.detected_by) == (expected, "catalog URL")
    assert provider.signs_hrefs == (expected == "planetary-computer")


@pytest.mark.parametrize(
    "fixture,collection,expected",
    [
        (ES_V1, "sentinel-2-l2a", "earth-search-v1"),
        (ES_MIXED_PAGE1, "sentinel-2-l2a", "earth-search-v1"),
        (ES_MIXED_PAGE1, "sentinel-2-c1-l2a", "earth-search-c1"),
        (ES_C1, "sentinel-2-c1-l2a", "earth-search-c1"),
        (PC_PB0400, "sentinel-2-l2a", "planetary-computer"),
        (PC_PB0212, "sentinel-2-l2a", "planetary-computer"),
        (PROJ_CODE, None, "generic"),  # stactools output: relative hrefs, no provider marks
        (CDSE_SEARCH, "sentinel-2-l2a", "copernicus-data-space"),
        (CDSE_N0511, "sentinel-2-l2a", "copernicus-data-space"),
        (CDSE_N0510, "sentinel-2-l2a", "copernicus-data-space"),  # eometadatatool output
    ],
)
def test_auto_detects_unknown_catalogs_by_item_layout(fixture_items, fixture, collection, expected):
    items = [i for i in fixture_items(fixture) if i.get("collection") == collection]
    assert provider_from_items(items) == expected
    provider = resolve_provider("auto", catalog="http://127.0.0.1:8000/api", items=items)
    assert (provider.name, provider.detected_by) == (expected, "item layout")


def test_explicit_provider_wins_over_detection(fixture_items):
    items = fixture_items(PC_PB0400)
    provider = resolve_provider("earth-search-c1", catalog=PC_URL, collection="sentinel-2-l2a")
    assert (provider.name, provider.detected_by) == ("earth-search-c1", "config")
    with pytest.raises(AssetError, match="has no asset 'red' .*provider 'earth-search-c1'"):
        provider.asset_key(items[0], "B04")


def test_unknown_provider_and_generic_without_assets_are_refused():
    with pytest.raises(InputError, match="unknown provider 'usgs'"):
        resolve_provider("usgs")
    with pytest.raises(InputError, match="'assets'.*needs an `assets` map"):
        resolve_provider("generic", catalog="https://stac.example.org/v1")


# ---- band -> asset key -----------------------------------------------------------------------


def test_asset_keys_per_provider(fixture_items):
    es_v1 = first_of(fixture_items, ES_V1)
    es_c1 = first_of(fixture_items, ES_C1, "sentinel-2-c1-l2a")
    pc = first_of(fixture_items, PC_PB0400)
    bands = ["B03", "B04", "B08", "B8A", "B11", "SCL"]
    es_keys = ["green", "red", "nir", "nir08", "swir16", "scl"]
    for item, name in ((es_v1, "earth-search-v1"), (es_c1, "earth-search-c1")):
        assert [resolve_provider(name).asset_key(item, b) for b in bands] == es_keys
    assert [resolve_provider("planetary-computer").asset_key(pc, b) for b in bands] == bands


def test_copernicus_data_space_keys_each_band_at_its_native_resolution(fixture_items):
    cdse = resolve_provider("copernicus-data-space")
    expected = {
        "B01": "B01_60m", "B02": "B02_10m", "B03": "B03_10m", "B04": "B04_10m",
        "B05": "B05_20m", "B06": "B06_20m", "B07": "B07_20m", "B08": "B08_10m",
        "B8A": "B8A_20m", "B09": "B09_60m", "B11": "B11_20m", "B12": "B12_20m",
        "SCL": "SCL_20m",
    }  # fmt: skip
    for fixture in (CDSE_SEARCH, CDSE_N0500, CDSE_N0511, CDSE_N0510):
        for item in fixture_items(fixture):
            assert {band: cdse.asset_key(item, band) for band in expected} == expected
            for band, key in expected.items():
                asset = item["assets"][key]
                assert asset["gsd"] == int(key[4:6]) and "sampling:original" in asset["roles"]
                assert band in {b["name"] for b in asset.get("bands", [{"name": "SCL"}])}


def test_copernicus_data_space_items_have_proj_code_per_asset_only(fixture_items):
    item = fixture_items(CDSE_N0511)[0]
    assert "proj:code" not in item["properties"] and "proj:epsg" not in item["properties"]
    normalised = normalise_item(item, ["B04", "B8A", "SCL"], resolve_provider("auto", items=[item]))
    for band in ("B04", "B8A", "SCL"):
        asset = normalised["assets"][band]
        assert asset["proj:epsg"] == 32632
        assert asset["sitsflow:asset_key"] == {"B04": "B04_10m"}.get(band, f"{band}_20m")
    assert normalised["assets"]["B04"]["proj:transform"][0] == 10
    assert normalised["assets"]["B8A"]["proj:transform"][0] == 20


def test_generic_provider_uses_the_assets_map(fixture_items):
    item = fixture_items(PROJ_CODE)[0]
    provider = resolve_provider("generic", assets={"red": "red_20m", "SCL": "scl"})
    assert provider.asset_keys == {"B04": "red_20m", "SCL": "scl"}
    normalised = normalise_item(item, ["B04", "SCL"], provider)
    assert normalised["assets"]["B04"]["href"].endswith("_B04_20m.tif")
    assert normalised["assets"]["B04"]["sitsflow:asset_key"] == "red_20m"


def test_unknown_band_for_provider_lists_its_valid_bands():
    generic = resolve_provider("generic", assets={"B04": "red", "SCL": "scl"})
    with pytest.raises(
        InputError,
        match=r"\['B08'\] not available from provider 'generic'.*"
        r"valid bands: \['B04', 'SCL'\]",
    ):
        generic.check_bands(["B04", "nir"])
    pc = resolve_provider("planetary-computer")
    assert pc.check_bands(["red", "nir08", "scl"]) == ["B04", "B8A", "SCL"]
    with pytest.raises(InputError, match="unknown band 'B10'.*valid names"):
        pc.check_bands(["B10"])


def test_inferred_keys_for_an_unknown_layout(fixture_items):
    item = fixture_items(PROJ_CODE)[0]  # common-name keys plus eo:bands
    assert infer_asset_key(item, "B04") == "red"
    assert infer_asset_key(item, "SCL") == "scl"
    with pytest.raises(AssetError, match="has no asset for band 'B10'"):
        infer_asset_key(item, "B10")


def test_config_check_uses_the_provider():
    config = {
        "bands": ["B04", "nir"],
        "mask": {"band": "SCL"},
        "catalog": PC_URL,
        "collection": "sentinel-2-l2a",
        "provider": "auto",
        "assets": {},
    }
    assert check_provider_config(config).name == "planetary-computer"
    generic = {**config, "provider": "generic", "assets": {"B04": "red", "SCL": "scl"}}
    with pytest.raises(InputError, match="config key 'bands'.*valid bands: \\['B04', 'SCL'\\]"):
        check_provider_config(generic)
    no_mask = {**generic, "bands": ["B04"], "assets": {"B04": "red"}}
    with pytest.raises(InputError, match="config key 'mask.band'"):
        check_provider_config(no_mask)


# ---- radiometry: DN 2500 -> reflectance ------------------------------------------------------


@pytest.mark.parametrize(
    "fixture,collection,provider,baseline,expected,rule",
    [
        # Earth Search v1: boa_offset_applied true -> the declared -0.1 must NOT be applied
        (ES_V1, "sentinel-2-l2a", "earth-search-v1", "05.09", 0.25, "boa offset already"),
        (ES_MIXED_PAGE1, "sentinel-2-l2a", "earth-search-v1", "05.11", 0.25, "boa offset already"),
        # Earth Search Collection-1: declared raster:bands scale 0.0001, offset -0.1
        (ES_C1, "sentinel-2-c1-l2a", "earth-search-c1", "05.10", 0.15, "raster:bands"),
        (ES_MIXED_PAGE1, "sentinel-2-c1-l2a", "earth-search-c1", "05.11", 0.15, "raster:bands"),
        # Planetary Computer: no raster extension, offset by processing baseline
        (PC_PB0212_2015, "sentinel-2-l2a", "planetary-computer", "02.12", 0.25, "baseline 2.12"),
        (PC_PB0212, "sentinel-2-l2a", "planetary-computer", "02.12", 0.25, "baseline 2.12"),
        (PC_PB0400, "sentinel-2-l2a", "planetary-computer", "04.00", 0.15, "baseline 4.0"),
        (PC_PB0509, "sentinel-2-l2a", "planetary-computer", "05.09", 0.15, "baseline 5.09"),
        (PC_PB0511, "sentinel-2-l2a", "planetary-computer", "05.11", 0.15, "baseline 5.11"),
        # stactools (projection v2 item): declared raster:bands
        (PROJ_CODE, None, "generic", "04.00", 0.15, "raster:bands"),
        # Copernicus Data Space: asset-level raster:scale 0.0001 / raster:offset -0.1 (raster
        # v2), baseline only as processing:version
        (
            CDSE_SEARCH,
            "sentinel-2-l2a",
            "copernicus-data-space",
            "05.00",
            0.15,
            "raster extension v2",
        ),
        (
            CDSE_N0500,
            "sentinel-2-l2a",
            "copernicus-data-space",
            "05.00",
            0.15,
            "raster extension v2",
        ),
        (
            CDSE_N0511,
            "sentinel-2-l2a",
            "copernicus-data-space",
            "05.11",
            0.15,
            "raster extension v2",
        ),
        (
            CDSE_N0510,
            "sentinel-2-l2a",
            "copernicus-data-space",
            "05.10",
            0.15,
            "raster extension v2",
        ),
    ],
)
def test_dn_2500_to_reflectance_on_real_items(
    fixture_items, fixture, collection, provider, baseline, expected, rule
):
    items = [i for i in fixture_items(fixture) if i.get("collection") == collection]
    assert items
    chosen = resolve_provider("auto", catalog="file:///recorded", items=items)
    assert chosen.name == provider
    for item in items:
        props = item["properties"]
        assert props.get("s2:processing_baseline", props.get("processing:version")) == baseline
        for band in ("B04", "B8A", "B11"):
            assert reflectance_of(item, band, chosen) == pytest.approx(expected), item["id"]
        assert rule in radiometry(item, chosen.asset_key(item, "B04")).rule


def test_earth_search_v1_declares_an_offset_it_already_applied(fixture_items):
    item = first_of(fixture_items, ES_V1)
    assert item["properties"]["earthsearch:boa_offset_applied"] is True
    assert item["assets"]["red"]["raster:bands"][0]["offset"] == -0.1  # declared, but wrong


def test_earth_search_v1_flag_false_decided_by_baseline(fixture_items):
    # Constructed from the real item: the flag set to false, as on unprocessed scenes.
    item = copy.deepcopy(first_of(fixture_items, ES_V1))
    provider = resolve_provider("earth-search-v1")
    item["properties"]["earthsearch:boa_offset_applied"] = False
    assert reflectance_of(item, "B04", provider) == pytest.approx(0.15)  # 05.09: +1000 in pixels
    item["properties"]["s2:processing_baseline"] = "03.01"
    assert reflectance_of(item, "B04", provider) == pytest.approx(0.25)


def test_earth_search_c1_pre_2022_scene_reprocessed_with_baseline_05(fixture_items):
    # No recorded Collection-1 item predates 2022; constructed from a real one by moving it to
    # 2019 with the 05.00 reprocessing baseline: the declared offset still applies.
    item = copy.deepcopy(first_of(fixture_items, ES_C1, "sentinel-2-c1-l2a"))
    item["properties"].update(
        {"datetime": "2019-06-01T17:53:02.036000Z", "s2:processing_baseline": "05.00"}
    )
    provider = resolve_provider("earth-search-c1")
    assert reflectance_of(item, "B04", provider) == pytest.approx(0.15)
    assert reflectance_of(item, "B8A", provider) == pytest.approx(0.15)


def test_baseline_not_date_decides_on_planetary_computer(fixture_items):
    # Constructed from real items: a 2020 scene reprocessed to 05.00 carries the offset
    # although it predates 2022, and a 2023 scene with an old baseline would not.
    provider = resolve_provider("planetary-computer")
    old = copy.deepcopy(fixture_items(PC_PB0212)[0])
    old["properties"]["s2:processing_baseline"] = "05.00"
    assert reflectance_of(old, "B04", provider) == pytest.approx(0.15)
    new = copy.deepcopy(fixture_items(PC_PB0509)[0])
    new["properties"]["s2:processing_baseline"] = "03.01"
    assert reflectance_of(new, "B04", provider) == pytest.approx(0.25)


def test_copernicus_data_space_declares_the_offset_per_asset(fixture_items):
    item = fixture_items(CDSE_N0511)[0]
    props = item["properties"]
    assert "s2:processing_baseline" not in props and props["processing:version"] == "05.11"
    assert "_N0511_" in item["id"]
    for key in ("B04_10m", "B8A_20m", "B01_60m"):
        asset = item["assets"][key]
        assert "raster:bands" not in asset
        assert (asset["raster:scale"], asset["raster:offset"], asset["nodata"]) == (1e-4, -0.1, 0)
    for key in ("SCL_20m", "TCI_10m"):
        assert "raster:scale" not in item["assets"][key]
        assert "raster:offset" not in item["assets"][key]
    assert processing_baseline(item) == 5.11


def test_processing_version_alone_decides_the_offset(fixture_items):
    # Constructed from a real CDSE item: its declared scale/offset removed, so that only
    # `processing:version` (no `s2:processing_baseline`) is left to tell the baseline.
    item = copy.deepcopy(fixture_items(CDSE_N0511)[0])
    for asset in item["assets"].values():
        asset.pop("raster:scale", None)
        asset.pop("raster:offset", None)
    provider = resolve_provider("copernicus-data-space")
    assert reflectance_of(item, "B04", provider) == pytest.approx(0.15)
    assert radiometry(item, "B04_10m").rule == "processing baseline 5.11"
    item["properties"]["processing:version"] = "03.01"
    assert reflectance_of(item, "B04", provider) == pytest.approx(0.25)
    item["properties"]["s2:processing_baseline"] = "04.00"  # the S2 property wins
    assert reflectance_of(item, "B04", provider) == pytest.approx(0.15)


def test_asset_level_raster_scale_offset_for_any_provider(fixture_items):
    # Constructed from a real Planetary Computer item (no raster extension): with raster v2
    # fields on the asset, the declared values are used whatever the baseline says.
    item = copy.deepcopy(fixture_items(PC_PB0212)[0])
    item["assets"]["B04"].update({"raster:scale": 2e-4, "raster:offset": -0.2})
    rule = radiometry(item, "B04")
    assert (rule.scale, rule.offset) == (2e-4, -0.2)
    assert "raster:scale/raster:offset (raster extension v2)" in rule.rule
    assert reflectance_of(item, "B04", resolve_provider("planetary-computer")) == pytest.approx(0.3)


def test_classification_band_is_not_scaled(fixture_items):
    for fixture, name in (
        (PC_PB0400, "planetary-computer"),
        (ES_C1, "earth-search-c1"),
        (CDSE_N0511, "copernicus-data-space"),
    ):
        item = fixture_items(fixture)[0]
        scl = normalise_item(item, ["SCL"], resolve_provider(name))["assets"]["SCL"]
        assert "sitsflow:scale" not in scl and "sitsflow:offset" not in scl


def test_normalise_proj_code_item(fixture_items):
    item = fixture_items(PROJ_CODE)[0]
    assert "proj:epsg" not in item["properties"]
    assert item["properties"]["proj:code"] == "EPSG:32633"
    normalised = normalise_item(item, ["B04", "SCL"])
    assert normalised["properties"]["proj:epsg"] == 32633
    assert set(normalised["assets"]) == {"B04", "SCL"}
    assert normalised["assets"]["B04"]["sitsflow:offset"] == pytest.approx(-0.1)
    assert "sitsflow:scale" not in normalised["assets"]["SCL"]
    assert item["assets"].get("B04") is None  # the input item is not modified


@pytest.mark.parametrize(
    ("href", "layout"),
    [
        ("https://LandsatLook.USGS.gov:443/data/collection02/LC09_SR_B4.TIF", "usgs-landsat"),
        ("https://landsatlook.usgs.gov.example.org/LC09_SR_B4.TIF", "generic"),
        (
            "https://SentinelTwo.BLOB.core.windows.net/sentinel2-l2/B04.tif?st=x",
            "planetary-computer",
        ),
        ("https://example.org/blob.core.windows.net/B04.tif", "generic"),
        ("s3://eodata/Sentinel-2/MSI/L2A/B04_10m.jp2", "copernicus-data-space"),
    ],
)
def test_the_item_layout_is_told_by_the_hrefs_host_name(href, layout):
    """Host names compare as `urlsplit` gives them (any case, a port), and only the host: a
    path or a longer host that contains the name is another layout."""
    from sitsflow.catalog.providers import provider_from_items

    item = {"id": "x", "properties": {}, "assets": {"B04": {"href": href}}}
    assert provider_from_items([item]) == layout
