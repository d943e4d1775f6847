"""Planetary Computer signing against local servers: a SAS token endpoint and a COG server that
answers 403 unless a request carries `?st=...&sig=<token>`.

The token endpoint imitates `https://planetarycomputer.microsoft.com/api/sas/v1/token/{account}/
{container}` (`{"token": "st=...&sig=...", "msft:expiry": ...}`); the `planetary-computer`
package is pointed at it with `PC_SDK_SAS_URL`.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import planetary_computer.sas
import pytest
import xarray as xr
from shapely.geometry import Point

from sitsflow.catalog import signing
from sitsflow.catalog.providers import normalise_item, resolve_provider
from sitsflow.catalog.search import search
from sitsflow.core.bbox import grid_of, make_aoi_record
from sitsflow.core.errors import AssetError
from sitsflow.core.features import Feature
from sitsflow.pixels.cube import make_cube
from sitsflow.pixels.load import read_items
from sitsflow.testing.settings import cube_settings, grid_settings
from sitsflow.testing.stac_server import StacServer
from tests.conftest import load_items

PC_ITEMS = "planetary-computer/search_s2l2a_limit10_2022-07-28_pb04.00.json"
POINT = (8.491383, 49.854370)
START, END = "2022-01-10", "2022-01-30"
BANDS = ["B04", "B08", "SCL"]
SUBSCRIPTION_KEY = "test-subscription-key-0123456789"


class TokenServer:
    """A local SAS token endpoint: hands out tokens with signature `signature`, each valid for
    `lifetime`, and records every request (path, subscription key header)."""

    def __init__(self) -> None:
        self.signature = "SIG-A"
        self.lifetime = timedelta(hours=1)
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                server.requests.append((self.path, self.headers.get("Ocp-Apim-Subscription-Key")))
                signature = server.signature
                expiry = datetime.now(UTC) + server.lifetime
                body = json.dumps(
                    {
                        "msft:expiry": expiry.isoformat().replace("+00:00", "Z"),
                        "token": f"st=2024-01-01T00%3A00%3A00Z&se=2099-01-01&sp=rl&sig={signature}",
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/sas/v1/token"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def tokens(monkeypatch):
    """A token server that the planetary-computer package (fresh settings and cache) uses."""
    server = TokenServer()
    monkeypatch.setenv(signing.SAS_URL_ENV, server.url)
    monkeypatch.delenv(signing.SUBSCRIPTION_KEY_ENV, raising=False)
    signing.reset_token_cache()
    yield server
    signing.reset_token_cache()
    server.stop()


@pytest.fixture(scope="module")
def archive(make_archive) -> Path:
    return make_archive({"p": Point(POINT)}, START, END, seed=21)


def travel_forward(monkeypatch, hours: float) -> None:
    """Make the planetary-computer package believe `hours` have passed (token expiry checks)."""

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return datetime.now(tz) + timedelta(hours=hours)

    monkeypatch.setattr(planetary_computer.sas, "datetime", Later)


# ---- units -----------------------------------------------------------------------------------


def test_storage_container_of_real_and_local_hrefs():
    href = load_items(PC_ITEMS)[0]["assets"]["B04"]["href"]
    assert href.startswith("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/")
    assert signing.storage_container(href) == ("sentinel2l2a01", "sentinel2-l2")
    local = "http://127.0.0.1:8000/data/tiles/T32UNB/x/B04.tif"
    assert signing.storage_container(local) == ("127.0.0.1", "data")


def test_sign_href_appends_one_token_per_container(tokens):
    first = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/a/B04.tif"
    second = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/b/B08.tif"
    signed = signing.sign_href(first)
    assert signed.startswith(first + "?st=") and signed.endswith("&sig=SIG-A")
    assert signing.sign_href(second).endswith("sig=SIG-A")
    assert [path for path, _ in tokens.requests] == [
        "/api/sas/v1/token/sentinel2l2a01/sentinel2-l2"
    ]
    assert signing.sign_href(signed) == signed  # already signed
    assert signing.sign_href("/data/B04.tif") == "/data/B04.tif"  # not HTTP
    assert signing.sign_href(first + "?v=1").startswith(first + "?v=1&st=")


def test_subscription_key_goes_to_the_token_endpoint_only(tokens, monkeypatch):
    monkeypatch.setenv(signing.SUBSCRIPTION_KEY_ENV, SUBSCRIPTION_KEY)
    signing.reset_token_cache()
    signed = signing.sign_href("https://acct.blob.core.windows.net/container/B04.tif")
    assert tokens.requests == [("/api/sas/v1/token/acct/container", SUBSCRIPTION_KEY)]
    assert SUBSCRIPTION_KEY not in signed


def test_redact_removes_signatures():
    text = "Error opening 'http://h/B04.tif?st=2024&sig=SECRET%2B1&sp=rl': 403"
    assert (
        signing.redact(text) == "Error opening 'http://h/B04.tif?st=2024&sig=REDACTED&sp=rl': 403"
    )


# ---- reading from a server that demands a token ----------------------------------------------


def feature_record() -> dict:
    return make_aoi_record(
        Feature("p", Point(POINT)), grid_settings(buffer_m=300, crs="utm", resolution=10)
    )


def searched_items(server: StacServer) -> list[dict]:
    return search(
        server.url,
        collection="sentinel-2-l2a",
        bbox=feature_record()["properties"]["search_bbox_wgs84"],
        start=START,
        end=END,
    )


def test_cube_reads_only_with_signed_hrefs(tokens, archive):
    with StacServer(archive, require_token="SIG-A") as server:
        items = searched_items(server)
        info = {"catalog": server.url, "collection": "sentinel-2-l2a"}
        with pytest.raises(AssetError, match="403") as refused:
            make_cube(feature_record(), items, info, cube_settings(bands=BANDS))
        assert server.stats["status"].get(403, 0) > 0
        signed = cube_settings(bands=BANDS, provider="planetary-computer")
        cube = make_cube(feature_record(), items, info, signed)
        assert server.stats["status"].get(206, 0) > 0
    assert "sig=" not in str(refused.value)
    assert cube.attrs["provider"] == "planetary-computer"
    assert cube.sizes["time"] == len(items) == 5
    assert float(cube["observed"].mean()) > 0
    assert all("sig=" not in item["assets"]["B04"]["href"] for item in items)  # not signed


def test_expired_token_is_refreshed_at_read_time(tokens, archive, monkeypatch):
    provider = resolve_provider("planetary-computer")
    grid = grid_of(feature_record())
    with StacServer(archive, require_token="SIG-A") as server:
        normalised = [normalise_item(item, BANDS, provider) for item in searched_items(server)]
        first = read_items(normalised, BANDS, grid, sign_hrefs=True).data
        assert len(tokens.requests) == 1
        # An hour later the server only accepts a new token; the items are still unsigned.
        tokens.signature, tokens.lifetime = "SIG-B", timedelta(hours=3)
        server.require_token = "SIG-B"
        href = normalised[0]["assets"]["B04"]["href"]
        assert signing.sign_href(href).endswith("sig=SIG-A")  # cached while still valid
        travel_forward(monkeypatch, hours=1)
        assert signing.sign_href(href).endswith("sig=SIG-B")  # expired: fetched again
        server.reset_stats()
        second = read_items(normalised, BANDS, grid, sign_hrefs=True).data
        assert server.stats["status"].get(403, 0) == 0
    assert len(tokens.requests) == 2
    np.testing.assert_array_equal(first, second)


# ---- the workflow: signed reads, nothing secret written -------------------------------------


def test_workflow_signs_reads_and_writes_no_secret(
    tokens, archive, make_workdir, snakemake, monkeypatch
):
    monkeypatch.setenv(signing.SUBSCRIPTION_KEY_ENV, SUBSCRIPTION_KEY)
    with StacServer(archive, require_token="SIG-A") as server:
        workdir = make_workdir(
            "signing-run",
            {"p": POINT},
            catalog=server.url,
            provider="planetary-computer",
            start=START,
            end=END,
            crs="utm",
            resolution=10,
            bands=BANDS[:2],
            query=None,
            buffer_m=300,
        )
        snakemake(workdir, "results/cubes/p.nc")
        assert server.stats["status"].get(403, 0) == 0
    assert tokens.requests and all(key == SUBSCRIPTION_KEY for _, key in tokens.requests)
    with xr.open_dataset(workdir / "results" / "cubes" / "p.nc") as cube:
        assert cube.attrs["provider"] == "planetary-computer"
        assert cube.sizes["time"] == 5
    items = json.loads((workdir / "results" / "items" / "p.json").read_text())["features"]
    assert items and all("?" not in a["href"] for i in items for a in i["assets"].values())
    for path in [*workdir.rglob("*")]:
        if path.is_file():
            content = path.read_bytes()
            assert SUBSCRIPTION_KEY.encode() not in content, path
            assert b"SIG-A" not in content, path
