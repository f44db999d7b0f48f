"""upstream_app's GET /orders/{id}/shipment (CONTRACT §5, issue 6 point 3) against the real stack
(PostgreSQL through PgBouncer + Redis) and a fake shipping service scripted per test.

The fake (FakeShipping) is a threaded http.server on a free 127.0.0.1 port; each request to
/shipments/{id} takes the next scripted action (default "ok"):
  ok      200 {"id": <id>, "status": "in_transit", "carrier": "fake"}
  503     503 (any 3-digit status works: "404", "500", ...)
  hang    no answer for `hang_seconds` (then the connection is closed)
  reset   the connection is reset (SO_LINGER 0) without an answer
"Refuse" is an address where nothing listens (a free port).

Each test starts its own app (so the breaker starts closed) with small shipping settings:
read_timeout 300ms, connect_timeout 300ms, attempts 3, backoff 50ms..100ms.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import pytest

from gateway_harness import free_port, http_request
from test_app_api import assert_error, call, migrate_and_seed, start_app, stop_app

READ_TIMEOUT = 0.3
ATTEMPTS = 3
BACKOFF_MAX = 0.1


class FakeShipping:
    def __init__(self):
        self.lock = threading.Lock()
        self.actions: list = []
        self.default = "ok"
        self.requests: list = []  # paths, in arrival order
        self.hang_seconds = 5.0
        self.stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with fake.lock:
                    fake.requests.append(self.path)
                    action = fake.actions.pop(0) if fake.actions else fake.default
                if action == "hang":
                    fake.stopping.wait(fake.hang_seconds)
                    self.close_connection = True
                    return
                if action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if action == "ok":
                    shipment_id = self.path.rsplit("/", 1)[-1]
                    body = json.dumps({"id": int(shipment_id), "status": "in_transit", "carrier": "fake"}).encode()
                    status = 200
                else:
                    status = int(action)
                    body = json.dumps({"error": "scripted %d" % status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def script(self, *actions: str, default: Optional[str] = None) -> None:
        with self.lock:
            self.actions = list(actions)
            if default is not None:
                self.default = default

    def count(self, shipment_id: Optional[int] = None) -> int:
        with self.lock:
            if shipment_id is None:
                return len(self.requests)
            return sum(1 for p in self.requests if p == "/shipments/%d" % shipment_id)

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def shipping_overrides(base_url: str, **breaker) -> dict:
    cb = {"failure_ratio": 0.5, "min_requests": 4, "window": "5s", "open_duration": "1s", "half_open_requests": 2}
    cb.update(breaker)
    return {
        "upstream_app": {
            "shipping": {
                "base_url": base_url,
                "connect_timeout": "300ms",
                "read_timeout": "%dms" % int(READ_TIMEOUT * 1000),
                "pool_timeout": "1s",
                "retry": {"attempts": ATTEMPTS, "backoff_base": "50ms", "backoff_max": "%dms" % int(BACKOFF_MAX * 1000)},
                "circuit_breaker": cb,
            }
        }
    }


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(data_stack, tmp_path_factory):
    migrate_and_seed(data_stack, tmp_path_factory.mktemp("ship-migrate"))
    return data_stack


@pytest.fixture
def fake():
    f = FakeShipping()
    yield f
    f.stop()


@pytest.fixture
def ship_app(stack, tmp_path, register_process):
    started = []

    def start(base_url: str, **breaker):
        proc = start_app(stack, tmp_path, shipping_overrides(base_url, **breaker), name="upstream_app_ship")
        register_process(proc)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_app(proc)


_next_order = [100]


def order_id(stack) -> int:
    """A seeded order not used by an earlier test, with no cached shipment."""
    _next_order[0] += 1
    oid = _next_order[0]
    stack.redis_cli("DEL", "app:shipment:%d" % oid)
    return oid


def shipment(app, oid: int, timeout: float = 10.0):
    return call(app, "GET", "/orders/%d/shipment" % oid, timeout=timeout)


# -- tests --------------------------------------------------------------------------------------


def test_success_is_wrapped_and_cached_in_redis(stack, fake, ship_app):
    app = ship_app(fake.url)
    oid = order_id(stack)
    r = shipment(app, oid)
    assert r.status == 200, r.describe()
    assert r.json() == {"order_id": oid, "shipment": {"id": oid, "status": "in_transit", "carrier": "fake"}}
    assert r.header("x-cache") == "miss"
    assert fake.count(oid) == 1
    # The entry is written after the answer: give Redis a moment.
    deadline = time.monotonic() + 2
    while stack.redis_cli("EXISTS", "app:shipment:%d" % oid) != "1" and time.monotonic() < deadline:
        time.sleep(0.02)
    ttl = int(stack.redis_cli("PTTL", "app:shipment:%d" % oid))
    assert 0 < ttl <= 10000
    r2 = shipment(app, oid)
    assert r2.status == 200 and r2.header("x-cache") == "hit", r2.describe()
    assert r2.json() == r.json()
    assert fake.count(oid) == 1, "the cached answer must not reach the shipping service"


def test_unknown_order_and_bad_id(stack, fake, ship_app):
    app = ship_app(fake.url)
    assert_error(shipment(app, 987654321), 404, error="order not found")
    assert_error(call(app, "GET", "/orders/abc/shipment"), 400, field="id")
    assert fake.count() == 0


def test_shipment_not_found_at_the_service(stack, fake, ship_app):
    app = ship_app(fake.url)
    oid = order_id(stack)
    fake.script("404")
    assert_error(shipment(app, oid), 404, error="shipment not found")
    assert fake.count(oid) == 1, "404 is an answer, not a failure: no retry"


def test_get_retried_after_503_succeeds_on_second_try(stack, fake, ship_app):
    app = ship_app(fake.url)
    oid = order_id(stack)
    fake.script("503")
    r = shipment(app, oid)
    assert r.status == 200, r.describe()
    assert r.json()["shipment"]["id"] == oid
    assert fake.count(oid) == 2


def test_503_every_time_gives_502_after_all_attempts(stack, fake, ship_app):
    app = ship_app(fake.url)
    oid = order_id(stack)
    fake.script(default="503")
    assert_error(shipment(app, oid), 502, error="shipping error")
    assert fake.count(oid) == ATTEMPTS


def test_timeout_gives_504_within_the_bound(stack, fake, ship_app):
    app = ship_app(fake.url)
    oid = order_id(stack)
    fake.hang_seconds = 3.0
    fake.script(default="hang")
    start = time.monotonic()
    r = shipment(app, oid, timeout=15)
    elapsed = time.monotonic() - start
    assert_error(r, 504, error="shipping timeout")
    assert fake.count(oid) == ATTEMPTS, "a timed-out GET is retried"
    low = READ_TIMEOUT * ATTEMPTS
    high = READ_TIMEOUT * ATTEMPTS + BACKOFF_MAX * (ATTEMPTS - 1) + 0.5  # + process/DB/loop slack
    assert low - 0.05 <= elapsed <= high, "took %.3fs, expected %.2f..%.2f" % (elapsed, low, high)


def test_refused_gives_502(stack, ship_app):
    app = ship_app("http://127.0.0.1:%d" % free_port())
    oid = order_id(stack)
    start = time.monotonic()
    assert_error(shipment(app, oid), 502, error="shipping error")
    assert time.monotonic() - start < 2


def test_reset_is_retried_then_502(stack, fake, ship_app):
    app = ship_app(fake.url)
    oid = order_id(stack)
    fake.script(default="reset")
    assert_error(shipment(app, oid), 502, error="shipping error")
    assert fake.count(oid) == ATTEMPTS


def test_reset_once_then_ok(stack, fake, ship_app):
    app = ship_app(fake.url)
    oid = order_id(stack)
    fake.script("reset")
    r = shipment(app, oid)
    assert r.status == 200, r.describe()
    assert fake.count(oid) == 2


def breaker_state(app) -> float:
    text = http_request(app.port, "GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith("shipping_circuit_breaker_state "):
            return float(line.split()[1])
    raise AssertionError("shipping_circuit_breaker_state missing")


def test_breaker_opens_fails_fast_and_closes_after_probes(stack, fake, ship_app):
    app = ship_app(fake.url)
    fake.script(default="503")
    # Each failed request makes ATTEMPTS tries; min_requests 4 at ratio 0.5 opens the breaker
    # during the second request (its remaining tries are refused).
    first = order_id(stack)
    assert_error(shipment(app, first), 502, error="shipping error")
    assert breaker_state(app) == 0
    second = order_id(stack)
    r = shipment(app, second)
    assert r.status in (502, 503), r.describe()
    assert breaker_state(app) == 1
    seen = fake.count()
    assert seen == 4, "the breaker opened at the 4th failed try, got %d tries" % seen

    # Open: 503 at once, nothing reaches the service.
    for _ in range(5):
        oid = order_id(stack)
        start = time.monotonic()
        assert_error(shipment(app, oid), 503, error="shipping unavailable")
        assert time.monotonic() - start < 0.2
    assert fake.count() == seen
    assert_error(shipment(app, order_id(stack)), 503, error="shipping unavailable")

    # After open_duration (1s): half-open; 2 successful probes close it.
    fake.script(default="ok")
    time.sleep(1.15)
    assert breaker_state(app) == 2
    for _ in range(2):
        r = shipment(app, order_id(stack))
        assert r.status == 200, r.describe()
    assert breaker_state(app) == 0
    assert fake.count() == seen + 2
    r = shipment(app, order_id(stack))
    assert r.status == 200, r.describe()


def test_failed_probe_reopens(stack, fake, ship_app):
    app = ship_app(fake.url, min_requests=2)
    fake.script(default="503")
    r = shipment(app, order_id(stack))
    assert r.status in (502, 503)
    assert breaker_state(app) == 1
    time.sleep(1.15)
    before = fake.count()
    # The probe fails: open again at once, its retry is refused without contact.
    assert_error(shipment(app, order_id(stack)), 503, error="shipping unavailable")
    assert fake.count() == before + 1
    assert breaker_state(app) == 1


def test_cached_answer_served_while_breaker_open(stack, fake, ship_app):
    app = ship_app(fake.url)
    cached = order_id(stack)
    assert shipment(app, cached).status == 200
    deadline = time.monotonic() + 2
    while stack.redis_cli("EXISTS", "app:shipment:%d" % cached) != "1" and time.monotonic() < deadline:
        time.sleep(0.02)
    fake.script(default="503")
    shipment(app, order_id(stack))
    shipment(app, order_id(stack))
    assert breaker_state(app) == 1
    r = shipment(app, cached)
    assert r.status == 200 and r.header("x-cache") == "hit", r.describe()


def test_https_base_url_is_refused_with_503(stack, ship_app):
    app = ship_app("https://127.0.0.1:%d" % free_port())
    assert_error(shipment(app, order_id(stack)), 503, error="shipping unavailable")
    # Log lines are written by a background writer (flushed every 50 ms): wait, don't race it.
    deadline = time.monotonic() + 5
    while "only plain http" not in app.log_tail(50) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "only plain http" in app.log_tail(50)


def test_concurrent_calls_two_workers_share_pool_limits_and_metrics(stack, fake, tmp_path, register_process):
    from concurrent.futures import ThreadPoolExecutor

    overrides = shipping_overrides(fake.url)
    overrides["upstream_app"]["workers"] = 2
    overrides["upstream_app"]["shipping"]["max_connections"] = 8
    overrides["upstream_app"]["shipping"]["max_idle_connections"] = 8
    app = start_app(stack, tmp_path, overrides, name="upstream_app_ship2")
    register_process(app)
    try:
        ids = [order_id(stack) for _ in range(60)]
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda oid: shipment(app, oid), ids))
        assert all(r.status == 200 for r in results), [r.describe() for r in results if r.status != 200][:3]
        assert all(r.json()["order_id"] == oid for r, oid in zip(results, ids))
        assert fake.count() == 60
        text = http_request(app.port, "GET", "/metrics").body.decode()
        line = [ln for ln in text.splitlines() if ln.startswith('http_client_requests_total{outcome="success"}')]
        assert line and float(line[0].split()[-1]) == 60, line
        # Connections were kept alive and reused: at most max_connections were ever open together.
        idle = [ln for ln in text.splitlines() if ln.startswith('http_client_pool_connections{state="idle"}')]
        assert idle and 1 <= float(idle[0].split()[-1]) <= 8, idle
    finally:
        stop_app(app)


def test_shutdown_with_a_call_in_flight_exits_cleanly(stack, fake, ship_app):
    import threading as _t

    app = ship_app(fake.url)
    fake.hang_seconds = 3.0
    fake.script(default="hang")
    done = {}
    t = _t.Thread(target=lambda: done.setdefault("r", shipment(app, order_id(stack), timeout=10)))
    t.start()
    time.sleep(0.2)
    code = app.stop(timeout=10)
    t.join(10)
    assert code == 0, app.log_tail()
    assert done["r"].status == 504, done["r"].describe()
