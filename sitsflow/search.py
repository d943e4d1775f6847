"""Find the items covering one feature: a STAC API search, or the same filters on a local file.

Both paths return plain item dicts with absolute asset hrefs, unsigned (signing, where a
provider needs it, happens when pixels are read, so tokens never land in results/).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, time
from pathlib import Path
from urllib.parse import urljoin

from sitsflow.errors import CatalogError, InputError
from sitsflow.stac_filter import filter_items

log = logging.getLogger(__name__)

RETRY_STATUS = (429, 500, 502, 503, 504)
PAGE_LIMIT = 100


def is_remote(catalog: str) -> bool:
    return catalog.startswith(("http://", "https://"))


def datetime_range(start: str | date, end: str | date) -> tuple[datetime, datetime]:
    """`start`..`end` as aware UTC datetimes, the end day included up to its last microsecond."""
    first = date.fromisoformat(str(start))
    last = date.fromisoformat(str(end))
    return (datetime.combine(first, time.min, UTC), datetime.combine(last, time.max, UTC))


def search(
    catalog: str,
    *,
    collection: str,
    bbox: list[float],
    start: str | date,
    end: str | date,
    query: dict | None = None,
) -> list[dict]:
    """Items of `collection` intersecting `bbox` (EPSG:4326) in [start, end], sorted by time."""
    begin, finish = datetime_range(start, end)
    if is_remote(catalog):
        items = _search_api(catalog, collection, bbox, begin, finish, query)
    else:
        items = filter_items(
            _read_local_catalog(catalog),
            collections=[collection],
            bbox=bbox,
            datetime_range=(begin, finish),
            query=query,
        )
    return sorted(items, key=lambda item: (item["properties"].get("datetime") or "", item["id"]))


def _search_api(
    url: str,
    collection: str,
    bbox: list[float],
    begin: datetime,
    finish: datetime,
    query: dict | None,
) -> list[dict]:
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    retry = Retry(
        total=8,
        backoff_factor=0.5,
        status_forcelist=RETRY_STATUS,
        allowed_methods=None,
        respect_retry_after_header=True,
    )
    try:
        client = Client.open(url, stac_io=StacApiIO(max_retries=retry, timeout=60))
    except Exception as exc:
        raise CatalogError(f"cannot open STAC API {url}: {exc}") from exc
    datetime_param = f"{_iso(begin)}/{_iso(finish)}"
    try:
        result = client.search(
            collections=[collection],
            bbox=bbox,
            datetime=datetime_param,
            query=query,
            limit=PAGE_LIMIT,
        )
        return [item.to_dict(transform_hrefs=False) for item in result.items()]
    except Exception as exc:
        raise CatalogError(f"search of {url} (collection {collection!r}) failed: {exc}") from exc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_local_catalog(path: str) -> list[dict]:
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
        raise CatalogError(f"{path} is not an ItemCollection, a list of items or a catalog")
    base = location.resolve().parent
    return [_absolute_hrefs(item, base.as_uri() + "/") for item in features]


def _static_catalog_items(location: Path) -> list[dict]:
    import pystac

    catalog = pystac.read_file(str(location))
    items = []
    for item in catalog.get_items(recursive=True):
        item.make_asset_hrefs_absolute()
        items.append(item.to_dict(transform_hrefs=False))
    return items


def _absolute_hrefs(item: dict, base_uri: str) -> dict:
    for asset in item.get("assets", {}).values():
        href = asset.get("href", "")
        if "://" not in href and not href.startswith("/"):
            asset["href"] = urljoin(base_uri, href).removeprefix("file://")
    return item


def write_item_collection(items: list[dict], path: str | Path, search_info: dict) -> None:
    """Write a STAC ItemCollection plus a `sitsflow:search` member recording the search."""
    document = {
        "type": "FeatureCollection",
        "features": items,
        "sitsflow:search": {
            **search_info,
            "n_items": len(items),
            "searched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    from sitsflow.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(document, indent=1))


def read_item_collection(path: str | Path) -> tuple[list[dict], dict]:
    document = json.loads(Path(path).read_text())
    return document["features"], document.get("sitsflow:search", {})
