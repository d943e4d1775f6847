"""Which hrefs are read through GDAL's S3 client, and with which GDAL options (sitsflow.catalog.s3).

The reads themselves (same cubes as over HTTP, no HEAD requests, errors naming item and asset)
are tested against the local server in tests/test_network_faults.py.
"""

from __future__ import annotations

import pytest

from sitsflow.catalog.s3 import S3Access, S3Location
from sitsflow.core.errors import InputError
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
