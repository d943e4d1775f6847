"""Tests for sitsflow.testing.stac_server: STAC API semantics, paging, ranges, GDAL reads,
faults."""

from __future__ import annotations

import http.client
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cql2
import numpy as np
import pystac_client
import pytest
import rasterio
import requests
from pystac_client.stac_api_io import StacApiIO
from rasterio.transform import Affine
from rasterio.windows import Window
from urllib3 import Retry

import sitsflow.testing.stac_server
from sitsflow.catalog.filters import filter_items, parse_datetime_interval, parse_filter
from sitsflow.testing.stac_server import (
    IN_PROCESS_GDAL_ENV,
    STATS_PATH,
    StacServer,
    parse_range_header,
    remote_stats,
)
from tests.test_stac_filter import RECORDED_SEARCHES, recorded_items

N_S2 = 250
N_LANDSAT = 10
BYTES_FILE = "misc/bytes.bin"
BYTES = bytes((i * 7 + 3) % 256 for i in range(1000))
BIG_COG = "tiles/T32UNB/big/B04.tif"
CLOUD_FILTER = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}


def _item(index: int, collection: str, tile_x: float) -> dict:
    """Synthetic S2-like item: one per day from 2024-01-01, footprint shifted per tile."""
    day = np.datetime64("2024-01-01T10:00:00") + np.timedelta64(index, "D")
    item_id = f"{collection[:2].upper()}_{index:04d}"
    minx, miny = tile_x, 50.0
    ring = [[minx, miny], [minx + 1, miny], [minx + 1, miny + 1], [minx, miny + 1], [minx, miny]]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "bbox": [minx, miny, minx + 1, miny + 1],
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "datetime": f"{day}Z",
            "eo:cloud_cover": float(index % 100),
            "platform": "sentinel-2a" if index % 2 == 0 else "sentinel-2b",
            "s2:mgrs_tile": "32UNB" if tile_x < 11 else "32UPB",
        },
        "links": [{"rel": "self", "href": f"./{item_id}.json"}],
        "assets": {
            "B04": {
                "href": f"tiles/T32UNB/{item_id}/B04.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "title": "Red",
            },
            "external": {"href": "https://example.com/x.tif", "type": "image/tiff"},
        },
    }


def _write_cog(path: Path, size: int, seed: int) -> None:
    """A uint16 COG with internal tiles and overviews (COG driver), random so it won't compress."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(0, 10000, (size, size), dtype=np.uint16)
    profile = {
        "driver": "COG",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32632",
        "transform": Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5600000.0),
        "blocksize": 256,
        "compress": "DEFLATE",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo archive: 250 S2 items (two tiles) + 10 Landsat items, a few COGs, a byte file."""
    root = tmp_path_factory.mktemp("outside") / "archive"
    root.mkdir()
    (root.parent / "secret.txt").write_text("TOP SECRET")
    items = [_item(i, "sentinel-2-l2a", 10.0 if i % 3 else 12.0) for i in range(N_S2)]
    items += [_item(i, "landsat-c2-l2", 10.0) for i in range(N_LANDSAT)]
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    for index in range(2):
        _write_cog(root / items[index]["assets"]["B04"]["href"], 128, seed=index)
    _write_cog(root / BIG_COG, 1024, seed=42)
    (root / BYTES_FILE).parent.mkdir(parents=True)
    (root / BYTES_FILE).write_bytes(BYTES)
    return root


@pytest.fixture(scope="module")
def all_items(archive: Path) -> list[dict]:
    return json.loads((archive / "items.json").read_text())["features"]


@pytest.fixture(scope="module")
def server(archive: Path) -> Iterator[StacServer]:
    with StacServer(archive) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http_session:
        yield http_session


def s2_ids(items: list[dict], **filters: object) -> list[str]:
    return [i["id"] for i in filter_items(items, collections=["sentinel-2-l2a"], **filters)]


def raw_get(server: StacServer, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET with the path sent verbatim (requests would normalise '..' away)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ---- API documents ----------------------------------------------------------------------------


def test_landing_page_and_conformance(server: StacServer, session: requests.Session) -> None:
    response = session.get(server.url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    landing = response.json()
    assert landing["type"] == "Catalog"
    conforms = set(landing["conformsTo"])
    assert "https://api.stacspec.org/v1.0.0/item-search" in conforms
    assert "https://api.stacspec.org/v1.0.0/core" in conforms
    assert "https://api.stacspec.org/v1.0.0/collections" in conforms
    assert any(uri.endswith("/item-search#query") for uri in conforms)
    assert any(uri.endswith("/item-search#filter") for uri in conforms)
    for cql2_class in ("cql2-text", "cql2-json", "basic-cql2", "advanced-comparison-operators"):
        assert f"http://www.opengis.net/spec/cql2/1.0/conf/{cql2_class}" in conforms
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conforms
    links = {(link["rel"], link.get("method")): link["href"] for link in landing["links"]}
    assert links[("self", None)] == server.url
    assert links[("data", None)] == f"{server.url}/collections"
    assert links[("conformance", None)] == f"{server.url}/conformance"
    assert links[("search", "GET")] == links[("search", "POST")] == f"{server.url}/search"
    assert session.get(f"{server.url}/conformance").json()["conformsTo"] == landing["conformsTo"]


def test_collections(server: StacServer, session: requests.Session) -> None:
    listing = session.get(f"{server.url}/collections").json()
    by_id = {c["id"]: c for c in listing["collections"]}
    assert set(by_id) == {"sentinel-2-l2a", "landsat-c2-l2"}
    s2 = session.get(f"{server.url}/collections/sentinel-2-l2a").json()
    assert s2 == by_id["sentinel-2-l2a"]
    assert s2["type"] == "Collection"
    assert s2["extent"]["spatial"]["bbox"] == [[10.0, 50.0, 13.0, 51.0]]
    last_day = np.datetime64("2024-01-01T10:00:00") + np.timedelta64(N_S2 - 1, "D")
    assert s2["extent"]["temporal"]["interval"] == [["2024-01-01T10:00:00Z", f"{last_day}Z"]]
    assert s2["item_assets"]["B04"] == {
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "title": "Red",
        "roles": ["data"],
    }
    missing = session.get(f"{server.url}/collections/nope")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/json"
    assert "nope" in missing.json()["description"]


def test_pystac_client_collections(server: StacServer) -> None:
    client = pystac_client.Client.open(server.url)
    assert sorted(c.id for c in client.get_collections()) == ["landsat-c2-l2", "sentinel-2-l2a"]
    collection = client.get_collection("landsat-c2-l2")
    assert collection is not None and collection.id == "landsat-c2-l2"


def test_collection_items_endpoint(server: StacServer, session: requests.Session) -> None:
    url = f"{server.url}/collections/landsat-c2-l2/items"
    page = session.get(url, params={"limit": 4}).json()
    assert [f["id"] for f in page["features"]] == ["LA_0000", "LA_0001", "LA_0002", "LA_0003"]
    next_href = next(link["href"] for link in page["links"] if link["rel"] == "next")
    assert next_href.startswith(url + "?")
    second = session.get(next_href).json()
    assert [f["id"] for f in second["features"]] == ["LA_0004", "LA_0005", "LA_0006", "LA_0007"]
    server.reset_stats()
    item = session.get(f"{url}/LA_0003")
    assert item.status_code == 200 and item.json()["id"] == "LA_0003"
    assert server.stats["status"] == {200: 1}  # exactly one response was written
    assert item.headers["Content-Type"] == "application/geo+json"
    assert session.get(f"{url}/SE_0003").status_code == 404


def test_asset_hrefs_and_links_rewritten(server: StacServer, session: requests.Session) -> None:
    feature = session.post(f"{server.url}/search", json={"ids": ["SE_0001"]}).json()["features"][0]
    assert feature["assets"]["B04"]["href"] == f"{server.data_url}/tiles/T32UNB/SE_0001/B04.tif"
    assert feature["assets"]["external"]["href"] == "https://example.com/x.tif"
    links = {link["rel"]: link["href"] for link in feature["links"]}
    assert links["self"] == f"{server.url}/collections/sentinel-2-l2a/items/SE_0001"
    assert links["root"] == server.url
    assert not any(href.startswith("./") for href in links.values())


# ---- search & paging --------------------------------------------------------------------------


@pytest.mark.parametrize("paging_style", ["pc", "earth-search"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_pystac_client_pages_everything(archive: Path, paging_style: str, method: str) -> None:
    with StacServer(archive, paging_style=paging_style) as srv:  # type: ignore[arg-type]
        client = pystac_client.Client.open(srv.url)
        search = client.search(collections=["sentinel-2-l2a"], limit=100, method=method)
        ids = [item.id for item in search.item_collection()]
        assert ids == [f"SE_{i:04d}" for i in range(N_S2)]
        assert srv.stats["search_requests"] == 3
        assert srv.stats["status"] == {200: srv.stats["api_requests"]}


def test_pystac_client_filters_through_api(server: StacServer, all_items: list[dict]) -> None:
    client = pystac_client.Client.open(server.url)
    search = client.search(
        collections=["sentinel-2-l2a"],
        bbox=[12.2, 50.2, 12.4, 50.4],
        datetime="2024-01-01/2024-03-31",
        query={"eo:cloud_cover": {"lt": 50}, "platform": {"in": ["sentinel-2a"]}},
        limit=7,
    )
    ids = [item.id for item in search.item_collection()]
    # tile x=12: every third index; sentinel-2a: even index; cloud cover: index % 100;
    # Jan-Mar 2024: the first 91 days
    expected = [f"SE_{i:04d}" for i in range(91) if i % 6 == 0 and i % 100 < 50]
    assert ids == expected
    assert ids == s2_ids(
        all_items,
        bbox=[12.2, 50.2, 12.4, 50.4],
        datetime_range=parse_datetime_interval("2024-01-01/2024-03-31"),
        query={"eo:cloud_cover": {"lt": 50}, "platform": {"in": ["sentinel-2a"]}},
    )


def test_pc_next_link_repeats_body(server: StacServer, session: requests.Session) -> None:
    body = {
        "collections": ["sentinel-2-l2a"],
        "limit": 100,
        "query": {"eo:cloud_cover": {"gte": 0}},
    }
    page = session.post(f"{server.url}/search", json=body)
    assert page.headers["Content-Type"] == "application/geo+json"
    document = page.json()
    assert document["type"] == "FeatureCollection"
    assert (document["numberMatched"], document["numberReturned"]) == (N_S2, 100)
    next_link = next(link for link in document["links"] if link["rel"] == "next")
    assert next_link["method"] == "POST"
    assert next_link["href"] == f"{server.url}/search"
    assert "merge" not in next_link
    token = next_link["body"].pop("token")
    assert isinstance(token, str) and token
    assert next_link["body"] == body
    last = session.post(f"{server.url}/search", json={**body, "token": token}).json()
    assert last["features"][0]["id"] == "SE_0100"
    third = next(link for link in last["links"] if link["rel"] == "next")
    final = session.post(third["href"], json=third["body"]).json()
    assert final["numberReturned"] == 50
    assert not [link for link in final["links"] if link["rel"] == "next"]


def test_earth_search_next_link(archive: Path, session: requests.Session) -> None:
    with StacServer(archive, paging_style="earth-search") as srv:
        body = {"collections": ["sentinel-2-l2a"], "limit": 100}
        document = session.post(f"{srv.url}/search", json=body).json()
        assert document["context"] == {"limit": 100, "matched": N_S2, "returned": 100}
        next_link = next(link for link in document["links"] if link["rel"] == "next")
        assert next_link["merge"] is False and next_link["method"] == "POST"
        assert set(next_link["body"]) == {"next"}  # as recorded from Earth Search: token only
        second = session.post(next_link["href"], json=next_link["body"]).json()
        assert second["features"][0]["id"] == "SE_0100"
        # a token replayed with different filters is refused instead of giving wrong pages
        changed = {"collections": ["landsat-c2-l2"], "next": next_link["body"]["next"]}
        refused = session.post(f"{srv.url}/search", json=changed)
        assert refused.status_code == 400 and "token" in refused.json()["description"]


def test_get_search_paging_and_params(server: StacServer, session: requests.Session) -> None:
    params = {
        "collections": "sentinel-2-l2a",
        "limit": "100",
        "query": json.dumps({"eo:cloud_cover": {"lt": 10}}),
        "datetime": "2024-01-01T00:00:00Z/..",
    }
    document = session.get(f"{server.url}/search", params=params).json()
    # cloud cover index % 100 < 10 -> 10 per hundred, 250 items -> indices 0-9, 100-109, 200-209
    assert document["numberMatched"] == 30 and document["numberReturned"] == 30
    assert not [link for link in document["links"] if link["rel"] == "next"]
    paged = session.get(f"{server.url}/search", params={**params, "limit": "12"}).json()
    next_link = next(link for link in paged["links"] if link["rel"] == "next")
    assert next_link["method"] == "GET" and "token=" in next_link["href"]
    rest = session.get(next_link["href"]).json()
    ids = [f["id"] for f in paged["features"] + rest["features"]]
    assert ids[:13] == [f"SE_{i:04d}" for i in range(10)] + ["SE_0100", "SE_0101", "SE_0102"]
    intersects = {"type": "Point", "coordinates": [12.5, 50.5]}
    by_point = session.get(
        f"{server.url}/search",
        params={"intersects": json.dumps(intersects), "ids": "SE_0000,SE_0001,LA_0000"},
    ).json()
    assert [f["id"] for f in by_point["features"]] == ["SE_0000"]


def test_unknown_collection_gives_empty_result(
    server: StacServer, session: requests.Session
) -> None:
    document = session.post(f"{server.url}/search", json={"collections": ["nope"]}).json()
    assert document["features"] == [] and document["numberMatched"] == 0


def test_limit_default_and_cap(archive: Path, session: requests.Session) -> None:
    with StacServer(archive, page_size_max=50, default_limit=7) as srv:
        assert len(session.post(f"{srv.url}/search", json={}).json()["features"]) == 7
        capped = session.post(f"{srv.url}/search", json={"limit": 100}).json()
        assert capped["numberReturned"] == 50 and capped["numberMatched"] == N_S2 + N_LANDSAT


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"bbox": [1, 2, 3]}, "bbox"),
        ({"bbox": [0, 60, 1, 50]}, "south"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"datetime": "2024-13-45"}, "datetime"),
        ({"datetime": "2024-02-01/2024-01-01"}, "start is after end"),
        ({"query": {"eo:cloud_cover": {"approx": 3}}}, "'approx'"),
        ({"query": {"eo:cloud_cover": 3}}, "query"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"intersects": {"type": "Polygon", "coordinates": [[[0, 0]]]}}, "intersects"),
        (
            {"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
            "exclusive",
        ),
        ({"filter": {"op": "<", "args": [{"property": "a"}]}}, "invalid cql2-json filter"),
        ({"filter": "eo:cloud_cover < 10"}, "invalid cql2-json filter"),
        ({"filter": "eo:cloud_cover <", "filter-lang": "cql2-text"}, "expected"),
        ({"filter": "a = 1", "filter-lang": "cql2-xml"}, "filter-lang"),
        ({"filter": CLOUD_FILTER, "filter-crs": "EPSG:3857"}, "filter-crs"),
        ({"token": "garbage!"}, "token"),
        ({"collections": [1, 2]}, "collections"),
    ],
)
def test_post_search_400(server: StacServer, body: dict, fragment: str) -> None:
    response = requests.post(f"{server.url}/search", json=body, timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert fragment in response.json()["description"]


def test_get_search_400_and_bad_bodies(server: StacServer, session: requests.Session) -> None:
    for params in (
        {"bbox": "1,2"},
        {"datetime": "soon"},
        {"query": "{not json"},
        {"filter": "eo:cloud_cover <"},
        {"filter": "eo:cloud_cover < 10", "filter-lang": "cql2-json"},
    ):
        response = session.get(f"{server.url}/search", params=params)
        assert response.status_code == 400, params
    not_json = session.post(
        f"{server.url}/search", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and "JSON" in not_json.json()["description"]
    assert session.post(f"{server.url}/search", json=[1]).status_code == 400
    assert session.post(f"{server.url}/collections").status_code == 405
    assert session.get(f"{server.url}/nowhere").status_code == 404
    assert session.get(f"http://127.0.0.1:{server.port}/elsewhere").status_code == 404


# ---- CQL2 filter ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of the 71 real items recorded in tests/fixtures/stac/."""
    root = tmp_path_factory.mktemp("recorded")
    document = {"type": "FeatureCollection", "features": recorded_items()}
    (root / "items.json").write_text(json.dumps(document))
    return root


@pytest.fixture(scope="module")
def recorded_server(recorded_archive: Path) -> Iterator[StacServer]:
    with StacServer(recorded_archive) as running:
        yield running


def search_ids(server: StacServer, session: requests.Session, method: str, params: dict) -> list:
    """Ids of the items a search finds, in one page (more than the 71 recorded items)."""
    if method == "GET":
        response = session.get(f"{server.url}/search", params={**params, "limit": "100"})
    else:
        response = session.post(f"{server.url}/search", json={**params, "limit": 100})
    assert response.status_code == 200, response.text
    return [feature["id"] for feature in response.json()["features"]]


@pytest.mark.parametrize(("query", "filter", "expected"), RECORDED_SEARCHES)
def test_server_filter_and_query_equal_the_local_search(
    recorded_server: StacServer,
    session: requests.Session,
    query: dict,
    filter: str | dict,
    expected: int,
) -> None:
    local = [item["id"] for item in filter_items(recorded_items(), query=query)]
    assert len(local) == expected
    as_json = parse_filter(filter)
    as_text = cql2.Expr(as_json).to_text()
    searches = [
        ("POST", {"query": query}),
        ("GET", {"query": json.dumps(query)}),
        ("POST", {"filter": as_json}),
        ("POST", {"filter": as_text, "filter-lang": "cql2-text"}),
        ("GET", {"filter": as_text}),
        ("GET", {"filter": json.dumps(as_json), "filter-lang": "cql2-json"}),
        ("POST", {"query": query, "filter": as_json}),
    ]
    for method, params in searches:
        assert search_ids(recorded_server, session, method, params) == local, (method, params)


@pytest.mark.parametrize("paging_style", ["pc", "earth-search"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_pystac_client_sends_the_filter_through_every_page(
    recorded_archive: Path, monkeypatch: pytest.MonkeyPatch, paging_style: str, method: str
) -> None:
    received = []

    def spy(items: list[dict], **search: object) -> list[dict]:
        received.append(search["filter"])
        return filter_items(items, **search)  # type: ignore[arg-type]

    monkeypatch.setattr(sitsflow.testing.stac_server, "filter_items", spy)
    text = "eo:cloud_cover < 10 AND platform LIKE 'Sentinel%'"
    local = [item["id"] for item in filter_items(recorded_items(), filter=text)]
    with StacServer(recorded_archive, paging_style=paging_style) as srv:  # type: ignore[arg-type]
        client = pystac_client.Client.open(srv.url)
        found = client.search(filter=text, method=method, limit=5)
        assert [item.id for item in found.items()] == local
        assert srv.stats["search_requests"] == math.ceil(len(local) / 5)
    assert 5 < len(local) < 26
    assert received == [parse_filter(text)]  # paged from the cache of the first page's search


# ---- data: ranges -----------------------------------------------------------------------------


def test_full_get_and_head(server: StacServer, session: requests.Session) -> None:
    url = f"{server.data_url}/{BYTES_FILE}"
    server.reset_stats()
    full = session.get(url)
    assert full.status_code == 200 and full.content == BYTES
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Length"] == str(len(BYTES))
    head = session.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(BYTES))
    stats = server.stats
    assert stats["data_requests"] == 2 and stats["data_bytes"] == len(BYTES)
    assert stats["range_requests"] == 0 and stats["status"] == {200: 2}


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-100", 100, 100),
        ("bytes=990-5000", 990, 999),
        ("bytes=900-", 900, 999),
        ("bytes=-10", 990, 999),
        ("bytes=-5000", 0, 999),
    ],
)
def test_single_range(server: StacServer, header: str, first: int, last: int) -> None:
    server.reset_stats()
    response = requests.get(
        f"{server.data_url}/{BYTES_FILE}", headers={"Range": header}, timeout=10
    )
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(BYTES)}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == BYTES[first : last + 1]
    stats = server.stats
    assert stats["range_requests"] == 1 and stats["data_bytes"] == last - first + 1


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """Split a multipart/byteranges body into (Content-Range, data) pairs."""
    boundary = content_type.split("boundary=")[1].encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((headers["Content-Range"], data.removesuffix(b"\r\n")))
    return parts


def test_multi_range(server: StacServer) -> None:
    server.reset_stats()
    response = requests.get(
        f"{server.data_url}/{BYTES_FILE}",
        headers={"Range": "bytes=0-9, 500-509,-5, 5000-6000"},
        timeout=10,
    )
    assert response.status_code == 206
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert _parse_multipart(content_type, response.content) == [
        ("bytes 0-9/1000", BYTES[0:10]),
        ("bytes 500-509/1000", BYTES[500:510]),
        ("bytes 995-999/1000", BYTES[995:1000]),
    ]
    assert server.stats["data_bytes"] == 25


def test_unsatisfiable_and_invalid_ranges(server: StacServer, session: requests.Session) -> None:
    url = f"{server.data_url}/{BYTES_FILE}"
    for header in ("bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=2000-2001,3000-"):
        response = session.get(url, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["Content-Range"] == "bytes */1000"
    for header in ("bytes=9-1", "items=0-1", "bytes=a-b", "bytes=--1"):
        response = session.get(url, headers={"Range": header})
        assert response.status_code == 200 and response.content == BYTES, header


def test_parse_range_header_unit() -> None:
    assert parse_range_header(None, 10) is None
    assert parse_range_header("bytes=0-0,-1", 10) == [(0, 0), (9, 9)]
    assert parse_range_header("bytes=5-", 0) == []
    assert parse_range_header("bytes=0-", 10) == [(0, 9)]


# ---- data: GDAL / rasterio --------------------------------------------------------------------


def test_rasterio_http_reads_equal_local(server: StacServer, archive: Path) -> None:
    server.reset_stats()
    url = f"{server.data_url}/{BIG_COG}"
    window = Window(300, 500, 64, 48)
    with (
        rasterio.Env(**IN_PROCESS_GDAL_ENV),
        rasterio.open(url) as remote,
        rasterio.open(archive / BIG_COG) as local,
    ):
        assert remote.profile["width"] == local.profile["width"] == 1024
        assert remote.crs == local.crs and remote.transform == local.transform
        assert remote.overviews(1) == local.overviews(1) != []
        np.testing.assert_array_equal(remote.read(1, window=window), local.read(1, window=window))
        decimated = remote.read(1, out_shape=(256, 256))
        np.testing.assert_array_equal(decimated, local.read(1, out_shape=(256, 256)))
    stats = server.stats
    assert stats["range_requests"] >= 2
    # range reads fetched the header, a few tiles and an overview: far less than the file
    assert 0 < stats["data_bytes"] < (archive / BIG_COG).stat().st_size / 2
    assert stats["status"].get(206, 0) >= 2


def test_rasterio_reads_small_cog_in_process(server: StacServer, archive: Path) -> None:
    href = "tiles/T32UNB/SE_0001/B04.tif"
    with (
        rasterio.Env(**IN_PROCESS_GDAL_ENV),
        rasterio.open(f"{server.data_url}/{href}") as remote,
        rasterio.open(archive / href) as local,
    ):
        np.testing.assert_array_equal(remote.read(), local.read())


def test_signed_urls(archive: Path, session: requests.Session) -> None:
    with StacServer(archive, require_token="s3cr3t") as srv:
        url = f"{srv.data_url}/{BYTES_FILE}"
        assert session.get(url).status_code == 403
        assert session.get(url, params={"st": "2024", "sig": "wrong"}).status_code == 403
        assert session.get(url, params={"sig": "s3cr3t"}).status_code == 403
        assert session.head(url).status_code == 403
        signed = session.get(url, params={"st": "2024-01-01T00:00Z", "se": "x", "sig": "s3cr3t"})
        assert signed.status_code == 200 and signed.content == BYTES
        assert session.get(srv.url).status_code == 200  # the API itself is open
        cog = f"{srv.data_url}/tiles/T32UNB/SE_0000/B04.tif"
        with rasterio.Env(**IN_PROCESS_GDAL_ENV):
            with pytest.raises(rasterio.errors.RasterioIOError):
                rasterio.open(cog)
            with rasterio.open(f"{cog}?st=now&sig=s3cr3t") as src:
                assert src.read(1).shape == (128, 128)
        assert srv.stats["status"][403] >= 5


@pytest.mark.parametrize(
    "path",
    [
        "/data/../outside.txt",
        "/data/../../secret.txt",
        "/data/%2e%2e/secret.txt",
        "/data/tiles/..%2F..%2Fsecret.txt",
        "/data//etc/passwd",
        "/data/tiles/%00x",
    ],
)
def test_path_traversal_refused(server: StacServer, path: str) -> None:
    status, body = raw_get(server, path.replace("outside.txt", "secret.txt"))
    assert status == 403
    assert b"TOP SECRET" not in body


def test_missing_and_inside_files(server: StacServer) -> None:
    assert raw_get(server, "/data/tiles/none.tif")[0] == 404
    assert raw_get(server, "/data/tiles/")[0] == 404
    status, body = raw_get(server, "/data/tiles/../misc/bytes.bin")
    assert status == 200 and body == BYTES


# ---- faults, latency, stats, lifecycle ----------------------------------------------------------


def _fault_pattern(archive: Path, seed: int, n: int = 200) -> tuple[list[int], dict]:
    with StacServer(archive, fail_rate_api=0.3, seed=seed) as srv, requests.Session() as http:
        statuses = []
        for _ in range(n):
            response = http.get(f"{srv.url}/search", params={"limit": "1"})
            if response.status_code == 503:
                assert response.headers["Retry-After"] == "0"
            statuses.append(response.status_code)
        return statuses, srv.stats


def test_api_fault_rate_is_seeded(archive: Path) -> None:
    pattern, stats = _fault_pattern(archive, seed=7)
    failures = pattern.count(503)
    assert set(pattern) == {200, 503}
    assert 40 <= failures <= 80  # 30 % of 200, with slack
    assert stats["api_faults"] == failures == stats["status"][503]
    assert _fault_pattern(archive, seed=7)[0] == pattern
    assert _fault_pattern(archive, seed=8)[0] != pattern


def test_data_fault_rate_only_on_gets(archive: Path) -> None:
    with StacServer(archive, fail_rate_data=0.25, seed=3) as srv, requests.Session() as http:
        url = f"{srv.data_url}/{BYTES_FILE}"
        statuses = [http.get(url, headers={"Range": "bytes=0-9"}).status_code for _ in range(200)]
        assert 30 <= statuses.count(503) <= 70
        assert set(statuses) == {206, 503}
        assert all(http.head(url).status_code == 200 for _ in range(20))
        assert http.get(srv.url).status_code == 200  # only searches are faulted on the API
        stats = srv.stats
        assert stats["data_faults"] == statuses.count(503)
        assert stats["data_bytes"] == 10 * statuses.count(206)


def test_pystac_client_retries_through_faults(archive: Path) -> None:
    with StacServer(archive, fail_rate_api=0.3, seed=11) as srv:
        retry = Retry(total=20, status_forcelist=[503], allowed_methods=None, backoff_factor=0)
        client = pystac_client.Client.open(srv.url, stac_io=StacApiIO(max_retries=retry))
        ids = [i.id for i in client.search(collections=["sentinel-2-l2a"], limit=10).items()]
        assert ids == [f"SE_{i:04d}" for i in range(N_S2)]
        assert srv.stats["api_faults"] > 0


def test_latency(archive: Path) -> None:
    with StacServer(archive, latency_s=0.15) as srv:
        started = time.perf_counter()
        assert requests.get(srv.url, timeout=10).status_code == 200
        assert time.perf_counter() - started >= 0.15


def test_stats_counters_and_reset(server: StacServer, session: requests.Session) -> None:
    server.reset_stats()
    assert server.stats == {
        "api_requests": 0,
        "search_requests": 0,
        "data_requests": 0,
        "head_requests": 0,
        "data_bytes": 0,
        "range_requests": 0,
        "data_ranges": 0,
        "api_faults": 0,
        "data_faults": 0,
        "api_throttled": 0,
        "data_throttled": 0,
        "status": {},
        "max_api_per_s": 0,
        "max_data_per_s": 0,
    }
    session.get(server.url)
    session.post(f"{server.url}/search", json={"limit": 1})
    session.get(f"{server.url}/search", params={"bbox": "bad"})
    session.get(f"{server.data_url}/{BYTES_FILE}", headers={"Range": "bytes=0-3"})
    session.get(f"{server.data_url}/nothing")
    stats = server.stats
    assert (stats["api_requests"], stats["search_requests"], stats["data_requests"]) == (3, 2, 2)
    assert (stats["range_requests"], stats["data_bytes"], stats["data_ranges"]) == (1, 4, 1)
    assert stats["status"] == {200: 2, 400: 1, 206: 1, 404: 1}
    snapshot = server.stats
    snapshot["status"][200] = 99  # a snapshot, not the live counters
    assert server.stats["status"][200] == 2


def test_throttling_answers_429_with_retry_after_above_the_rate(archive: Path) -> None:
    with StacServer(archive, throttle_api_per_s=5, throttle_retry_after_s=2) as srv:
        with requests.Session() as http:
            answers = [http.get(srv.url, timeout=10) for _ in range(12)]
        stats = srv.stats
    codes = [answer.status_code for answer in answers]
    assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}, codes
    assert all(a.headers["Retry-After"] == "2" for a in answers if a.status_code == 429)
    assert stats["api_throttled"] == 7 and stats["max_api_per_s"] == 12


def test_throttling_admits_again_a_second_later(archive: Path) -> None:
    with StacServer(archive, throttle_data_per_s=2) as srv, requests.Session() as http:
        url = f"{srv.data_url}/{BYTES_FILE}"
        first = [http.get(url, timeout=10).status_code for _ in range(3)]
        time.sleep(1.05)
        later = http.get(url, timeout=10).status_code
    assert first == [200, 200, 429] and later == 200


def test_stalled_data_requests_answer_late_and_only_those_matching(archive: Path) -> None:
    stalling = StacServer(archive, stall_data_s=0.5, stall_data_match="nothing")
    with stalling as srv, requests.Session() as http:
        started = time.perf_counter()
        http.get(f"{srv.data_url}/{BYTES_FILE}", timeout=10)
        quick = time.perf_counter() - started
        started = time.perf_counter()
        with pytest.raises(requests.ReadTimeout):
            http.get(f"{srv.data_url}/nothing-here", timeout=0.2)
        assert time.perf_counter() - started < 0.45
    assert quick < 0.4


def test_stats_count_heads_and_multirange_parts(server: StacServer, session: requests.Session):
    server.reset_stats()
    url = f"{server.data_url}/{BYTES_FILE}"
    session.head(url)
    session.get(url, headers={"Range": "bytes=0-9,20-29,40-49"})
    session.get(url)
    stats = server.stats
    assert (stats["data_requests"], stats["head_requests"], stats["range_requests"]) == (3, 1, 1)
    assert (stats["data_ranges"], stats["data_bytes"]) == (3 + 1, 30 + len(BYTES))


def test_stats_endpoint_is_not_counted_nor_delayed(archive: Path) -> None:
    with StacServer(archive, latency_s=0.3) as srv, requests.Session() as http:
        http.get(f"{srv.data_url}/{BYTES_FILE}", headers={"Range": "bytes=0-99"})
        started = time.perf_counter()
        document = http.get(srv.url.removesuffix("/api") + STATS_PATH).json()
        assert time.perf_counter() - started < 0.3
        assert document["data_requests"] == 1 and document["data_bytes"] == 100
        assert document["status"] == {"206": 1}
        assert remote_stats(srv.url) == srv.stats  # from the API URL or the root, same counters
        assert srv.stats["data_requests"] == 1  # reading the stats did not count


def test_stats_reset_endpoint_returns_and_zeroes(server: StacServer) -> None:
    server.reset_stats()
    requests.get(f"{server.data_url}/{BYTES_FILE}", headers={"Range": "bytes=0-9"}, timeout=10)
    before = remote_stats(server.url.removesuffix("/api"), reset=True)
    assert (before["data_requests"], before["data_bytes"], before["status"]) == (1, 10, {206: 1})
    after = remote_stats(server.url)
    assert after["data_requests"] == 0 and after["status"] == {}


def test_stats_endpoint_methods(server: StacServer, session: requests.Session) -> None:
    root = server.url.removesuffix("/api")
    assert session.post(root + STATS_PATH).status_code == 405
    assert session.get(root + STATS_PATH + "/reset").status_code == 405
    assert session.head(root + STATS_PATH).status_code == 200


def test_concurrent_requests_are_counted(server: StacServer) -> None:
    server.reset_stats()

    def fetch() -> None:
        with requests.Session() as http:
            for _ in range(10):
                http.get(f"{server.data_url}/{BYTES_FILE}", headers={"Range": "bytes=0-99"})

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = server.stats
    assert stats["data_requests"] == 80 and stats["data_bytes"] == 8000


def test_clean_shutdown_with_open_keepalive(archive: Path) -> None:
    before = set(threading.enumerate())
    srv = StacServer(archive).start()
    http = requests.Session()
    assert http.get(srv.url).status_code == 200  # leaves a keep-alive connection open
    url = srv.url
    started = time.perf_counter()
    srv.stop()
    assert time.perf_counter() - started < 2
    assert set(threading.enumerate()) <= before
    with pytest.raises(requests.ConnectionError):
        http.get(url, timeout=2)
    http.close()
    srv.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_cli_out_of_process(archive: Path) -> None:
    """The CLI serves until SIGINT; out of process, GDAL needs no special settings."""
    command = [sys.executable, "-m", "sitsflow.testing.stac_server", str(archive), "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            first_line = process.stdout.readline()
            assert first_line.startswith("STAC API: http://127.0.0.1:")
            api_url = first_line.split(": ", 1)[1].strip()
            assert requests.get(api_url, timeout=10).json()["type"] == "Catalog"
            href = "tiles/T32UNB/SE_0000/B04.tif"
            data_url = api_url.removesuffix("/api") + "/data"
            with (
                rasterio.Env(GDAL_HTTP_TIMEOUT=10),  # default sibling probing stays on
                rasterio.open(f"{data_url}/{href}") as remote,
                rasterio.open(archive / href) as local,
            ):
                np.testing.assert_array_equal(remote.read(), local.read())
            assert process.stdout.readline().startswith("Data:")
            stats_url = process.stdout.readline().split(": ", 1)[1].strip()
            assert stats_url == api_url.removesuffix("/api") + STATS_PATH
            stats = remote_stats(api_url, reset=True)
            assert stats["api_requests"] == 1 and stats["data_requests"] >= 1
            assert stats["data_bytes"] > 0 and stats["status"][206] >= 1  # 404s: sibling probes
            assert remote_stats(api_url)["data_requests"] == 0
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0


def test_cli_stops_on_sigint_when_started_with_sigint_ignored(archive: Path) -> None:
    """A script started in the background (`cmd &`) hands its children SIGINT ignored."""

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    command = [sys.executable, "-m", "sitsflow.testing.stac_server", str(archive), "--port", "0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, preexec_fn=ignore_sigint
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("STAC API: http://127.0.0.1:")
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
