"""Band mapping and radiometry, checked on real items recorded from each provider."""

import pytest

from sitsflow.errors import InputError
from sitsflow.providers import asset_key, canonical_band, normalise_item, radiometry

ES_V1 = "earth-search-v1/search_s2l2a+landsat_point_13TDE_2023-10-08.json"
ES_C1 = "es_c1l2a_itemcollection_13TDE_2024-03-31_to_04-22_10dates.json"
PC_PB0400 = "planetary-computer/search_s2l2a_limit10_2022-07-28_pb04.00.json"
PC_PB0212 = "pc_s2l2a_itemcollection_35MNM_2020-06-01_to_07-31_13dates.geojson"
PROJ_CODE = "stactools-sentinel2_expected_item_S2B_20220413_N0400_T33XWJ_projcode.json"


def reflectance(item, band, dn=2500):
    rule = radiometry(item, asset_key(item, band))
    return dn * rule.scale + rule.offset


@pytest.mark.parametrize(
    "name,expected",
    [("red", "B04"), ("b8a", "B8A"), ("scl", "SCL"), ("B03", "B03"), ("swir16", "B11")],
)
def test_canonical_band(name, expected):
    assert canonical_band(name) == expected


def test_unknown_band_lists_valid_names():
    with pytest.raises(InputError, match="unknown band 'B13'.*B8A"):
        canonical_band("B13")


def test_asset_keys_per_provider(fixture_items):
    (es_v1,) = [i for i in fixture_items(ES_V1) if i["collection"] == "sentinel-2-l2a"]
    pc = fixture_items(PC_PB0400)[0]
    assert [asset_key(es_v1, b) for b in ("B03", "B04", "B08", "SCL")] == [
        "green",
        "red",
        "nir",
        "scl",
    ]
    assert [asset_key(pc, b) for b in ("B03", "B04", "B08", "SCL")] == ["B03", "B04", "B08", "SCL"]
    with pytest.raises(InputError, match="no asset for band 'B10'"):
        asset_key(pc, "B10")


def test_earth_search_v1_boa_offset_already_applied(fixture_items):
    (item,) = [i for i in fixture_items(ES_V1) if i["collection"] == "sentinel-2-l2a"]
    assert item["properties"]["earthsearch:boa_offset_applied"] is True
    assert item["assets"]["red"]["raster:bands"][0]["offset"] == -0.1  # declared, but wrong
    assert reflectance(item, "B04") == pytest.approx(0.25)


def test_earth_search_v1_flag_false_with_new_baseline_removes_offset(fixture_items):
    (item,) = [i for i in fixture_items(ES_V1) if i["collection"] == "sentinel-2-l2a"]
    item["properties"]["earthsearch:boa_offset_applied"] = False
    assert reflectance(item, "B04") == pytest.approx(0.15)
    item["properties"]["s2:processing_baseline"] = "03.01"
    assert reflectance(item, "B04") == pytest.approx(0.25)


def test_earth_search_c1_uses_declared_scale_offset(fixture_items):
    item = fixture_items(ES_C1)[0]
    assert reflectance(item, "B04") == pytest.approx(0.15)
    assert reflectance(item, "B11") == pytest.approx(0.15)


def test_planetary_computer_offset_by_processing_baseline(fixture_items):
    new = fixture_items(PC_PB0400)[0]
    old = fixture_items(PC_PB0212)[0]
    assert "raster:bands" not in new["assets"]["B04"]
    assert reflectance(new, "B04") == pytest.approx(0.15)  # baseline 04.00
    assert reflectance(old, "B04") == pytest.approx(0.25)  # baseline 02.12


def test_baseline_not_date_decides(fixture_items):
    # A 2020 scene reprocessed with baseline 05.00 carries the offset although it predates 2022.
    old = fixture_items(PC_PB0212)[0]
    old["properties"]["s2:processing_baseline"] = "05.00"
    assert reflectance(old, "B04") == pytest.approx(0.15)


def test_normalise_proj_code_item(fixture_items):
    item = fixture_items(PROJ_CODE)[0]
    assert "proj:epsg" not in item["properties"]
    normalised = normalise_item(item, ["B04", "SCL"])
    assert normalised["properties"]["proj:epsg"] == 32633
    assert set(normalised["assets"]) == {"B04", "SCL"}
    assert normalised["assets"]["B04"]["sitsflow:offset"] == pytest.approx(-0.1)
    assert "sitsflow:scale" not in normalised["assets"]["SCL"]
    assert item["assets"].get("B04") is None  # the input item is not modified
