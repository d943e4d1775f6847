"""Network faults: flaky STAC API and COG server, missing and truncated assets.

* 30 % of STAC searches and 20 % of COG range requests answered `503`: pystac-client
  (urllib3 `Retry`) and GDAL (`GDAL_HTTP_MAX_RETRY`) retry them, and the cubes are identical to
  a clean run's.
* A `429` with `Retry-After` is retried after exactly that wait.
* A missing (404) or truncated COG fails the feature with an error naming the item and asset,
  or, with `on_missing_asset: skip`, leaves that item out and lists it in `skipped_items`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from shapely.geometry import Point

from sitsflow.catalog import api
from sitsflow.catalog.s3 import S3Access
from sitsflow.catalog.search import search
from sitsflow.core.bbox import make_aoi_record
from sitsflow.core.errors import AssetError
from sitsflow.core.features import Feature
from sitsflow.pixels.cube import make_cube
from sitsflow.testing.settings import cube_settings, grid_settings
from sitsflow.testing.stac_server import StacServer
from tests.conftest import REPO
from tests.helpers import feature_items, local_http_server

POINTS = {"f1": (8.491383, 49.854370), "f2": (25.0, 60.2)}
START, END = "2022-01-10", "2022-02-28"
BANDS = ["B04", "B08"]


def points_archive(make_archive, private: bool = False) -> Path:
    """The demo archive of POINTS (a private copy with `private`)."""
    features = {fid: Point(lonlat) for fid, lonlat in POINTS.items()}
    return make_archive(
        features, START, END, revisit_days=5, seed=13, clear_fraction=0.6, private=private
    )


@pytest.fixture(scope="module")
def archive(make_archive) -> Path:
    return points_archive(make_archive)


@pytest.fixture
def run_workflow(make_workdir, snakemake) -> Callable[..., Path]:
    """`run_workflow(name, catalog, **overrides)`: the working directory of a run that made
    the cubes (only) of POINTS from `catalog`."""

    def run(name: str, catalog: str, **overrides: object) -> Path:
        workdir = make_workdir(
            name,
            POINTS,
            catalog=catalog,
            start=START,
            end=END,
            crs="utm",
            resolution=10,
            bands=BANDS,
            query=None,
            buffer_m=300,
            **overrides,
        )
        snakemake(workdir, *(f"results/cubes/{fid}.nc" for fid in POINTS))  # the cubes only
        return workdir

    return run


def open_cube(workdir: Path, fid: str) -> xr.Dataset:
    with xr.open_dataset(workdir / "results" / "cubes" / f"{fid}.nc") as cube:
        return cube.load()


# ---- transient faults ------------------------------------------------------------------------


# How each loader says it retried: GDAL's message (stackstac), sitsflow's range store.
RETRY_LOG = {"stackstac": "HTTP error code: 503", "sitsflow": "HTTP 503, retry"}


@pytest.mark.slow
@pytest.mark.parametrize("loader", RETRY_LOG)
def test_flaky_api_and_cog_server_give_identical_cubes(archive, run_workflow, monkeypatch, loader):
    # GDAL waits 1 s, 2.4 s, 5.7 s... between retries; 0.1 s keeps the test short.
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.1")
    with StacServer(archive) as clean_server:
        clean = run_workflow(f"clean-{loader}", clean_server.url, loader=loader)
    with StacServer(archive, fail_rate_api=0.3, fail_rate_data=0.2, seed=4) as flaky:
        faulty = run_workflow(f"faulty-{loader}", flaky.url, loader=loader)
        stats = flaky.stats
    assert stats["api_faults"] > 0 and stats["data_faults"] > 0, stats
    for fid in POINTS:
        expected, cube = open_cube(clean, fid), open_cube(faulty, fid)
        assert cube.sizes["time"] > 5
        xr.testing.assert_identical(cube.drop_attrs(), expected.drop_attrs())
        for key in ("item_ids", "time_step_item_ids", "radiometry", "n_items"):
            assert cube.attrs[key] == expected.attrs[key]
    logs = "".join(path.read_text() for path in (faulty / "logs").rglob("*.log"))
    assert RETRY_LOG[loader] in logs  # the reader said it retried


def test_network_rules_are_retried_by_snakemake():
    for rule, minimum in (("search", 1), ("cube", 1)):
        text = (REPO / "rules" / f"{rule}.smk").read_text()
        retries = re.search(rf"(?:rule|checkpoint) {rule}:.*?\n    retries: (\d+)", text, re.S)
        assert retries and int(retries[1]) >= minimum, rule


# ---- reading through GDAL's S3 client -------------------------------------------------------


@pytest.mark.slow
def test_s3_endpoint_reads_the_same_cubes_with_no_head_requests(archive, run_workflow):
    """The server's /data/ is an S3-compatible bucket `data` (path style, unsigned reads):
    GDAL reads it without HEAD requests through its S3 client (loader stackstac); sitsflow's
    reader never sends one."""
    with StacServer(archive) as server:
        root = server.data_url.removesuffix("/data")
        gdal = {"loader": "stackstac"}
        over_http = run_workflow("http", server.url, s3_access="http", **gdal)
        http_stats = server.reset_stats()
        over_s3 = run_workflow("s3", server.url, s3_endpoint=root, **gdal)
        s3_stats = server.reset_stats()
        # sitsflow's reader asks for byte ranges only, over plain HTTP
        own = run_workflow("own-reader", server.url, loader="sitsflow")
        own_stats = server.reset_stats()
    for fid in POINTS:
        for other in (over_s3, own):
            xr.testing.assert_identical(
                open_cube(over_http, fid).drop_attrs(), open_cube(other, fid).drop_attrs()
            )
    assert http_stats["head_requests"] > 0
    assert s3_stats["head_requests"] == own_stats["head_requests"] == 0
    assert s3_stats["data_requests"] < http_stats["data_requests"]
    assert own_stats["data_requests"] <= s3_stats["data_requests"]
    log = (over_s3 / "logs" / "cube" / "f1.log").read_text()
    assert "through GDAL's S3 client" in log


# The share of the full-resolution read's bytes the overview read needs at most: GDAL fetches
# in 2 KB steps; sitsflow's reader fetches exact tiles, and its first request of a file already
# holds the coarsest overviews, so both reads of these small files are closer.
OVERVIEW_BYTES = {"stackstac": 0.8, "sitsflow": 0.95}


@pytest.mark.parametrize("loader", OVERVIEW_BYTES)
def test_20m_cube_reads_the_10m_bands_overview_same_values_fewer_bytes(archive, loader):
    """The demo's overviews are made by nearest-neighbour decimation, and the UTM 20 m grid is
    aligned with them, so the cube warped from the overview must equal the one warped from the
    full-resolution tiles, pixel for pixel, while fetching fewer bytes."""
    with StacServer(archive) as server:
        endpoint = server.data_url.removesuffix("/data")
        options = {"s3_endpoint": endpoint, "loader": loader}
        full = f1_cube(server.url, resolution=20, read_overviews=False, **options)
        full_stats = server.reset_stats()
        from_overview = f1_cube(server.url, resolution=20, **options)
        overview_stats = server.reset_stats()
    assert full.attrs["read_overviews"] == "false"
    assert from_overview.attrs["read_overviews"] == "true"
    assert from_overview.sizes["time"] > 3
    for name in ("B04", "B08", "SCL", "observed"):
        np.testing.assert_array_equal(from_overview[name].values, full[name].values, err_msg=name)
    share = overview_stats["data_bytes"] / full_stats["data_bytes"]
    assert share < OVERVIEW_BYTES[loader], (overview_stats, full_stats)


# ---- missing and truncated assets ------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_archive(make_archive) -> tuple[Path, dict[str, str]]:
    """A copy of the archive with f1's SCL of one item deleted and B04 of another truncated."""
    root = points_archive(make_archive, private=True)
    items = json.loads((root / "items.json").read_text())["features"]
    f1 = [item for item in items if item["properties"]["sitsflow:demo_feature"] == "f1"]
    missing, truncated = f1[2], f1[5]
    (root / missing["assets"]["SCL"]["href"]).unlink()
    cog = root / truncated["assets"]["B04"]["href"]
    cog.write_bytes(cog.read_bytes()[: cog.stat().st_size * 6 // 10])
    return root, {"missing": missing["id"], "truncated": truncated["id"]}


def f1_cube(
    catalog: str, on_missing_asset: str = "error", resolution: int = 10, **settings: object
) -> xr.Dataset:
    lon, lat = POINTS["f1"]
    record = make_aoi_record(
        Feature("f1", Point(lon, lat)),
        grid_settings(buffer_m=300, crs="utm", resolution=resolution),
    )
    items = feature_items(catalog, record, START, END)
    chosen = cube_settings(bands=[*BANDS, "SCL"], on_missing_asset=on_missing_asset, **settings)
    info = {"catalog": catalog, "collection": "sentinel-2-l2a"}
    return make_cube(record, items, info, chosen)


@pytest.mark.parametrize("broken", ["missing", "truncated"])
def test_unreadable_asset_fails_the_feature_naming_item_and_asset(broken_archive, broken):
    root, ids = broken_archive
    # only the broken item is searched, so the error is about it
    with StacServer(root) as server, pytest.raises(AssetError) as error:
        f1_cube_only(server.url, ids[broken])
    message = str(error.value)
    assert ids[broken] in message
    assert ("'SCL'" if broken == "missing" else "'B04'") in message
    assert "sig=" not in message


def f1_cube_only(
    catalog: str, item_id: str, s3: S3Access | None = None, loader: str = "sitsflow"
) -> xr.Dataset:
    """f1's cube built from the single item `item_id` of the catalog."""
    lon, lat = POINTS["f1"]
    record = make_aoi_record(
        Feature("f1", Point(lon, lat)), grid_settings(buffer_m=300, crs="utm", resolution=10)
    )
    items = feature_items(catalog, record, START, END)
    chosen = [item for item in items if item["id"] == item_id]
    s3 = s3 or S3Access()
    settings = cube_settings(
        bands=[*BANDS, "SCL"], s3_access=s3.mode, s3_endpoint=s3.endpoint, loader=loader
    )
    return make_cube(record, chosen, {"catalog": catalog}, settings)


def test_unreadable_asset_read_through_s3_names_item_and_asset(broken_archive):
    root, ids = broken_archive
    with StacServer(root) as server, pytest.raises(AssetError) as error:
        endpoint = server.data_url.removesuffix("/data")
        f1_cube_only(server.url, ids["missing"], s3=S3Access(endpoint=endpoint), loader="stackstac")
    message = str(error.value)
    assert ids["missing"] in message and "'SCL'" in message
    assert "s3://data/" in message


def test_skip_leaves_out_the_broken_items_and_records_them(archive, broken_archive):
    root, ids = broken_archive
    with StacServer(root) as server:
        cube = f1_cube(server.url, "skip")
    skipped = json.loads(cube.attrs["skipped_items"])
    assert sorted(skipped) == sorted(ids.values())
    kept = json.loads(cube.attrs["item_ids"])
    assert not set(kept) & set(skipped)
    # the cube equals one built from the intact archive without those two items
    with StacServer(archive) as server:
        full = f1_cube(server.url, "error")
    assert json.loads(full.attrs["item_ids"]) == sorted(
        kept + skipped, key=json.loads(full.attrs["item_ids"]).index
    )
    keep_steps = [
        i
        for i, ids_ in enumerate(json.loads(full.attrs["time_step_item_ids"]))
        if not set(ids_) & set(skipped)
    ]
    np.testing.assert_array_equal(cube["time"].values, full["time"].values[keep_steps])
    np.testing.assert_array_equal(cube["SCL"].values, full["SCL"].values[keep_steps])
    np.testing.assert_array_equal(cube["observed"].values, full["observed"].values[keep_steps])


def test_workflow_skip_mode_records_skipped_items(broken_archive, run_workflow):
    root, ids = broken_archive
    with StacServer(root) as server:
        workdir = run_workflow("skip", server.url, on_missing_asset="skip")
    cube = open_cube(workdir, "f1")
    assert sorted(json.loads(cube.attrs["skipped_items"])) == sorted(ids.values())
    assert json.loads(open_cube(workdir, "f2").attrs["skipped_items"]) == []
    log = (workdir / "logs" / "cube" / "f1.log").read_text()
    for item_id in ids.values():
        assert f"skipping item {item_id}" in log


# ---- Retry-After -----------------------------------------------------------------------------


class BusyApi(BaseHTTPRequestHandler):
    """A minimal STAC API whose first search answers `429 Retry-After: 7`, then an empty page."""

    searches = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.reply(
            200,
            {
                "type": "Catalog",
                "id": "busy",
                "description": "busy",
                "stac_version": "1.0.0",
                "conformsTo": [
                    "https://api.stacspec.org/v1.0.0/core",
                    "https://api.stacspec.org/v1.0.0/item-search",
                ],
                "links": [
                    {
                        "rel": "search",
                        "type": "application/geo+json",
                        "href": f"{root}/search",
                        "method": "POST",
                    },
                    {"rel": "self", "href": root},
                    {"rel": "root", "href": root},
                ],
            },
        )

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).searches += 1
        if type(self).searches == 1:
            self.reply(429, {"code": "TooManyRequests"}, [("Retry-After", "7")])
        else:
            self.reply(200, {"type": "FeatureCollection", "features": [], "links": []})

    def reply(self, status: int, document: dict, headers: list | None = None) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        for name, value in [("Content-Type", "application/json"), *(headers or [])]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_search_waits_as_long_as_retry_after_says(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(api.time, "sleep", slept.append)
    with local_http_server(BusyApi) as url:
        found = search(url, collection="sentinel-2-l2a", bbox=[8, 49, 9, 50], start=START, end=END)
    assert found == [] and BusyApi.searches == 2
    assert len(slept) == 1 and 6.9 < slept[0] <= 7.0  # the limiter held everyone for 7 s
