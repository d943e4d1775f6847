"""STAC API item-search filter semantics: Python for space and time, cql2 for properties.

One implementation is shared by the in-process search of local (static) catalogs and by the
test STAC server (:mod:`sitsflow.testing.stac_server`), so both answer a search exactly the
same way.
The semantics follow the STAC API *Item Search* specification and its *Query* and *Filter*
extensions:

* ``collections`` / ``ids``: membership tests (an empty list or ``None`` means "no filter");
* ``bbox`` / ``intersects``: the item ``geometry`` must intersect the search area (falling back
  to the item ``bbox`` when the geometry is null). They are mutually exclusive;
* ``datetime``: an instant or an interval, inclusive at both ends. Items with ``datetime: null``
  match through their ``start_datetime``/``end_datetime`` range overlapping the search interval;
* ``query``: ``{"prop": {"op": value, ...}, ...}`` where all operators must hold (AND),
  translated to CQL2 by :func:`query_to_cql2`;
* ``filter``: a CQL2 expression, as CQL2 JSON (a dict) or CQL2 text (a string).

``query`` and ``filter`` are evaluated by the ``cql2`` package. An item matches only when the
expression is TRUE for it: a missing property, a comparison of different types (a string with
a number) or a NULL is no match, as in the STAC APIs built on a database. Collections, ids,
space and time are tested in Python first: cheap tests that leave few items for the CQL2 match,
which costs microseconds per item.

All functions raise :class:`ValueError` with a human-readable message on malformed input, which
the server turns into ``400 Bad Request``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

import cql2
import shapely
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from sitsflow.core.types import JsonObject, StacItem

__all__ = [
    "QUERY_OPERATORS",
    "filter_items",
    "item_time_range",
    "parse_bbox",
    "parse_datetime",
    "parse_datetime_interval",
    "parse_filter",
    "parse_intersects",
    "query_to_cql2",
]

DatetimeRange = tuple[datetime | None, datetime | None]

_OPEN_BOUNDS = {"", ".."}
_END_OF_DAY = timedelta(days=1) - timedelta(microseconds=1)

# --------------------------------------------------------------------------------------------
# datetime
# --------------------------------------------------------------------------------------------


def _is_date_only(text: str) -> bool:
    """True for a bare calendar date such as ``2024-01-31`` (no time part)."""
    return len(text) == 10 and "T" not in text.upper()


def parse_datetime(value: str, *, end_of_day: bool = False) -> datetime:
    """Parse one RFC 3339 / ISO 8601 timestamp into an aware UTC datetime.

    Accepts ``Z`` or numeric offsets, lower-case ``t``/``z``, fractional seconds of any
    precision (truncated to microseconds) and bare dates. A timestamp without an offset is taken
    as UTC. A bare date means the start of that day, or its last microsecond when
    ``end_of_day`` is true, so that ``2024-01-01/2024-01-31`` covers the whole of January 31.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty datetime")
    if _is_date_only(text):
        try:
            day = date.fromisoformat(text)
        except ValueError as err:
            raise ValueError(f"invalid datetime {value!r}: {err}") from None
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return start + _END_OF_DAY if end_of_day else start
    normalized = text[:10] + text[10:].upper()
    try:
        parsed = datetime.fromisoformat(normalized)
    except ValueError as err:
        raise ValueError(f"invalid datetime {value!r}: {err}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_datetime_interval(value: str | None) -> DatetimeRange:
    """Parse the STAC API ``datetime`` parameter into an inclusive ``(start, end)`` pair.

    Supported forms: a single instant (``2024-01-05T10:00:00Z``; a bare date ``2024-01-05``
    means that whole day), closed intervals ``a/b``, and half-open intervals ``../b``, ``a/..``,
    ``a/`` and ``/b``. ``None`` or an empty string means "no temporal filter" and gives
    ``(None, None)``. A bare date as the end bound extends to the end of that day.

    Raises:
        ValueError: malformed timestamps, more than one ``/``, a fully open interval
            (``../..``), or start after end.
    """
    if value is None or not value.strip():
        return (None, None)
    text = value.strip()
    parts = text.split("/")
    if len(parts) == 1:
        return (parse_datetime(text), parse_datetime(text, end_of_day=True))
    if len(parts) != 2:
        raise ValueError(f"invalid datetime interval {value!r}: expected at most one '/'")
    raw_start, raw_end = (part.strip() for part in parts)
    if raw_start in _OPEN_BOUNDS and raw_end in _OPEN_BOUNDS:
        raise ValueError(f"invalid datetime interval {value!r}: both ends are open")
    start = None if raw_start in _OPEN_BOUNDS else parse_datetime(raw_start)
    end = None if raw_end in _OPEN_BOUNDS else parse_datetime(raw_end, end_of_day=True)
    if start is not None and end is not None and start > end:
        raise ValueError(f"invalid datetime interval {value!r}: start is after end")
    return (start, end)


def item_time_range(item: StacItem) -> DatetimeRange | None:
    """Return the ``(start, end)`` time covered by an item, or ``None`` if it has none.

    Uses ``properties.datetime`` when set (start == end), else ``start_datetime`` /
    ``end_datetime`` (either may be missing, meaning open-ended). Unparseable values count as
    missing, so one bad item does not break a whole search.
    """
    props = item.get("properties") or {}
    try:
        if props.get("datetime"):
            instant = parse_datetime(str(props["datetime"]))
            return (instant, instant)
        start_raw, end_raw = props.get("start_datetime"), props.get("end_datetime")
        if not start_raw and not end_raw:
            return None
        start = parse_datetime(str(start_raw)) if start_raw else None
        end = parse_datetime(str(end_raw)) if end_raw else None
    except ValueError:
        return None
    return (start, end)


def _overlaps(item_range: DatetimeRange, search: DatetimeRange) -> bool:
    """Inclusive overlap test of two intervals where ``None`` means unbounded."""
    item_start, item_end = item_range
    search_start, search_end = search
    if search_end is not None and item_start is not None and item_start > search_end:
        return False
    return not (search_start is not None and item_end is not None and item_end < search_start)


# --------------------------------------------------------------------------------------------
# space
# --------------------------------------------------------------------------------------------


def parse_bbox(value: Sequence[float] | str) -> BaseGeometry:
    """Validate a STAC ``bbox`` (2D or 3D, EPSG:4326) and return it as a shapely geometry.

    Accepts a sequence of numbers or the comma-separated GET form. A box whose west edge is
    greater than its east edge crosses the antimeridian and becomes a two-part MultiPolygon.

    Raises:
        ValueError: wrong number of values, non-numeric values, south > north or latitudes
            outside [-90, 90].
    """
    raw = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [float(v) for v in raw]
    except (TypeError, ValueError):
        raise ValueError(f"invalid bbox {value!r}: values must be numbers") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    elif len(numbers) != 4:
        raise ValueError(f"invalid bbox {value!r}: expected 4 or 6 numbers, got {len(raw)}")
    west, south, east, north = numbers
    if not all(map(_is_finite, numbers)):
        raise ValueError(f"invalid bbox {value!r}: values must be finite")
    if south > north:
        raise ValueError(f"invalid bbox {value!r}: south ({south}) is greater than north")
    if south < -90 or north > 90:
        raise ValueError(f"invalid bbox {value!r}: latitude outside [-90, 90]")
    return _lonlat_box(west, south, east, north)


def _lonlat_box(west: float, south: float, east: float, north: float) -> BaseGeometry:
    """A lon/lat box; when west > east it crosses the antimeridian and is split in two."""
    if west > east:
        return shapely.MultiPolygon(
            [box(west, south, 180.0, north), box(-180.0, south, east, north)]
        )
    return box(west, south, east, north)


def _is_finite(number: float) -> bool:
    """True unless the number is NaN or infinite."""
    return number == number and abs(number) != float("inf")


def parse_intersects(value: JsonObject | str) -> BaseGeometry:
    """Validate a GeoJSON geometry (dict, or its JSON text for GET) into a shapely geometry.

    Raises:
        ValueError: not a GeoJSON geometry object, or coordinates shapely cannot build.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"invalid intersects: not JSON ({err})") from None
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError("invalid intersects: expected a GeoJSON geometry object")
    if value["type"] in ("Feature", "FeatureCollection"):
        raise ValueError("invalid intersects: expected a GeoJSON geometry, not a Feature")
    try:
        geometry = shape(value)
    except Exception as err:  # shapely raises several types for malformed coordinates
        raise ValueError(f"invalid intersects geometry: {err}") from None
    if geometry.is_empty:
        raise ValueError("invalid intersects: empty geometry")
    return geometry


def _bbox_bounds(bbox: Sequence[float]) -> tuple[float, float, float, float] | None:
    """Return 2D ``(minx, miny, maxx, maxy)`` from a 2D/3D item bbox, or None if malformed."""
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return None
    if len(values) == 6:
        return (values[0], values[1], values[3], values[4])
    if len(values) == 4:
        return (values[0], values[1], values[2], values[3])
    return None


def _item_geometry(item: StacItem) -> BaseGeometry | None:
    """The item footprint: its ``geometry`` if set, else a box from its ``bbox``, else None."""
    geometry = item.get("geometry")
    if geometry:
        try:
            return shape(geometry)
        except Exception:  # a malformed item never matches a spatial filter
            return None
    bounds = _bbox_bounds(item.get("bbox") or [])
    if bounds is None:
        return None
    west, south, east, north = bounds
    return _lonlat_box(west, south, east, north)


def _spatial_predicates(area: BaseGeometry | None) -> tuple[Callable[[StacItem], bool], ...]:
    """Two item tests against a search area (none without one): a cheap one, the exact one.

    The first compares the item ``bbox``, when present and not antimeridian-crossing, with the
    area bounds: it rejects most items of a large archive without building shapes. The second
    intersects the (prepared) area with the item footprint.
    """
    if area is None:
        return ()
    shapely.prepare(area)
    a_minx, a_miny, a_maxx, a_maxy = area.bounds

    def near(item: StacItem) -> bool:
        bounds = _bbox_bounds(item.get("bbox") or [])
        if bounds is None or bounds[0] > bounds[2]:
            return True
        minx, miny, maxx, maxy = bounds
        return not (minx > a_maxx or maxx < a_minx or miny > a_maxy or maxy < a_miny)

    def intersects(item: StacItem) -> bool:
        geometry = _item_geometry(item)
        return geometry is not None and area.intersects(geometry)

    return near, intersects


# --------------------------------------------------------------------------------------------
# query and filter: CQL2
# --------------------------------------------------------------------------------------------

_COMPARISONS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
QUERY_OPERATORS = (*_COMPARISONS, "in", "startsWith", "endsWith", "contains")
"""The Query-extension operators :func:`query_to_cql2` translates."""

_FILTER_LANGS = ("cql2-text", "cql2-json")


def _query_comparison(name: str, op: str, operand: Any) -> JsonObject:
    """One ``{op: operand}`` of the query object for property `name`, as CQL2 JSON."""
    prop = {"property": name}
    scalar = isinstance(operand, str | int | float)
    if op in _COMPARISONS and scalar:
        return {"op": _COMPARISONS[op], "args": [prop, operand]}
    if op == "in" and isinstance(operand, list):
        return {"op": "in", "args": [prop, operand]}
    if op in ("startsWith", "endsWith", "contains") and isinstance(operand, str):
        escaped = operand.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        before, after = {"startsWith": ("", "%"), "endsWith": ("%", "")}.get(op, ("%", "%"))
        like = {"op": "like", "args": [prop, f"{before}{escaped}{after}"]}
        if op != "contains":
            return like
        # A substring of a string property or a member of an array property: LIKE does not
        # reduce on an array, nor A_CONTAINS on a string, and OR is TRUE if either is.
        return {"op": "or", "args": [like, {"op": "a_contains", "args": [prop, [operand]]}]}
    if op == "contains" and scalar:
        return {"op": "a_contains", "args": [prop, [operand]]}
    if op in QUERY_OPERATORS:
        raise ValueError(f"query operator {op!r} for {name!r}: invalid operand {operand!r}")
    known = ", ".join(QUERY_OPERATORS)
    raise ValueError(f"unknown query operator {op!r} for {name!r} (known: {known})")


def query_to_cql2(query: Any) -> JsonObject:
    """Translate a STAC Query-extension object into the equivalent CQL2 JSON.

    ``{"eo:cloud_cover": {"gte": 10, "lt": 20}, "platform": {"in": ["sentinel-2a"]}}`` becomes
    the AND of ``eo:cloud_cover >= 10``, ``eo:cloud_cover < 20`` and
    ``platform IN ('sentinel-2a')``. ``startsWith``, ``endsWith`` and ``contains`` on a string
    become LIKE patterns (with ``%`` and ``_`` in the operand escaped); ``contains`` also
    matches a member of an array property.

    Raises:
        ValueError: not a mapping of property -> mapping of operator -> operand, an unknown
            operator (named in the message), or an operand of the wrong kind for its operator.
    """
    if not isinstance(query, dict) or not query:
        raise ValueError("invalid query: expected an object {property: {operator: value}}")
    comparisons: list[JsonObject] = []
    for name, ops in query.items():
        if not isinstance(ops, dict) or not ops:
            raise ValueError(f"invalid query for {name!r}: expected {{operator: value}}")
        comparisons.extend(_query_comparison(name, op, operand) for op, operand in ops.items())
    return comparisons[0] if len(comparisons) == 1 else {"op": "and", "args": comparisons}


def parse_filter(value: Any, lang: str | None = None) -> JsonObject:
    """Parse and validate a CQL2 filter; return it as CQL2 JSON.

    `lang` is the Filter extension's ``filter-lang``: ``cql2-text`` (a string) or ``cql2-json``
    (a dict, or its JSON text). Without it a string is CQL2 text and a dict CQL2 JSON.

    Raises:
        ValueError: an unknown language, or a filter that cql2 cannot parse or that fails the
            CQL2 JSON schema (with cql2's message).
    """
    lang = lang or ("cql2-json" if isinstance(value, dict) else "cql2-text")
    if lang not in _FILTER_LANGS:
        raise ValueError(f"unknown filter-lang {lang!r} (known: {', '.join(_FILTER_LANGS)})")
    if lang == "cql2-text" and not isinstance(value, str):
        raise ValueError("invalid filter: cql2-text must be a string")
    if lang == "cql2-json" and not isinstance(value, dict | str):
        raise ValueError("invalid filter: cql2-json must be an object")
    try:
        if isinstance(value, dict):
            expression = cql2.Expr(value)
        else:
            expression = (cql2.parse_text if lang == "cql2-text" else cql2.parse_json)(value)
        expression.validate()
    except Exception as err:  # cql2 raises bare Exceptions (and ValidationError) with its reason
        raise ValueError(f"invalid {lang} filter: {str(err).strip()}") from None
    return expression.to_json()


def _search_expression(query: JsonObject | None, filter: Any = None) -> JsonObject | None:
    """The CQL2 JSON an item must match for `query` and `filter` (both when both are given).

    Raises:
        ValueError: a malformed query or filter (see :func:`query_to_cql2`,
            :func:`parse_filter`).
    """
    parts: list[JsonObject] = []
    if query:
        parts.append(query_to_cql2(query))
    if filter:
        parts.append(parse_filter(filter))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"op": "and", "args": parts}


def _property_roots(node: Any) -> Iterator[str]:
    """The first path segment of every property a CQL2 JSON expression reads."""
    if isinstance(node, dict):
        if isinstance(node.get("property"), str):
            yield node["property"].split(".")[0]
        for child in node.values():
            yield from _property_roots(child)
    elif isinstance(node, list):
        for child in node:
            yield from _property_roots(child)


@lru_cache(maxsize=256)
def _compile(expression_json: str) -> tuple[cql2.Expr, frozenset[str]]:
    """The cql2 expression of a CQL2 JSON text and the item fields it reads, built once."""
    expression = cql2.Expr(json.loads(expression_json))
    return expression, frozenset(_property_roots(expression.to_json()))


def _cql2_predicate(expression: JsonObject) -> Callable[[StacItem], bool]:
    """An item -> bool test: is the CQL2 JSON `expression` TRUE for the item?

    cql2 converts the whole dict it is given, and converting a full item with its assets takes
    ~40 times longer than the match itself; so it gets a flat dict of just the fields the
    expression reads. That dict resolves names as cql2 does on an item: the item's top level
    first, then its ``properties``.
    """
    compiled, roots = _compile(json.dumps(expression, sort_keys=True))

    def predicate(item: StacItem) -> bool:
        properties = item.get("properties") or {}
        view = {}
        for root in roots:
            if root in item:
                view[root] = item[root]
            elif root in properties:
                view[root] = properties[root]
        try:
            return compiled.matches(view)
        except Exception:  # cql2's bare Exception: the expression is not TRUE/FALSE for it
            return False

    return predicate


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------


def _build_predicates(
    *,
    collections: Sequence[str] | None,
    bbox: Sequence[float] | None,
    intersects: JsonObject | None,
    datetime_range: DatetimeRange,
    query: JsonObject | None,
    filter: Any,
    ids: Sequence[str] | None,
) -> list[Callable[[StacItem], bool]]:
    """Validate the search parameters and turn each active one into an item predicate.

    Cheap predicates come first so that the CQL2 match and the geometry tests run on fewer
    items.
    """
    predicates: list[Callable[[StacItem], bool]] = []
    if bbox is not None and intersects is not None:
        raise ValueError("bbox and intersects are mutually exclusive")
    if ids:
        wanted_ids = set(ids)
        predicates.append(lambda item: item.get("id") in wanted_ids)
    if collections:
        wanted_collections = set(collections)
        predicates.append(lambda item: item.get("collection") in wanted_collections)
    if datetime_range != (None, None):
        start, end = datetime_range
        if start is not None and end is not None and start > end:
            raise ValueError("invalid datetime range: start is after end")

        def in_time(item: StacItem) -> bool:
            item_range = item_time_range(item)
            return item_range is not None and _overlaps(item_range, datetime_range)

        predicates.append(in_time)
    area = parse_intersects(intersects) if intersects is not None else None
    spatial = _spatial_predicates(parse_bbox(bbox) if bbox is not None else area)
    predicates.extend(spatial[:1])
    expression = _search_expression(query, filter)
    if expression is not None:
        predicates.append(_cql2_predicate(expression))
    predicates.extend(spatial[1:])
    return predicates


def filter_items(
    items: Iterable[StacItem],
    *,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    intersects: JsonObject | None = None,
    datetime_range: DatetimeRange = (None, None),
    query: JsonObject | None = None,
    filter: Any = None,
    ids: Sequence[str] | None = None,
) -> list[StacItem]:
    """Return the STAC item dicts that match every given criterion, in input order.

    Args:
        items: STAC item dicts (GeoJSON Features).
        collections: keep items whose ``collection`` is listed (None/empty: no filter).
        bbox: ``[minx, miny, maxx, maxy]`` (or 3D) in EPSG:4326; west > east crosses the
            antimeridian.
        intersects: GeoJSON geometry the item footprint must intersect.
        datetime_range: inclusive ``(start, end)``, e.g. from :func:`parse_datetime_interval`;
            ``None`` ends are open.
        query: STAC query-extension object, see :func:`query_to_cql2`.
        filter: CQL2 expression, CQL2 JSON (dict) or CQL2 text (str); items must match it
            and `query`.
        ids: keep items whose ``id`` is listed (None/empty: no filter).

    Raises:
        ValueError: invalid parameters (bad bbox/geometry/query/filter, bbox together with
            intersects, start after end). Raised even when ``items`` is empty.
    """
    predicates = _build_predicates(
        collections=collections,
        bbox=bbox,
        intersects=intersects,
        datetime_range=datetime_range,
        query=query,
        filter=filter,
        ids=ids,
    )
    return [item for item in items if all(predicate(item) for predicate in predicates)]
