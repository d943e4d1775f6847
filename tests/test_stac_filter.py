"""Tests for sitsflow.catalog.filters: STAC item-search semantics shared by local search and
server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sitsflow.catalog.filters import (
    QUERY_OPERATORS,
    filter_items,
    item_time_range,
    parse_bbox,
    parse_datetime,
    parse_datetime_interval,
    parse_filter,
    query_to_cql2,
)
from tests.conftest import STAC_FIXTURES, load_items


def utc(*args: int) -> datetime:
    """Shorthand for an aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)


def make_item(
    item_id: str,
    *,
    when: str | None = "2024-01-15T10:00:00Z",
    collection: str = "sentinel-2-l2a",
    bounds: tuple[float, float, float, float] | None = (10.0, 50.0, 11.0, 51.0),
    geometry: bool = True,
    **properties: object,
) -> dict:
    """A minimal STAC item with a box footprint (or only a bbox when geometry=False)."""
    props: dict = {"datetime": when, **properties}
    item: dict = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": collection,
        "properties": props,
        "geometry": None,
        "links": [],
        "assets": {},
    }
    if bounds is not None:
        minx, miny, maxx, maxy = bounds
        item["bbox"] = list(bounds)
        if geometry:
            ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
            item["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    return item


def ids_of(items: list[dict]) -> list[str]:
    return [item["id"] for item in items]


def matches(properties: dict, query: dict | None = None, filter: str | dict | None = None) -> bool:
    """Whether an item with these properties passes `query` and `filter`."""
    item = make_item("x", **properties)
    return filter_items([item], query=query, filter=filter) == [item]


# ---- datetime parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-05T10:20:30Z", utc(2024, 1, 5, 10, 20, 30)),
        ("2024-01-05T10:20:30z", utc(2024, 1, 5, 10, 20, 30)),
        ("2024-01-05t10:20:30Z", utc(2024, 1, 5, 10, 20, 30)),
        ("2024-01-05T10:20:30+02:00", utc(2024, 1, 5, 8, 20, 30)),
        ("2024-01-05T00:30:00-01:00", utc(2024, 1, 5, 1, 30)),
        ("2024-01-05T10:20:30", utc(2024, 1, 5, 10, 20, 30)),
        ("2024-01-05T10:20:30.123456Z", utc(2024, 1, 5, 10, 20, 30, 123456)),
        ("2025-07-31T13:03:25.899000000Z", utc(2025, 7, 31, 13, 3, 25, 899000)),
        ("2024-01-05", utc(2024, 1, 5)),
    ],
)
def test_parse_datetime_variants(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_parse_datetime_date_end_of_day() -> None:
    assert parse_datetime("2024-01-31", end_of_day=True) == utc(2024, 1, 31, 23, 59, 59, 999999)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        ("", (None, None)),
        ("2024-01-01T00:00:00Z/2024-02-01T00:00:00Z", (utc(2024, 1, 1), utc(2024, 2, 1))),
        ("../2024-02-01T00:00:00Z", (None, utc(2024, 2, 1))),
        ("2024-01-01T00:00:00Z/..", (utc(2024, 1, 1), None)),
        ("2024-01-01T00:00:00Z/", (utc(2024, 1, 1), None)),
        ("/2024-02-01T00:00:00Z", (None, utc(2024, 2, 1))),
        ("2024-01-01/2024-01-31", (utc(2024, 1, 1), utc(2024, 1, 31, 23, 59, 59, 999999))),
        (
            "2024-01-01/2024-01-31T23:59:59Z",
            (utc(2024, 1, 1), utc(2024, 1, 31, 23, 59, 59)),
        ),
        ("2024-01-05", (utc(2024, 1, 5), utc(2024, 1, 5, 23, 59, 59, 999999))),
        ("2024-01-05T10:00:00Z", (utc(2024, 1, 5, 10), utc(2024, 1, 5, 10))),
        (
            "2024-01-01T01:00:00+01:00/2024-01-01T02:00:00+01:00",
            (utc(2024, 1, 1, 0), utc(2024, 1, 1, 1)),
        ),
    ],
)
def test_parse_datetime_interval(
    value: str | None, expected: tuple[datetime | None, datetime | None]
) -> None:
    assert parse_datetime_interval(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024-13-01",
        "yesterday",
        "2024-01-01/2024-01-02/2024-01-03",
        "../..",
        "/",
        "2024-02-01/2024-01-01",
        "2024-01-01T25:00:00Z",
    ],
)
def test_parse_datetime_interval_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime_interval(value)


def test_aware_results_are_utc_even_from_offsets() -> None:
    start, end = parse_datetime_interval("2024-01-01T12:00:00+05:30/..")
    assert start is not None and start.tzinfo is not None
    assert start.astimezone(UTC).hour == 6 and start.minute == 30
    assert end is None


# ---- datetime filtering -----------------------------------------------------------------------


def test_end_day_inclusive_with_explicit_end_second() -> None:
    items = [
        make_item("before", when="2023-12-31T23:59:59Z"),
        make_item("first", when="2024-01-01T00:00:00Z"),
        make_item("last-second", when="2024-01-31T23:59:59Z"),
        make_item("after-last-second", when="2024-01-31T23:59:59.500000Z"),
        make_item("next-month", when="2024-02-01T00:00:00Z"),
    ]
    window = parse_datetime_interval("2024-01-01/2024-01-31T23:59:59Z")
    assert ids_of(filter_items(items, datetime_range=window)) == ["first", "last-second"]
    whole_day = parse_datetime_interval("2024-01-01/2024-01-31")
    assert ids_of(filter_items(items, datetime_range=whole_day)) == [
        "first",
        "last-second",
        "after-last-second",
    ]


def test_open_ended_ranges() -> None:
    items = [make_item(f"d{day}", when=f"2024-01-{day:02d}T12:00:00Z") for day in (1, 10, 20)]
    assert ids_of(filter_items(items, datetime_range=parse_datetime_interval("../2024-01-10"))) == [
        "d1",
        "d10",
    ]
    assert ids_of(filter_items(items, datetime_range=parse_datetime_interval("2024-01-10/.."))) == [
        "d10",
        "d20",
    ]
    single_day = parse_datetime_interval("2024-01-20")
    assert ids_of(filter_items(items, datetime_range=single_day)) == ["d20"]


def test_start_end_datetime_overlap() -> None:
    composite = make_item(
        "composite",
        when=None,
        start_datetime="2024-01-10T00:00:00Z",
        end_datetime="2024-01-20T00:00:00Z",
    )
    no_time = make_item("no-time", when=None)
    items = [composite, no_time]
    overlapping = (utc(2024, 1, 19), utc(2024, 2, 1))
    assert ids_of(filter_items(items, datetime_range=overlapping)) == ["composite"]
    touching_end = (utc(2024, 1, 20), None)
    assert ids_of(filter_items(items, datetime_range=touching_end)) == ["composite"]
    disjoint = (utc(2024, 1, 20, 0, 0, 1), None)
    assert filter_items(items, datetime_range=disjoint) == []
    # no temporal filter: items without any time still match
    assert ids_of(filter_items(items)) == ["composite", "no-time"]
    assert item_time_range(no_time) is None


# ---- query extension ----------------------------------------------------------------------


PROPS = {
    "eo:cloud_cover": 12.5,
    "platform": "sentinel-2a",
    "s2:mgrs_tile": "32UNB",
    "instruments": ["msi"],
    "sat:relative_orbit": 8,
    "flag": True,
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"eo:cloud_cover": {"eq": 12.5}}, True),
        ({"eo:cloud_cover": {"eq": 12}}, False),
        ({"sat:relative_orbit": {"eq": 8.0}}, True),
        ({"flag": {"eq": 1}}, False),
        ({"flag": {"eq": True}}, True),
        ({"platform": {"neq": "sentinel-2b"}}, True),
        ({"platform": {"neq": "sentinel-2a"}}, False),
        ({"eo:cloud_cover": {"lt": 12.5}}, False),
        ({"eo:cloud_cover": {"lt": 13}}, True),
        ({"eo:cloud_cover": {"lte": 12.5}}, True),
        ({"eo:cloud_cover": {"lte": 12.4}}, False),
        ({"eo:cloud_cover": {"gt": 12.5}}, False),
        ({"eo:cloud_cover": {"gt": 12}}, True),
        ({"eo:cloud_cover": {"gte": 12.5}}, True),
        ({"eo:cloud_cover": {"gte": 12.6}}, False),
        ({"eo:cloud_cover": {"gte": 10, "lt": 20}}, True),
        ({"eo:cloud_cover": {"gte": 10, "lt": 12}}, False),
        ({"eo:cloud_cover": {"lt": "20"}}, False),
        ({"platform": {"in": ["sentinel-2a", "sentinel-2b"]}}, True),
        ({"platform": {"in": ["sentinel-2c"]}}, False),
        ({"s2:mgrs_tile": {"startsWith": "32U"}}, True),
        ({"s2:mgrs_tile": {"startsWith": "33"}}, False),
        ({"s2:mgrs_tile": {"endsWith": "NB"}}, True),
        ({"s2:mgrs_tile": {"endsWith": "NA"}}, False),
        ({"platform": {"contains": "nel-2"}}, True),
        ({"platform": {"contains": "landsat"}}, False),
        ({"instruments": {"contains": "msi"}}, True),
        ({"instruments": {"contains": "oli"}}, False),
        ({"sat:relative_orbit": {"startsWith": "8"}}, False),
        ({"properties.eo:cloud_cover": {"lt": 20}}, True),
        ({"platform": {"eq": "sentinel-2a"}, "eo:cloud_cover": {"lt": 5}}, False),
        ({"platform": {"eq": "sentinel-2a"}, "eo:cloud_cover": {"lt": 50}}, True),
    ],
)
def test_query_operators(query: dict, expected: bool) -> None:
    assert matches(PROPS, query) is expected


def test_every_operator_is_covered_by_the_table() -> None:
    assert set(QUERY_OPERATORS) == {
        "eq",
        "neq",
        "lt",
        "lte",
        "gt",
        "gte",
        "in",
        "startsWith",
        "endsWith",
        "contains",
    }


@pytest.mark.parametrize("op", sorted(QUERY_OPERATORS))
def test_missing_property_never_matches(op: str) -> None:
    operand = ["x"] if op == "in" else "x"
    assert matches({"other": "x"}, {"other": {"eq": "x"}}) is True
    assert matches({"other": "x"}, {"absent": {op: operand}}) is False


def test_unknown_operator_is_named() -> None:
    with pytest.raises(ValueError, match="'like'"):
        query_to_cql2({"platform": {"like": "sentinel%"}})
    # validation happens before any item is looked at
    with pytest.raises(ValueError, match="'between'"):
        filter_items([], query={"eo:cloud_cover": {"between": [1, 2]}})


@pytest.mark.parametrize(
    "query",
    [
        {"platform": "sentinel-2a"},
        {"platform": {}},
        {"platform": {"in": "sentinel-2a"}},
        {"platform": {"startsWith": 3}},
        ["platform"],
    ],
)
def test_malformed_queries_rejected(query: object) -> None:
    with pytest.raises(ValueError):
        query_to_cql2(query)


def test_query_translation_to_cql2() -> None:
    assert query_to_cql2({"eo:cloud_cover": {"lt": 10}}) == {
        "op": "<",
        "args": [{"property": "eo:cloud_cover"}, 10],
    }
    two = query_to_cql2({"eo:cloud_cover": {"gte": 1, "lt": 10}, "platform": {"in": ["a"]}})
    assert two["op"] == "and" and [arg["op"] for arg in two["args"]] == [">=", "<", "in"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"tile": {"startsWith": "a_"}}, ["underscore"]),
        ({"tile": {"endsWith": "%"}}, ["percent"]),
        ({"tile": {"contains": "b\\"}}, ["backslash"]),
        ({"tile": {"contains": "_"}}, ["underscore"]),
    ],
)
def test_like_wildcards_in_operands_are_literal(query: dict, expected: list[str]) -> None:
    items = [
        make_item("underscore", tile="a_b"),
        make_item("any-char", tile="axb"),
        make_item("percent", tile="50%"),
        make_item("backslash", tile="ab\\c"),
    ]
    assert ids_of(filter_items(items, query=query)) == expected


# ---- CQL2 filter ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ("eo:cloud_cover < 13 AND platform = 'sentinel-2a'", True),
        ("eo:cloud_cover < 12", False),
        ({"op": "<", "args": [{"property": "eo:cloud_cover"}, 13]}, True),
        ("s2:mgrs_tile LIKE '32U%' OR eo:cloud_cover > 99", True),
        ("NOT (flag = true)", False),
        ("absent = 1", False),
        ("absent IS NULL", True),
        ("absent = 1 OR sat:relative_orbit = 8", True),
        ("platform = 3", False),
        ("A_CONTAINS(instruments, ('msi'))", True),
        ("sat:relative_orbit BETWEEN 1 AND 10", True),
        ("id = 'x' AND collection = 'sentinel-2-l2a'", True),
        ("S_INTERSECTS(geometry, POINT(10.5 50.5))", True),
        ("S_INTERSECTS(geometry, POINT(12 50.5))", False),
        ("datetime > TIMESTAMP('2024-01-15T09:00:00Z')", True),
    ],
)
def test_filter_semantics(filter: str | dict, expected: bool) -> None:
    assert matches(PROPS, filter=filter) is expected


def test_query_and_filter_must_both_match() -> None:
    assert matches(PROPS, {"eo:cloud_cover": {"lt": 13}}, "platform = 'sentinel-2a'") is True
    assert matches(PROPS, {"eo:cloud_cover": {"lt": 12}}, "platform = 'sentinel-2a'") is False
    assert matches(PROPS, {"eo:cloud_cover": {"lt": 13}}, "platform = 'sentinel-2b'") is False


@pytest.mark.parametrize(
    ("value", "lang", "fragment"),
    [
        ("eo:cloud_cover <", None, "expected"),
        ("eo:cloud_cover < 10 junk", None, "expected"),
        ({"op": "<", "args": [{"property": "a"}]}, None, "not valid"),
        ({"args": []}, None, "cql2-json"),
        ("a < 1", "cql2-json", "cql2-json"),
        ({"op": "<", "args": [{"property": "a"}, 1]}, "cql2-text", "must be a string"),
        ("a < 1", "cql2-xml", "unknown filter-lang"),
        (3, None, "must be a string"),
    ],
)
def test_bad_filters_rejected(value: object, lang: str | None, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_filter(value, lang)
    if lang is None:  # validated before any item is looked at
        with pytest.raises(ValueError, match="filter"):
            filter_items([], filter=value)


def test_parse_filter_accepts_both_languages() -> None:
    text = parse_filter("eo:cloud_cover < 10")
    assert text == parse_filter(
        '{"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}', "cql2-json"
    )
    assert text == parse_filter({"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]})


def test_filter_items_by_query_keeps_order() -> None:
    items = [make_item(f"i{n}", **{"eo:cloud_cover": cc}) for n, cc in enumerate([50, 5, 30, 1])]
    items.append(make_item("no-cc"))
    kept = filter_items(items, query={"eo:cloud_cover": {"lt": 31}})
    assert ids_of(kept) == ["i1", "i2", "i3"]
    assert kept[0] is items[1]  # the same dicts are returned, not copies


# ---- collections / ids ----------------------------------------------------------------------


def test_collections_and_ids() -> None:
    items = [
        make_item("a", collection="sentinel-2-l2a"),
        make_item("b", collection="landsat-c2-l2"),
        make_item("c", collection="sentinel-2-l2a"),
    ]
    assert ids_of(filter_items(items, collections=["sentinel-2-l2a"])) == ["a", "c"]
    assert ids_of(filter_items(items, collections=["landsat-c2-l2", "sentinel-2-l2a"])) == [
        "a",
        "b",
        "c",
    ]
    assert filter_items(items, collections=["does-not-exist"]) == []
    assert ids_of(filter_items(items, ids=["c", "a"])) == ["a", "c"]
    assert ids_of(filter_items(items, ids=["c", "b"], collections=["sentinel-2-l2a"])) == ["c"]
    assert ids_of(filter_items(items, collections=[])) == ["a", "b", "c"]


# ---- space ----------------------------------------------------------------------------------


def test_bbox_vs_intersects() -> None:
    square = make_item("square", bounds=(10.0, 50.0, 11.0, 51.0))
    # a triangle whose bbox is (12, 50, 14, 52) but which only covers the lower-right half
    triangle = make_item("triangle", bounds=(12.0, 50.0, 14.0, 52.0))
    triangle["geometry"] = {
        "type": "Polygon",
        "coordinates": [[[12.0, 50.0], [14.0, 50.0], [14.0, 52.0], [12.0, 50.0]]],
    }
    items = [square, triangle]
    # bbox over the triangle's empty upper-left corner: the geometry decides, not the bbox
    corner = [12.1, 51.5, 12.4, 51.9]
    assert filter_items(items, bbox=corner) == []
    assert ids_of(filter_items(items, bbox=[10.5, 50.5, 13.9, 50.6])) == ["square", "triangle"]
    point = {"type": "Point", "coordinates": [13.9, 50.1]}
    assert ids_of(filter_items(items, intersects=point)) == ["triangle"]
    line = {"type": "LineString", "coordinates": [[9.0, 50.5], [10.5, 50.5]]}
    assert ids_of(filter_items(items, intersects=line)) == ["square"]
    # touching edges count as intersecting
    assert ids_of(filter_items(items, bbox=[11.0, 51.0, 11.5, 51.5])) == ["square"]
    with pytest.raises(ValueError, match="mutually exclusive"):
        filter_items(items, bbox=corner, intersects=point)


def test_bbox_fallback_when_geometry_is_null() -> None:
    bbox_only = make_item("bbox-only", bounds=(10.0, 50.0, 11.0, 51.0), geometry=False)
    no_footprint = make_item("nothing", bounds=None)
    items = [bbox_only, no_footprint]
    assert ids_of(filter_items(items, bbox=[10.5, 50.5, 12, 52])) == ["bbox-only"]
    assert filter_items(items, bbox=[20, 50, 21, 51]) == []
    polygon = {
        "type": "Polygon",
        "coordinates": [[[10.9, 50.9], [12, 50.9], [12, 52], [10.9, 52], [10.9, 50.9]]],
    }
    assert ids_of(filter_items(items, intersects=polygon)) == ["bbox-only"]
    assert ids_of(filter_items(items)) == ["bbox-only", "nothing"]


def test_three_dimensional_and_antimeridian_bbox() -> None:
    east = make_item("east", bounds=(179.0, -17.0, 179.9, -16.0))
    west = make_item("west", bounds=(-179.9, -17.0, -179.0, -16.0))
    greenwich = make_item("greenwich", bounds=(-0.5, -17.0, 0.5, -16.0))
    items = [east, west, greenwich]
    assert ids_of(filter_items(items, bbox=[178.0, -18.0, -178.0, -15.0])) == ["east", "west"]
    assert ids_of(filter_items(items, bbox=[-1, -18, 0, 1, -15, 100])) == ["greenwich"]


@pytest.mark.parametrize(
    "bbox",
    [
        [1, 2, 3],
        [0, 10, 1, 5],
        [0, -91, 1, 0],
        ["a", 0, 1, 1],
        [0, 0, float("nan"), 1],
    ],
)
def test_bad_bbox_rejected(bbox: list) -> None:
    with pytest.raises(ValueError, match="bbox"):
        filter_items([], bbox=bbox)


def test_parse_bbox_accepts_get_string() -> None:
    assert parse_bbox("10,50,11,51").bounds == (10.0, 50.0, 11.0, 51.0)


@pytest.mark.parametrize(
    "geometry",
    [
        {"coordinates": [1, 2]},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}},
        {"type": "Polygon", "coordinates": [[[0, 0], [1]]]},
        "not json",
    ],
)
def test_bad_intersects_rejected(geometry: object) -> None:
    with pytest.raises(ValueError, match="intersects"):
        filter_items([], intersects=geometry)  # type: ignore[arg-type]


def test_all_criteria_combined() -> None:
    items = [
        make_item("hit", **{"eo:cloud_cover": 5}),
        make_item("cloudy", **{"eo:cloud_cover": 80}),
        make_item("late", when="2024-03-01T00:00:00Z", **{"eo:cloud_cover": 5}),
        make_item("far", bounds=(100, 0, 101, 1), **{"eo:cloud_cover": 5}),
        make_item("other", collection="landsat", **{"eo:cloud_cover": 5}),
    ]
    kept = filter_items(
        items,
        collections=["sentinel-2-l2a"],
        bbox=[10.2, 50.2, 10.3, 50.3],
        datetime_range=parse_datetime_interval("2024-01-01/2024-01-31"),
        query={"eo:cloud_cover": {"lt": 10}},
    )
    assert ids_of(kept) == ["hit"]


# ---- real recorded items ----------------------------------------------------------------------

PC_35MNM = (
    Path(__file__).parent
    / "fixtures"
    / "stac"
    / "pc_s2l2a_itemcollection_35MNM_2020-06-01_to_07-31_13dates.geojson"
)


@pytest.mark.skipif(not PC_35MNM.exists(), reason="recorded PC fixture not present")
def test_real_planetary_computer_items() -> None:
    items = json.loads(PC_35MNM.read_text())["features"]
    clear_july = filter_items(
        items,
        collections=["sentinel-2-l2a"],
        intersects={"type": "Point", "coordinates": [27.5, -7.7]},
        datetime_range=parse_datetime_interval("2020-07-01/2020-07-31"),
        query={"eo:cloud_cover": {"lt": 1}, "platform": {"eq": "Sentinel-2A"}},
    )
    # July 2020 Sentinel-2A acquisitions: 07-01 (29 %), 07-11 (27 %), 07-21 and 07-31 (clear)
    assert [item["properties"]["datetime"][:10] for item in clear_july] == [
        "2020-07-31",
        "2020-07-21",
    ]
    # the last acquisition is at 08:06:11.024: an end bound at 08:06:11 excludes it
    early = parse_datetime_interval("2020-07-31T00:00:00Z/2020-07-31T08:06:11Z")
    assert filter_items(items, datetime_range=early) == []
    assert filter_items(items, bbox=[28.1, -8.0, 28.5, -7.5]) == []


# ---- query and filter on every recorded item -----------------------------------------------


def recorded_items() -> list[dict]:
    """The 71 real items of tests/fixtures/stac/ (Earth Search, Planetary Computer, stactools):
    Sentinel-1, Sentinel-2 L1C/L2A/C1-L2A and Landsat, two spellings of `platform`, items
    without `eo:cloud_cover`. Not the Copernicus Data Space items (cdse/, added later): the
    expected counts below come from an evaluation that no longer exists, run on these 71."""
    paths = sorted(STAC_FIXTURES.rglob("*.json")) + sorted(STAC_FIXTURES.rglob("*.geojson"))
    relative = [str(path.relative_to(STAC_FIXTURES)) for path in paths]
    return [
        item
        for name in relative
        if "collections" not in name and not name.startswith("cdse/")
        for item in load_items(name)
    ]


ES_CQL2 = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}
# (query, the same as a CQL2 filter in text or JSON, the number of items the pure-Python
# Query-extension evaluation that cql2 replaced found among the recorded items)
RECORDED_SEARCHES: list[tuple[dict, str | dict, int]] = [
    ({"eo:cloud_cover": {"lt": 10}}, "eo:cloud_cover < 10", 26),
    (
        {"eo:cloud_cover": {"gte": 20, "lte": 60}},
        {"op": "between", "args": [{"property": "eo:cloud_cover"}, 20, 60]},
        20,
    ),
    (
        {"platform": {"in": ["sentinel-2a", "Sentinel-2A"]}},
        "platform IN ('sentinel-2a', 'Sentinel-2A')",
        27,
    ),
    (
        {"platform": {"eq": "sentinel-2b"}, "eo:cloud_cover": {"lt": 30}},
        {
            "op": "and",
            "args": [
                {"op": "=", "args": [{"property": "platform"}, "sentinel-2b"]},
                {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]},
            ],
        },
        11,
    ),
    ({"s2:mgrs_tile": {"startsWith": "35"}}, "s2:mgrs_tile LIKE '35%'", 14),
    (
        {"grid:code": {"endsWith": "13TDE"}},
        {"op": "like", "args": [{"property": "grid:code"}, "%13TDE"]},
        11,
    ),
    ({"instruments": {"contains": "tirs"}}, "A_CONTAINS(instruments, ('tirs'))", 1),
    ({"s2:product_uri": {"contains": "_N0212_"}}, r"s2:product_uri LIKE '%\_N0212\_%'", 14),
    (
        {"eo:cloud_cover": {"neq": 0}},
        {"op": "<>", "args": [{"property": "eo:cloud_cover"}, 0]},
        66,
    ),
    ({"sat:relative_orbit": {"eq": 78}}, "sat:relative_orbit = 78", 13),
    (
        {"s2:processing_baseline": {"gte": "05.00"}},
        {"op": ">=", "args": [{"property": "s2:processing_baseline"}, "05.00"]},
        40,
    ),
    ({"properties.eo:cloud_cover": {"lt": 1}}, "eo:cloud_cover < 1", 20),
    ({"constellation": {"neq": "sentinel-2"}}, "constellation <> 'sentinel-2'", 41),
    ({"platform": {"startsWith": "landsat"}}, "platform LIKE 'landsat%'", 1),
]


@pytest.mark.parametrize(("query", "filter", "expected"), RECORDED_SEARCHES)
def test_query_and_filter_agree_on_recorded_items(
    query: dict, filter: str | dict, expected: int
) -> None:
    items = recorded_items()
    by_query = ids_of(filter_items(items, query=query))
    assert len(by_query) == expected
    assert ids_of(filter_items(items, filter=filter)) == by_query
    assert ids_of(filter_items(items, query=query, filter=filter)) == by_query


def test_filter_on_recorded_items_beside_other_parameters() -> None:
    items = recorded_items()
    assert len(items) == len({item["id"] for item in items}) == 71
    point = {"type": "Point", "coordinates": [27.5, -7.7]}
    assert len(filter_items(items, intersects=point)) == 13
    assert filter_items(items, filter="S_INTERSECTS(geometry, POINT(27.5 -7.7))") == (
        filter_items(items, intersects=point)
    )
    l2a = filter_items(items, collections=["sentinel-2-l2a"])
    assert len(l2a) == 45 and filter_items(items, filter="collection = 'sentinel-2-l2a'") == l2a
    clear = filter_items(items, collections=["sentinel-2-l2a"], filter=ES_CQL2)
    assert len(clear) == 21
    assert (
        len(filter_items(items, query=RECORDED_SEARCHES[0][0], filter="platform = 'Sentinel-2A'"))
        == 5
    )
