"""CONTRACT §4 Metrics: /metrics on admin_listen is valid Prometheus text (promtool), every
named metric exists, and the counters move when their event happens."""

import re
import shutil
import subprocess
import threading

import pytest

from gateway_harness import http_request

CONTRACT_METRICS = [
    "gateway_requests_total",
    "gateway_request_duration_seconds",
    "gateway_in_flight_requests",
    "gateway_connections_active",
    "gateway_upstream_requests_total",
    "gateway_upstream_retries_total",
    "gateway_upstream_pool_connections",
    "gateway_circuit_breaker_state",
    "gateway_rate_limited_total",
    "gateway_cache_requests_total",
    "gateway_compressed_responses_total",
    "gateway_concurrency_rejected_total",
    "process_resident_memory_bytes",
]


def scrape(gw) -> str:
    resp = http_request(gw.admin_port, "GET", "/metrics")
    assert resp.status == 200, resp.describe()
    assert resp.header("Content-Type").startswith("text/plain; version=0.0.4"), resp.describe()
    return resp.body.decode()


def sample(text: str, name: str, labels: dict = None) -> float:
    """Value of one series; 0 if absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            return float(m.group(4))
    return 0.0


def test_metrics_are_valid_prometheus_text_with_every_contract_metric(start_gateway, fake_upstream):
    gw = start_gateway({}, upstream=fake_upstream)
    http_request(gw.port, "GET", "/metrics-test/warm")
    text = scrape(gw)
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    missing = [m for m in CONTRACT_METRICS if m not in families]
    assert not missing, "metrics missing from /metrics: %s" % missing
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) not installed")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert check.returncode == 0, "promtool check metrics: %s %s" % (check.stdout, check.stderr)


def test_metrics_move_with_requests_upstream_outcomes_and_rejections(start_gateway, fake_upstream):
    fake_upstream.route("/slow", delay=1.0)
    gw = start_gateway({"gateway": {"limit_concurrency": 1}}, upstream=fake_upstream)
    before = scrape(gw)
    for _ in range(3):
        assert http_request(gw.port, "GET", "/metrics-test/a").status == 200

    # One slow request holds the only concurrency slot; a second one is rejected with 503.
    slow = threading.Thread(target=lambda: http_request(gw.port, "GET", "/slow/x", timeout=5))
    slow.start()
    deadline_hit = False
    for _ in range(50):
        text = scrape(gw)
        if sample(text, "gateway_in_flight_requests") >= 1:
            deadline_hit = True
            break
    assert deadline_hit, "gateway_in_flight_requests never showed the slow request"
    assert sample(text, "gateway_connections_active") >= 1
    assert http_request(gw.port, "GET", "/metrics-test/b").status == 503
    slow.join()

    after = scrape(gw)
    ok = {"method": "GET", "code": "200", "route": "other"}
    assert sample(after, "gateway_requests_total", ok) - sample(before, "gateway_requests_total", ok) == 4
    rejected = {"method": "GET", "code": "503", "route": "other"}
    assert sample(after, "gateway_requests_total", rejected) == 1
    assert sample(after, "gateway_concurrency_rejected_total") == 1
    assert sample(after, "gateway_upstream_requests_total", {"outcome": "success"}) - sample(
        before, "gateway_upstream_requests_total", {"outcome": "success"}
    ) >= 4
    assert sample(after, "gateway_request_duration_seconds_count", {"route": "other"}) >= 5
    slow_bucket = sample(after, "gateway_request_duration_seconds_bucket", {"route": "other", "le": "0.5"})
    total = sample(after, "gateway_request_duration_seconds_count", {"route": "other"})
    assert slow_bucket < total, "the 1 s request must land above the 0.5 s bucket"
    assert sample(after, "gateway_upstream_pool_connections", {"state": "idle"}) >= 1
    assert sample(after, "process_resident_memory_bytes") > 1_000_000


def test_metrics_count_upstream_failures_and_retries(start_gateway, fake_upstream):
    from gateway_harness import free_port

    dead = "127.0.0.1:%d" % free_port()  # nothing listens there
    gw = start_gateway(
        {"gateway": {"upstream": {"retry": {"attempts": 2, "backoff_base": "10ms", "backoff_max": "20ms"}}}},
        upstream_address=dead,
        wait_ready=False,
    )
    resp = http_request(gw.port, "GET", "/metrics-test/down")
    assert resp.status == 502, resp.describe()
    text = scrape(gw)
    assert sample(text, "gateway_upstream_requests_total", {"outcome": "connect_failure"}) == 2
    assert sample(text, "gateway_upstream_retries_total") == 1
    assert sample(text, "gateway_requests_total", {"method": "GET", "code": "502", "route": "other"}) == 1
