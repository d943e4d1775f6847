"""Secrets: a Planetary Computer subscription key or SAS token is never written anywhere.

The workflow runs against a local STAC API whose data files need a SAS-style signature
(`StacServer(require_token=...)`) and a local token endpoint that hands the signature out only
to requests carrying the subscription key, exactly like Planetary Computer. One feature's file is
missing, so a signed URL also travels through an error path (GDAL error, stackstac error,
sitsflow's AssetError, the job log, Snakemake's output, results/summary.csv). Then every file
the run wrote, and Snakemake's console output, is searched for the key and the signature.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from shapely.geometry import Point

from sitsflow.testing.stac_server import StacServer
from tests.helpers import local_http_server

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("sitsflow.catalog.signing") is None,
        reason="needs signing (issue 3)",
    ),
]

SUBSCRIPTION_KEY = f"fake-secret-key-{uuid.uuid4().hex}"
SIGNATURE = f"fake-sas-signature-{uuid.uuid4().hex}"
START, END = "2022-01-10", "2022-01-25"
POINTS = {"good": Point(8.49, 49.85), "broken": Point(25.0, 60.2)}


class TokenEndpoint(http.server.BaseHTTPRequestHandler):
    """`GET /token/{account}/{container}` -> a SAS token, for the right subscription key only."""

    requests_with_key = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.headers.get("Ocp-Apim-Subscription-Key") != SUBSCRIPTION_KEY:
            self.send_error(401, "subscription key required")
            return
        type(self).requests_with_key += 1
        expiry = datetime.now(UTC) + timedelta(hours=1)
        document = {
            "msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "token": f"st=2026-01-01T00%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z&sp=rl&sr=c"
            f"&sig={SIGNATURE}",
        }
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[str]:
    with local_http_server(TokenEndpoint) as url:
        yield f"{url}/token"


@pytest.fixture(scope="module")
def signed_archive(make_archive) -> Iterator[StacServer]:
    root = make_archive(POINTS, START, END, revisit_days=5, seed=9, private=True)
    items = json.loads((root / "items.json").read_text())["features"]
    broken = next(item for item in items if "T35" in item["id"])  # the "broken" feature's tile
    (root / broken["assets"]["B08"]["href"]).unlink()
    with StacServer(root, require_token=SIGNATURE) as server:
        yield server


@pytest.fixture(scope="module")
def secret_run(make_workdir, snakemake, signed_archive, token_endpoint):
    workdir = make_workdir(
        "secrets-run", POINTS, catalog=signed_archive.url, provider="planetary-computer",
        start=START, end=END, crs="utm", resolution=20, buffer_m=300, query=None,
        bands=["B04", "B08"],
    )  # fmt: skip
    secrets = {"PC_SDK_SUBSCRIPTION_KEY": SUBSCRIPTION_KEY, "PC_SDK_SAS_URL": token_endpoint}
    return workdir, snakemake(workdir, check=False, env=secrets)


def test_signed_reads_work_and_the_failure_is_reported(secret_run):
    """Not vacuous: data was read with a token, and a signed URL went through the error path."""
    workdir, result = secret_run
    assert TokenEndpoint.requests_with_key > 0
    assert (workdir / "results" / "cubes" / "good.nc").exists()
    assert result.returncode != 0
    summary = (workdir / "results" / "summary.csv").read_text()
    assert "AssetError: cannot read asset 'B08' of item" in summary


def test_no_file_and_no_output_contains_the_key_or_the_signature(secret_run):
    workdir, result = secret_run
    written = [path for path in Path(workdir).rglob("*") if path.is_file()]
    assert any(".snakemake" in p.parts for p in written) and any("logs" in p.parts for p in written)
    leaks = []
    for path in written:
        content = path.read_bytes()
        leaks += [
            f"{path.relative_to(workdir)} holds the {name}"
            for name, secret in (("key", SUBSCRIPTION_KEY), ("signature", SIGNATURE))
            if secret.encode() in content
        ]
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        leaks += [
            f"snakemake's {stream} holds the {name}"
            for name, secret in (("key", SUBSCRIPTION_KEY), ("signature", SIGNATURE))
            if secret in text
        ]
    assert leaks == []
