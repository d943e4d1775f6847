"""A pause that every job of a run keeps: when a store throttles one job, all of them wait.

A store that answers 429 or 503 throttles the client, and the client of a sitsflow run is every
job reading from that host at once: one job backing off while five others keep sending only
moves the throttling around. GDAL backs off per request on its own schedule and ignores
`Retry-After`, so sitsflow's reader keeps the pause itself, in a file per host under
`PAUSES` (relative to the working directory, which cluster jobs share too): its modification
time is the moment the pause ends. Setting it is a `utime`; checking it a `stat`, done at most
every `check_interval_s` per host, so a run that is never throttled pays a few `stat` calls a
second.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

PAUSES = ".sitsflow/pauses"
CHECK_INTERVAL_S = 0.25


class SharedPause:
    """The run-wide pause of each host, kept in `directory` (one file per host)."""

    def __init__(
        self, directory: str | Path = PAUSES, check_interval_s: float = CHECK_INTERVAL_S
    ) -> None:
        self.directory = Path(directory)
        self.check_interval_s = check_interval_s
        self._known: dict[str, tuple[float, float]] = {}  # host -> (checked at, pause ends)

    def hold(self, url: str, seconds: float) -> None:
        """Pause every job's requests to `url`'s host for `seconds` from now (never shorter
        than a pause already set)."""
        host = _host(url)
        until = time.time() + seconds
        path = self._path(host)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
            if path.stat().st_mtime < until:
                os.utime(path, (until, until))
        except OSError:  # a read-only or vanished directory: the job's own pause still holds
            pass
        self._known[host] = (time.monotonic(), max(until, self._known.get(host, (0, 0))[1]))

    def remaining(self, url: str) -> float:
        """Seconds until the pause of `url`'s host ends (0 when there is none)."""
        host = _host(url)
        checked, until = self._known.get(host, (float("-inf"), 0.0))
        if time.monotonic() - checked >= self.check_interval_s:
            with contextlib.suppress(OSError):
                until = max(until, self._path(host).stat().st_mtime)
            self._known[host] = (time.monotonic(), until)
        return max(0.0, until - time.time())

    def _path(self, host: str) -> Path:
        return self.directory / host.replace(":", "_")


def _host(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or "local"
