"""Shared pytest fixtures: paths to recorded STAC fixtures and a loader for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent
STAC_FIXTURES = TESTS / "fixtures" / "stac"


def load_items(relative: str) -> list[dict]:
    """Items of a recorded STAC response / item collection / single item under fixtures/stac."""
    data = json.loads((STAC_FIXTURES / relative).read_text())
    if isinstance(data, list):
        return data
    if data.get("type") == "Feature":
        return [data]
    return data["features"]


@pytest.fixture
def fixture_items():
    return load_items
