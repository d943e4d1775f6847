"""Real-catalog behaviours, offline: paging styles, projection v2 items, duplicates, zone edges.

Each test goes through the code the workflow runs (`sitsflow.catalog.search.search`,
`sitsflow.pixels.cube.make_cube` / `sitsflow.pixels.cube.read_and_mosaic`) against demo archives
or real recorded items, served by the local STAC API server where a search is involved.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import stackstac
import xarray as xr
from shapely.geometry import Point, box

from sitsflow.catalog.filters import filter_items, parse_filter
from sitsflow.catalog.providers import normalise_item, resolve_provider
from sitsflow.catalog.search import read_item_collection, search
from sitsflow.core.bbox import grid_of, make_aoi_record
from sitsflow.core.errors import CatalogError
from sitsflow.core.features import Feature
from sitsflow.core.settings import SearchSettings
from sitsflow.pixels.cube import make_cube, read_and_mosaic
from sitsflow.pixels.mosaic import Mosaic
from sitsflow.pixels.tiles import TileReader
from sitsflow.testing import stac_server
from sitsflow.testing.settings import cube_settings, grid_settings
from sitsflow.testing.stac_server import StacServer
from tests.conftest import STAC_FIXTURES, load_items
from tests.helpers import feature_items, s2_group, search_alone

ES_C1 = "es_c1l2a_itemcollection_13TDE_2024-03-31_to_04-22_10dates.json"
ES_PAGE1 = "earth-search-v1/search_cql2_cloudcover_page1_2025-07-31.json"
PC_PAGE1 = "planetary-computer/search_s2l2a_limit1_page1_2023-02-16_pb04.00.json"
BANDS = ["B04", "B08"]
SETTINGS = cube_settings(bands=[*BANDS, "SCL"], gapfill={"method": "none"})


def write_items(directory: Path, items: list[dict], name: str = "items.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def cube_record(fid: str, geometry, *, crs: str = "utm", resolution: float = 10) -> dict:
    grid = grid_settings(buffer_m=400, crs=crs, resolution=resolution)
    return make_aoi_record(Feature(fid, geometry), grid)


def build_cube(record: dict, catalog: str, start: str, end: str) -> xr.Dataset:
    """search + make_cube, as the workflow's search and cube jobs do."""
    info = {"catalog": catalog, "collection": "sentinel-2-l2a"}
    return make_cube(record, feature_items(catalog, record, start, end), info, SETTINGS)


# ---- paging ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_250(tmp_path_factory) -> Path:
    """250 real Earth Search Collection-1 items (10 recorded ones, renamed and re-dated)."""
    recorded = load_items(ES_C1)
    items = []
    for index in range(250):
        item = copy.deepcopy(recorded[index % len(recorded)])
        item["id"] = f"{item['id']}_{index:03d}"
        item["collection"] = "sentinel-2-l2a"
        item["properties"]["datetime"] = (
            f"2024-{1 + index // 28:02d}-{1 + index % 28:02d}T18:00:00Z"
        )
        items.append(item)
    directory = tmp_path_factory.mktemp("catalog250")
    write_items(directory, items)
    return directory


@pytest.mark.parametrize("paging_style", ["pc", "earth-search"])
def test_search_pages_through_250_items(catalog_250, paging_style):
    with StacServer(catalog_250, paging_style=paging_style, page_size_max=100) as server:
        items = search(
            server.url,
            collection="sentinel-2-l2a",
            bbox=[-105.2, 40.0, -105.0, 40.2],
            start="2024-01-01",
            end="2024-12-31",
        )
        requests = server.stats["search_requests"]
    assert len(items) == 250
    assert len({item["id"] for item in items}) == 250
    assert requests == 3  # pages of 100, 100 and 50


def test_server_paging_styles_match_the_recorded_responses(catalog_250):
    """The local server's next links have the shape the real APIs were recorded with."""
    es_next = next(link for link in load_items_document(ES_PAGE1)["links"] if link["rel"] == "next")
    pc_next = next(link for link in load_items_document(PC_PAGE1)["links"] if link["rel"] == "next")
    assert es_next["merge"] is False and set(es_next["body"]) == {"next"}
    assert {"collections", "limit", "token"} <= set(pc_next["body"])
    body = {"collections": ["sentinel-2-l2a"], "limit": 100}
    for style, recorded in (("earth-search", es_next), ("pc", pc_next)):
        with StacServer(catalog_250, paging_style=style) as server:
            import requests

            page = requests.post(f"{server.url}/search", json=body, timeout=30).json()
        served = next(link for link in page["links"] if link["rel"] == "next")
        assert set(served["body"]) == set(recorded["body"])
        assert served.get("merge", True) == recorded.get("merge", True)


def load_items_document(relative: str) -> dict:
    return json.loads((STAC_FIXTURES / relative).read_text())


# ---- CQL2 filter -----------------------------------------------------------------------------

CLEAR_TEXT = "eo:cloud_cover < 30 AND mgrs:grid_square = 'DE'"
CLEAR_JSON = {
    "op": "and",
    "args": [
        {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]},
        {"op": "=", "args": [{"property": "mgrs:grid_square"}, "DE"]},
    ],
}
SEARCH_250 = {
    "collection": "sentinel-2-l2a",
    "bbox": [-105.2, 40.0, -105.0, 40.2],
    "start": "2024-01-01",
    "end": "2024-12-31",
}


@pytest.mark.parametrize("paging_style", ["pc", "earth-search"])
def test_filter_reaches_the_api_and_finds_what_the_local_search_finds(
    catalog_250, monkeypatch, paging_style
):
    received = []

    def spy(items: list[dict], **search_parameters: object) -> list[dict]:
        received.append(search_parameters["filter"])
        return filter_items(items, **search_parameters)  # type: ignore[arg-type]

    monkeypatch.setattr(stac_server, "filter_items", spy)
    local_file = str(catalog_250 / "items.json")
    expected = search(local_file, **SEARCH_250, query={"eo:cloud_cover": {"lt": 30}})
    assert 0 < len(expected) < 250
    assert search(local_file, **SEARCH_250, filter=CLEAR_TEXT) == expected
    assert search(local_file, **SEARCH_250, filter=CLEAR_JSON) == expected
    with StacServer(catalog_250, paging_style=paging_style, page_size_max=50) as server:
        for spelling in (CLEAR_TEXT, CLEAR_JSON):
            found = search(server.url, **SEARCH_250, filter=spelling)
            assert [item["id"] for item in found] == [item["id"] for item in expected]
    # sent as CQL2 JSON whichever the spelling; pages after the first come from the cache
    assert received == [parse_filter(CLEAR_TEXT)]


def test_query_and_filter_both_apply(catalog_250):
    local_file = str(catalog_250 / "items.json")
    clear = search(local_file, **SEARCH_250, query={"eo:cloud_cover": {"lt": 30}})
    april = search(
        local_file,
        **SEARCH_250,
        query={"eo:cloud_cover": {"lt": 30}},
        filter="datetime >= TIMESTAMP('2024-04-01T00:00:00Z')",
    )
    assert april == [item for item in clear if item["properties"]["datetime"] >= "2024-04"]
    assert 0 < len(april) < len(clear)


def test_api_without_the_filter_extension_is_refused(catalog_250, monkeypatch):
    without_filter = [uri for uri in stac_server.CONFORMANCE if "filter" not in uri]
    monkeypatch.setattr(stac_server, "CONFORMANCE", without_filter)
    with StacServer(catalog_250) as server:
        with pytest.raises(CatalogError, match=r"'filter'.*does not support CQL2 filters"):
            search(server.url, **SEARCH_250, filter=CLEAR_TEXT)
        assert search(server.url, **SEARCH_250, query={"eo:cloud_cover": {"lt": 30}})


def test_search_items_records_the_filter(catalog_250, tmp_path):
    record = cube_record("f1", Point(-105.1, 40.1))
    bbox_path = tmp_path / "bbox.json"
    bbox_path.write_text(json.dumps(record))
    options = {**SEARCH_250, "catalog": str(catalog_250 / "items.json"), "query": None}
    output = tmp_path / "items.json"
    search_alone(bbox_path, searching({**options, "filter": CLEAR_TEXT}), output, tmp_path)
    items, info = read_item_collection(output)
    assert info["filter"] == CLEAR_TEXT and info["query"] is None
    assert items and all(item["properties"]["eo:cloud_cover"] < 30 for item in items)
    search_alone(bbox_path, searching({**options, "filter": None}), output, tmp_path)
    assert len(read_item_collection(output)[0]) > len(items)


def searching(options: dict) -> SearchSettings:
    """The search settings of `options` (the keys of the config's search section)."""
    return SearchSettings.from_config(options)


def test_the_cube_records_the_filter(small_archive, tmp_path):
    """From the config to the cube: the filter is applied, recorded in the ItemCollection and
    in the cube's provenance attributes."""
    record = cube_record("a", Point(8.4914, 49.8544), crs="EPSG:3035", resolution=20)
    bbox_path, items_path = tmp_path / "bbox.json", tmp_path / "items.json"
    bbox_path.write_text(json.dumps(record))
    options = {
        "catalog": str(small_archive / "items.json"),
        "collection": "sentinel-2-l2a",
        "start": "2022-01-10",
        "end": "2022-02-04",
        "query": None,
        "filter": "eo:cloud_cover < 40",
    }
    search_alone(bbox_path, searching(options), items_path, tmp_path)
    items, info = read_item_collection(items_path)
    cube = make_cube(record, items, info, SETTINGS)
    assert cube.attrs["filter"] == "eo:cloud_cover < 40"
    assert 0 < cube.sizes["time"] < 6  # of the 6 dates without a filter


# ---- projection extension v2: proj:code only -------------------------------------------------


@pytest.fixture(scope="module")
def small_archive(make_archive) -> Path:
    """A one-feature archive; private: a test writes projection v2 items beside items.json."""
    features = {"a": Point(8.4914, 49.8544)}
    return make_archive(features, "2022-01-10", "2022-02-04", seed=3, private=True)


def to_projection_v2(item: dict) -> dict:
    """The item as projection extension v2 writes it: `proj:code`, no `proj:epsg`."""
    item = copy.deepcopy(item)
    epsg = item["properties"].pop("proj:epsg")
    item["properties"]["proj:code"] = f"EPSG:{epsg}"
    item["stac_extensions"] = [
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
        if "projection" in ext
        else ext
        for ext in item["stac_extensions"]
    ]
    return item


def test_proj_code_only_items_load_on_the_right_grid(small_archive):
    original = load_items_document_path(small_archive / "items.json")["features"]
    v2 = [to_projection_v2(item) for item in original]
    assert all("proj:epsg" not in item["properties"] for item in v2)
    write_items(small_archive, v2, "items_projv2.json")
    record = cube_record("a", Point(8.4914, 49.8544), crs="EPSG:3035", resolution=20)
    expected = build_cube(record, str(small_archive / "items.json"), "2022-01-10", "2022-02-04")
    cube = build_cube(record, str(small_archive / "items_projv2.json"), "2022-01-10", "2022-02-04")
    assert cube.sizes["time"] == expected.sizes["time"] == 6
    for band in [*BANDS, "SCL", "observed"]:
        np.testing.assert_array_equal(cube[band].values, expected[band].values)
    assert np.isfinite(cube["B04"].values).mean() > 0.5


def test_stackstac_needs_proj_epsg_to_find_the_grid(small_archive):
    """Why the normalisation exists: stackstac 0.5.1 reads `proj:epsg` only. Given no grid, it
    cannot place `proj:code` items at all; the normalised items give it the tile's UTM grid."""
    original = load_items_document_path(small_archive / "items.json")["features"][:1]
    v2 = [to_projection_v2(absolute(item, small_archive)) for item in original]
    with pytest.raises(ValueError, match="Cannot pick a common CRS"):
        stackstac.stack(v2, assets=["B04"])
    normalised = [normalise_item(item, ["B04"]) for item in v2]
    stack = stackstac.stack(normalised, assets=["B04"])
    assert stack.attrs["crs"] == f"epsg:{original[0]['properties']['proj:epsg']}"
    assert stack.attrs["transform"][0] == 10.0


def load_items_document_path(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- same-day duplicates and UTM zone edges --------------------------------------------------


ZONE_EDGE_LON = 12.0  # between UTM zones 32 and 33
LAT = 50.0


@pytest.fixture(scope="module")
def zone_edge_archive(make_archive) -> tuple[Path, list[dict]]:
    """Two demo tiles either side of 12 E (zones 32 and 33) whose footprints overlap, plus a
    same-day duplicate (a reprocessed copy under another id) of every zone-32 item (written
    into items.json of a private copy)."""
    west, east = Point(ZONE_EDGE_LON - 0.008, LAT), Point(ZONE_EDGE_LON + 0.008, LAT)
    root = make_archive(
        {"west": west, "east": east},
        "2023-06-01",
        "2023-06-11",
        seed=5,
        clear_fraction=1.0,
        private=True,
    )
    items = load_items_document_path(root / "items.json")["features"]
    duplicates = []
    for item in items:
        if item["properties"]["proj:epsg"] == 32632:
            twin = copy.deepcopy(item)
            twin["id"] = item["id"][:-15] + "20991231T000000"  # a later processing time
            duplicates.append(twin)
    write_items(root, items + duplicates)
    return root, items + duplicates


def test_zone_edge_tiles_and_duplicates_mosaic_into_one_step_without_seam(zone_edge_archive):
    root, items = zone_edge_archive
    zones = {item["properties"]["proj:epsg"] for item in items}
    assert zones == {32632, 32633}
    footprints = [box(*item["bbox"]) for item in items]
    # the feature straddles the zone edge, inside the union of both tiles
    feature = box(ZONE_EDGE_LON - 0.025, LAT - 0.005, ZONE_EDGE_LON + 0.025, LAT + 0.005)
    assert not any(footprint.contains(feature) for footprint in footprints)
    with StacServer(root) as server:
        # a polygon: the buffer does not apply
        record = make_aoi_record(Feature("edge", feature), grid_settings(crs="utm", resolution=20))
        found = search(
            server.url,
            collection="sentinel-2-l2a",
            bbox=record["properties"]["search_bbox_wgs84"],
            start="2023-06-01",
            end="2023-06-11",
        )
        assert len(found) == 9  # 3 days x (zone 32 + its duplicate + zone 33)
        provider = resolve_provider("auto", catalog=server.url, items=found)
        normalised = [normalise_item(item, [*BANDS, "SCL"], provider) for item in found]
        mosaic = mosaic_of(normalised, record)
        # each side of the edge alone, to show the mosaic is a real mosaic
        west = [n for n in normalised if n["properties"]["proj:epsg"] == 32632]
        east = [n for n in normalised if n["properties"]["proj:epsg"] == 32633]
        west_only, east_only = mosaic_of(west, record), mosaic_of(east, record)
    assert len(mosaic.times) == 3
    # every step takes pixels from both zones' tiles (the duplicate adds nothing new)
    tiles = [{entry["id"].split("_T")[1][:5] for entry in step} for step in mosaic.step_items]
    assert {len(names) for names in tiles} == {2}
    assert np.isfinite(mosaic.classification).all(), "a seam without data between the zones"
    assert np.isnan(west_only.classification).any() and np.isnan(east_only.classification).any()
    only_west = np.isfinite(west_only.classification) & np.isnan(east_only.classification)
    only_east = np.isfinite(east_only.classification) & np.isnan(west_only.classification)
    for side, only in ((west_only, only_west), (east_only, only_east)):
        np.testing.assert_array_equal(mosaic.classification[only], side.classification[only])
        observed = only & side.observed
        np.testing.assert_array_equal(
            mosaic.reflectance.transpose(1, 0, 2, 3)[:, observed],
            side.reflectance.transpose(1, 0, 2, 3)[:, observed],
        )


def mosaic_of(normalised: list[dict], record: dict, longitude: float = ZONE_EDGE_LON) -> Mosaic:
    """Read, mask and mosaic the items as the cube stage does (default mask settings)."""
    mask = cube_settings(bands=[*BANDS, "SCL"]).mask
    with TileReader() as loader:
        group = s2_group(normalised, BANDS)
        return read_and_mosaic([group], BANDS, mask, grid_of(record), longitude, loader)[2]


def absolute(item: dict, root: Path) -> dict:
    """A copy of a demo item with its relative hrefs made absolute paths under `root`."""
    item = copy.deepcopy(item)
    for asset in item["assets"].values():
        asset["href"] = str(root / asset["href"])
    return item


def test_same_day_duplicate_gives_the_same_cube(zone_edge_archive):
    root, items = zone_edge_archive
    west = [absolute(item, root) for item in items if item["properties"]["proj:epsg"] == 32632]
    originals = [item for item in west if not item["id"].endswith("20991231T000000")]
    record = cube_record("w", Point(ZONE_EDGE_LON - 0.02, LAT))
    provider = resolve_provider("generic", assets={b: b for b in [*BANDS, "SCL"]})

    def load(chosen: list[dict]) -> Mosaic:
        normalised = [normalise_item(item, [*BANDS, "SCL"], provider) for item in chosen]
        return mosaic_of(normalised, record, longitude=11.98)

    with_twins, alone = load(west), load(originals)
    assert len(west) == 2 * len(originals)
    assert len(with_twins.times) == len(alone.times) == len(originals)
    # the twin is identical: each step takes every pixel from one of the two
    assert all(len(step) == 1 for step in with_twins.step_items)
    np.testing.assert_array_equal(with_twins.reflectance, alone.reflectance)
    np.testing.assert_array_equal(with_twins.classification, alone.classification)
