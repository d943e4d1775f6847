"""Local solar days: the date an acquisition belongs to at a feature's longitude."""

from __future__ import annotations

from datetime import date, datetime, timedelta


def acquisition_moment(text: str) -> datetime:
    """An item's RFC 3339 datetime as `solar_day` reads it: aware with the offset it states
    (`Z`: UTC), naive without one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def solar_day(moment: str | datetime, longitude: float) -> date:
    """The local solar date of a UTC moment at `longitude` (UTC shifted by lon/15 hours).

    Scenes of one orbit pass over neighbouring tiles share a solar day even when their UTC
    timestamps differ by seconds, and a pass over a feature far east or west keeps its local
    date even when the UTC date is another one.
    """
    if isinstance(moment, str):
        moment = acquisition_moment(moment)
    return (moment + timedelta(hours=longitude / 15.0)).date()
