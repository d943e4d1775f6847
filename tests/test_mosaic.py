"""Mask, then mosaic (sitsflow/pixels/mosaic.py) and invalid DNs (sitsflow/pixels/values.py),
on small hand-made arrays whose right answers are known."""

from __future__ import annotations

from collections import Counter

import numpy as np

from sitsflow.pixels.mask import clear_pixels
from sitsflow.pixels.mosaic import mosaic_by_solar_day, mosaic_order
from sitsflow.pixels.stack import ItemStack
from sitsflow.pixels.values import invalid_values, mark_invalid, to_reflectance

CLOUD, CLEAR = 9.0, 4.0


def item(item_id: str, when: str, cloud: float) -> dict:
    asset = {"sitsflow:scale": 1e-4, "sitsflow:offset": -0.1}
    return {
        "id": item_id,
        "properties": {"datetime": when, "eo:cloud_cover": cloud},
        "assets": {"B04": dict(asset), "B08": dict(asset), "SCL": {}},
    }


def test_each_pixel_takes_every_band_and_its_class_from_one_clear_item():
    """Two tiles of one pass over the same 1 x 3 pixels, with disagreeing SCL. A covers all
    three pixels, B two (its third is no data), so A comes first. Pixel 0: A cloudy, B clear ->
    B. Pixel 1: both clear -> A. Pixel 2: A cloudy, B no data -> A's class, not observed."""
    items = [item("A", "2024-05-01T10:30:00Z", 50), item("B", "2024-05-01T10:30:05Z", 10)]
    nan = np.nan
    reflectance = np.array(
        [
            [[[0.10, 0.11, 0.12]], [[0.30, 0.31, 0.32]]],  # A: B04, B08
            [[[0.20, 0.21, nan]], [[0.40, 0.41, nan]]],  # B
        ],
        dtype=np.float32,
    )
    classification = np.array([[[CLOUD, CLEAR, CLOUD]], [[CLEAR, CLEAR, nan]]], np.float32)
    clear = clear_pixels(classification, (0, 1, 3, 8, 9, 10)) & np.isfinite(reflectance).all(1)
    mosaic = mosaic_by_solar_day(reflectance, classification, clear, items, longitude=5.0)
    assert len(mosaic.times) == 1
    np.testing.assert_array_equal(mosaic.observed[0, 0], [True, True, False])
    np.testing.assert_array_equal(mosaic.classification[0, 0], [CLEAR, CLEAR, CLOUD])
    np.testing.assert_array_equal(mosaic.reflectance[0, :, 0, 0], reflectance[1, :, 0, 0])  # B
    np.testing.assert_array_equal(mosaic.reflectance[0, :, 0, 1], reflectance[0, :, 0, 1])  # A
    assert np.isnan(mosaic.reflectance[0, :, 0, 2]).all()
    assert mosaic.step_items == [[{"id": "A", "pixels": 2}, {"id": "B", "pixels": 1}]]


def test_a_day_of_one_item_gives_the_pixels_it_has_data_for():
    """One item a day: every pixel where it has data (clear or not) comes from it and is
    counted in `step_items`; a day where it has none lists no item."""
    items = [item("A", "2024-05-01T10:30:00Z", 50), item("B", "2024-05-06T10:30:00Z", 10)]
    nan = np.nan
    reflectance = np.array(
        [
            [[[0.10, 0.11, nan]], [[0.30, 0.31, nan]]],  # A: data in two pixels
            [[[nan, nan, nan]], [[nan, nan, nan]]],  # B: none
        ],
        dtype=np.float32,
    )
    classification = np.array([[[CLOUD, CLEAR, nan]], [[nan, nan, nan]]], np.float32)
    clear = clear_pixels(classification, (0, 1, 3, 8, 9, 10)) & np.isfinite(reflectance).all(1)
    mosaic = mosaic_by_solar_day(reflectance, classification, clear, items, longitude=5.0)
    assert mosaic.step_items == [[{"id": "A", "pixels": 2}], []]
    np.testing.assert_array_equal(mosaic.observed[:, 0], [[False, True, False], [False] * 3])


def test_order_within_a_day():
    items = [item("c", "t2", 5), item("b", "t1", 30), item("a", "t1", 30), item("d", "t0", 1)]
    coverage = np.array([10, 20, 20, 5])
    # most coverage first, then lower cloud cover, then earlier, then id
    assert mosaic_order(items, [0, 1, 2, 3], coverage) == [2, 1, 0, 3]


def test_days_are_solar_days_at_the_feature():
    items = [item("x", "2024-05-01T23:50:00Z", 0), item("y", "2024-05-02T00:10:00Z", 0)]
    layers = np.ones((2, 1, 1, 1), np.float32)
    classes = np.full((2, 1, 1), CLEAR, np.float32)
    clear = np.ones((2, 1, 1), bool)
    one_pass = mosaic_by_solar_day(layers, classes, clear, items, longitude=-100.0)
    assert len(one_pass.times) == 1  # both 2024-05-01 in local solar time at 100 W
    assert one_pass.times[0] == np.datetime64("2024-05-01T23:50:00")


def test_items_declaring_other_nodata_are_marked_each_by_its_own():
    """Items of one band with the same invalid values are marked in one pass, those with
    their own each by theirs (an archive mixing files with and without a nodata tag)."""
    items = [item(name, "2024-05-01T10:30:00Z", 0) for name in "ABC"]
    items[1]["assets"]["B04"] = {"raster:bands": [{"nodata": 7}]}
    data = np.array([[[[0, 7, 65535]]], [[[0, 7, 65535]]], [[[7, 7, 1]]]], np.float32)
    stack = ItemStack(data, items, ["B04"], {"B04": Counter()})
    assert mark_invalid(stack) == {"B04": 2 + 3 + 0}
    np.testing.assert_array_equal(np.isnan(stack.data[:, 0, 0]), [[1, 0, 1], [1, 1, 1], [0, 0, 0]])


def test_reserved_and_declared_dns_are_invalid_without_a_file_tag():
    assert invalid_values({}, "B04") == [0, 65535]
    assert invalid_values({"raster:bands": [{"nodata": 7}]}, "B04") == [0, 7, 65535]
    assert invalid_values({"raster:bands": [{"nodata": 0}]}, "SCL") == [0]
    items = [item("A", "2024-05-01T10:30:00Z", 0)]
    data = np.array([[[[0, 65535, 2500]], [[1500, 3000, 0]], [[0, 4, 9]]]], np.float32)
    stack = ItemStack(data, items, ["B04", "B08", "SCL"], {"B04": Counter()})
    assert mark_invalid(stack) == {"B04": 2, "B08": 1, "SCL": 1}
    to_reflectance(stack, ["B04", "B08"])
    np.testing.assert_allclose(stack.data[0, 0, 0], [np.nan, np.nan, 0.15], rtol=1e-6)
    np.testing.assert_allclose(stack.data[0, 1, 0], [0.05, 0.2, np.nan], rtol=1e-6)
    np.testing.assert_array_equal(stack.data[0, 2, 0], [np.nan, 4, 9])


def _mosaic_pixel_by_pixel(reflectance, classification, clear, order):
    """One day's mosaic by its definition (module docstring), pixel by pixel: the oracle."""
    bands, height, width = reflectance.shape[1:]
    out = np.full((bands, height, width), np.nan, np.float32)
    classes = np.full((height, width), np.nan, np.float32)
    observed = np.zeros((height, width), bool)
    for y in range(height):
        for x in range(width):
            clear_here = [i for i in order if clear[i, y, x]]
            with_data = [i for i in order if np.isfinite(classification[i, y, x])]
            if clear_here:
                out[:, y, x] = reflectance[clear_here[0], :, y, x]
                classes[y, x] = classification[clear_here[0], y, x]
                observed[y, x] = True
            elif with_data:
                classes[y, x] = classification[with_data[0], y, x]
    return out, classes, observed


def test_a_random_mosaic_matches_its_definition_pixel_by_pixel():
    """Days of one to four overlapping items, with no-data edges, clouds and disagreeing
    classes: every pixel's values, class and observed flag as the definition says."""
    random = np.random.default_rng(3)
    days = [1, 1, 2, 2, 2, 3, 4, 4, 4, 4]
    items = [
        item(f"i{n}", f"2024-05-0{day}T10:30:{n:02d}Z", float(random.integers(0, 100)))
        for n, day in enumerate(days)
    ]
    count, height, width = len(items), 9, 7
    reflectance = random.random((count, 3, height, width)).astype(np.float32)
    classification = random.choice([CLOUD, CLEAR, 8.0, np.nan], (count, height, width))
    classification = classification.astype(np.float32)
    reflectance[np.isnan(np.broadcast_to(classification[:, None], reflectance.shape))] = np.nan
    clear = classification == CLEAR
    mosaic = mosaic_by_solar_day(reflectance, classification, clear, items, longitude=8.0)
    coverage = np.isfinite(classification).sum(axis=(1, 2))
    assert len(mosaic.days) == 4
    for step, day in enumerate(sorted(set(days))):
        members = [n for n, d in enumerate(days) if d == day]
        order = mosaic_order(items, members, coverage)
        out, classes, observed = _mosaic_pixel_by_pixel(reflectance, classification, clear, order)
        np.testing.assert_array_equal(mosaic.reflectance[step], out)
        np.testing.assert_array_equal(mosaic.classification[step], classes)
        np.testing.assert_array_equal(mosaic.observed[step], observed)
        taken = Counter()
        for y in range(height):
            for x in range(width):
                source = next(
                    (i for i in order if clear[i, y, x]),
                    next((i for i in order if np.isfinite(classification[i, y, x])), None),
                )
                if source is not None:
                    taken[items[source]["id"]] += 1
        assert {e["id"]: e["pixels"] for e in mosaic.step_items[step]} == dict(taken)
