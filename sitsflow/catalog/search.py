"""Find the items covering one feature: a STAC API search, or the same filters on a local file.

Both paths return plain item dicts with absolute asset hrefs, unsigned (signing, where a
provider needs it, happens when pixels are read, so tokens never land in results/).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urljoin

from sitsflow.catalog.filters import filter_items, parse_filter
from sitsflow.core.errors import CatalogError, InputError
from sitsflow.core.types import JsonObject, StacItem

if TYPE_CHECKING:
    from pystac_client import Client
    from shapely.geometry.base import BaseGeometry

log = logging.getLogger(__name__)

PAGE_LIMIT = 100
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
MAX_LISTED_COLLECTIONS = 20


def is_remote(catalog: str) -> bool:
    return catalog.startswith(("http://", "https://"))


def datetime_range(start: str | date, end: str | date) -> tuple[datetime, datetime]:
    """`start`..`end` as aware UTC datetimes, the end day included up to its last microsecond."""
    first = date.fromisoformat(str(start))
    last = date.fromisoformat(str(end))
    return (datetime.combine(first, time.min, UTC), datetime.combine(last, time.max, UTC))


@dataclass(frozen=True)
class ApiLimits:
    """How hard a search job may press a STAC API (config `stac`): requests per second over the
    job, searches in flight, the wait for an answer per attempt, and the page size asked for."""

    max_requests_per_s: float
    max_concurrent: int
    timeout_s: float
    connect_timeout_s: float
    page_size: int


# For `search` called outside the workflow (tests, notebooks): no rate limit.
UNLIMITED = ApiLimits(
    max_requests_per_s=0,
    max_concurrent=1,
    timeout_s=READ_TIMEOUT_S,
    connect_timeout_s=CONNECT_TIMEOUT_S,
    page_size=PAGE_LIMIT,
)


class Catalog:
    """Searches of one collection of one catalog, sharing a connection, a rate limit and
    counters: a STAC API opened once (one client per thread, one limiter for all), or a local
    ItemCollection read once."""

    def __init__(self, catalog: str, collection: str, limits: ApiLimits = UNLIMITED) -> None:
        from sitsflow.catalog.api import RateLimiter

        self.catalog = catalog
        self.collection = collection
        self.limits = limits
        self.limiter = RateLimiter(limits.max_requests_per_s)
        self._local: list[StacItem] | None = None
        self._threads = threading.local()
        self._adapters: list[Any] = []
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        """Requests sent to the API so far (pages and retries included)."""
        return sum(adapter.counters.requests for adapter in self._adapters)

    @property
    def retries(self) -> int:
        return sum(adapter.counters.retries for adapter in self._adapters)

    def search(
        self,
        bbox: Sequence[float],
        start: str | date,
        end: str | date,
        query: JsonObject | None = None,
        filter: str | JsonObject | None = None,
    ) -> list[StacItem]:
        """Items of the collection intersecting `bbox` (EPSG:4326) in [start, end] (UTC days),
        sorted by time. `query` is a STAC Query-extension object, `filter` a CQL2 expression
        (text, or JSON as a dict); an item must match both."""
        begin, finish = datetime_range(start, end)
        if is_remote(self.catalog):
            items = self._search_api(list(bbox), begin, finish, query, filter)
        else:
            if self._local is None:
                self._local = _read_local_catalog(self.catalog)
                _check_local_collection(self._local, self.catalog, self.collection)
            items = filter_items(
                self._local,
                collections=[self.collection],
                bbox=list(bbox),
                datetime_range=(begin, finish),
                query=query,
                filter=filter,
            )
        return sorted(
            items, key=lambda item: (item["properties"].get("datetime") or "", item["id"])
        )

    def _client(self) -> Client:
        client = getattr(self._threads, "client", None)
        if client is None:
            from pystac_client import Client
            from pystac_client.stac_api_io import StacApiIO

            from sitsflow.catalog.api import polite_session

            stac_io = StacApiIO(max_retries=None)
            session, adapter = polite_session(
                self.limiter,
                connect_timeout_s=self.limits.connect_timeout_s,
                timeout_s=self.limits.timeout_s,
                headers=dict(stac_io.session.headers),
            )
            stac_io.session = session
            with self._lock:
                self._adapters.append(adapter)
            try:
                client = Client.open(self.catalog, stac_io=stac_io)
            except Exception as exc:
                raise CatalogError(_open_failure(self.catalog, exc), key="catalog") from exc
            self._threads.client = client
        return cast("Client", client)

    def _search_api(
        self,
        bbox: list[float],
        begin: datetime,
        finish: datetime,
        query: JsonObject | None,
        filter: str | JsonObject | None,
    ) -> list[StacItem]:
        from pystac_client import ConformanceClasses

        url, collection = self.catalog, self.collection
        client = self._client()
        if filter and not client.conforms_to(ConformanceClasses.FILTER):
            raise CatalogError(
                f"the STAC API at {url} does not support CQL2 filters (the Filter extension); "
                "remove `filter` or express it as `query`",
                key="filter",
            )
        # As CQL2 JSON whatever its spelling in the config: an API need only accept JSON in a
        # POST search (the Filter extension; stac-fastapi refuses cql2-text there).
        cql2_json = parse_filter(filter) if filter else None
        datetime_param = f"{_iso(begin)}/{_iso(finish)}"
        try:
            result = client.search(
                collections=[collection],
                bbox=bbox,
                datetime=datetime_param,
                query=query,
                filter=cql2_json,
                filter_lang="cql2-json" if cql2_json else None,
                limit=self.limits.page_size,
            )
            items = [item.to_dict(transform_hrefs=False) for item in result.items()]
        except Exception as exc:
            _check_collection_exists(client, url, collection)
            raise CatalogError(
                f"search of {url} (collection {collection!r}) failed: {_connection_reason(exc)}",
                key="catalog",
            ) from exc
        if not items:
            _check_collection_exists(client, url, collection)
        return items


def _time_and_id(item: StacItem) -> tuple[str, str]:
    return (str(item["properties"].get("datetime") or ""), str(item["id"]))


def search(
    catalog: str,
    *,
    collection: str,
    bbox: list[float],
    start: str | date,
    end: str | date,
    query: JsonObject | None = None,
    filter: str | JsonObject | None = None,
    limits: ApiLimits = UNLIMITED,
) -> list[StacItem]:
    """One search of `collection` (see `Catalog.search`)."""
    return Catalog(catalog, collection, limits).search(bbox, start, end, query, filter)


def search_dates(start: str | date, end: str | date) -> tuple[date, date]:
    """The UTC days to search for the solar days `start`..`end`: one more on either side, as a
    feature far east or west has acquisitions whose UTC date is not its local date
    (`select_items` trims them back)."""
    first = date.fromisoformat(str(start)) - timedelta(days=1)
    last = date.fromisoformat(str(end)) + timedelta(days=1)
    return first, last


def select_items(
    items: list[dict[str, Any]],
    window: BaseGeometry,
    longitude: float,
    start: str | date,
    end: str | date,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The items a feature's cube reads, and the others with the reason each was dropped.

    Kept: the footprint (`geometry`, EPSG:4326) intersects the feature's `window` (its grid's
    outline in lon/lat; items without a geometry are kept), and the acquisition's solar day at
    `longitude` lies in `start`..`end`. A catalog's bbox search also returns items whose bbox
    touches the window but whose footprint does not (diagonal swath edges).
    """
    from shapely.geometry import shape

    from sitsflow.core.solar import solar_day

    first, last = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    kept, dropped = [], []
    for item in items:
        day = solar_day(item["properties"]["datetime"], longitude)
        geometry = item.get("geometry")
        if not first <= day <= last:
            dropped.append({"id": item["id"], "reason": f"solar day {day} outside {first}..{last}"})
        elif geometry and not shape(geometry).intersects(window):
            dropped.append({"id": item["id"], "reason": "footprint misses the feature's window"})
        else:
            kept.append(item)
    return kept, dropped


def _connection_reason(exc: Exception) -> str:
    """`exc`'s message, shortened to the OS reason ("Connection refused") for connection errors."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    return match[1].strip() if match else text


def _open_failure(url: str, exc: Exception) -> str:
    """What went wrong opening the API root `url`, and what to do about it."""
    status = getattr(exc, "status_code", None)
    text = str(exc)
    if status is None and ("Errno" in text or "Max retries exceeded" in text):
        return (
            f"cannot connect to the STAC API at {url} ({_connection_reason(exc)}); check the "
            "`catalog` URL, that the server is up, and that this machine can reach it "
            "(proxy, firewall)"
        )
    reason = f"HTTP {status}" if status else f"{type(exc).__name__}: {text[:200]}"
    return (
        f"{url} is not a STAC API root ({reason}); set `catalog` to the API's landing page "
        "(a JSON document with `conformsTo` and `links`, e.g. "
        "https://earth-search.aws.element84.com/v1) or to the path of a local ItemCollection"
    )


def _check_collection_exists(client: Client, url: str, collection: str) -> None:
    """Raise CatalogError if the API lists its collections and `collection` is not one of them.

    Called when a search finds nothing or fails: a misspelt collection otherwise looks like an
    empty archive. APIs without the collections endpoint are not checked.
    """
    from pystac_client import ConformanceClasses

    try:
        if not client.conforms_to(ConformanceClasses.COLLECTIONS):
            return
        if client.get_collection(collection) is not None:
            return
        available = []
        for found in client.get_collections():
            available.append(found.id)
            if len(available) >= MAX_LISTED_COLLECTIONS:
                available.append("...")
                break
    except Exception as exc:  # the check is a diagnosis: never hide the original problem
        log.info("could not check that collection %r exists: %s", collection, exc)
        return
    raise CatalogError(
        f"collection {collection!r} not found in catalog {url}; available: {available}. "
        "Set `collection` to one of them",
        key="collection",
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_local_catalog(path: str) -> list[StacItem]:
    """Items of a local ItemCollection (FeatureCollection or JSON list) or static catalog."""
    location = Path(path)
    if not location.exists():
        raise InputError(
            f"catalog {path!r} is neither an http(s) URL nor an existing file; for the demo "
            "archive run `make demo` first",
            key="catalog",
        )
    if location.is_dir():
        location = location / "catalog.json"
    data = json.loads(location.read_text())
    if isinstance(data, dict) and data.get("type") in ("Catalog", "Collection"):
        return _static_catalog_items(location)
    features = data.get("features") if isinstance(data, dict) else data
    if not isinstance(features, list):
        raise CatalogError(
            f"{path} is not an ItemCollection, a list of items or a catalog", key="catalog"
        )
    base = location.resolve().parent
    return [_absolute_hrefs(item, base.as_uri() + "/") for item in features]


def _check_local_collection(items: Sequence[StacItem], catalog: str, collection: str) -> None:
    """Raise CatalogError if no item of a local catalog belongs to `collection`."""
    available = sorted({str(item["collection"]) for item in items if item.get("collection")})
    if available and collection not in available:
        raise CatalogError(
            f"collection {collection!r} not found in catalog {catalog}; available: "
            f"{available[:MAX_LISTED_COLLECTIONS]}. Set `collection` to one of them",
            key="collection",
        )


def _static_catalog_items(location: Path) -> list[StacItem]:
    import pystac

    # A Catalog or a Collection: _read_local_catalog checked the document's type.
    catalog = cast(pystac.Catalog, pystac.read_file(str(location)))
    items = []
    for item in catalog.get_items(recursive=True):
        item.make_asset_hrefs_absolute()
        items.append(item.to_dict(transform_hrefs=False))
    return items


def _absolute_hrefs(item: StacItem, base_uri: str) -> StacItem:
    for asset in item.get("assets", {}).values():
        href = asset.get("href", "")
        if "://" not in href and not href.startswith("/"):
            asset["href"] = urljoin(base_uri, href).removeprefix("file://")
    return item


class ItemTexts:
    """The compact JSON text of each of a fixed set of items (a group's search result), made
    once for all the feature files that list the item: a batch writes each group item into
    the items file of most of its members."""

    def __init__(self, items: Sequence[StacItem]) -> None:
        self._items = items  # kept alive with their texts: the texts are keyed by identity
        self._known = {id(item) for item in items}
        self._texts: dict[int, str] = {}

    def text(self, item: StacItem) -> str:
        """`item` as compact JSON (items not of the set are serialised each time)."""
        key = id(item)
        if key not in self._known:
            return _compact(item)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = _compact(item)
        return text


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def write_item_collection(
    items: Sequence[StacItem],
    path: str | Path,
    search_info: Mapping[str, Any],
    texts: ItemTexts | None = None,
) -> JsonObject:
    """Write a STAC ItemCollection plus a `sitsflow:search` member recording the search;
    returns that member as `read_item_collection` reads it back. `texts`: the items' JSON
    already made (the same file as without)."""
    search = {
        **search_info,
        "n_items": len(items),
        "searched_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # compact: a feature's items file holds every item of its search (0.15 MB for 40
    # Sentinel-2 items), and indenting it takes 4 times the CPU (6.2 against 1.4 ms)
    features = ",".join(texts.text(item) if texts else _compact(item) for item in items)
    document = (
        f'{{"type":"FeatureCollection","features":[{features}],'
        f'"sitsflow:search":{_compact(search)}}}'
    )
    from sitsflow.core.atomic import atomic_write_text

    atomic_write_text(path, document)
    return cast(JsonObject, json.loads(_compact(search)))


def read_item_collection(path: str | Path) -> tuple[list[StacItem], JsonObject]:
    document = json.loads(Path(path).read_text())
    return document["features"], document.get("sitsflow:search", {})
