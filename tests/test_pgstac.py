"""The STAC API code path against a real STAC API server: stac-fastapi-pgstac on pgstac.

The items of a demo archive are loaded into pgstac (`pypgstac load`) with hrefs pointing at the
archive's COGs served over HTTP by the small StacServer; the workflow then searches the pgstac
API (Planetary-Computer-style `token` paging, query extension) and reads the COGs with range
requests. Skipped, with the reason, only when PostgreSQL/PostGIS or the `pgstac` extra cannot be
installed (tests/install_pgstac.sh).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pystac_client
import pytest
import requests
import xarray as xr
from shapely.geometry import Point

import sitsflow.catalog.search
from sitsflow.testing.stac_server import StacServer
from tests.helpers import expected_cube
from tests.pgstac_server import NotInstallable, PgstacServer, collection_document
from tests.test_workflow import BANDS, END, MASK_CLASSES, MAX_EDGE_DAYS, START

pytestmark = [pytest.mark.services, pytest.mark.slow]

POINTS = {"pg1": (8.491383, 49.854370), "pg2": (-1.25, 44.55)}
COLLECTION = "sentinel-2-l2a"


@pytest.fixture(scope="session")
def pgstac():
    """A running stac-fastapi-pgstac (started once per test session, ~5 s)."""
    try:
        server = PgstacServer()
    except NotInstallable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture(scope="module")
def archive(make_archive) -> Path:
    features = {fid: Point(lonlat) for fid, lonlat in POINTS.items()}
    return make_archive(features, START, END, revisit_days=5, seed=11, clear_fraction=0.6)


@pytest.fixture(scope="module")
def loaded(pgstac, archive):
    """The archive's items in pgstac, their hrefs on a StacServer that serves the COGs."""
    with StacServer(archive) as files:
        items = json.loads((archive / "items.json").read_text())["features"]
        for item in items:
            for asset in item["assets"].values():
                asset["href"] = f"{files.data_url}/{asset['href']}"
        pgstac.load(collection_document(COLLECTION, items), items)
        yield pgstac, files, items


def test_pgstac_serves_the_items_with_paging_and_context(loaded, monkeypatch):
    pgstac, _, items = loaded
    conformance = requests.get(f"{pgstac.url}/conformance", timeout=30).json()["conformsTo"]
    assert "https://api.stacspec.org/v1.0.0/item-search#query" in conformance
    page = requests.post(
        f"{pgstac.url}/search", json={"collections": [COLLECTION], "limit": 3}, timeout=30
    ).json()
    assert page["numberMatched"] == len(items)  # pgstac's `context` setting is on
    next_link = next(link for link in page["links"] if link["rel"] == "next")
    assert next_link["body"]["token"].startswith("next:")  # Planetary Computer style
    assert next_link["body"]["collections"] == [COLLECTION]  # the body repeats the query
    lon, lat = POINTS["pg1"]
    bbox = [lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01]
    expected = sorted(i["id"] for i in items if i["properties"]["sitsflow:demo_feature"] == "pg1")
    monkeypatch.setattr(sitsflow.catalog.search, "PAGE_LIMIT", 3)  # force several pages
    found = sitsflow.catalog.search.search(
        pgstac.url, collection=COLLECTION, bbox=bbox, start=START, end=END
    )
    assert sorted(i["id"] for i in found) == expected
    assert len(expected) > 3


def test_pgstac_query_extension_through_pystac_client(loaded):
    pgstac, _, items = loaded
    client = pystac_client.Client.open(pgstac.url)
    found = client.search(collections=[COLLECTION], query={"eo:cloud_cover": {"lt": 30}})
    ids = sorted(item.id for item in found.items())
    assert ids == sorted(i["id"] for i in items if i["properties"]["eo:cloud_cover"] < 30)
    assert 0 < len(ids) < len(items)


@pytest.mark.parametrize(
    "cql2_filter",
    [
        "eo:cloud_cover < 30 AND sitsflow:demo_feature = 'pg1'",
        {
            "op": "and",
            "args": [
                {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]},
                {"op": "=", "args": [{"property": "sitsflow:demo_feature"}, "pg1"]},
            ],
        },
    ],
)
def test_pgstac_filter_finds_what_the_local_search_finds(loaded, archive, cql2_filter):
    """A real Filter-extension API gets the filter (as CQL2 JSON in a POST search, whichever
    its spelling) and answers with the items the local search evaluates with cql2."""
    pgstac, _, _ = loaded
    world = {"bbox": [-180.0, -90.0, 180.0, 90.0], "start": START, "end": END}
    found = sitsflow.catalog.search.search(
        pgstac.url, collection=COLLECTION, filter=cql2_filter, **world
    )
    local = sitsflow.catalog.search.search(
        str(archive / "items.json"), collection=COLLECTION, filter=cql2_filter, **world
    )
    assert [item["id"] for item in found] == [item["id"] for item in local]
    everything = sitsflow.catalog.search.search(
        str(archive / "items.json"), collection=COLLECTION, **world
    )
    assert 0 < len(local) < len(everything)


def test_workflow_against_pgstac(loaded, archive, make_workdir, snakemake):
    pgstac, files, _ = loaded
    workdir = make_workdir(
        "pgstac-run",
        POINTS,
        catalog=pgstac.url,
        start=START,
        end=END,
        crs="utm",
        resolution=10,
        bands=BANDS,
        query={"eo:cloud_cover": {"lt": 30}},
        buffer_m=300,
    )
    files.reset_stats()
    snakemake(workdir)
    assert files.stats["range_requests"] > 0
    for fid in POINTS:
        document = json.loads((workdir / "results" / "items" / f"{fid}.json").read_text())
        items = document["features"]
        assert items and all(i["properties"]["eo:cloud_cover"] < 30 for i in items)
        assert document["sitsflow:search"]["catalog"] == pgstac.url
        with xr.open_dataset(workdir / "results" / "cubes" / f"{fid}.nc") as cube:
            cube.load()
        expected = expected_cube(
            archive, copy.deepcopy(items), cube, BANDS, MASK_CLASSES, MAX_EDGE_DAYS
        )
        assert (cube["time"].values == expected["times"]).all()
        for band in BANDS:
            xr.testing.assert_allclose(
                cube[band],
                xr.DataArray(
                    expected[band],
                    dims=cube[band].dims,
                    coords=cube[band].coords,
                    attrs=cube[band].attrs,
                ),
                rtol=0,
                atol=1e-6,
            )
        assert cube.attrs["provider"] == "generic"
