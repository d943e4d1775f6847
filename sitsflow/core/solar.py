"""Local solar days: the date an acquisition belongs to at a feature's longitude."""

from __future__ import annotations

from datetime import date, datetime, timedelta


def solar_day(moment: str | datetime, longitude: float) -> date:
    """The local solar date of a UTC moment at `longitude` (UTC shifted by lon/15 hours).

    Scenes of one orbit pass over neighbouring tiles share a solar day even when their UTC
    timestamps differ by seconds, and a pass over a feature far east or west keeps its local
    date even when the UTC date is another one.
    """
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return (moment + timedelta(hours=longitude / 15.0)).date()
