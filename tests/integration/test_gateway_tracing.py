"""CONTRACT §4 Tracing and Logs: W3C traceparent followed and propagated, one server span per
request exported over OTLP/HTTP JSON to a real receiver, access lines carrying trace_id and
span_id, a dead collector costing the request path nothing, and no secrets in logs."""

import json
import time

import pytest

from gateway_harness import free_port, http_request
from otlp_receiver import OtlpReceiver, validate_otlp_json

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def _tracing(endpoint, ratio=1.0):
    return {"gateway": {"tracing": {"enabled": True, "sample_ratio": ratio, "otlp_endpoint": endpoint,
                                    "service_name": "gateway"}}}


@pytest.fixture
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


def _wait_spans(receiver, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = receiver.spans()
        if len(spans) >= count:
            return spans
        time.sleep(0.1)
    return receiver.spans()


def test_sampled_parent_is_followed_propagated_and_exported(start_gateway, fake_upstream, receiver):
    gw = start_gateway(_tracing(receiver.endpoint, ratio=0.0), upstream=fake_upstream)
    tp = "00-%s-%s-01" % (PARENT_TRACE, PARENT_SPAN)
    resp = http_request(gw.port, "GET", "/traced/a", headers=[("traceparent", tp), ("tracestate", "vendor=1")])
    assert resp.status == 200
    seen = dict(fake_upstream.requests_for("/traced/a")[0].headers)
    forwarded = seen.get("traceparent")
    assert forwarded and forwarded.startswith("00-%s-" % PARENT_TRACE) and forwarded.endswith("-01"), forwarded
    assert forwarded.split("-")[2] != PARENT_SPAN, "the upstream's parent is the gateway's span"
    assert seen.get("tracestate") == "vendor=1"
    spans = _wait_spans(receiver, 1)
    assert len(spans) == 1, spans
    span = spans[0]
    assert span["traceId"] == PARENT_TRACE and span["parentSpanId"] == PARENT_SPAN
    assert span["spanId"] == forwarded.split("-")[2]
    assert span["kind"] == 2
    attrs = {a["key"]: list(a["value"].values())[0] for a in span["attributes"]}
    assert attrs["http.request.method"] == "GET" and attrs["url.path"] == "/traced/a"
    assert int(attrs["http.response.status_code"]) == 200
    # The access line carries the same ids.
    deadline = time.monotonic() + 3
    line = None
    while time.monotonic() < deadline and line is None:
        for raw in gw.stdout_path.read_text().splitlines():
            entry = json.loads(raw)
            if entry.get("msg") == "access" and entry.get("path") == "/traced/a":
                line = entry
        time.sleep(0.05)
    assert line and line["trace_id"] == PARENT_TRACE and line["span_id"] == span["spanId"]
    verdict = validate_otlp_json(receiver.raw_bodies())
    assert verdict["returncode"] == 0 and verdict["errors"] == [], verdict


def test_unsampled_requests_still_propagate_a_context_but_export_nothing(start_gateway, fake_upstream, receiver):
    gw = start_gateway(_tracing(receiver.endpoint, ratio=0.0), upstream=fake_upstream)
    assert http_request(gw.port, "GET", "/traced/unsampled").status == 200
    forwarded = dict(fake_upstream.requests_for("/traced/unsampled")[0].headers).get("traceparent")
    assert forwarded and forwarded.endswith("-00")
    time.sleep(1.5)  # more than the exporter's batch delay
    assert receiver.spans() == []


def test_invalid_traceparent_starts_a_new_trace(start_gateway, fake_upstream, receiver):
    gw = start_gateway(_tracing(receiver.endpoint, ratio=1.0), upstream=fake_upstream)
    for bad in ("00-" + "0" * 32 + "-" + PARENT_SPAN + "-01", "garbage", "00-%s-%s-01" % (PARENT_TRACE.upper(), PARENT_SPAN)):
        assert http_request(gw.port, "GET", "/traced/bad", headers=[("traceparent", bad)]).status == 200
    spans = _wait_spans(receiver, 3)
    assert len(spans) == 3
    assert all(s["traceId"] != PARENT_TRACE for s in spans), "an invalid traceparent must not be followed"
    assert all("parentSpanId" not in s or not s["parentSpanId"] for s in spans)


def test_sampling_ratio_is_respected_statistically(start_gateway, fake_upstream, receiver):
    gw = start_gateway(_tracing(receiver.endpoint, ratio=0.1), upstream=fake_upstream)
    from gateway_harness import RawConn, build_request

    n = 10000
    with RawConn(gw.port, timeout=5) as conn:
        for i in range(n):
            conn.send(build_request("GET", "/traced/ratio"))
            assert conn.read_response().status == 200
    # Until the exporter has sent everything (batches every 1s): the count stops moving.
    got, deadline = -1, time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(1.2)
        now = len(receiver.spans())
        if now == got:
            break
        got = now
    # Binomial(10000, 0.1): mean 1000, sd 30; 5 sd either side.
    assert 850 <= got <= 1150, "sampled %d of %d at ratio 0.1" % (got, n)
    assert len({s["traceId"] for s in receiver.spans()}) == got, "one trace per sampled request"
    # What was sent decodes against the OTLP protobuf schema (strict OTLP/JSON rules).
    verdict = validate_otlp_json(receiver.raw_bodies())
    assert verdict["returncode"] == 0 and verdict["errors"] == [] and verdict["spans"] == got, verdict


def test_dead_collector_costs_nothing_and_drops_are_counted(start_gateway, fake_upstream):
    dead = "http://127.0.0.1:%d/v1/traces" % free_port()
    gw = start_gateway(_tracing(dead, ratio=1.0), upstream=fake_upstream)
    worst = 0.0
    for _ in range(50):
        t0 = time.monotonic()
        assert http_request(gw.port, "GET", "/traced/dead").status == 200
        worst = max(worst, time.monotonic() - t0)
    assert worst < 0.5, "a request waited %.3fs while the collector was down" % worst
    metrics = http_request(gw.admin_port, "GET", "/metrics").body.decode()
    assert "gateway_trace_spans_exported_total 0" in metrics
    assert "gateway_trace_spans_dropped_total" in metrics
    t0 = time.monotonic()
    assert gw.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5, "shutdown must not wait on a dead collector beyond its budget"


def test_secrets_never_reach_the_logs(start_gateway, fake_upstream):
    gw = start_gateway({}, upstream=fake_upstream)
    secret_auth = "Bearer super-secret-token-123"
    secret_cookie = "session=cookie-secret-456"
    resp = http_request(gw.port, "GET", "/traced/secret?password=hunter2-in-query",
                        headers=[("Authorization", secret_auth), ("Cookie", secret_cookie)])
    assert resp.status == 200
    time.sleep(0.3)
    logs = gw.stdout_path.read_text() + gw.stderr_path.read_text()
    assert "/traced/secret" in logs
    for secret in ("super-secret-token-123", "cookie-secret-456", "hunter2-in-query"):
        assert secret not in logs, "%s leaked into the logs" % secret
