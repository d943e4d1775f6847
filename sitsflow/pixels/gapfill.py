"""Fill masked values along time, weighting by real acquisition dates (revisits are uneven)."""

from __future__ import annotations

import numpy as np

METHODS = ("linear", "nearest", "none")


def gapfill(
    values: np.ndarray,
    times: np.ndarray,
    method: str = "linear",
    max_gap_days: float | None = None,
    max_edge_days: float | None = None,
) -> np.ndarray:
    """Fill NaNs in `values` (time first) from the valid values before and after in time.

    * linear: interpolate in time between the bracketing valid values; at the edges of the
      series (no valid value before, or after) take the nearest valid value.
    * nearest: the valid value closest in time (the earlier one on a tie).
    * none: return a copy unchanged.

    `max_gap_days` leaves a value NaN when the gap it sits in is longer than that: for an
    interior value, the time between the bracketing valid observations; at an edge, the time
    to the nearest valid observation. `max_edge_days` bounds the edges alone: holding the
    first or last observation constant for months says nothing about what the surface did
    then. Pixels with no valid value at all stay NaN.
    """
    if method not in METHODS:
        raise ValueError(f"gap-fill method {method!r} not in {METHODS}")
    values = np.asarray(values, dtype=np.float32)
    filled = values.copy()
    if method == "none" or values.shape[0] == 0:
        return filled
    days = _days(times).reshape((-1,) + (1,) * (values.ndim - 1))
    steps = values.shape[0]
    valid = np.isfinite(values)
    index = np.arange(steps).reshape(days.shape)
    before = np.maximum.accumulate(np.where(valid, index, -1), axis=0)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(valid, index, steps), 0), axis=0), 0)
    has_before, has_after = before >= 0, after < steps
    before_c, after_c = np.clip(before, 0, steps - 1), np.clip(after, 0, steps - 1)
    value_before = np.take_along_axis(values, before_c, axis=0)
    value_after = np.take_along_axis(values, after_c, axis=0)
    day_before = np.take_along_axis(np.broadcast_to(days, values.shape), before_c, axis=0)
    day_after = np.take_along_axis(np.broadcast_to(days, values.shape), after_c, axis=0)
    here = np.broadcast_to(days, values.shape)

    inside = has_before & has_after
    if method == "linear":
        span = np.where(day_after > day_before, day_after - day_before, 1.0)
        weight = np.where(inside, (here - day_before) / span, 0.0)
        interior = value_before + (value_after - value_before) * weight
    else:
        take_after = (day_after - here) < (here - day_before)
        interior = np.where(take_after, value_after, value_before)
    estimate = np.where(inside, interior, np.where(has_before, value_before, value_after))

    gap = np.where(
        inside,
        day_after - day_before,
        np.where(has_before, here - day_before, day_after - here),
    )
    fillable = ~valid & (has_before | has_after)
    if max_gap_days is not None:
        fillable &= gap <= max_gap_days
    if max_edge_days is not None:
        fillable &= inside | (gap <= max_edge_days)
    filled[fillable] = estimate[fillable].astype(np.float32)
    return filled


def _days(times: np.ndarray) -> np.ndarray:
    """Times as float days since the first one (float64, so sub-day offsets count)."""
    as_ns = np.asarray(times, dtype="datetime64[ns]").astype(np.int64)
    return (as_ns - as_ns.min()) / 86_400e9 if as_ns.size else as_ns.astype(np.float64)
