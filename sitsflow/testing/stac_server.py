"""A small STAC API + static file server, for tests and benchmarks.

It serves a *demo archive*: a directory with an ``items.json`` FeatureCollection of STAC items
whose asset hrefs are relative to that directory (``tiles/T32UNB/<id>/B04.tif``), plus the files
themselves. Two URL trees are exposed on one port:

* ``/api`` — a STAC API (landing page, conformance, collections, item search with the Query and
  Filter (CQL2 text and JSON) extensions and paging in the Planetary Computer or Earth Search v1
  style). Asset hrefs are rewritten to absolute ``{data_url}/<relpath>`` URLs, so clients
  download from the same server.
* ``/data/<relpath>`` — the archive files, with HTTP range support (single, open-ended, suffix
  and multi-range requests), which is what GDAL's ``/vsicurl/`` needs to read COGs.

Href aliases: an archive may hold an ``aliases.json`` (:data:`ALIASES_FILE`), an object mapping
relative hrefs to the relative paths of the files that answer for them
(``{"items/<id>/B04.tif": "files/T32UNB/B04.tif"}``), so that the items of many dates can name
one physical file, as the full-size benchmark archive does (``benchmarks/full_archive.py``);
an aliased href is served like the file itself (ranges, HEAD, counters, faults, signing).

Cloud behaviour can be simulated: per-request latency, a deterministic (seeded) fraction of
``503 Retry-After: 0`` answers for searches and data GETs, throttling (``429`` with
``Retry-After`` above a number of requests per second, as public APIs do), data requests that
stall before answering (a store that accepts connections and never answers), and SAS-style
signed data URLs (``?st=...&sig=<token>``). Request/byte counters in
:attr:`StacServer.stats` let tests and benchmarks assert how much traffic a workflow step
caused; a server in another process exposes them at ``GET /_stats`` and
``POST /_stats/reset`` (see :func:`remote_stats`), which are neither delayed nor counted.

The search semantics live in :mod:`sitsflow.catalog.filters`, shared with the local search.

GDAL in the same process: rasterio makes some GDAL calls while holding the GIL (e.g. metadata
lookups right after open). If such a call makes GDAL probe sibling files (``.aux.xml``,
``.ovr``, the directory listing) over HTTP, the in-process server thread cannot take the GIL to
answer and both wait until curl times out -- by default never. Read from an in-process server
inside ``rasterio.Env(**IN_PROCESS_GDAL_ENV)`` (which disables the sibling probing, as stackstac
does by default, and bounds HTTP waits), or run the server out of process with the CLI.

Command line::

    python -m sitsflow.testing.stac_server ARCHIVE_DIR --port 8000 [--latency-ms 20]
    curl http://127.0.0.1:8000/_stats                  # the counters, as JSON
    curl -X POST http://127.0.0.1:8000/_stats/reset    # the counters so far, then zeroed
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import mimetypes
import posixpath
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from urllib.request import Request, urlopen

from shapely.geometry import shape

from sitsflow.catalog.filters import (
    filter_items,
    item_time_range,
    parse_bbox,
    parse_datetime_interval,
    parse_filter,
    parse_intersects,
    query_to_cql2,
)
from sitsflow.core.types import JsonObject, StacAsset, StacItem

__all__ = [
    "ALIASES_FILE",
    "CONFORMANCE",
    "IN_PROCESS_GDAL_ENV",
    "STATS_PATH",
    "StacServer",
    "load_aliases",
    "main",
    "parse_range_header",
    "remote_stats",
]

LOGGER = logging.getLogger(__name__)

PagingStyle = Literal["pc", "earth-search"]

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0-rc.1/item-search#query",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/array-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
"""Conformance classes announced by the landing page and ``/api/conformance``."""

IN_PROCESS_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_TIMEOUT": "30"}
"""GDAL options for reading from a server running in the *same* process (see module docs)."""

JSON = "application/json"
GEOJSON = "application/geo+json"
STAC_VERSION = "1.0.0"
ITEM_ASSETS_EXTENSION = "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"
_ITEM_ASSET_FIELDS = ("type", "title", "description", "roles", "gsd", "eo:bands")
_MAX_BODY_BYTES = 16 * 1024 * 1024
_CHUNK = 256 * 1024
_FILTER_CACHE_SIZE = 64
_CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_TOKEN_KEYS = ("token", "next")
_STATUSES = {status.value for status in HTTPStatus}
ALIASES_FILE = "aliases.json"
"""Href aliases of an archive: relative href -> relative path of the file served for it."""
STATS_PATH = "/_stats"
"""Counters of a running server (``GET``); ``POST {STATS_PATH}/reset`` also zeroes them."""
_STATS_RESET_PATH = f"{STATS_PATH}/reset"


class _BadRequest(ValueError):
    """A client error reported as ``400`` with the message as description."""


# --------------------------------------------------------------------------------------------
# HTTP Range parsing (RFC 9110 §14)
# --------------------------------------------------------------------------------------------


def parse_range_header(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """Resolve a ``Range`` header against a file of ``size`` bytes.

    Returns ``None`` when the header is absent or syntactically invalid (the server must then
    ignore it and answer 200 with the whole file), an empty list when no range is satisfiable
    (416), else the satisfiable ranges as inclusive ``(first, last)`` byte positions, clamped to
    the file, in request order.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    ranges: list[tuple[int, int]] = []
    for raw in spec.split(","):
        parsed = _parse_range_spec(raw.strip(), size)
        if parsed == "invalid":
            return None
        if parsed is not None:
            ranges.append(parsed)
    return ranges


def _parse_range_spec(spec: str, size: int) -> tuple[int, int] | None | Literal["invalid"]:
    """One ``first-last`` / ``first-`` / ``-suffix`` spec: a range, None (unsatisfiable) or
    ``"invalid"`` (malformed, which voids the whole header)."""
    first_raw, sep, last_raw = spec.partition("-")
    if (
        not sep
        or not (first_raw.isdigit() or first_raw == "")
        or not (last_raw.isdigit() or last_raw == "")
    ):
        return "invalid"
    if first_raw == "":
        if last_raw == "":
            return "invalid"
        suffix = int(last_raw)
        if suffix == 0 or size == 0:
            return None
        return (max(0, size - suffix), size - 1)
    first = int(first_raw)
    if last_raw and int(last_raw) < first:
        return "invalid"
    if first >= size:
        return None
    last = int(last_raw) if last_raw else size - 1
    return (first, min(last, size - 1))


# --------------------------------------------------------------------------------------------
# search request parsing
# --------------------------------------------------------------------------------------------


@dataclass
class _SearchRequest:
    """A validated item-search request (from GET parameters or a POST body)."""

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: list[float] | None = None
    intersects: JsonObject | None = None
    datetime: str | None = None
    query: JsonObject | None = None
    filter: JsonObject | None = None
    """The CQL2 filter, parsed from either language into CQL2 JSON."""
    limit: int = 10
    token: str | None = None
    echo: dict[str, Any] = field(default_factory=dict)
    """The request's own parameters minus the paging token, repeated in ``next`` links."""

    def fingerprint(self) -> str:
        """Stable digest of the filter parameters (not limit/token): cache key and token check."""
        canonical = json.dumps(
            [
                self.collections,
                self.ids,
                self.bbox,
                self.intersects,
                self.datetime,
                self.query,
                self.filter,
            ],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _split_list(value: Any, name: str) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; None/empty -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()] or None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value) or None
    raise _BadRequest(f"invalid {name}: expected a list of strings")


def _parse_json_param(value: Any, name: str) -> Any:
    """Decode a parameter that GET carries as JSON text and POST as a JSON value."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise _BadRequest(f"invalid {name}: not valid JSON ({err.msg})") from None


def _parse_limit(value: Any, default: int, maximum: int) -> int:
    """Validate ``limit`` (a positive integer) and cap it at ``maximum``."""
    if value is None or value == "":
        return min(default, maximum)
    message = f"invalid limit {value!r}: expected a positive integer"
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise _BadRequest(message)
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise _BadRequest(message) from None
    if limit < 1:
        raise _BadRequest(message)
    return min(limit, maximum)


def _build_search_request(
    params: dict[str, Any], *, method: str, default_limit: int, page_size_max: int
) -> _SearchRequest:
    """Validate raw search parameters (GET strings or POST JSON values).

    A ``filter`` is CQL2 text by default on GET and CQL2 JSON on POST (the Filter extension's
    defaults); ``filter-lang`` says otherwise.

    Raises:
        _BadRequest: any malformed parameter, a ``filter-crs`` other than CRS84, or bbox together
            with intersects.
    """
    if params.get("filter-crs") not in (None, "", _CRS84):
        raise _BadRequest(f"unsupported filter-crs {params['filter-crs']!r}; use {_CRS84}")
    bbox = params.get("bbox")
    intersects = _parse_json_param(params.get("intersects"), "intersects")
    if bbox not in (None, "") and intersects not in (None, ""):
        raise _BadRequest("bbox and intersects are mutually exclusive")
    request = _SearchRequest(
        collections=_split_list(params.get("collections"), "collections"),
        ids=_split_list(params.get("ids"), "ids"),
        limit=_parse_limit(params.get("limit"), default_limit, page_size_max),
    )
    try:
        if bbox not in (None, ""):
            parse_bbox(bbox)
            request.bbox = [float(v) for v in (bbox.split(",") if isinstance(bbox, str) else bbox)]
        if intersects not in (None, ""):
            parse_intersects(intersects)
            request.intersects = intersects
        if params.get("datetime") not in (None, ""):
            if not isinstance(params["datetime"], str):
                raise _BadRequest("invalid datetime: expected a string")
            parse_datetime_interval(params["datetime"])
            request.datetime = params["datetime"]
        query = _parse_json_param(params.get("query"), "query")
        if query not in (None, "", {}):
            query_to_cql2(query)  # only to refuse a malformed query before searching
            request.query = query
        if params.get("filter") not in (None, ""):
            lang = params.get("filter-lang") or ("cql2-text" if method == "GET" else "cql2-json")
            request.filter = parse_filter(params["filter"], lang)
    except _BadRequest:
        raise
    except ValueError as err:
        raise _BadRequest(str(err)) from None
    token = next((params[k] for k in _TOKEN_KEYS if params.get(k) not in (None, "")), None)
    if token is not None and not isinstance(token, str):
        raise _BadRequest("invalid paging token: expected a string")
    request.token = token
    request.echo = {k: v for k, v in params.items() if k not in _TOKEN_KEYS}
    return request


def _encode_token(offset: int, fingerprint: str, echo: dict[str, Any] | None = None) -> str:
    """Opaque paging token: the next offset bound to the query it belongs to.

    With ``echo`` (Earth Search style) the token also carries the request's parameters, so a
    next-page body holding only ``{"next": token}`` is a complete request, as on Earth Search.
    """
    state: dict[str, Any] = {"o": offset, "q": fingerprint}
    if echo is not None:
        state["e"] = echo
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token_echo(token: Any) -> dict[str, Any]:
    """The request parameters an Earth Search style token carries ({} if none or unreadable)."""
    if not isinstance(token, str):
        return {}
    try:
        decoded = json.loads(base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()))
    except (ValueError, TypeError):
        return {}
    echo = decoded.get("e") if isinstance(decoded, dict) else None
    return echo if isinstance(echo, dict) else {}


def _decode_token(token: str | None, fingerprint: str) -> int:
    """Offset encoded in a paging token (0 without one).

    Raises:
        _BadRequest: undecodable token, or one issued for different filters (a client that drops
            or changes the filters while paging would otherwise silently get wrong items).
    """
    if token is None:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset, issued_for = int(decoded["o"]), decoded["q"]
    except (ValueError, KeyError, TypeError):
        raise _BadRequest(f"invalid paging token {token!r}") from None
    if issued_for != fingerprint or offset < 0:
        raise _BadRequest("paging token does not belong to this search (filters changed?)")
    return offset


# --------------------------------------------------------------------------------------------
# archive model
# --------------------------------------------------------------------------------------------


def _is_relative_href(href: str) -> bool:
    """True for hrefs relative to the archive directory (no scheme, not rooted)."""
    return "://" not in href and not href.startswith("/")


def _iso(value: datetime | None) -> str | None:
    """UTC datetime -> ``2024-01-01T00:00:00Z`` (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


def _item_bounds(item: StacItem) -> tuple[float, float, float, float] | None:
    """2D bounds of an item from its bbox, else from its geometry."""
    bbox = item.get("bbox")
    if bbox and len(bbox) in (4, 6):
        half = len(bbox) // 2
        return (bbox[0], bbox[1], bbox[half], bbox[half + 1])
    if item.get("geometry"):
        return tuple(shape(item["geometry"]).bounds)
    return None


def _collection_extent(items: Sequence[StacItem]) -> JsonObject:
    """Spatial and temporal extent covering ``items`` (open where unknown)."""
    bounds = [b for b in map(_item_bounds, items) if b is not None]
    spatial = (
        [min(b[0] for b in bounds), min(b[1] for b in bounds)]
        + [max(b[2] for b in bounds), max(b[3] for b in bounds)]
        if bounds
        else [-180.0, -90.0, 180.0, 90.0]
    )
    ranges = [r for r in map(item_time_range, items) if r is not None]
    starts = [r[0] for r in ranges]
    ends = [r[1] for r in ranges]
    start = None if not starts or None in starts else min(starts)  # type: ignore[type-var]
    end = None if not ends or None in ends else max(ends)  # type: ignore[type-var]
    return {"spatial": {"bbox": [spatial]}, "temporal": {"interval": [[_iso(start), _iso(end)]]}}


def _item_assets(items: Sequence[StacItem]) -> dict[str, StacAsset]:
    """Per asset key, the descriptive fields of its first occurrence (item-assets extension)."""
    result: dict[str, StacAsset] = {}
    for item in items:
        for key, asset in (item.get("assets") or {}).items():
            if key not in result:
                result[key] = {f: asset[f] for f in _ITEM_ASSET_FIELDS if f in asset}
    return result


def load_aliases(archive_dir: Path) -> dict[str, str]:
    """The archive's href aliases (``aliases.json``), or none when it has no such file.

    Raises:
        ValueError: the file is not a JSON object of strings to strings.
    """
    path = archive_dir / ALIASES_FILE
    if not path.is_file():
        return {}
    aliases = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise ValueError(f"{path}: expected an object of relative hrefs to relative paths")
    return {posixpath.normpath(k).lstrip("/"): v for k, v in aliases.items()}


def _load_items(archive_dir: Path) -> list[StacItem]:
    """Read ``items.json`` (a FeatureCollection, or a bare list of items)."""
    path = archive_dir / "items.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the archive needs an items.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    items = document.get("features") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a FeatureCollection of STAC items")
    return items


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so :meth:`close_all` can end them.

    Keep-alive clients (requests sessions, GDAL) otherwise keep handler threads blocked on idle
    sockets after shutdown.
    """

    daemon_threads = True
    # socketserver's default listen backlog is 5: a client opening dozens of connections at
    # once (a reader with many requests in flight) would see some accepted by the kernel and
    # never served, until it times out. Real object stores accept thousands.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], app: StacServer) -> None:
        self.app = app
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve each connection in its own daemon thread, remembering thread and socket."""
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True
        )
        with self._connections_lock:
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are routine here; log at DEBUG instead of printing tracebacks."""
        LOGGER.debug("error while serving %s", client_address, exc_info=True)

    def close_all(self, timeout: float = 5.0) -> None:
        """Shut down every open connection and wait for the handler threads to finish."""
        with self._connections_lock:
            connections = list(self._connections.items())
        for _, sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _ in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Parses the request line/body and delegates to :meth:`StacServer._handle`."""

    server: _HTTPServer
    counted = True  # False while answering a stats request, which must not count itself
    protocol_version = "HTTP/1.1"
    server_version = "sitsflow-stac-server/1"
    timeout = 30  # seconds an idle keep-alive connection is kept open

    def setup(self) -> None:
        """Disable Nagle: headers and body go out in separate writes, and with keep-alive the
        client's delayed ACK would otherwise add ~40 ms to every response."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.server.app._handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.app._handle(self, "HEAD")

    def do_POST(self) -> None:
        self.server.app._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.app._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.app._handle(self, "DELETE")

    def send_response(self, code: int, message: str | None = None) -> None:
        """Count every status (including http.server's own errors) before it reaches the
        client, so stats are complete as soon as a client has its response."""
        if self.counted:
            self.server.app._count_status(code)
        super().send_response(code, message)

    def log_message(self, format: str, *args: Any) -> None:
        LOGGER.debug("%s - %s", self.address_string(), format % args)

    def read_body(self) -> bytes | None:
        """Read the request body (Content-Length framed).

        Returns None (and marks the connection for closing, since the unread body would
        desynchronise it) when the length is invalid or above the limit.
        """
        raw_length = self.headers.get("Content-Length") or "0"
        length = int(raw_length) if raw_length.strip().isdigit() else -1
        if not 0 <= length <= _MAX_BODY_BYTES:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length > 0 else b""

    def send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = JSON,
        headers: Sequence[tuple[str, str]] = (),
        *,
        head: bool = False,
    ) -> None:
        """Send a complete in-memory response (headers only for HEAD)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)


def _json_bytes(document: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error_body(status: int, message: str) -> bytes:
    """STAC-API-style error document (``code`` + ``description``)."""
    code = HTTPStatus(status).phrase.replace(" ", "") if status in _STATUSES else str(status)
    return _json_bytes({"code": code, "description": message})


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


class _RateWindow:
    """Arrivals and admissions of one kind of request over the trailing second."""

    def __init__(self, limit_per_s: float) -> None:
        self.limit = limit_per_s
        self._arrivals: deque[float] = deque()
        self._admitted: deque[float] = deque()
        self.max_arrivals = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """Record an arrival; False when `limit` requests were admitted in the last second."""
        now = time.monotonic()
        with self._lock:
            for times in (self._arrivals, self._admitted):
                while times and times[0] <= now - 1.0:
                    times.popleft()
            self._arrivals.append(now)
            self.max_arrivals = max(self.max_arrivals, len(self._arrivals))
            if self.limit > 0 and len(self._admitted) >= self.limit:
                return False
            self._admitted.append(now)
            return True


class StacServer:
    """STAC API + range-capable static file server over a demo archive, in a background thread.

    Use as a context manager (or ``start()``/``stop()``)::

        with StacServer(archive_dir) as server:
            client = pystac_client.Client.open(server.url)

    Args:
        archive_dir: directory holding ``items.json`` and the files its relative hrefs name.
        host, port: bind address (port 0 picks a free port).
        page_size_max: cap applied to ``limit``.
        default_limit: page size when the request gives none.
        latency_s: sleep before answering every request (simulates a remote bucket/API).
        fail_rate_api: fraction of search requests answered ``503`` with ``Retry-After: 0``.
        fail_rate_data: fraction of data GETs answered ``503`` with ``Retry-After: 0``.
        throttle_api_per_s, throttle_data_per_s: answer ``429`` with ``Retry-After:
            throttle_retry_after_s`` to an ``/api`` (``/data``) request when this many were
            answered in the last second (0: never). ``stats`` records the most requests that
            arrived within one second (``max_api_per_s``, ``max_data_per_s``).
        stall_data_s: sleep this long before answering a data request (a store that accepts
            connections and does not answer); only requests whose path contains
            ``stall_data_match``, when that is set.
        seed: seed of the fault generator (one ``random.Random`` shared under a lock, so a
            sequential client sees the same fault pattern on every run).
        require_token: if set, data requests need ``?st=<anything>&sig=<token>`` (like an Azure
            SAS URL), otherwise ``403``.
        aliases: relative href -> relative path of the file that answers for it; None reads
            the archive's ``aliases.json`` (none if it has no such file).
        paging_style: ``"pc"`` — POST next links repeat the request body plus ``"token"``
            (Planetary Computer); ``"earth-search"`` — the body is ``{"next": token}`` alone
            (the token carries the search) with ``"merge": false``, and responses include
            ``context``
            (Earth Search v1). GET next links carry ``token=``/``next=`` respectively.
    """

    def __init__(
        self,
        archive_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size_max: int = 1000,
        default_limit: int = 10,
        latency_s: float = 0.0,
        fail_rate_api: float = 0.0,
        fail_rate_data: float = 0.0,
        throttle_api_per_s: float = 0.0,
        throttle_data_per_s: float = 0.0,
        throttle_retry_after_s: float = 1.0,
        stall_data_s: float = 0.0,
        stall_data_match: str = "",
        seed: int = 0,
        require_token: str | None = None,
        paging_style: PagingStyle = "pc",
        aliases: dict[str, str] | None = None,
    ) -> None:
        if paging_style not in ("pc", "earth-search"):
            raise ValueError(f"paging_style must be 'pc' or 'earth-search', not {paging_style!r}")
        for name, rate in (("fail_rate_api", fail_rate_api), ("fail_rate_data", fail_rate_data)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if page_size_max < 1 or default_limit < 1:
            raise ValueError("page_size_max and default_limit must be positive")
        self.archive_dir = Path(archive_dir).resolve()
        self.host, self._requested_port = host, port
        self.page_size_max, self.default_limit = page_size_max, default_limit
        self.latency_s = latency_s
        self.fail_rate_api, self.fail_rate_data = fail_rate_api, fail_rate_data
        self.throttle_api_per_s, self.throttle_data_per_s = throttle_api_per_s, throttle_data_per_s
        self.throttle_retry_after_s = throttle_retry_after_s
        self.stall_data_s, self.stall_data_match = stall_data_s, stall_data_match
        self.require_token = require_token
        self.paging_style: PagingStyle = paging_style
        self._items = _load_items(self.archive_dir)
        self.aliases = load_aliases(self.archive_dir) if aliases is None else dict(aliases)
        self._positions = {id(item): index for index, item in enumerate(self._items)}
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._stats = self._empty_stats()
        self._windows = self._empty_windows()
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""
        self._features: list[bytes] = []
        self._collections: dict[str, JsonObject] = {}
        # set by `stop`: a stalled request ends then, so that stopping does not wait its stall
        self._stopping = threading.Event()

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """STAC API root, e.g. ``http://127.0.0.1:PORT/api``."""
        return f"{self._require_started()}/api"

    @property
    def data_url(self) -> str:
        """Root of the archive files, e.g. ``http://127.0.0.1:PORT/data``."""
        return f"{self._require_started()}/data"

    @property
    def port(self) -> int:
        """The bound TCP port (known after :meth:`start`)."""
        self._require_started()
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def _require_started(self) -> str:
        if not self._base_url:
            raise RuntimeError("StacServer is not started; call start() or use it in a with block")
        return self._base_url

    def start(self) -> StacServer:
        """Bind, prepare the API documents for the bound URL and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("StacServer already started")
        httpd = _HTTPServer((self.host, self._requested_port), self)
        # An AF_INET or AF_INET6 address, whose host is a str (typeshed allows bytes too).
        host, port = cast(tuple[str, int], httpd.server_address[:2])
        display_host = f"[{host}]" if ":" in str(host) else host
        self._base_url = f"http://{display_host}:{port}"
        try:
            self._prepare_documents()
        except Exception:
            httpd.server_close()
            self._base_url = ""
            raise
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"stac-server-{port}"
        self._thread.start()
        LOGGER.debug("serving %s at %s", self.archive_dir, self._base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close all connections and join every thread (idempotent)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_all()
        if thread is not None:
            thread.join(5.0)
        self._httpd = self._thread = None
        self._base_url = ""
        self._stopping.clear()

    def __enter__(self) -> StacServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- stats ---------------------------------------------------------------------------

    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {
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
            "status": Counter(),
        }

    def _empty_windows(self) -> dict[str, _RateWindow]:
        return {
            "api": _RateWindow(self.throttle_api_per_s),
            "data": _RateWindow(self.throttle_data_per_s),
        }

    @property
    def stats(self) -> dict[str, Any]:
        """Snapshot of the counters.

        Keys: ``api_requests`` (all ``/api`` requests), ``search_requests``, ``data_requests``
        (GET/HEAD under ``/data``), ``head_requests`` (the HEADs among them), ``data_bytes``
        (file body bytes actually written), ``range_requests`` (data requests carrying a Range
        header), ``data_ranges`` (byte ranges answered: one per 200/single-range 206, one per part
        of a multipart answer; HEADs excluded), ``api_faults`` /
        ``data_faults`` (injected 503s), ``api_throttled`` / ``data_throttled`` (429s),
        ``max_api_per_s`` / ``max_data_per_s`` (the most requests that arrived within one
        second) and ``status`` (a dict of HTTP status -> count over all
        requests).
        """
        with self._stats_lock:
            return self._snapshot(self._stats, self._windows)

    def reset_stats(self) -> dict[str, Any]:
        """Zero all counters; return their values just before (one atomic step)."""
        with self._stats_lock:
            previous, self._stats = self._stats, self._empty_stats()
            windows, self._windows = self._windows, self._empty_windows()
        return self._snapshot(previous, windows)

    @staticmethod
    def _snapshot(stats: dict[str, Any], windows: dict[str, _RateWindow]) -> dict[str, Any]:
        snapshot = dict(stats)
        snapshot["status"] = dict(stats["status"])
        for kind, window in windows.items():
            snapshot[f"max_{kind}_per_s"] = window.max_arrivals
        return snapshot

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            for key, value in increments.items():
                self._stats[key] += value

    def _count_status(self, status: int) -> None:
        with self._stats_lock:
            self._stats["status"][status] += 1

    def _fault(self, rate: float) -> bool:
        """Draw from the seeded generator; True means "answer 503"."""
        with self._rng_lock:
            return self._rng.random() < rate

    # ---- documents -----------------------------------------------------------------------

    def _prepare_documents(self) -> None:
        """Rewrite items for the bound URL and pre-serialise them; build collection documents."""
        self._features = [_json_bytes(self._public_item(item)) for item in self._items]
        by_collection: dict[str, list[StacItem]] = {}
        for item in self._items:
            if item.get("collection"):
                by_collection.setdefault(item["collection"], []).append(item)
        self._collections = {
            cid: self._collection_document(cid, items) for cid, items in by_collection.items()
        }

    def _public_item(self, item: StacItem) -> StacItem:
        """Item as served: absolute asset hrefs under :attr:`data_url` and API links."""
        public = copy.deepcopy(item)
        for asset in (public.get("assets") or {}).values():
            href = asset.get("href")
            if isinstance(href, str) and _is_relative_href(href):
                relpath = posixpath.normpath(href).lstrip("/")
                asset["href"] = f"{self.data_url}/{quote(relpath)}"
        links = [
            link
            for link in public.get("links") or []
            if "://" in str(link.get("href", ""))
            and link.get("rel") not in ("self", "root", "parent", "collection")
        ]
        links.append(self._link("root", self.url, JSON))
        if public.get("collection"):
            collection_url = f"{self.url}/collections/{quote(public['collection'])}"
            links.append(self._link("parent", collection_url, JSON))
            links.append(self._link("collection", collection_url, JSON))
            item_url = f"{collection_url}/items/{quote(str(public.get('id')))}"
            links.append(self._link("self", item_url, GEOJSON))
        public["links"] = links
        return public

    @staticmethod
    def _link(rel: str, href: str, media_type: str, **extra: Any) -> JsonObject:
        return {"rel": rel, "href": href, "type": media_type, **extra}

    def _collection_document(self, collection_id: str, items: Sequence[StacItem]) -> JsonObject:
        """A STAC Collection whose extent and item_assets are derived from its items."""
        url = f"{self.url}/collections/{quote(collection_id)}"
        return {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "stac_extensions": [ITEM_ASSETS_EXTENSION],
            "id": collection_id,
            "title": collection_id,
            "description": f"{collection_id} items of the demo archive ({len(items)} items)",
            "license": "other",
            "extent": _collection_extent(items),
            "item_assets": _item_assets(items),
            "links": [
                self._link("self", url, JSON),
                self._link("root", self.url, JSON),
                self._link("parent", self.url, JSON),
                self._link("items", f"{url}/items", GEOJSON),
            ],
        }

    def _landing_page(self) -> JsonObject:
        search = f"{self.url}/search"
        return {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "sitsflow-stac-server",
            "title": "sitsflow test STAC API",
            "description": f"Demo archive served from {self.archive_dir.name}",
            "conformsTo": CONFORMANCE,
            "links": [
                self._link("self", self.url, JSON),
                self._link("root", self.url, JSON),
                self._link("conformance", f"{self.url}/conformance", JSON),
                self._link("data", f"{self.url}/collections", JSON),
                self._link("search", search, GEOJSON, method="GET"),
                self._link("search", search, GEOJSON, method="POST"),
            ],
        }

    # ---- request dispatch ----------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        """Entry point for every request: latency, routing, and a response even on errors."""
        body = handler.read_body()
        split = urlsplit(handler.path)
        path = split.path
        handler.counted = path.rstrip("/") not in (STATS_PATH, _STATS_RESET_PATH)
        if not handler.counted:
            return self._handle_stats(handler, method, path.rstrip("/"))
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        try:
            if body is None:
                self._send_error(handler, 413, "invalid or too large Content-Length", method)
            elif path == "/api" or path.startswith("/api/"):
                self._count(api_requests=1)
                if self._throttled(handler, "api", method):
                    return
                self._handle_api(handler, method, path, split.query, body)
            elif path.startswith("/data/"):
                self._count(data_requests=1)
                if self._throttled(handler, "data", method):
                    return
                stalls = self.stall_data_s > 0 and self.stall_data_match in path
                if stalls and self._stopping.wait(self.stall_data_s):
                    return  # stopped while stalling
                self._handle_data(handler, method, path[len("/data/") :], split.query)
            else:
                self._send_error(handler, 404, f"no such path {path!r}", method)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        except Exception as err:  # a bug must still produce a response, not a dropped socket
            LOGGER.exception("internal error on %s %s", method, path)
            handler.close_connection = True
            self._send_error(handler, 500, f"internal error: {err}", method)

    def _throttled(self, handler: _Handler, kind: str, method: str) -> bool:
        """Answer 429 when `kind` is over its rate; True if it was."""
        with self._stats_lock:
            window = self._windows[kind]
        if window.admit():
            return False
        self._count(**{f"{kind}_throttled": 1})
        retry = [("Retry-After", f"{self.throttle_retry_after_s:g}")]
        self._send_error(handler, 429, "too many requests", method, retry)
        return True

    def _handle_stats(self, handler: _Handler, method: str, path: str) -> None:
        """``GET /_stats`` (counters) and ``POST /_stats/reset`` (counters so far, then zeroed).

        Answered without latency, faults or counting, so that reading the counters of a server in
        another process changes neither them nor the timing being measured.
        """
        allowed = ("GET", "HEAD") if path == STATS_PATH else ("POST",)
        if method not in allowed:
            allow = ", ".join(allowed)
            return self._send_error(handler, 405, f"use {allow}", method, [("Allow", allow)])
        stats = self.stats if path == STATS_PATH else self.reset_stats()
        stats["status"] = {str(code): count for code, count in stats["status"].items()}
        return self._send_json(handler, stats, method)

    def _send_error(
        self,
        handler: _Handler,
        status: int,
        message: str,
        method: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send a JSON error document."""
        handler.send(status, _error_body(status, message), JSON, headers, head=method == "HEAD")

    def _send_json(self, handler: _Handler, document: Any, method: str, media: str = JSON) -> None:
        """Send a 200 JSON document."""
        handler.send(200, _json_bytes(document), media, head=method == "HEAD")

    # ---- API -----------------------------------------------------------------------------

    def _handle_api(
        self, handler: _Handler, method: str, path: str, query_string: str, body: bytes
    ) -> None:
        """Route ``/api`` requests; ValueErrors become 400 responses."""
        parts = [unquote(p) for p in path.rstrip("/").split("/")[2:]]
        if parts == ["search"]:
            if method not in ("GET", "POST"):
                return self._send_error(
                    handler, 405, "use GET or POST", method, [("Allow", "GET, POST")]
                )
            return self._handle_search(handler, method, query_string, body)
        if method not in ("GET", "HEAD"):
            return self._send_error(
                handler, 405, f"{method} not allowed", method, [("Allow", "GET, HEAD")]
            )
        try:
            return self._route_get(handler, method, parts, query_string)
        except ValueError as err:
            return self._send_error(handler, 400, str(err), method)

    def _route_get(self, handler: _Handler, method: str, parts: list[str], query: str) -> None:
        """Read-only API documents."""
        if not parts:
            return self._send_json(handler, self._landing_page(), method)
        if parts == ["conformance"]:
            return self._send_json(handler, {"conformsTo": CONFORMANCE}, method)
        if parts == ["collections"]:
            listing = {
                "collections": list(self._collections.values()),
                "links": [
                    self._link("self", f"{self.url}/collections", JSON),
                    self._link("root", self.url, JSON),
                ],
            }
            return self._send_json(handler, listing, method)
        if len(parts) >= 2 and parts[0] == "collections":
            return self._route_collection(handler, method, parts[1], parts[2:], query)
        return self._send_error(handler, 404, f"no such API path /api/{'/'.join(parts)}", method)

    def _route_collection(
        self, handler: _Handler, method: str, collection_id: str, rest: list[str], query: str
    ) -> None:
        """``/collections/{id}``, ``/collections/{id}/items`` and ``.../items/{item_id}``."""
        if collection_id not in self._collections:
            return self._send_error(handler, 404, f"collection {collection_id!r} not found", method)
        if not rest:
            return self._send_json(handler, self._collections[collection_id], method)
        if rest == ["items"]:
            params = self._get_params(query)
            params["collections"] = collection_id
            url = f"{self.url}/collections/{quote(collection_id)}/items"
            return self._run_search(handler, "GET", params, url, head=method == "HEAD")
        if len(rest) == 2 and rest[0] == "items":
            for item, encoded in zip(self._items, self._features, strict=True):
                if item.get("collection") == collection_id and item.get("id") == rest[1]:
                    handler.send(200, encoded, GEOJSON, head=method == "HEAD")
                    return
            return self._send_error(handler, 404, f"item {rest[1]!r} not found", method)
        return self._send_error(handler, 404, "no such collection path", method)

    @staticmethod
    def _get_params(query_string: str) -> dict[str, Any]:
        """Query string -> {name: last value}."""
        return {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}

    def _handle_search(
        self, handler: _Handler, method: str, query_string: str, body: bytes
    ) -> None:
        """``GET|POST /api/search`` with optional fault injection."""
        self._count(search_requests=1)
        if self._fault(self.fail_rate_api):
            self._count(api_faults=1)
            return self._send_error(handler, 503, "injected fault", method, [("Retry-After", "0")])
        if method == "GET":
            params = self._get_params(query_string)
        else:
            try:
                params = json.loads(body) if body.strip() else {}
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                return self._send_error(handler, 400, f"request body is not JSON: {err}", method)
            if not isinstance(params, dict):
                return self._send_error(handler, 400, "request body must be a JSON object", method)
            if self.paging_style == "earth-search" and set(params) <= {"next", "limit"}:
                # Earth Search next-page bodies carry only the token: restore the search from it.
                params = {**_token_echo(params.get("next")), **params}
        return self._run_search(handler, method, params, f"{self.url}/search")

    def _run_search(
        self,
        handler: _Handler,
        method: str,
        params: dict[str, Any],
        endpoint: str,
        *,
        head: bool = False,
    ) -> None:
        """Validate, filter, page and send an ItemCollection."""
        try:
            request = _build_search_request(
                params,
                method=method,
                default_limit=self.default_limit,
                page_size_max=self.page_size_max,
            )
            matched = self._matching_indices(request)
            offset = _decode_token(request.token, request.fingerprint())
        except ValueError as err:
            return self._send_error(handler, 400, str(err), method)
        page = matched[offset : offset + request.limit]
        links = [
            self._link("root", self.url, JSON),
            self._link("self", endpoint, GEOJSON),
        ]
        if offset + len(page) < len(matched):
            echo = request.echo if self.paging_style == "earth-search" else None
            token = _encode_token(offset + len(page), request.fingerprint(), echo)
            links.append(self._next_link(method, endpoint, request, token))
        envelope: dict[str, Any] = {
            "numberMatched": len(matched),
            "numberReturned": len(page),
            "links": links,
        }
        if self.paging_style == "earth-search":
            envelope["context"] = {
                "limit": request.limit,
                "matched": len(matched),
                "returned": len(page),
            }
        features = b",".join(self._features[i] for i in page)
        document = (
            b'{"type":"FeatureCollection","features":['
            + features
            + b"],"
            + _json_bytes(envelope)[1:]
        )
        handler.send(200, document, GEOJSON, head=head)

    def _next_link(
        self, method: str, endpoint: str, request: _SearchRequest, token: str
    ) -> JsonObject:
        """The ``next`` link in the configured paging style."""
        key = "token" if self.paging_style == "pc" else "next"
        if method == "GET":
            href = f"{endpoint}?{urlencode({**request.echo, key: token})}"
            return self._link("next", href, GEOJSON, method="GET")
        if self.paging_style == "pc":
            return self._link(
                "next", endpoint, GEOJSON, method="POST", body={**request.echo, key: token}
            )
        # Earth Search v1: the body is the token alone, `merge: false` (see the recorded
        # tests/fixtures/stac/earth-search-v1/search_cql2_cloudcover_page1_*.json).
        link = self._link("next", endpoint, GEOJSON, method="POST", body={key: token})
        link["title"] = "Next page of Items"
        link["merge"] = False
        return link

    def _matching_indices(self, request: _SearchRequest) -> list[int]:
        """Indices of matching items, cached per filter fingerprint (pages re-use the result)."""
        key = request.fingerprint()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        matches = filter_items(
            self._items,
            collections=request.collections,
            ids=request.ids,
            bbox=request.bbox,
            intersects=request.intersects,
            datetime_range=parse_datetime_interval(request.datetime),
            query=request.query,
            filter=request.filter,
        )
        indices = [self._positions[id(item)] for item in matches]
        with self._cache_lock:
            self._cache[key] = indices
            while len(self._cache) > _FILTER_CACHE_SIZE:
                self._cache.popitem(last=False)
        return indices

    # ---- data ----------------------------------------------------------------------------

    def _handle_data(self, handler: _Handler, method: str, relpath: str, query: str) -> None:
        """``GET|HEAD /data/<relpath>``: faults, signing, traversal guard, ranges."""
        if method not in ("GET", "HEAD"):
            return self._send_error(
                handler, 405, f"{method} not allowed", method, [("Allow", "GET, HEAD")]
            )
        if method == "GET" and self._fault(self.fail_rate_data):
            self._count(data_faults=1)
            return self._send_error(handler, 503, "injected fault", method, [("Retry-After", "0")])
        if self.require_token is not None and not self._signed(query):
            return self._send_error(handler, 403, "missing or invalid signature", method)
        path = self._resolve(relpath)
        if path is None:
            return self._send_error(handler, 403, "path outside the archive", method)
        if not path.is_file():
            return self._send_error(handler, 404, f"{relpath!r} not found", method)
        range_header = handler.headers.get("Range")
        if range_header:
            self._count(range_requests=1)
        if method == "HEAD":
            self._count(head_requests=1)
        return self._send_file(handler, path, range_header, head=method == "HEAD")

    def _signed(self, query: str) -> bool:
        """SAS-style check: ``st`` present and ``sig`` equal to the required token."""
        params = self._get_params(query)
        signature = params.get("sig", "")
        assert self.require_token is not None
        return bool(params.get("st")) and hmac.compare_digest(signature, self.require_token)

    def _resolve(self, relpath: str) -> Path | None:
        """Archive file for a URL path (through the aliases), or None if it would escape the
        archive directory."""
        decoded = unquote(relpath)
        if "\x00" in decoded:
            return None
        if self.aliases:
            decoded = self.aliases.get(posixpath.normpath(decoded), decoded)
        candidate = (self.archive_dir / decoded).resolve()
        if not candidate.is_relative_to(self.archive_dir):
            return None
        return candidate

    def _send_file(
        self, handler: _Handler, path: Path, range_header: str | None, *, head: bool
    ) -> None:
        """200 / 206 single / 206 multipart / 416 for one archive file."""
        size = path.stat().st_size
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        ranges = parse_range_header(range_header, size)
        common = [
            ("Accept-Ranges", "bytes"),
            ("Last-Modified", handler.date_time_string(int(path.stat().st_mtime))),
        ]
        if ranges is not None and not ranges:
            self._send_error(
                handler,
                416,
                "range not satisfiable",
                "HEAD" if head else "GET",
                [("Content-Range", f"bytes */{size}"), *common],
            )
            return
        if ranges is None:
            status, segments, length = 200, [(b"", 0, size - 1, b"")], size
            headers = [("Content-Type", content_type), *common]
        elif len(ranges) == 1:
            first, last = ranges[0]
            status, segments, length = 206, [(b"", first, last, b"")], last - first + 1
            headers = [
                ("Content-Type", content_type),
                ("Content-Range", f"bytes {first}-{last}/{size}"),
                *common,
            ]
        else:
            boundary = uuid.uuid4().hex
            segments = list(_multipart_segments(ranges, size, content_type, boundary))
            length = sum(
                len(pre) + (last - first + 1) + len(post) for pre, first, last, post in segments
            )
            status = 206
            headers = [("Content-Type", f"multipart/byteranges; boundary={boundary}"), *common]
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        if not head:
            self._count(data_ranges=len(segments))
            self._stream(handler, path, segments)

    def _stream(
        self, handler: _Handler, path: Path, segments: list[tuple[bytes, int, int, bytes]]
    ) -> None:
        """Write file byte ranges (with multipart framing), counting file bytes as they go."""
        with path.open("rb") as stream:
            for prefix, first, last, suffix in segments:
                if prefix:
                    handler.wfile.write(prefix)
                stream.seek(first)
                remaining = last - first + 1
                while remaining > 0:
                    chunk = stream.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise ConnectionResetError("file shrank while being served")
                    # counted before writing so that the stats are complete by the time the
                    # client has read the body; taken back if the client went away
                    self._count(data_bytes=len(chunk))
                    try:
                        handler.wfile.write(chunk)
                    except OSError:
                        self._count(data_bytes=-len(chunk))
                        raise
                    remaining -= len(chunk)
                if suffix:
                    handler.wfile.write(suffix)


def _multipart_segments(
    ranges: Sequence[tuple[int, int]], size: int, content_type: str, boundary: str
) -> Iterator[tuple[bytes, int, int, bytes]]:
    """``multipart/byteranges`` framing: (part header, first, last, trailer) per range."""
    for index, (first, last) in enumerate(ranges):
        prefix = (
            f"\r\n--{boundary}\r\n" if index else f"--{boundary}\r\n"
        ) + f"Content-Type: {content_type}\r\nContent-Range: bytes {first}-{last}/{size}\r\n\r\n"
        suffix = f"\r\n--{boundary}--\r\n" if index == len(ranges) - 1 else ""
        yield prefix.encode("ascii"), first, last, suffix.encode("ascii")


def remote_stats(server_url: str, *, reset: bool = False, timeout: float = 10.0) -> dict[str, Any]:
    """The counters of a server running elsewhere (e.g. the CLI in another process).

    `server_url` is the server's root or its STAC API URL (``http://127.0.0.1:PORT[/api]``).
    `reset=True` returns the counters and zeroes them in one step. Status codes are ints again.
    """
    root = server_url.rstrip("/").removesuffix("/api")
    if reset:
        request = Request(root + _STATS_RESET_PATH, data=b"", method="POST")
    else:
        request = Request(root + STATS_PATH)
    with urlopen(request, timeout=timeout) as response:
        stats: dict[str, Any] = json.loads(response.read())
    stats["status"] = {int(code): count for code, count in stats["status"].items()}
    return stats


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class ServerProcess:
    """`python -m sitsflow.testing.stac_server` in its own process, with its counters: for
    clients that read through GDAL, which holds the GIL in some calls (opening a file's
    overviews) and so would wait on a server in its own process until it times out."""

    def __init__(self, archive: Path, latency_ms: float = 0.0) -> None:
        command = [
            sys.executable, "-m", "sitsflow.testing.stac_server", str(archive),
            "--port", "0", "--latency-ms", str(latency_ms),
        ]  # fmt: skip
        # from this checkout's root, so that the server is this checkout's
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=root)
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith("STAC API:"):
            self.stop()
            raise RuntimeError(f"stac_server did not start: {first!r}")
        self.url = first.split(":", 1)[1].strip()

    @property
    def data_url(self) -> str:
        return self.url.removesuffix("/api") + "/data"

    def reset(self) -> dict[str, Any]:
        """The counters until now (`StacServer.stats`), zeroed for what follows."""
        return remote_stats(self.url, reset=True)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sitsflow.testing.stac_server",
        description="Serve a demo archive (items.json + files) as a STAC API with range-capable "
        "static files.",
    )
    parser.add_argument("archive_dir", type=Path, help="directory containing items.json")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per request")
    parser.add_argument("--fail-rate-api", type=float, default=0.0, help="fraction of 503 searches")
    parser.add_argument(
        "--fail-rate-data", type=float, default=0.0, help="fraction of 503 data GETs"
    )
    parser.add_argument(
        "--throttle-api", type=float, default=0.0, help="429 above this many /api requests/s"
    )
    parser.add_argument(
        "--throttle-data", type=float, default=0.0, help="429 above this many /data requests/s"
    )
    parser.add_argument("--stall-data-s", type=float, default=0.0, help="delay per data request")
    parser.add_argument("--seed", type=int, default=0, help="fault generator seed")
    parser.add_argument("--require-token", default=None, help="require ?st=..&sig=TOKEN on data")
    parser.add_argument("--page-size-max", type=int, default=1000)
    parser.add_argument("--default-limit", type=int, default=10)
    parser.add_argument("--paging-style", choices=["pc", "earth-search"], default="pc")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground until interrupted (Ctrl-C)."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    server = StacServer(
        args.archive_dir,
        host=args.host,
        port=args.port,
        page_size_max=args.page_size_max,
        default_limit=args.default_limit,
        latency_s=args.latency_ms / 1000.0,
        fail_rate_api=args.fail_rate_api,
        fail_rate_data=args.fail_rate_data,
        throttle_api_per_s=args.throttle_api,
        throttle_data_per_s=args.throttle_data,
        stall_data_s=args.stall_data_s,
        seed=args.seed,
        require_token=args.require_token,
        paging_style=args.paging_style,
    )
    # Started from a script in the background, a process inherits SIGINT ignored, and Python
    # then never raises KeyboardInterrupt: restore it, so that SIGINT stops the server anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with server:
        root = server.url.removesuffix("/api")
        try:  # SIGINT may come as soon as the first line is out
            print(
                f"STAC API: {server.url}\nData:     {server.data_url}\n"
                f"Stats:    {root}{STATS_PATH}",
                flush=True,
            )
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            LOGGER.info("stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
