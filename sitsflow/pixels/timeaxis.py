"""The regular time axis of `time_step`: ISO 8601 durations and the intervals they cut.

A deep-learning model needs the same time steps for every sample, so with a `time_step` every
feature's cube gets one run-wide axis instead of its own acquisition dates: intervals that
start at `start` and follow each other by the duration, the last one starting on or before
`end`. Each interval is labelled by its start date, as gdalcubes (which R `sits` regularises
with) labels its time slices; gdalcubes snaps a monthly axis to the first of the month, sitsflow
counts from `start` as given, so that `start` says where the axis begins.

Durations are a number and one unit: days (`P10D`), weeks (`P2W`, 7 days each) or months
(`P1M`). Months are calendar months counted from `start` (each start is `start` plus k months,
clamped to the end of a shorter month: from 31 January, 29 February, then 31 March), so monthly
intervals have 28 to 31 days. Years, hours and combined durations (`P1M15D`) are refused: a
year is `P12M`, and a sub-day step finer than one solar day would leave most intervals empty.

Acquisitions are put into intervals by their local solar day (`sitsflow.core.solar`), the same day
that groups the tiles of one pass into one time step before compositing.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

_DURATION = re.compile(r"^P(?P<count>[1-9]\d*)(?P<unit>[DWM])$")
UNITS = {"D": "days", "W": "weeks", "M": "months"}
SUPPORTED = "PnD (days), PnW (weeks) or PnM (months), e.g. P5D, P10D, P16D, P1M"


@dataclass(frozen=True)
class Duration:
    """A parsed ISO 8601 duration: `count` units of `unit` (`D`, `W` or `M`)."""

    count: int
    unit: str

    @property
    def iso(self) -> str:
        return f"P{self.count}{self.unit}"

    def after(self, origin: date, steps: int) -> date:
        """`origin` plus `steps` times this duration (months clamped to the month's end)."""
        if self.unit == "D":
            return origin + timedelta(days=self.count * steps)
        if self.unit == "W":
            return origin + timedelta(weeks=self.count * steps)
        months = origin.month - 1 + self.count * steps
        year, month = origin.year + months // 12, months % 12 + 1
        return date(year, month, min(origin.day, calendar.monthrange(year, month)[1]))


def parse_duration(text: str) -> Duration:
    """The duration `text` spells; ValueError naming the supported forms otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a supported duration; write {SUPPORTED}")
    return Duration(int(match["count"]), match["unit"])


@dataclass(frozen=True)
class TimeAxis:
    """The intervals of a regular axis: `starts[i]` up to (not including) `ends[i]`."""

    starts: tuple[date, ...]
    ends: tuple[date, ...]
    duration: Duration

    @property
    def times(self) -> np.ndarray:
        """The interval starts as datetime64[ns] at 00:00, the cube's `time` coordinate."""
        return np.array([np.datetime64(day, "ns") for day in self.starts], dtype="datetime64[ns]")

    @property
    def longest_days(self) -> int:
        """The most days an interval holds (how many observations a composite can count)."""
        return max(((end - start).days for start, end in zip(self.starts, self.ends, strict=True)))

    def index_of(self, days: Sequence[date]) -> np.ndarray:
        """The interval of each solar day (int64), -1 for days outside the axis."""
        found = np.array([bisect_right(self.starts, day) - 1 for day in days], dtype=np.int64)
        outside = np.array(
            [index < 0 or day >= self.ends[index] for day, index in zip(days, found, strict=True)],
            dtype=bool,
        )
        return np.where(outside, -1, found) if len(found) else found


def regular_axis(start: str | date, end: str | date, duration: Duration | str) -> TimeAxis:
    """The intervals from `start`, one `duration` each, the last one starting on or before
    `end`. Starts are computed from `start` each time (no drift over many months)."""
    first = date.fromisoformat(start) if isinstance(start, str) else start
    last = date.fromisoformat(end) if isinstance(end, str) else end
    step = parse_duration(duration) if isinstance(duration, str) else duration
    if last < first:
        raise ValueError(f"the axis ends ({last}) before it starts ({first})")
    starts: list[date] = []
    while (candidate := step.after(first, len(starts))) <= last:
        starts.append(candidate)
    ends = [step.after(first, index + 1) for index in range(len(starts))]
    return TimeAxis(tuple(starts), tuple(ends), step)
