"""Which hrefs are read through GDAL's S3 client, and with which GDAL options (sitsflow.catalog.s3).

The reads themselves (same cubes as over HTTP, no HEAD requests, errors naming item and asset)
are tested against the local server in tests/test_network_faults.py.
"""

from __future__ import annotations

import pytest

from sitsflow.catalog.s3 import S3Access, S3Location
from sitsflow.core.errors import InputError
from sitsflow.pixels.gdal_reads import gdal_path
from tests.conftest import load_items

ES_V1 = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/24/M/VV/2025/7/S2B_24MVV_20250731_0_L2A/B04.tif"  # noqa: E501
PC = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/35/M/NM/2020/06/01/B04_10m.tif"


def test_earth_search_hrefs_of_the_recorded_items_are_s3_locations():
    items = load_items("es_c1l2a_itemcollection_13TDE_2024-03-31_to_04-22_10dates.json")
    href = items[0]["assets"]["red"]["href"]
    location = S3Access().locate(href)
    assert location is not None
    assert location.bucket == "e84-earth-search-sentinel-data"
    assert location.region == "us-west-2"
    assert location.url == "s3://e84-earth-search-sentinel-data/" + href.split(".com/", 1)[1]
    assert S3Access().locate(ES_V1) == S3Location(
        "sentinel-cogs",
        "sentinel-s2-l2a-cogs/24/M/VV/2025/7/S2B_24MVV_20250731_0_L2A/B04.tif",
        "us-west-2",
    )


@pytest.mark.parametrize(
    "href",
    [
        PC,  # Azure: HTTP
        PC + "?st=2025-01-01&sig=abc",  # signed
        ES_V1 + "?X-Amz-Signature=abc",  # a presigned S3 URL is signed for HTTP
        "https://example.org/cogs/B04.tif",
        "/data/archive/B04.tif",  # a local file
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/",  # a bucket, not a file
    ],
)
def test_other_hrefs_stay_http(href):
    assert S3Access().locate(href) is None


def test_s3_urls_and_http_mode():
    assert S3Access().locate("s3://bucket/a/b.tif") == S3Location("bucket", "a/b.tif")
    assert S3Access("http").locate(ES_V1) is None
    assert S3Access("http").plan([ES_V1]) == ({}, {})


def test_endpoint_hrefs_are_path_style_and_only_those():
    access = S3Access(endpoint="http://127.0.0.1:9000/")
    assert access.locate("http://127.0.0.1:9000/data/tiles/B04.tif") == S3Location(
        "data", "tiles/B04.tif"
    )
    assert access.locate("http://127.0.0.1:9000/data") is None
    assert access.locate("http://127.0.0.1:9001/data/tiles/B04.tif") is None
    assert access.locate(ES_V1) is None  # one S3 configuration per process: the endpoint's
    rewrites, options = access.plan(["http://127.0.0.1:9000/data/x.tif", PC])
    assert rewrites == {"http://127.0.0.1:9000/data/x.tif": "s3://data/x.tif"}
    assert options["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert options["AWS_HTTPS"] == "NO"
    assert options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert options["AWS_NO_SIGN_REQUEST"] == "YES"


def test_plan_keeps_one_region_and_the_users_settings_win(monkeypatch):
    monkeypatch.delenv("AWS_NO_SIGN_REQUEST", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    other = "https://bucket-b.s3.eu-central-1.amazonaws.com/k/B04.tif"
    second = ES_V1.replace("B04", "B08")
    rewrites, options = S3Access().plan([ES_V1, second, other])
    assert set(rewrites) == {ES_V1, second}  # the most common region; the other stays HTTP
    assert options == {"AWS_REGION": "us-west-2", "AWS_NO_SIGN_REQUEST": "YES"}
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "NO")  # a private bucket, credentials in env
    assert S3Access().plan([ES_V1])[1]["AWS_NO_SIGN_REQUEST"] == "NO"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"mode": "always"}, "s3_access"),
        ({"endpoint": "minio:9000"}, "s3_endpoint"),
        ({"endpoint": "http://minio:9000?x=1"}, "s3_endpoint"),
    ],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(InputError) as error:
        S3Access(**settings)
    assert error.value.key == key
    assert key in str(error.value)


# ---- Copernicus Data Space: s3://eodata/ hrefs under its S3 endpoint -------------------------

CDSE_ENDPOINT = "https://eodata.dataspace.copernicus.eu"
CDSE_JP2 = "s3://eodata/Sentinel-2/MSI/L2A_N0500/2020/03/01/S2A_MSIL2A_20200301T090901_N0500_R050_T35UPU_20230630T033416.SAFE/GRANULE/L2A_T35UPU_A024500_20200301T090936/IMG_DATA/R10m/T35UPU_20200301T090901_B04_10m.jp2"  # noqa: E501


def test_s3_hrefs_under_an_endpoint_are_read_from_it(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_NO_SIGN_REQUEST"):
        monkeypatch.delenv(name, raising=False)
    items = load_items(
        "cdse/xcube-stac_HEAD_item_S2A_MSIL2A_20200301T090901_N0500_R050_T35UPU_20230630T033416.json"
    )
    assert items[0]["assets"]["B04_10m"]["href"] == CDSE_JP2
    access = S3Access(endpoint=CDSE_ENDPOINT)
    location = access.locate(CDSE_JP2)
    assert location is not None and location.bucket == "eodata"
    assert gdal_path(location.url) == "/vsis3/" + CDSE_JP2.removeprefix("s3://")
    rewrites, options = access.plan([CDSE_JP2])
    assert rewrites == {CDSE_JP2: CDSE_JP2}
    assert options == {
        "AWS_S3_ENDPOINT": "eodata.dataspace.copernicus.eu",
        "AWS_HTTPS": "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_REGION": "us-east-1",
        "AWS_NO_SIGN_REQUEST": "YES",  # no credentials in the environment
    }


def test_credentials_sign_endpoint_reads_and_never_appear_in_the_options(monkeypatch):
    monkeypatch.delenv("AWS_NO_SIGN_REQUEST", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake-access-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
    rewrites, options = S3Access(endpoint=CDSE_ENDPOINT).plan([CDSE_JP2])
    assert options["AWS_NO_SIGN_REQUEST"] == "NO"
    text = repr((rewrites, options))
    assert "fake-access-key-id" not in text and "fake-secret-access-key" not in text
    # AWS's own public buckets stay unsigned: the keys are for the endpoint
    assert S3Access().plan([ES_V1])[1]["AWS_NO_SIGN_REQUEST"] == "YES"
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")  # the user's setting wins
    assert S3Access(endpoint=CDSE_ENDPOINT).plan([CDSE_JP2])[1]["AWS_NO_SIGN_REQUEST"] == "YES"


def test_jpeg2000_under_an_endpoint_is_read_through_vsis3(tmp_path, monkeypatch):
    """sitsflow's reader hands a JPEG 2000 file at an `s3://` href under `s3_endpoint` to
    GDAL's S3 client (/vsis3/) without probing it over HTTP first; the values equal a direct
    read of the file. The demo server is a path-style S3 endpoint (bucket `data`, unsigned)."""
    import numpy as np
    import rasterio
    from affine import Affine

    from sitsflow.core.grid import Grid
    from sitsflow.pixels.tiles import TileReader
    from sitsflow.testing.stac_server import StacServer

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_NO_SIGN_REQUEST"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "items.json").write_text('{"type": "FeatureCollection", "features": []}')
    path = tmp_path / "tiles" / "B04_10m.jp2"
    path.parent.mkdir()
    values = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 3000) + 1
    transform = Affine(10, 0, 500000, 0, -10, 5000640)
    profile = {"driver": "JP2OpenJPEG", "width": 64, "height": 64, "count": 1}
    profile |= {"dtype": "uint16", "crs": "EPSG:32632", "transform": transform, "nodata": 0}
    with rasterio.open(path, "w", QUALITY=100, REVERSIBLE="YES", **profile) as ds:
        ds.write(values, 1)
    item = {
        "type": "Feature",
        "id": "cdse-like",
        "properties": {"datetime": "2024-11-07T11:33:11Z"},
        "assets": {
            "B04": {
                "href": "s3://data/tiles/B04_10m.jp2",
                "proj:epsg": 32632,
                "proj:shape": [64, 64],
                "proj:transform": list(transform)[:6],
            }
        },
    }
    grid = Grid(32632, 10.0, (500100.0, 5000100.0, 500500.0, 5000500.0))
    with StacServer(tmp_path) as server:
        endpoint = server.data_url.removesuffix("/data")
        server.reset_stats()
        with TileReader(s3_endpoint=endpoint, s3=S3Access(endpoint=endpoint)) as reader:
            stack = reader.read([item], ["B04"], grid)
        stats = server.reset_stats()
    assert stats["head_requests"] == 0 and stats["data_requests"] > 0
    assert "read through GDAL's S3 client" in stack.through_gdal["cdse-like"]["B04"]
    np.testing.assert_array_equal(stack.data[0, 0], values[14:54, 10:50].astype(np.float32))
