"""Read COGs hosted on S3 through GDAL's S3 client (`/vsis3/`) instead of plain HTTP.

Why: GDAL's HTTP client (`/vsicurl/`) opens a file with a `HEAD` request (for its size) and
then a `GET` of the header; its S3 client opens with one ranged `GET` and takes the size from
the `Content-Range` answer. On the small windows of a time-series cube that is one request in
two per file (docs/performance.md), and providers throttle by request count.

Which hrefs: AWS S3 URLs (`https://BUCKET.s3.REGION.amazonaws.com/KEY`, `s3://BUCKET/KEY`),
which is how Earth Search publishes its COGs, and, with `s3_endpoint` set, path-style URLs
under that S3-compatible endpoint (`ENDPOINT/BUCKET/KEY`: MinIO or Ceph on a cluster, the demo
server) and `s3://BUCKET/KEY` hrefs, read from that endpoint (Copernicus Data Space:
`s3://eodata/...` on `https://eodata.dataspace.copernicus.eu`). Signed URLs (with a query
string) and everything else stay HTTP.

Requester-pays buckets (USGS's `s3://usgs-landsat`, which the `alternate.s3` hrefs of USGS Landsat
items point into, read only with config `requester_pays: true`) are read signed, with
`AWS_REQUEST_PAYER=requester`, in their own region.

Credentials: AWS buckets are read unsigned (public open data, `AWS_NO_SIGN_REQUEST=YES`); set
`AWS_NO_SIGN_REQUEST=NO` and the usual AWS variables for a private bucket. Under `s3_endpoint`,
requests are signed when `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are both set in the
environment (CDSE hands out such keys), unsigned otherwise. GDAL reads the keys from the
environment itself: they are never among the options returned here, so never logged or stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sitsflow.core.errors import InputError

S3_ACCESS_MODES = ("auto", "http")
_AWS_VIRTUAL_HOST = re.compile(
    r"^(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.s3(?:[.-](?P<region>[a-z0-9-]+))?"
    r"\.amazonaws\.com$"
)
DEFAULT_REGION = "us-east-1"
# Environment variables that take precedence over the options `gdal_options` derives.
USER_OVERRIDABLE = ("AWS_NO_SIGN_REQUEST", "AWS_REGION", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING")
# With both set, reads under `s3_endpoint` are signed (GDAL takes the values from the environment).
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Requester-pays buckets (the reader pays the transfer; requests must be signed) -> region.
# sitsflow points at them only when the user says they pay (config `requester_pays`).
REQUESTER_PAYS_BUCKETS = {"usgs-landsat": "us-west-2"}


@dataclass(frozen=True)
class S3Location:
    """Where an href lives on S3: bucket, key and (for AWS) region."""

    bucket: str
    key: str
    region: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class S3Access:
    """The `s3_access` and `s3_endpoint` config keys: which hrefs to read through `/vsis3/`."""

    mode: str = "auto"
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in S3_ACCESS_MODES:
            raise InputError(
                f"s3_access must be one of {list(S3_ACCESS_MODES)}, got {self.mode!r}",
                key="s3_access",
            )
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
                raise InputError(
                    f"s3_endpoint must be an http(s) URL like http://minio.example.org:9000, "
                    f"got {self.endpoint!r}",
                    key="s3_endpoint",
                )

    def locate(self, href: str) -> S3Location | None:
        """The S3 location of `href`, or None if it is to be read over HTTP."""
        if self.mode == "http":
            return None
        parts = urlsplit(href)
        if parts.query or parts.fragment:
            return None  # a signed URL: its signature is for HTTP
        if parts.scheme == "s3" and parts.netloc and parts.path.strip("/"):
            region = REQUESTER_PAYS_BUCKETS.get(parts.netloc)
            return S3Location(parts.netloc, parts.path.lstrip("/"), region)
        if self.endpoint is not None:
            return self._under_endpoint(href)
        if parts.scheme == "https" and (match := _AWS_VIRTUAL_HOST.match(parts.hostname or "")):
            key = parts.path.lstrip("/")
            if key:
                return S3Location(match["bucket"], key, match["region"] or DEFAULT_REGION)
        return None

    def _under_endpoint(self, href: str) -> S3Location | None:
        prefix = self.endpoint.rstrip("/") + "/"  # type: ignore[union-attr]
        if not href.startswith(prefix):
            return None
        bucket, _, key = href[len(prefix) :].partition("/")
        return S3Location(bucket, key) if bucket and key else None

    def plan(self, hrefs: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
        """The hrefs to rewrite (href -> s3:// URL) and the GDAL options they need.

        GDAL's S3 settings are per process, so hrefs of one AWS region are rewritten only: if a
        job's files span several regions, those outside the most common one stay HTTP.
        """
        located = {href: loc for href in hrefs if (loc := self.locate(href)) is not None}
        if not located:
            return {}, {}
        if self.endpoint is not None:
            endpoint = urlsplit(self.endpoint)
            options = {
                "AWS_S3_ENDPOINT": endpoint.netloc + endpoint.path.rstrip("/"),
                "AWS_HTTPS": "YES" if endpoint.scheme == "https" else "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE",
                "AWS_REGION": DEFAULT_REGION,
            }
        else:
            regions = [loc.region or DEFAULT_REGION for loc in located.values()]
            region = max(sorted(set(regions)), key=regions.count)
            located = {h: loc for h, loc in located.items() if (loc.region or region) == region}
            options = {"AWS_REGION": region}
        signed = self.endpoint is not None and all(os.environ.get(v) for v in CREDENTIAL_VARIABLES)
        if any(loc.bucket in REQUESTER_PAYS_BUCKETS for loc in located.values()):
            # GDAL signs with the environment's AWS credentials and says who pays
            options["AWS_REQUEST_PAYER"] = "requester"
            signed = True
        options["AWS_NO_SIGN_REQUEST"] = "NO" if signed else "YES"
        overrides = {key: os.environ[key] for key in USER_OVERRIDABLE if key in os.environ}
        return {href: loc.url for href, loc in located.items()}, {**options, **overrides}
