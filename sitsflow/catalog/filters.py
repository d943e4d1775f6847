"""STAC API item-search filter semantics, implemented in pure Python.

One implementation is shared by the in-process search of local (static) catalogs and by the
test STAC server (:mod:`sitsflow.testing.stac_server`), so both answer a search exactly the
same way.
The semantics follow the STAC API *Item Search* specification and its *Query* extension:

* ``collections`` / ``ids``: membership tests (an empty list or ``None`` means "no filter");
* ``bbox`` / ``intersects``: the item ``geometry`` must intersect the search area (falling back
  to the item ``bbox`` when the geometry is null). They are mutually exclusive;
* ``datetime``: an instant or an interval, inclusive at both ends. Items with ``datetime: null``
  match through their ``start_datetime``/``end_datetime`` range overlapping the search interval;
* ``query``: ``{"prop": {"op": value, ...}, ...}`` where all operators must hold (AND).

All functions raise :class:`ValueError` with a human-readable message on malformed input, which
the server turns into ``400 Bad Request``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import shapely
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

__all__ = [
    "QUERY_OPERATORS",
    "filter_items",
    "item_time_range",
    "matches_query",
    "parse_bbox",
    "parse_datetime",
    "parse_datetime_interval",
    "parse_intersects",
    "validate_query",
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
        start = parse_datetime(text)
        end = parse_datetime(text, end_of_day=True)
        return (start, end)
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


def item_time_range(item: dict) -> DatetimeRange | None:
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


def parse_intersects(value: dict | str) -> BaseGeometry:
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


def _item_geometry(item: dict) -> BaseGeometry | None:
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


def _spatial_predicate(area: BaseGeometry) -> Callable[[dict], bool]:
    """Build an item -> bool intersection test against a (prepared) search area.

    The item ``bbox``, when present and not antimeridian-crossing, is checked first against the
    area bounds: it is cheap and rejects most items of a large archive without building shapes.
    """
    shapely.prepare(area)
    a_minx, a_miny, a_maxx, a_maxy = area.bounds

    def predicate(item: dict) -> bool:
        bounds = _bbox_bounds(item.get("bbox") or [])
        if bounds is not None and bounds[0] <= bounds[2]:
            minx, miny, maxx, maxy = bounds
            if minx > a_maxx or maxx < a_minx or miny > a_maxy or maxy < a_miny:
                return False
        geometry = _item_geometry(item)
        return geometry is not None and area.intersects(geometry)

    return predicate


# --------------------------------------------------------------------------------------------
# query extension
# --------------------------------------------------------------------------------------------


def _comparable(left: Any, right: Any) -> bool:
    """True if the two values may be compared: same kind, and booleans never mix with numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool)
    numbers = (int, float)
    if isinstance(left, numbers) and isinstance(right, numbers):
        return True
    return type(left) is type(right)


def _equal(left: Any, right: Any) -> bool:
    """Type-aware equality (``True`` does not equal ``1``; ``1`` equals ``1.0``)."""
    return _comparable(left, right) and left == right


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Wrap an ordering operator so that incomparable values simply do not match."""

    def test(left: Any, right: Any) -> bool:
        if not _comparable(left, right) or isinstance(left, bool | list | dict | type(None)):
            return False
        return bool(compare(left, right))

    return test


def _op_in(left: Any, right: Any) -> bool:
    """``in``: the property equals one of the listed values."""
    return any(_equal(left, candidate) for candidate in right)


def _op_starts_with(left: Any, right: Any) -> bool:
    """``startsWith``: string prefix test."""
    return isinstance(left, str) and left.startswith(right)


def _op_ends_with(left: Any, right: Any) -> bool:
    """``endsWith``: string suffix test."""
    return isinstance(left, str) and left.endswith(right)


def _op_contains(left: Any, right: Any) -> bool:
    """``contains``: substring of a string property, or member of an array property."""
    if isinstance(left, str):
        return isinstance(right, str) and right in left
    if isinstance(left, list):
        return any(_equal(element, right) for element in left)
    return False


QUERY_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _equal,
    "neq": lambda left, right: not _equal(left, right),
    "lt": _ordered(operator.lt),
    "lte": _ordered(operator.le),
    "gt": _ordered(operator.gt),
    "gte": _ordered(operator.ge),
    "in": _op_in,
    "startsWith": _op_starts_with,
    "endsWith": _op_ends_with,
    "contains": _op_contains,
}
"""Query-extension operators: name -> ``test(property_value, operand)``."""


def validate_query(query: Any) -> dict[str, dict[str, Any]]:
    """Check the shape of a query-extension object and return it.

    Raises:
        ValueError: not a mapping of property -> mapping of operator -> operand, an unknown
            operator (named in the message), ``in`` without a list, or a string operator without
            a string operand.
    """
    if not isinstance(query, dict):
        raise ValueError("invalid query: expected an object {property: {operator: value}}")
    for name, ops in query.items():
        if not isinstance(ops, dict) or not ops:
            raise ValueError(f"invalid query for {name!r}: expected {{operator: value}}")
        for op, operand in ops.items():
            if op not in QUERY_OPERATORS:
                known = ", ".join(QUERY_OPERATORS)
                raise ValueError(f"unknown query operator {op!r} for {name!r} (known: {known})")
            if op == "in" and not isinstance(operand, list):
                raise ValueError(f"query operator 'in' for {name!r} needs a list")
            if op in ("startsWith", "endsWith") and not isinstance(operand, str):
                raise ValueError(f"query operator {op!r} for {name!r} needs a string")
    return query


def _lookup(properties: dict, name: str) -> tuple[bool, Any]:
    """Find a property by name, also accepting the ``properties.``-prefixed spelling."""
    if name in properties:
        return True, properties[name]
    if name.startswith("properties.") and name[len("properties.") :] in properties:
        return True, properties[name[len("properties.") :]]
    return False, None


def matches_query(properties: dict, query: dict) -> bool:
    """True if ``properties`` satisfies every operator of a STAC query-extension object.

    A missing property never matches (not even ``neq``), as in STAC API servers backed by a
    search index. Incomparable types (e.g. a string against a number) do not match.

    Raises:
        ValueError: malformed query or unknown operator (see :func:`validate_query`).
    """
    validate_query(query)
    return _matches_validated(properties, query)


def _matches_validated(properties: dict, query: dict) -> bool:
    """:func:`matches_query` without re-validating the query (for use in loops)."""
    for name, ops in query.items():
        found, value = _lookup(properties, name)
        if not found:
            return False
        for op, operand in ops.items():
            if not QUERY_OPERATORS[op](value, operand):
                return False
    return True


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------


def _build_predicates(
    *,
    collections: Sequence[str] | None,
    bbox: Sequence[float] | None,
    intersects: dict | None,
    datetime_range: DatetimeRange,
    query: dict | None,
    ids: Sequence[str] | None,
) -> list[Callable[[dict], bool]]:
    """Validate the search parameters and turn each active one into an item predicate.

    Cheap predicates come first so that expensive geometry tests run on fewer items.
    """
    predicates: list[Callable[[dict], bool]] = []
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

        def in_time(item: dict) -> bool:
            item_range = item_time_range(item)
            return item_range is not None and _overlaps(item_range, datetime_range)

        predicates.append(in_time)
    if query:
        checked = validate_query(query)
        predicates.append(lambda item: _matches_validated(item.get("properties") or {}, checked))
    if bbox is not None:
        predicates.append(_spatial_predicate(parse_bbox(bbox)))
    if intersects is not None:
        predicates.append(_spatial_predicate(parse_intersects(intersects)))
    return predicates


def filter_items(
    items: Iterable[dict],
    *,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    intersects: dict | None = None,
    datetime_range: DatetimeRange = (None, None),
    query: dict | None = None,
    ids: Sequence[str] | None = None,
) -> list[dict]:
    """Return the STAC item dicts that match every given criterion, in input order.

    Args:
        items: STAC item dicts (GeoJSON Features).
        collections: keep items whose ``collection`` is listed (None/empty: no filter).
        bbox: ``[minx, miny, maxx, maxy]`` (or 3D) in EPSG:4326; west > east crosses the
            antimeridian.
        intersects: GeoJSON geometry the item footprint must intersect.
        datetime_range: inclusive ``(start, end)``, e.g. from :func:`parse_datetime_interval`;
            ``None`` ends are open.
        query: STAC query-extension object, see :func:`matches_query`.
        ids: keep items whose ``id`` is listed (None/empty: no filter).

    Raises:
        ValueError: invalid parameters (bad bbox/geometry/query, bbox together with
            intersects, start after end). Raised even when ``items`` is empty.
    """
    predicates = _build_predicates(
        collections=collections,
        bbox=bbox,
        intersects=intersects,
        datetime_range=datetime_range,
        query=query,
        ids=ids,
    )
    return [item for item in items if all(predicate(item) for predicate in predicates)]
