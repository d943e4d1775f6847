"""Which searched items a feature keeps (sitsflow/catalog/search.py `select_items`, and the
search stage): footprints that miss the feature's window, and solar days at its longitude."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from shapely.geometry import Point, box, mapping

from sitsflow.catalog.search import read_item_collection, search_dates, select_items
from sitsflow.core.bbox import grid_of, make_aoi_record
from sitsflow.core.features import Feature
from sitsflow.core.grid import outline_lonlat
from sitsflow.testing.settings import grid_settings, settings_for
from tests.helpers import search_alone


def stac_item(item_id: str, when: str, footprint) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": "sentinel-2-l2a",
        "bbox": list(footprint.bounds),
        "geometry": mapping(footprint),
        "properties": {"datetime": when, "eo:cloud_cover": 1.0},
        "assets": {},
        "links": [],
    }


def test_search_dates_add_a_day_on_either_side():
    assert [str(d) for d in search_dates("2024-01-01", "2024-12-31")] == [
        "2023-12-31",
        "2025-01-01",
    ]


def test_a_footprint_missing_the_window_is_dropped_with_its_reason():
    window = box(10.0, 50.0, 10.1, 50.1)
    near = stac_item("near", "2024-03-01T10:30:00Z", box(9.9, 49.9, 10.05, 50.05))
    # within the bounding box of a search on `window`'s bbox plus a margin, but off the window
    corner = stac_item("corner", "2024-03-01T10:30:00Z", box(10.11, 50.11, 10.2, 50.2))
    bare = {**stac_item("bare", "2024-03-01T10:30:00Z", window), "geometry": None}
    kept, dropped = select_items([near, corner, bare], window, 10.05, "2024-01-01", "2024-12-31")
    assert [item["id"] for item in kept] == ["near", "bare"]
    assert dropped == [{"id": "corner", "reason": "footprint misses the feature's window"}]


def test_solar_days_far_east_and_west():
    window = box(-180, -90, 180, 90)
    # 23:30 UTC on New Year's Eve is 10:50 on 1 January at 170 E: in 2024
    east = stac_item("east", "2023-12-31T23:30:00Z", window)
    # 00:30 UTC on 1 January is 13:10 on 31 December at 170 W: not in 2024
    west = stac_item("west", "2024-01-01T00:30:00Z", window)
    kept, dropped = select_items([east], window, 170.0, "2024-01-01", "2024-12-31")
    assert [item["id"] for item in kept] == ["east"] and not dropped
    kept, dropped = select_items([west], window, -170.0, "2024-01-01", "2024-12-31")
    assert not kept
    assert dropped == [
        {"id": "west", "reason": "solar day 2023-12-31 outside 2024-01-01..2024-12-31"}
    ]


def test_the_search_stage_keeps_a_far_east_feature_s_new_year_acquisition(tmp_path, caplog):
    """A per-UTC-day search of 2024 would not find the item acquired on 1 January local time
    (31 December UTC); an item whose footprint misses the grid is recorded, not kept."""
    feature = Feature("fiji", Point(178.4, -18.1))
    record = make_aoi_record(feature, grid_settings(crs="utm", resolution=20, buffer_m=500))
    outline = outline_lonlat(grid_of(record))
    # a speck in the search bbox, outside the grid outline (a UTM grid is rotated in lon/lat)
    slivers = box(*record["properties"]["search_bbox_wgs84"]).difference(outline)
    speck = slivers.representative_point().buffer(1e-7)
    assert not speck.intersects(outline) and speck.intersects(slivers)
    items = [
        stac_item("new-year", "2023-12-31T22:10:00Z", outline.buffer(0.01)),
        stac_item("december", "2023-12-31T10:00:00Z", outline.buffer(0.01)),
        stac_item("corner", "2024-02-01T22:10:00Z", speck),
    ]
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    bbox_path, output = tmp_path / "bbox.json", tmp_path / "found.json"
    bbox_path.write_text(json.dumps(record))
    search = settings_for(catalog=str(catalog), query=None).search
    with caplog.at_level(logging.INFO, logger="sitsflow.workflow.stages"):
        search_alone(bbox_path, search, output, tmp_path)
    kept, info = read_item_collection(output)
    assert [item["id"] for item in kept] == ["new-year"]
    assert info["datetime"] == "2024-01-01/2024-12-31"
    assert {entry["id"]: entry["reason"] for entry in info["dropped"]} == {
        "december": "solar day 2023-12-31 outside 2024-01-01..2024-12-31",
        "corner": "footprint misses the feature's window",
    }
    assert "dropped item corner: footprint misses the feature's window" in caplog.text
    assert Path(output).exists()


def test_a_group_search_gives_each_feature_what_its_own_search_finds(tmp_path, monkeypatch):
    """Issue 14: features of one 2-degree cell share one search over the union of their
    windows; each feature's items file keeps exactly the items, in the same order, and the
    same dropped entries, as a search of its own window."""
    import dataclasses

    from sitsflow.catalog.groups import plan_groups
    from sitsflow.core.layout import Layout
    from sitsflow.workflow.stages import feature_items, make_bbox, search_groups

    # footprints of 0.3 x 0.3 degrees over the cell, every 10 days, some crossing it
    items = [
        stac_item(f"t{col}{row}-{day:02d}", f"2024-03-{day:02d}T10:30:00Z",
                  box(8.0 + 0.27 * col, 48.0 + 0.27 * row, 8.3 + 0.27 * col, 48.3 + 0.27 * row))
        for col in range(8) for row in range(8) for day in (1, 11, 21)
    ]  # fmt: skip
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    points = {  # inside footprints, on their overlaps, and at the cell's corners
        "a": (8.12, 48.1), "b": (8.285, 48.29), "c": (9.4, 49.2), "d": (9.97, 49.98),
        "e": (8.01, 49.99), "f": (9.1, 48.57),
    }  # fmt: skip
    features = {fid: Feature(fid, Point(lonlat)) for fid, lonlat in points.items()}
    settings = settings_for(catalog=str(catalog), query=None, start="2024-03-01", end="2024-03-31")
    groups = plan_groups(features.values(), settings.stac.group_degrees)
    assert groups == {"e008n48": list(points)}  # one group, one search
    grid = dataclasses.replace(settings.grid, crs="utm", resolution=20, buffer_m=1000)
    monkeypatch.chdir(tmp_path)
    for fid, feature in features.items():
        make_bbox(feature, grid, f"bbox/{fid}.json")
    search_groups(features, groups, grid, settings.search, settings.stac, 0, Layout())
    found, _ = read_item_collection(Layout.group_search("e008n48"))
    for fid in features:
        (tmp_path / fid).mkdir()
        feature_items(Layout.group_search("e008n48"), f"bbox/{fid}.json", settings.search,
                      f"grouped/{fid}.json")  # fmt: skip
        search_alone(f"bbox/{fid}.json", settings.search, f"alone/{fid}.json", tmp_path / fid)
        grouped, grouped_info = read_item_collection(f"grouped/{fid}.json")
        alone, alone_info = read_item_collection(f"alone/{fid}.json")
        assert grouped and len(grouped) < len(found), fid
        assert grouped == alone, fid
        assert grouped_info["dropped"] == alone_info["dropped"], fid
        assert grouped_info["bbox"] == alone_info["bbox"], fid


def test_an_items_file_is_the_same_whether_its_items_json_was_made_before_or_not(tmp_path):
    """A batch makes each group item's JSON once for every member's items file (`ItemTexts`):
    the file is byte for byte what serialising the whole document gives, real Earth Search
    and Planetary Computer items included, and an item not of the group is serialised as
    it is (not taken for another)."""
    from sitsflow.catalog.search import ItemTexts, write_item_collection

    fixtures = Path(__file__).parent / "fixtures" / "stac"
    items = [
        *json.loads(
            (
                fixtures / "es_c1l2a_itemcollection_13TDE_2024-03-31_to_04-22_10dates.json"
            ).read_text()
        )["features"],
        *json.loads(
            (
                fixtures / "pc_s2l2a_itemcollection_35MNM_2020-06-01_to_07-31_13dates.geojson"
            ).read_text()
        )["features"],
    ]
    texts = ItemTexts(items)
    outsider = {**items[0], "id": "not-of-the-group", "properties": {"note": "é ∑"}}
    chosen = [items[3], outsider, items[0], items[-1]]
    info = {"catalog": "https://example.test/stac", "dropped": [{"id": "x", "reason": "y"}]}
    for attempt in range(2):  # the second time from the texts made by the first
        with_texts, plain = tmp_path / f"texts{attempt}.json", tmp_path / f"plain{attempt}.json"
        write_item_collection(chosen, with_texts, info, texts)
        write_item_collection(chosen, plain, info)
        document = json.loads(plain.read_text())
        document["sitsflow:search"]["searched_at"] = json.loads(with_texts.read_text())[
            "sitsflow:search"
        ]["searched_at"]
        assert with_texts.read_text() == json.dumps(document, separators=(",", ":"))
        assert read_item_collection(with_texts)[0] == chosen
