"""Transformers built inside a job's `area_of_interest` are faster to build and must give the
coordinates the area-less ones give, for the datum shifts a feature's grid meets (ETRS89 LAEA,
UTM, Lambert-93, Conus Albers on NAD83)."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS, Transformer

from sitsflow.core.projection import _AREA, area_of_interest, transformer

CASES = [
    # (lon, lat) of a feature, (source EPSG, target EPSG)
    ((8.49, 49.85), (4326, 3035)),
    ((8.49, 49.85), (3035, 4326)),
    ((8.49, 49.85), (3035, 32632)),
    ((-1.25, 44.55), (4326, 2154)),
    ((-1.25, 44.55), (2154, 32630)),
    ((-98.5, 39.0), (4326, 5070)),
    ((25.0, 60.2), (3035, 32635)),
    ((179.7, -16.5), (4326, 32660)),
]


@pytest.mark.parametrize(("where", "pair"), CASES)
def test_an_area_changes_no_coordinate(where, pair):
    lon, lat = where
    source, target = (CRS.from_epsg(code) for code in pair)
    rng = np.random.default_rng(0)
    lons, lats = lon + rng.uniform(-0.2, 0.2, 5000), lat + rng.uniform(-0.2, 0.2, 5000)
    to_source = Transformer.from_crs(CRS.from_epsg(4326), source, always_xy=True)
    xs, ys = to_source.transform(lons, lats)
    anywhere = Transformer.from_crs(source, target, always_xy=True).transform(xs, ys)
    with area_of_interest((lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)):
        assert _AREA.get() is not None
        here = transformer(source, target).transform(xs, ys)
    assert _AREA.get() is None
    np.testing.assert_array_equal(here[0], anywhere[0])
    np.testing.assert_array_equal(here[1], anywhere[1])


def test_the_area_is_widened_to_whole_degrees_and_bounded():
    with area_of_interest((8.49, 49.85, 8.51, 49.86)):
        assert _AREA.get() == (7.0, 48.0, 10.0, 51.0)
    with area_of_interest((179.6, -89.9, 179.9, -89.5)):
        assert _AREA.get() == (178.0, -90.0, 180.0, -88.0)


def test_a_transformer_by_epsg_codes_is_the_one_of_the_same_crss_and_made_once():
    """`epsg_transformer` (what a batch asks for a few times per feature) transforms as
    `transformer` of the same CRSs in the same area, and is made once per codes and area."""
    from sitsflow.core.projection import epsg_transformer

    xs, ys = np.array([8.49, 8.51]), np.array([49.85, 49.86])
    with area_of_interest((8.49, 49.85, 8.51, 49.86)):
        by_codes = epsg_transformer(4326, 32632)
        assert epsg_transformer(4326, 32632) is by_codes
        expected = transformer(CRS.from_epsg(4326), CRS.from_epsg(32632)).transform(xs, ys)
    np.testing.assert_array_equal(by_codes.transform(xs, ys), expected)
    assert epsg_transformer(4326, 32632) is not by_codes  # outside the area: another one
