"""Type aliases for the JSON documents passed around sitsflow.

STAC items, assets, CQL2 expressions and search records are plain parsed JSON: dicts keyed by
strings whose values can be anything JSON holds. The aliases say which document a parameter
is, without pretending to a schema that nothing checks.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
"""Any JSON object: a CQL2 JSON expression, a GeoJSON geometry, a search record, a config."""

StacItem: TypeAlias = dict[str, Any]
"""A STAC Item (a GeoJSON Feature) as parsed JSON."""

StacAsset: TypeAlias = dict[str, Any]
"""One entry of a STAC Item's ``assets``."""
