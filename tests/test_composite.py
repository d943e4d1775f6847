"""The regular time axis of `time_step` (sitsflow/pixels/timeaxis.py) and the composites of its
intervals (sitsflow/pixels/composite.py), on small hand-made series whose answers are worked
out by hand in the comments."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from sitsflow.pixels.composite import composite_mosaic, composite_steps, count_dtype
from sitsflow.pixels.mask import clear_pixels
from sitsflow.pixels.mosaic import Mosaic, mosaic_by_solar_day
from sitsflow.pixels.timeaxis import parse_duration, regular_axis

CLEAR, VEGETATION, WATER, CLOUD = 4.0, 4.0, 6.0, 9.0
nan = np.nan

# ---- the time axis --------------------------------------------------------------------------


def test_ten_day_intervals_start_at_start_and_are_labelled_by_their_start():
    axis = regular_axis("2022-01-10", "2022-03-10", "P10D")
    # 01-10, +10 days each, while the start is on or before 03-10
    assert axis.starts == tuple(
        date(2022, m, d) for m, d in [(1, 10), (1, 20), (1, 30), (2, 9), (2, 19), (3, 1)]
    )
    assert axis.ends[-1] == date(2022, 3, 11)  # the last interval runs past `end`
    assert axis.ends[:-1] == axis.starts[1:]
    expected = ["2022-01-10", "2022-01-20", "2022-01-30", "2022-02-09", "2022-02-19", "2022-03-01"]
    np.testing.assert_array_equal(axis.times, np.array(expected, dtype="datetime64[ns]"))
    assert axis.longest_days == 10


def test_monthly_intervals_count_calendar_months_from_start():
    axis = regular_axis("2024-01-31", "2024-05-01", "P1M")
    # from 31 January: 29 February (a leap year), then 31 March, not 29 March
    assert axis.starts == (
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
    )
    assert axis.ends == (date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30), date(2024, 5, 31))
    year = regular_axis("2023-01-01", "2023-12-31", "P1M")
    assert [start.month for start in year.starts] == list(range(1, 13))
    assert {start.day for start in year.starts} == {1}
    assert year.longest_days == 31 and year.ends[-1] == date(2024, 1, 1)


def test_weeks_are_seven_days_and_a_single_day_axis_has_one_interval():
    axis = regular_axis("2024-03-04", "2024-03-31", "P2W")
    assert axis.starts == (date(2024, 3, 4), date(2024, 3, 18))
    assert axis.longest_days == 14
    one = regular_axis("2024-03-04", "2024-03-04", "P16D")
    assert one.starts == (date(2024, 3, 4),) and one.ends == (date(2024, 3, 20),)


def test_days_fall_into_the_interval_that_holds_them():
    axis = regular_axis("2024-01-01", "2024-01-25", "P10D")  # 01-01, 01-11, 01-21 .. 01-31
    days = [
        date(2023, 12, 31),  # before the axis
        date(2024, 1, 1),  # an interval's first day belongs to it
        date(2024, 1, 10),  # its last day too
        date(2024, 1, 11),
        date(2024, 1, 30),
        date(2024, 1, 31),  # the day after the last interval
    ]
    np.testing.assert_array_equal(axis.index_of(days), [-1, 0, 0, 1, 2, -1])
    assert axis.index_of([]).shape == (0,)


@pytest.mark.parametrize("text", ["P1Y", "PT12H", "P1M15D", "P0D", "10D", "P1.5D", "", "p10d"])
def test_unsupported_durations_are_refused(text):
    with pytest.raises(ValueError, match="not a supported duration"):
        parse_duration(text)


def test_supported_durations():
    assert [parse_duration(t).iso for t in ("P5D", "P16D", "P2W", "P1M", "P12M")] == [
        "P5D", "P16D", "P2W", "P1M", "P12M",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="ends .* before it starts"):
        regular_axis("2024-02-01", "2024-01-01", "P10D")


def test_the_count_fits_the_longest_interval():
    assert count_dtype(31) is np.uint8 and count_dtype(255) is np.uint8
    assert count_dtype(366) is np.uint16


# ---- one interval's composite ---------------------------------------------------------------
#
# Three solar days of one interval, bands B04 (red) and B08 (near infrared), 1 x 3 pixels:
#
#   pixel 0, clear on every day:   B04 0.10 0.05 0.20   B08 0.50 0.60 0.90   class 4 6 4
#            NDVI = (B08 - B04) / (B08 + B04) = 0.667 0.846 0.636: the highest on day 1
#   pixel 1, cloudy on day 0:      B04 (0.90) 0.30 0.10 B08 (0.95) 0.40 0.50 class 9 4 6
#            NDVI on the clear days 1 and 2: 0.143 and 0.667: the highest on day 2
#   pixel 2, never clear:          no reflectance       class nan 8 9
#
# median: pixel 0 B04 median(0.10, 0.05, 0.20) = 0.10, B08 median(0.5, 0.6, 0.9) = 0.60, class
#         4 (twice); pixel 1 B04 (0.30 + 0.10) / 2 = 0.20, B08 (0.40 + 0.50) / 2 = 0.45, class
#         4 and 6 once each: the lower, 4 (the cloudy day's 9 does not count).
# first:  pixel 0 from day 0 (0.10, 0.50, class 4); pixel 1 from day 1 (0.30, 0.40, class 4).
# max_ndvi: pixel 0 from day 1 (0.05, 0.60, class 6); pixel 1 from day 2 (0.10, 0.50, class 6).
# Every method: pixel 2 has no value, the class of its first day with data (8), a count of 0;
# the counts are 3 and 2.

REFLECTANCE = np.array(
    [
        [[[0.10, 0.90, nan]], [[0.50, 0.95, nan]]],  # day 0: B04, B08
        [[[0.05, 0.30, nan]], [[0.60, 0.40, nan]]],  # day 1
        [[[0.20, 0.10, nan]], [[0.90, 0.50, nan]]],  # day 2
    ],
    dtype=np.float32,
)
CLASSES = np.array(
    [[[CLEAR, CLOUD, nan]], [[WATER, CLEAR, 8.0]], [[CLEAR, WATER, CLOUD]]], np.float32
)
OBSERVED = np.array([[[True, False, False]], [[True, True, False]], [[True, True, False]]])

EXPECTED = {  # method: (B04, B08, class) of pixels 0 and 1
    "median": ([0.10, 0.20], [0.60, 0.45], [CLEAR, CLEAR]),
    "first": ([0.10, 0.30], [0.50, 0.40], [CLEAR, CLEAR]),
    "max_ndvi": ([0.05, 0.10], [0.60, 0.50], [WATER, WATER]),
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_each_method_composites_the_clear_observations(method):
    values, classes, count, used = composite_steps(
        REFLECTANCE, CLASSES, OBSERVED, method, ndvi_bands=(0, 1)
    )
    red, nir, expected_classes = EXPECTED[method]
    np.testing.assert_allclose(values[0, 0, :2], red, rtol=0, atol=1e-7)
    np.testing.assert_allclose(values[1, 0, :2], nir, rtol=0, atol=1e-7)
    assert np.isnan(values[:, 0, 2]).all()
    np.testing.assert_array_equal(classes[0], [*expected_classes, 8.0])
    np.testing.assert_array_equal(count[0], [3, 2, 0])
    assert values.dtype == np.float32
    if method == "median":  # every clear day went into the value
        np.testing.assert_array_equal(used, OBSERVED)
    else:  # one day per observed pixel
        np.testing.assert_array_equal(used.sum(axis=0)[0], [1, 1, 0])


def test_max_ndvi_prefers_a_defined_ndvi_and_needs_its_bands():
    # pixel 0: day 0 has B04 = B08 = 0 (NDVI 0 / 0), day 1 a negative NDVI (water): day 1 wins
    reflectance = np.array([[[[0.0]], [[0.0]]], [[[0.3]], [[0.1]]]], np.float32)
    observed = np.ones((2, 1, 1), bool)
    classes = np.full((2, 1, 1), CLEAR, np.float32)
    values, _, _, _ = composite_steps(reflectance, classes, observed, "max_ndvi", (0, 1))
    np.testing.assert_allclose(values[:, 0, 0], [0.3, 0.1])
    with pytest.raises(ValueError, match="B04 and B08"):
        composite_steps(reflectance, classes, observed, "max_ndvi", None)


def test_an_interval_without_days_has_no_value():
    empty = np.zeros((0, 2, 1, 3), np.float32)
    values, classes, count, _ = composite_steps(
        empty, np.zeros((0, 1, 3), np.float32), np.zeros((0, 1, 3), bool), "median"
    )
    assert np.isnan(values).all() and np.isnan(classes).all() and (count == 0).all()


# ---- a mosaic onto the axis -----------------------------------------------------------------


def mosaic_of(days: list[date], values: list[float], observed: list[bool]) -> Mosaic:
    """A one-pixel, one-band (B04) mosaic: one solar day per value."""
    n = len(days)
    return Mosaic(
        reflectance=np.array(values, np.float32).reshape(n, 1, 1, 1),
        classification=np.full((n, 1, 1), CLEAR, np.float32),
        observed=np.array(observed).reshape(n, 1, 1),
        times=np.array([np.datetime64(day, "ns") for day in days]),
        step_items=[[{"id": f"item-{day}", "pixels": 1}] for day in days],
        days=days,
    )


def test_the_days_of_each_interval_become_its_layer():
    axis = regular_axis("2024-01-01", "2024-01-31", "P10D")  # 01-01, 01-11, 01-21, 01-31
    days = [date(2024, 1, d) for d in (2, 5, 8, 9, 25)]
    # interval 0: 0.1, 0.3, cloudy, 0.2 -> median 0.2 of 3; interval 1: nothing;
    # interval 2: 0.4 -> 0.4 of 1; interval 3 (01-31 .. 02-09): nothing
    mosaic = mosaic_of(days, [0.1, 0.3, nan, 0.2, 0.4], [True, True, False, True, True])
    result = composite_mosaic(mosaic, axis, "median", ["B04"])
    np.testing.assert_array_equal(result.times, axis.times)
    values = result.reflectance[:, 0, 0, 0]
    np.testing.assert_allclose(values[[0, 2]], [0.2, 0.4], rtol=1e-6)
    assert np.isnan(values[[1, 3]]).all()
    np.testing.assert_array_equal(result.count[:, 0, 0], [3, 0, 1, 0])
    assert result.count.dtype == np.uint8
    assert [[day["date"] for day in interval] for interval in result.step_items] == [
        ["2024-01-02", "2024-01-05", "2024-01-08", "2024-01-09"], [], ["2024-01-25"], [],
    ]  # fmt: skip
    assert [day["pixels"] for day in result.step_items[0]] == [1, 1, 0, 1]
    first = composite_mosaic(mosaic, axis, "first", ["B04"]).reflectance[:, 0, 0, 0]
    np.testing.assert_allclose(first[[0, 2]], [0.1, 0.4], rtol=1e-6)


def test_acquisitions_go_to_the_interval_of_their_local_solar_date():
    """At 120 E local solar time is UTC + 8 h: an acquisition at 2024-01-10T20:00Z is on 11
    January there, the first day of the second 10-day interval from 1 January."""
    items = [
        {"id": "late", "properties": {"datetime": "2024-01-10T20:00:00Z"}},
        {"id": "early", "properties": {"datetime": "2024-01-10T10:00:00Z"}},
    ]
    reflectance = np.array([[[[0.5]]], [[[0.25]]]], np.float32)
    classes = np.full((2, 1, 1), CLEAR, np.float32)
    clear = clear_pixels(classes, (0, 1, 3, 8, 9, 10))
    mosaic = mosaic_by_solar_day(reflectance, classes, clear, items, longitude=120.0)
    assert mosaic.days == [date(2024, 1, 10), date(2024, 1, 11)]
    axis = regular_axis("2024-01-01", "2024-01-20", "P10D")
    result = composite_mosaic(mosaic, axis, "median", ["B04"])
    np.testing.assert_allclose(result.reflectance[:, 0, 0, 0], [0.25, 0.5])
    assert [[d["date"] for d in interval] for interval in result.step_items] == [
        ["2024-01-10"], ["2024-01-11"],
    ]  # fmt: skip
