import numpy as np
import pytest

from sitsflow.pixels.gapfill import gapfill


def days(*offsets: float) -> np.ndarray:
    base = np.datetime64("2024-01-01T10:30:00", "ns")
    return np.array([base + np.timedelta64(int(d * 86400), "s") for d in offsets])


def test_linear_uses_real_time_not_index():
    # 10 at day 0, gap at day 5, 40 at day 15: 10 + 30 * 5/15 = 20 (index-based would say 25).
    filled = gapfill(np.array([10.0, np.nan, 40.0]), days(0, 5, 15))
    np.testing.assert_allclose(filled, [10.0, 20.0, 40.0])


def test_linear_two_gaps_uneven():
    filled = gapfill(np.array([0.0, np.nan, np.nan, 100.0]), days(0, 10, 30, 40))
    np.testing.assert_allclose(filled, [0.0, 25.0, 75.0, 100.0])


def test_edges_take_nearest_valid_value():
    filled = gapfill(
        np.array([np.nan, np.nan, 7.0, np.nan, 9.0, np.nan]), days(0, 5, 10, 15, 20, 25)
    )
    np.testing.assert_allclose(filled, [7.0, 7.0, 7.0, 8.0, 9.0, 9.0])


def test_nearest_method_picks_closest_in_time_earlier_on_tie():
    filled = gapfill(
        np.array([1.0, np.nan, np.nan, np.nan, 5.0]), days(0, 2, 5, 8, 10), method="nearest"
    )
    np.testing.assert_allclose(filled, [1.0, 1.0, 1.0, 5.0, 5.0])


def test_max_gap_leaves_long_gaps_empty():
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan, 9.0, np.nan])
    filled = gapfill(values, days(0, 5, 10, 20, 30, 40, 70), max_gap_days=20)
    # gap 10..40 spans 30 days > 20: stays NaN; trailing edge is 30 days from day 40: NaN.
    np.testing.assert_allclose(filled, [1.0, 2.0, 3.0, np.nan, np.nan, 9.0, np.nan])
    filled = gapfill(values, days(0, 5, 10, 20, 30, 40, 70), max_gap_days=30)
    np.testing.assert_allclose(filled, [1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 9.0])


def test_all_nan_pixel_stays_nan_and_none_is_identity():
    values = np.full((3, 2, 2), np.nan, dtype=np.float32)
    values[:, 0, 0] = [1.0, np.nan, 3.0]
    filled = gapfill(values, days(0, 1, 2))
    assert filled[1, 0, 0] == pytest.approx(2.0)
    assert np.isnan(filled[:, 1, 1]).all()
    assert np.isnan(gapfill(values, days(0, 1, 2), method="none")[1, 0, 0])


def test_multidimensional_matches_per_pixel_numpy_interp():
    rng = np.random.default_rng(3)
    times = days(*np.cumsum(rng.integers(1, 12, size=20)))
    values = rng.random((20, 4, 5)).astype(np.float32)
    values[rng.random(values.shape) < 0.4] = np.nan
    values[0, :, :] = 0.5  # valid first and last so np.interp needs no edge rule
    values[-1, :, :] = 0.25
    filled = gapfill(values, times)
    x = (times - times[0]).astype("timedelta64[s]").astype(float)
    for j in range(4):
        for i in range(5):
            ok = np.isfinite(values[:, j, i])
            expected = np.interp(x, x[ok], values[ok, j, i])
            np.testing.assert_allclose(filled[:, j, i], expected, rtol=1e-5)


def test_a_cube_without_values_comes_back_as_it_is():
    """No band (a run of class bands only), no pixel or no date: nothing to fill."""
    times = days(0, 10, 20)
    for shape in [(3, 0, 4, 4), (3, 2, 0, 4), (3, 0), (0, 2, 4, 4)]:
        values = np.full(shape, np.nan, np.float32)
        filled = gapfill(values, times[: shape[0]])
        assert filled.shape == shape and filled is not values


def test_unknown_method_rejected():
    with pytest.raises(ValueError, match="cubic"):
        gapfill(np.array([1.0]), days(0), method="cubic")


def test_max_edge_bounds_the_edges_only():
    values = np.array([np.nan, np.nan, 7.0, np.nan, np.nan, np.nan, 9.0, np.nan, np.nan])
    times = days(0, 20, 40, 60, 80, 100, 120, 150, 200)
    filled = gapfill(values, times, max_edge_days=30)
    # 40 and 20 days before the first observation: only the nearer is filled; the interior gap
    # of 80 days is not an edge; after the last one, 30 days is filled, 80 days is not
    np.testing.assert_allclose(filled, [np.nan, 7.0, 7.0, 7.5, 8.0, 8.5, 9.0, 9.0, np.nan])
    # both bounds: the edges obey the smaller one
    filled = gapfill(values, times, max_gap_days=100, max_edge_days=30)
    np.testing.assert_allclose(filled, [np.nan, 7.0, 7.0, 7.5, 8.0, 8.5, 9.0, 9.0, np.nan])
    filled = gapfill(values, times, max_gap_days=25, max_edge_days=30)
    np.testing.assert_allclose(
        filled, [np.nan, 7.0, 7.0, np.nan, np.nan, np.nan, 9.0, np.nan, np.nan]
    )


def _fill_one_series(values, day, method, max_gap_days, max_edge_days):
    """The oracle: one series filled value by value, as the docstring defines it."""
    out = values.copy()
    valid = [i for i in range(len(values)) if np.isfinite(values[i])]
    for i in range(len(values)):
        if np.isfinite(values[i]) or not valid:
            continue
        earlier = [j for j in valid if j < i]
        later = [j for j in valid if j > i]
        b, a = (earlier[-1] if earlier else None), (later[0] if later else None)
        if b is not None and a is not None:
            gap = day[a] - day[b]
            if method == "linear":
                span = day[a] - day[b] if day[a] > day[b] else 1.0
                estimate = values[b] + (values[a] - values[b]) * ((day[i] - day[b]) / span)
            else:
                estimate = values[a] if day[a] - day[i] < day[i] - day[b] else values[b]
            fillable = max_gap_days is None or gap <= max_gap_days
        else:
            nearest = b if b is not None else a
            gap = abs(day[i] - day[nearest])
            estimate = values[nearest]
            fillable = (max_gap_days is None or gap <= max_gap_days) and (
                max_edge_days is None or gap <= max_edge_days
            )
        if fillable:
            out[i] = np.float32(estimate)
    return out


@pytest.mark.parametrize("method", ["linear", "nearest"])
@pytest.mark.parametrize("limits", [(None, None), (20.0, None), (None, 30.0), (40.0, 15.0)])
@pytest.mark.parametrize("gaps", ["scattered", "mostly clear", "clouds", "few clouds"])
def test_a_random_cube_is_filled_series_by_series_as_defined(method, limits, gaps):
    """(time, band, y, x) with uneven dates, scattered and whole-date gaps: every series as
    the one-series oracle fills it, to the bit. Mostly clear: gaps in a few series only (those
    are then worked on apart from the others). Clouds: every band of a pixel missing together
    (each pixel's steps and weights then serve all its bands); few clouds: over 5 of 30
    pixels."""
    random = np.random.default_rng(7)
    steps = 17
    offsets = np.sort(random.choice(np.arange(0, 300, 0.25), steps, replace=False))
    values = random.random((steps, 2, 6, 5)).astype(np.float32)
    missing = random.random(values.shape) < 0.3
    if gaps == "mostly clear":
        missing[:, :, 1:, :] = False  # 7 of 60 series have gaps (`GATHER_BELOW`)
        missing[:, 1, 0, 2:] = False
    elif gaps in ("clouds", "few clouds"):
        missing[:, 1] = missing[:, 0]
        if gaps == "few clouds":
            missing[:, :, 1:, :] = False
    else:
        values[4] = np.nan  # a cloudy date
    values[missing] = np.nan
    values[:, :, 0, 0] = np.nan  # a pixel never seen
    filled = gapfill(values, days(*offsets), method, *limits)
    day = (offsets - offsets[0]).astype(np.float64)
    for band in range(2):
        for y in range(6):
            for x in range(5):
                expected = _fill_one_series(values[:, band, y, x], day, method, *limits)
                np.testing.assert_array_equal(filled[:, band, y, x], expected)
