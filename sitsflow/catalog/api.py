"""Polite HTTP to STAC APIs: a run-wide request rate, retries that honour `Retry-After`, and
bounded waits.

Public APIs throttle heavy clients (Earth Search answered "Forbidden" to ~300 parallel
searches; Planetary Computer bans for a while), so every request of sitsflow's search job goes
through one `PoliteAdapter` on pystac-client's `requests` session: it waits for a token of a
`RateLimiter` (`stac.max_requests_per_s`) before every request, retries included; answers 429
and 5xx are retried with exponential backoff, or after the `Retry-After` the server sends (and
every other request of the job waits as long); a refused connection is retried only twice, so
that a wrong URL fails within seconds; a server that accepts the connection and never answers
is given up on after `stac.timeout_s` per attempt.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from sitsflow.catalog.ranges import retry_after

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
STATUS_RETRIES = 8
CONNECT_RETRIES = 2
TIMEOUT_RETRIES = 2
BACKOFF_S = 0.5
MAX_WAIT_S = 120.0


# The window is this much longer than `capacity / rate`: a server that counts requests over a
# sliding second then never sees more than `rate` of them, though each may arrive a few
# milliseconds late or early.
RATE_MARGIN = 0.05


class RateLimiter:
    """At most `rate` acquisitions in any one second, across threads: a sliding window.

    Up to a second's worth of requests go at once; then each waits until the oldest of the
    last `rate` is a second old. Spacing requests evenly (1/rate apart) keeps to the same
    limit but makes every request of a short search wait: the demo run's 25 requests at 10 per
    second took 2.6 s that way, 2.3 s in a window (three windows, the last one short).
    """

    def __init__(self, rate: float) -> None:
        self.capacity = max(1, math.floor(rate)) if rate > 0 else 0
        self.window = (1.0 + RATE_MARGIN) * self.capacity / rate if rate > 0 else 0.0
        self._sent: deque[float] = deque()
        self._held_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for this request's slot. The slot is taken before the wait, so a thread sleeps
        once, and threads that come later queue behind it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._held_until)
            if self.capacity:
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) >= self.capacity:
                    start = max(start, self._sent[-self.capacity] + self.window)
                self._sent.append(start)
        if start > now:
            time.sleep(start - now)

    def hold(self, seconds: float) -> None:
        """Let no acquisition through for `seconds` (a server asked everyone to wait)."""
        with self._lock:
            self._held_until = max(self._held_until, time.monotonic() + seconds)


@dataclass
class ApiCounters:
    """What the adapter sent: requests (retries included), retries, and seconds waited."""

    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0


class PoliteAdapter(HTTPAdapter):
    """`requests` transport with a rate limit, retries and timeouts (module docstring)."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        pool_connections: int = 4,
    ) -> None:
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_connections)
        self.limiter = limiter
        self.timeouts = (connect_timeout_s, timeout_s)
        self.counters = ApiCounters()
        self._lock = threading.Lock()

    def send(  # type: ignore[override]  # requests' untyped keyword arguments
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        kwargs["timeout"] = self.timeouts
        failures = {"status": 0, "connect": 0, "timeout": 0}
        while True:
            self.limiter.acquire()
            with self._lock:
                self.counters.requests += 1
            try:
                response = super().send(request, **kwargs)
            except requests.exceptions.ConnectTimeout:
                if not self._again(failures, "connect", CONNECT_RETRIES, request, "no answer"):
                    raise
                continue
            except requests.exceptions.ConnectionError as exc:
                reason = "timed out" if _is_read_timeout(exc) else "connection failed"
                kind, limit = (
                    ("timeout", TIMEOUT_RETRIES)
                    if reason == "timed out"
                    else ("connect", CONNECT_RETRIES)
                )
                if not self._again(failures, kind, limit, request, reason):
                    raise
                continue
            except requests.exceptions.Timeout:
                if not self._again(failures, "timeout", TIMEOUT_RETRIES, request, "timed out"):
                    raise
                continue
            if response.status_code not in RETRY_STATUS:
                return response
            wait = retry_after(response.headers.get("Retry-After"))
            if wait is not None:
                self.limiter.hold(min(wait, MAX_WAIT_S))
            reason = f"HTTP {response.status_code}"
            if not self._again(failures, "status", STATUS_RETRIES, request, reason, wait):
                return response
            response.close()

    def _again(
        self,
        failures: dict[str, int],
        kind: str,
        limit: int,
        request: requests.PreparedRequest,
        reason: str,
        wait: float | None = None,
    ) -> bool:
        """Count a failure; if another attempt is allowed, back off (unless `wait`, the
        server's own, is already held by the limiter) and say so."""
        failures[kind] += 1
        if failures[kind] > limit:
            return False
        delay = wait if wait is not None else min(BACKOFF_S * 2 ** (failures[kind] - 1), 30.0)
        with self._lock:
            self.counters.retries += 1
            self.counters.waited_s += delay
        url = (request.url or "").split("?", 1)[0]
        log.info(
            "%s %s: %s, retry %d in %.1f s", request.method, url, reason, failures[kind], delay
        )
        if wait is None:
            time.sleep(delay)
        return True


def _is_read_timeout(exc: BaseException) -> bool:
    return "Read timed out" in str(exc) or "ReadTimeout" in type(exc).__name__


def polite_session(
    limiter: RateLimiter,
    *,
    connect_timeout_s: float,
    timeout_s: float,
    headers: Mapping[str, str | bytes],
) -> tuple[requests.Session, PoliteAdapter]:
    """A `requests` session whose every request goes through one `PoliteAdapter`."""
    session = requests.Session()
    session.headers.update(headers)
    adapter = PoliteAdapter(limiter, connect_timeout_s=connect_timeout_s, timeout_s=timeout_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter
