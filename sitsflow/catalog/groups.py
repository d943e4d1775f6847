"""Shared searches: one STAC search per group of nearby features instead of one per feature.

Every Python peer searches per feature: 10 000 field plots are 10 000+ searches, which public
APIs throttle (Earth Search answered "Forbidden" to ~300 parallel searches). sitsflow groups
features by the cell of a lon/lat grid (`stac.group_degrees`, 2 degrees by default: 220 km by
140 km at 50 N) that holds their centroid, and searches once per group over the union of its
members' windows with the run's filters. Each feature then keeps the items whose footprint
meets its own grid and whose solar day is in `start..end` (`sitsflow.catalog.search.
select_items`): the same items as a search of its own window would find.

A feature's group depends only on its own centroid, so adding features never moves another
feature to another group. A group's search is cached under a fingerprint of its window and the
search settings (`results/searches/cache/`), so a rerun searches again only the groups whose
members changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sitsflow.core.features import Feature
    from sitsflow.core.settings import GridSettings, SearchSettings

# Metres per degree of latitude (and of longitude at the equator), for window margins.
METRES_PER_DEGREE = 111_320.0
# Margin added to a window on every side, in grid pixels: snapping the grid outward and the
# grid's densified outline reach at most this far beyond the buffered geometry.
MARGIN_PIXELS = 2


def group_key(longitude: float, latitude: float, degrees: float) -> str:
    """The group of a centroid: its cell of a `degrees` grid, named by the cell's south-west
    corner (`e008n48`, `w004s12`)."""
    west = math.floor(longitude / degrees) * degrees
    south = math.floor(latitude / degrees) * degrees

    def name(value: float, width: int) -> str:  # 8 -> 008, 7.5 -> 007p5 (a file name)
        whole = float(degrees).is_integer()
        text = f"{abs(value):0{width}.0f}" if whole else f"{abs(value):0{width + 2}.1f}"
        return text.replace(".", "p")

    return f"{'e' if west >= 0 else 'w'}{name(west, 3)}{'n' if south >= 0 else 's'}{name(south, 2)}"


def plan_groups(features: Iterable[Feature], degrees: float) -> dict[str, list[str]]:
    """Group -> member ids (in input order); groups sorted by name. `degrees` 0: one group per
    feature, named after it."""
    groups: dict[str, list[str]] = {}
    names: dict[tuple[int, int], str] = {}  # a cell's name, made once per cell
    for feature in features:
        if degrees <= 0:
            key = f"f-{feature.fid}"
        else:
            centroid = feature.geometry.centroid
            cell = (math.floor(centroid.x / degrees), math.floor(centroid.y / degrees))
            key = names.get(cell) or names.setdefault(
                cell, group_key(centroid.x, centroid.y, degrees)
            )
        groups.setdefault(key, []).append(feature.fid)
    return dict(sorted(groups.items()))


def search_window(feature: Feature, grid: GridSettings) -> tuple[float, float, float, float]:
    """A lon/lat box holding the feature's whole cube grid: its geometry's bounds, grown by the
    buffer (points and lines) or half the patch (patch mode) plus a margin, in degrees at the
    box's most poleward latitude. Wider than the grid, never narrower: the search finds every
    item the feature's own search would, and `select_items` keeps those that meet its grid."""
    minx, miny, maxx, maxy = feature.geometry.bounds
    reach = grid.buffer_m if feature.geometry.geom_type not in ("Polygon", "MultiPolygon") else 0.0
    if grid.mode == "patch" and grid.patch_size is not None:
        half_diagonal = math.hypot(*grid.patch_size) / 2 * grid.resolution
        reach = max(reach, half_diagonal)
    reach += MARGIN_PIXELS * grid.resolution
    latitude = min(max(abs(miny), abs(maxy)), 89.0)
    dy = reach / METRES_PER_DEGREE
    dx = reach / (METRES_PER_DEGREE * math.cos(math.radians(latitude)))
    return (
        max(minx - dx, -180.0),
        max(miny - dy, -90.0),
        min(maxx + dx, 180.0),
        min(maxy + dy, 90.0),
    )


def union_window(
    windows: Sequence[tuple[float, float, float, float]],
) -> tuple[float, float, float, float]:
    """The bounding box of `windows`, rounded outward to 1e-6 degree (stable fingerprints)."""

    def down(value: float) -> float:
        return math.floor(value * 1e6) / 1e6

    def up(value: float) -> float:
        return math.ceil(value * 1e6) / 1e6

    return (
        down(min(w[0] for w in windows)),
        down(min(w[1] for w in windows)),
        up(max(w[2] for w in windows)),
        up(max(w[3] for w in windows)),
    )


def search_fingerprint(
    window: Sequence[float], search: SearchSettings, first: str, last: str
) -> str:
    """What a group's search result depends on: the catalog, the filters, the UTC days searched
    and the window."""
    text = json.dumps(
        [search.catalog, search.collection, search.query, search.filter, first, last, window],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def group_windows(
    groups: Mapping[str, Sequence[str]],
    features: Mapping[str, Feature],
    grid: GridSettings,
) -> dict[str, tuple[float, float, float, float]]:
    """Each group's search window: the union of its members' `search_window`s."""
    return {
        group: union_window([search_window(features[fid], grid) for fid in members])
        for group, members in groups.items()
    }
