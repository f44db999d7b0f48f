"""upstream_app's GET /metrics (CONTRACT §5, issue 7): `promtool check metrics` accepts it, every
named family exists, and each moves when its event happens. Real stack + the fake shipping
service of test_app_shipment.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from gateway_harness import http_request
from test_app_api import call, migrate_and_seed, start_app, stop_app
from test_app_shipment import FakeShipping, shipping_overrides

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


@pytest.fixture(scope="module")
def stack(data_stack, tmp_path_factory):
    migrate_and_seed(data_stack, tmp_path_factory.mktemp("metrics-migrate"))
    return data_stack


@pytest.fixture(scope="module")
def fake():
    f = FakeShipping()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def app(stack, fake, tmp_path_factory):
    proc = start_app(stack, tmp_path_factory.mktemp("metrics-app"), shipping_overrides(fake.url))
    yield proc
    stop_app(proc)


def scrape(app) -> str:
    r = http_request(app.port, "GET", "/metrics")
    assert r.status == 200, r.describe()
    assert (r.header("content-type") or "").startswith("text/plain; version=0.0.4"), r.describe()
    return r.body.decode()


def samples(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "unparsable sample line: %r" % line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def value(text: str, series: str) -> float:
    return samples(text).get(series, 0.0)


def test_promtool_accepts_metrics(app):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    call(app, "GET", "/articles/1")
    call(app, "GET", "/orders/1/shipment")
    text = scrape(app)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, "promtool:\n%s%s\n--- metrics ---\n%s" % (result.stdout, result.stderr, text)


def test_named_families_exist(app):
    text = scrape(app)
    for name, kind in [
        ("http_requests_total", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("db_pool_connections", "gauge"),
        ("db_pool_wait_seconds", "histogram"),
        ("db_query_duration_seconds", "histogram"),
        ("cache_requests_total", "counter"),
        ("http_client_requests_total", "counter"),
        ("http_client_retries_total", "counter"),
        ("shipping_circuit_breaker_state", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
    ]:
        assert "# TYPE %s %s\n" % (name, kind) in text, name
    for state in ("idle", "in_use", "connecting"):
        assert 'db_pool_connections{state="%s"}' % state in text


def test_request_counter_uses_route_pattern(app):
    before = scrape(app)
    series = 'http_requests_total{method="GET",code="200",route="/orders/{id}"}'
    for oid in (3, 4, 5):
        assert call(app, "GET", "/orders/%d" % oid).status == 200
    assert call(app, "GET", "/no/such/path/12345").status == 404
    after = scrape(app)
    assert value(after, series) - value(before, series) == 3
    assert value(after, 'http_requests_total{method="GET",code="404",route="unmatched"}') >= 1
    assert "/orders/3" not in after and "12345" not in after, "raw paths must never become labels"
    hist = 'http_request_duration_seconds_count{route="/orders/{id}"}'
    assert value(after, hist) - value(before, hist) == 3


def test_db_metrics_move(app):
    before = scrape(app)
    assert call(app, "GET", "/orders/7").status == 200
    after = scrape(app)
    q = 'db_query_duration_seconds_count{query="orders.get"}'
    assert value(after, q) - value(before, q) >= 1
    assert value(after, "db_pool_wait_seconds_count") - value(before, "db_pool_wait_seconds_count") >= 1
    open_conns = sum(value(after, 'db_pool_connections{state="%s"}' % s) for s in ("idle", "in_use"))
    assert open_conns >= 1


def test_cache_metrics_move(app, stack):
    stack.redis_cli("DEL", "app:article:42")
    before = scrape(app)
    assert call(app, "GET", "/articles/42").status == 200
    time.sleep(0.1)  # the fill is written after the answer
    assert call(app, "GET", "/articles/42").status == 200
    after = scrape(app)
    hit = 'cache_requests_total{cache="article",result="hit"}'
    miss = 'cache_requests_total{cache="article",result="miss"}'
    assert value(after, miss) - value(before, miss) >= 1
    assert value(after, hit) - value(before, hit) >= 1


def test_shipping_metrics_move(app, fake, stack):
    stack.redis_cli("DEL", "app:shipment:9")
    before = scrape(app)
    fake.script("503")
    r = call(app, "GET", "/orders/9/shipment")
    assert r.status == 200, r.describe()
    after = scrape(app)
    ok = 'http_client_requests_total{outcome="success"}'
    err = 'http_client_requests_total{outcome="server_error"}'
    assert value(after, ok) - value(before, ok) == 1
    assert value(after, err) - value(before, err) == 1
    assert value(after, "http_client_retries_total") - value(before, "http_client_retries_total") == 1
    assert value(after, "shipping_circuit_breaker_state") == 0
    miss = 'cache_requests_total{cache="shipment",result="miss"}'
    assert value(after, miss) - value(before, miss) == 1
