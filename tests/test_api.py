"""Polite HTTP to STAC APIs (sitsflow/catalog/api.py): the rate limit holds, Retry-After is
honoured, busy servers are retried and dead ones given up on quickly, waits are bounded."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from sitsflow.catalog import api
from sitsflow.catalog.api import RateLimiter, polite_session
from tests.helpers import local_http_server


def session(rate: float = 0, timeout_s: float = 5.0):
    return polite_session(RateLimiter(rate), connect_timeout_s=2, timeout_s=timeout_s, headers={})


class Answers(BaseHTTPRequestHandler):
    """Answers by path: /busy 503 (always), /throttled 429 with Retry-After: 1 the first time,
    /slow sleeps 3 s; otherwise 200. Records when each request arrived."""

    protocol_version = "HTTP/1.1"
    arrivals: list[float] = []
    throttled = 0
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        with self.lock:
            type(self).arrivals.append(time.monotonic())
        status, headers = 200, {}
        if self.path == "/busy":
            status = 503
        elif self.path == "/throttled":
            with self.lock:
                type(self).throttled += 1
                first = type(self).throttled == 1
            if first:
                status, headers = 429, {"Retry-After": "1"}
        elif self.path == "/slow":
            time.sleep(3)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def server():
    Answers.arrivals, Answers.throttled = [], 0
    with local_http_server(Answers) as url:
        yield url


def test_the_rate_limit_holds_across_threads(server):
    http, adapter = session(rate=10)
    threads = [
        threading.Thread(target=lambda: [http.get(f"{server}/ok") for _ in range(5)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    arrivals = sorted(Answers.arrivals)
    assert len(arrivals) == adapter.counters.requests == 20
    # never more than 10 in any second (and never faster than the rate allows)
    assert all(arrivals[i + 10] - arrivals[i] >= 0.99 for i in range(len(arrivals) - 10))


def test_retry_after_is_honoured(server):
    http, adapter = session()
    started = time.monotonic()
    assert http.get(f"{server}/throttled").status_code == 200
    assert time.monotonic() - started >= 1.0
    assert adapter.counters.retries == 1


def test_a_busy_server_is_retried_then_its_answer_returned(server, monkeypatch):
    monkeypatch.setattr(api, "BACKOFF_S", 0.001)
    http, adapter = session()
    assert http.get(f"{server}/busy").status_code == 503
    assert adapter.counters.requests == api.STATUS_RETRIES + 1


def test_a_refused_connection_fails_within_seconds(monkeypatch):
    monkeypatch.setattr(api, "BACKOFF_S", 0.01)  # the retries, not their pauses, are tested
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http, adapter = session()
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(f"http://127.0.0.1:{port}/api")
    assert time.monotonic() - started < 5
    assert adapter.counters.requests == api.CONNECT_RETRIES + 1


def test_a_server_that_does_not_answer_is_given_up_on(server, monkeypatch):
    monkeypatch.setattr(api, "BACKOFF_S", 0.01)
    http, adapter = session(timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        http.get(f"{server}/slow")
    assert adapter.counters.requests == api.TIMEOUT_RETRIES + 1
    assert time.monotonic() - started < 0.5 * (api.TIMEOUT_RETRIES + 1) + 1


def test_a_second_s_worth_of_requests_goes_at_once_then_the_window_slides():
    limiter = RateLimiter(10)
    started = time.monotonic()
    for _ in range(10):
        limiter.acquire()
    burst = time.monotonic() - started
    limiter.acquire()  # the 11th waits until the first is a second old
    assert burst < 0.2 and time.monotonic() - started >= 1.0


def test_a_hold_stops_an_unlimited_limiter_too():
    limiter = RateLimiter(0)
    limiter.hold(0.3)
    started = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - started >= 0.29
