"""Issue 7: one trace from the client through the gateway and upstream_app down to each PostgreSQL
statement and Redis command (and the shipping call), exported by both processes over OTLP/HTTP
JSON to one real receiver, against the real stack (PostgreSQL through PgBouncer + Redis).

Checked: every span of a request shares its trace id; parent ids chain client -> gateway ->
app server span -> database/Redis/HTTP client spans; the client spans carry the OpenTelemetry
database conventions (db.system, db.operation.name, db.query.text without parameter values,
db.namespace, server.address/port) and error status on failures (statement_timeout, Redis down);
an unsampled request records no span; every export body decodes against the OTLP protobuf schema
under the strict OTLP/JSON rules (tests/otlp/validate-otlp.mjs), and that check rejects broken
payloads.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway_harness import Gateway, UpstreamApp, deep_merge, free_port, gateway_config, http_request
from otlp_receiver import OtlpReceiver, validate_otlp_json
from test_app_api import TableLock, app_config, migrate_and_seed, stop_app

SERVER, CLIENT = 2, 3
STATUS_ERROR = 2


def _tracing(endpoint: str, ratio: float, service: str) -> dict:
    return {"enabled": True, "sample_ratio": ratio, "otlp_endpoint": endpoint, "service_name": service}


def _attrs(span: dict) -> dict:
    out = {}
    for a in span.get("attributes", []):
        value = a["value"]
        (kind, v), = value.items()
        out[a["key"]] = int(v) if kind == "intValue" else v
    return out


def _new_trace() -> tuple[str, str]:
    """A sampled incoming traceparent with a fresh trace id: the test's spans are found by it."""
    trace_id = uuid.uuid4().hex
    parent = uuid.uuid4().hex[:16]
    return trace_id, "00-%s-%s-01" % (trace_id, parent)


def _spans_of(receiver: OtlpReceiver, trace_id: str, predicate, count: int, timeout: float = 8.0) -> list:
    """The trace's spans once `predicate(spans)` holds (or after `timeout`: the caller's asserts
    then say what is missing). Exporters batch for up to 1s."""
    deadline = time.monotonic() + timeout
    spans = []
    while time.monotonic() < deadline:
        spans = [s for s in receiver.spans() if s["traceId"] == trace_id]
        if len(spans) >= count and predicate(spans):
            time.sleep(0.3)  # stragglers of the same trace (a cache fill after the answer)
            return [s for s in receiver.spans() if s["traceId"] == trace_id]
        time.sleep(0.1)
    return spans


def _db_spans(spans: list, system: str) -> list:
    return [s for s in spans if _attrs(s).get("db.system") == system]


def _statements(spans: list) -> list:
    """The PostgreSQL spans of the transaction itself: a pooled connection idle for 5s or more gets
    a pre-ping first (its own span, "SELECT 1", checked here and left out)."""
    pg = _db_spans(spans, "postgresql")
    for s in pg:
        if _attrs(s)["db.query.text"] == "SELECT 1":
            assert s.get("status", {}).get("code", 0) != STATUS_ERROR, s
    return [s for s in pg if _attrs(s)["db.query.text"] != "SELECT 1"]


def _describe(spans: list) -> str:
    return "\n".join("%s %s kind=%s id=%s parent=%s %s" % (s.get("_service"), s["name"], s["kind"], s["spanId"],
                                                          s.get("parentSpanId", ""), _attrs(s)) for s in spans)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(data_stack, tmp_path_factory):
    migrate_and_seed(data_stack, tmp_path_factory.mktemp("trace-migrate"))
    return data_stack


@pytest.fixture(scope="module")
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


class _Pair:
    def __init__(self, app: UpstreamApp, gw: Gateway):
        self.app = app
        self.gw = gw


@pytest.fixture(scope="module")
def pair(stack, receiver, tmp_path_factory):
    """upstream_app and a gateway in front of it, both tracing every request to `receiver`; one
    config file for both, as in production."""
    workdir = tmp_path_factory.mktemp("trace-pair")
    config = app_config(stack, {"upstream_app": {"tracing": _tracing(receiver.endpoint, 1.0, "upstream-app")}})
    app_address = config["upstream_app"]["listen"]
    config = deep_merge(gateway_config(app_address, stack.redis_url, {
        "gateway": {"drain_delay": "100ms", "graceful_timeout": "2s",
                    "tracing": _tracing(receiver.endpoint, 1.0, "gateway")},
    }), config)
    app = UpstreamApp(config, workdir, name="upstream_app")
    app.start()
    gw = Gateway(config, workdir, name="gateway")
    try:
        app.wait_http_ok(app.port, "/healthz", timeout=15)
        gw.start_and_wait()
        gw.wait_http_ok(gw.port, "/readyz", timeout=15)
    except BaseException:
        for p in (gw, app):
            if p.proc is not None and p.returncode is None:
                p.stop(timeout=5)
        raise
    yield _Pair(app, gw)
    assert gw.stop(timeout=10) == 0, gw.log_tail()
    stop_app(app)


@pytest.fixture
def extra_app(stack, receiver, tmp_path, register_process):
    """An upstream_app with its own settings (tracing to `receiver` at ratio 1 unless overridden)."""
    started = []

    def start(overrides: dict, name: str = "upstream_app_trace") -> UpstreamApp:
        base = {"upstream_app": {"tracing": _tracing(receiver.endpoint, 1.0, "upstream-app")}}
        proc = UpstreamApp(app_config(stack, deep_merge(base, overrides)), tmp_path, name=name)
        register_process(proc)
        started.append(proc)
        proc.start()
        proc.wait_http_ok(proc.port, "/healthz", timeout=10)
        return proc

    yield start
    for proc in started:
        stop_app(proc)


def _uncached(stack, article_id: int) -> int:
    stack.redis_cli("DEL", "app:article:%d" % article_id, "app:article:%d:fill" % article_id)
    return article_id


def _check_chain(spans: list, incoming_parent: str) -> tuple[dict, list]:
    """Gateway server span child of the client's, app server span child of what the gateway
    forwarded; returns (app server span, app client spans)."""
    gw_server = [s for s in spans if s["_service"] == "gateway" and s["kind"] == SERVER]
    app_server = [s for s in spans if s["_service"] == "upstream-app" and s["kind"] == SERVER]
    assert len(gw_server) == 1 and len(app_server) == 1, _describe(spans)
    assert gw_server[0]["parentSpanId"] == incoming_parent, _describe(spans)
    # The gateway forwards its CLIENT span's context when it records one, else its server span's.
    gw_client = [s for s in spans if s["_service"] == "gateway" and s["kind"] == CLIENT]
    forwarded = gw_client[0]["spanId"] if gw_client else gw_server[0]["spanId"]
    if gw_client:
        assert gw_client[0]["parentSpanId"] == gw_server[0]["spanId"], _describe(spans)
    assert app_server[0]["parentSpanId"] == forwarded, _describe(spans)
    app_clients = [s for s in spans if s["_service"] == "upstream-app" and s["kind"] == CLIENT]
    for s in app_clients:
        assert s["parentSpanId"] == app_server[0]["spanId"], "client span not under the app's server span:\n" + \
            _describe(spans)
    ids = [s["spanId"] for s in spans]
    assert len(ids) == len(set(ids)), "span ids must be unique:\n" + _describe(spans)
    return app_server[0], app_clients


def _check_pg(span: dict, stack) -> dict:
    a = _attrs(span)
    assert span["kind"] == CLIENT
    assert a["db.system"] == "postgresql"
    assert a["db.namespace"] == "app"
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == stack.pgbouncer_port, a
    assert a["db.operation.name"] == a["db.query.text"].split()[0].upper(), a
    assert span["name"] == "%s app" % a["db.operation.name"], span["name"]
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
    return a


def _check_redis(span: dict, stack) -> dict:
    a = _attrs(span)
    assert span["kind"] == CLIENT
    assert a["db.system"] == "redis"
    assert a["db.namespace"] == "0"
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == stack.redis_port, a
    assert span["name"] == "%s 0" % a["db.operation.name"], span["name"]
    return a


# -- the chain ----------------------------------------------------------------------------------


def test_article_miss_is_one_trace_from_gateway_to_each_statement_and_command(pair, stack, receiver):
    article_id = _uncached(stack, 7777)
    trace_id, tp = _new_trace()
    resp = http_request(pair.gw.port, "GET", "/articles/%d" % article_id, headers=[("traceparent", tp)])
    assert resp.status == 200, resp.describe()

    def complete(spans):
        return len(_db_spans(spans, "postgresql")) >= 2 and len(_db_spans(spans, "redis")) >= 3 and \
            sum(1 for s in spans if s["kind"] == SERVER) >= 2

    spans = _spans_of(receiver, trace_id, complete, 7)
    app_server, clients = _check_chain(spans, tp.split("-")[2])
    assert _attrs(app_server)["http.route"] == "/articles/{id}"

    pg = _statements(spans)
    texts = [_check_pg(s, stack)["db.query.text"] for s in pg]
    assert texts == ["SELECT set_config('statement_timeout', $1, true)",
                     next(t for t in texts if "FROM articles WHERE id = $1" in t)], texts
    redis = sorted(_db_spans(spans, "redis"), key=lambda s: int(s["startTimeUnixNano"]))
    ops = [_check_redis(s, stack)["db.operation.name"] for s in redis]
    # GET (miss), the lock script, then the fill script after the answer.
    assert ops == ["GET", "EVAL", "EVAL"], _describe(redis)
    assert _attrs(redis[0])["db.query.text"] == "GET ?"
    assert all(s.get("status", {}).get("code", 0) != STATUS_ERROR for s in pg + redis), _describe(spans)
    # No parameter values: neither the id nor the article's content in any query text.
    title = resp.json()["title"]
    for s in pg + redis:
        text = _attrs(s)["db.query.text"]
        assert "7777" not in text and title not in text, text
    assert {s["spanId"] for s in clients} == {s["spanId"] for s in _db_spans(spans, "postgresql") + redis}, \
        _describe(spans)

    verdict = validate_otlp_json(receiver.raw_bodies())
    assert verdict["returncode"] == 0 and verdict["errors"] == [], verdict
    assert verdict["spans"] >= len(spans)


def test_writes_trace_update_invalidate_and_idempotent_order(pair, stack, receiver):
    trace_id, tp = _new_trace()
    resp = http_request(pair.gw.port, "PUT", "/articles/12", body=json.dumps({"title": "traced", "body": "b"}).encode(),
                        headers=[("traceparent", tp), ("Content-Type", "application/json")])
    assert resp.status == 200, resp.describe()
    spans = _spans_of(receiver, trace_id, lambda s: len(_db_spans(s, "redis")) >= 1 and
                      len(_db_spans(s, "postgresql")) >= 2, 5)
    _check_chain(spans, tp.split("-")[2])
    pg_ops = [_check_pg(s, stack)["db.operation.name"] for s in _statements(spans)]
    assert pg_ops == ["SELECT", "UPDATE"], _describe(spans)
    assert [_check_redis(s, stack)["db.query.text"] for s in _db_spans(spans, "redis")] == ["DEL ? ?"]

    trace_id, tp = _new_trace()
    order = {"customer_id": 4242, "items": [{"sku": "TRACE-SKU", "quantity": 2, "unit_price_cents": 150}]}
    resp = http_request(pair.gw.port, "POST", "/orders", body=json.dumps(order).encode(),
                        headers=[("traceparent", tp), ("Content-Type", "application/json"),
                                 ("Idempotency-Key", "trace-" + uuid.uuid4().hex)])
    assert resp.status == 201, resp.describe()
    spans = _spans_of(receiver, trace_id, lambda s: len(_db_spans(s, "redis")) >= 2, 5)
    _check_chain(spans, tp.split("-")[2])
    redis = sorted(_db_spans(spans, "redis"), key=lambda s: int(s["startTimeUnixNano"]))
    assert [_check_redis(s, stack)["db.query.text"] for s in redis] == ["SET ? ? ? ? ?", "SET ? ? ? ?"], \
        _describe(redis)
    pg = _statements(spans)
    assert len(pg) >= 2 and any(_check_pg(s, stack)["db.operation.name"] in ("INSERT", "WITH") for s in pg), \
        _describe(pg)
    for s in pg:
        assert "TRACE-SKU" not in _attrs(s)["db.query.text"] and "4242" not in _attrs(s)["db.query.text"]
    # The order's statements ran between the two Redis commands (captured across the callbacks).
    assert int(redis[0]["endTimeUnixNano"]) <= min(int(s["startTimeUnixNano"]) for s in pg)
    assert max(int(s["endTimeUnixNano"]) for s in pg) <= int(redis[1]["startTimeUnixNano"])


class _ShippingService:
    """A stand-in for shipping.base_url that records each request's trace headers."""

    def __init__(self):
        self.headers: list = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps({"id": int(self.path.rsplit("/", 1)[-1]), "status": "in_transit"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_shipping_call_is_a_client_span_whose_context_reaches_the_service(stack, receiver, extra_app):
    service = _ShippingService()
    try:
        app = extra_app({"upstream_app": {"shipping": {"base_url": service.base_url}}})
        stack.redis_cli("DEL", "app:shipment:3")
        trace_id, tp = _new_trace()
        resp = http_request(app.port, "GET", "/orders/3/shipment", headers=[("traceparent", tp)])
        assert resp.status == 200, resp.describe()
        spans = _spans_of(receiver, trace_id, lambda s: any(_attrs(x).get("http.request.method") == "GET" and
                                                            x["kind"] == CLIENT for x in s) and
                          len(_db_spans(s, "redis")) >= 2, 5)
        server = [s for s in spans if s["kind"] == SERVER]
        assert len(server) == 1 and server[0]["parentSpanId"] == tp.split("-")[2], _describe(spans)
        http_client = [s for s in spans if s["kind"] == CLIENT and "db.system" not in _attrs(s)]
        assert len(http_client) == 1, _describe(spans)
        a = _attrs(http_client[0])
        assert a["url.full"] == service.base_url + "/shipments/3" and a["http.response.status_code"] == 200, a
        assert a["server.port"] == int(service.base_url.rsplit(":", 1)[1])
        # Order check (PostgreSQL), cache GET, the call, then the cache SET: all under the request.
        assert [_attrs(s)["db.operation.name"] for s in sorted(_db_spans(spans, "redis"),
                                                                  key=lambda s: int(s["startTimeUnixNano"]))] == \
            ["GET", "SET"]
        for s in spans:
            if s["kind"] == CLIENT:
                assert s["parentSpanId"] == server[0]["spanId"], _describe(spans)
        assert len(service.headers) == 1
        assert service.headers[0].get("traceparent") == "00-%s-%s-01" % (trace_id, http_client[0]["spanId"])
    finally:
        service.stop()


# -- failures -----------------------------------------------------------------------------------


def test_statement_timeout_is_an_error_span_with_its_sqlstate(stack, receiver, extra_app):
    app = extra_app({"upstream_app": {"database": {"statement_timeout": "300ms"}}})
    trace_id, tp = _new_trace()
    with TableLock(stack, "orders", 5):
        resp = http_request(app.port, "GET", "/orders/5", headers=[("traceparent", tp)], timeout=10)
    assert resp.status == 504, resp.describe()
    spans = _spans_of(receiver, trace_id, lambda s: any(x.get("status", {}).get("code") == STATUS_ERROR
                                                        for x in _db_spans(s, "postgresql")), 3)
    server = [s for s in spans if s["kind"] == SERVER]
    assert len(server) == 1, _describe(spans)
    pg = _statements(spans)
    failed = [s for s in pg if s.get("status", {}).get("code") == STATUS_ERROR]
    assert failed, _describe(spans)
    a = _check_pg(failed[0], stack)
    assert a["db.response.status_code"] == "57014" and a["error.type"] == "57014", a
    assert "FROM orders" in a["db.query.text"]
    assert int(failed[0]["endTimeUnixNano"]) - int(failed[0]["startTimeUnixNano"]) >= 250_000_000
    assert all(s["parentSpanId"] == server[0]["spanId"] for s in pg)
    # set_config ran fine before it.
    assert _attrs(pg[0])["db.query.text"].startswith("SELECT set_config") and \
        pg[0].get("status", {}).get("code", 0) != STATUS_ERROR


def test_redis_down_gives_error_spans_and_the_database_fallback_is_traced(stack, receiver, extra_app):
    dead = "redis://127.0.0.1:%d/0" % free_port()
    app = extra_app({"redis": {"url": dead, "connect_timeout": "100ms"}})
    trace_id, tp = _new_trace()
    resp = http_request(app.port, "GET", "/articles/21", headers=[("traceparent", tp)])
    assert resp.status == 200, resp.describe()
    spans = _spans_of(receiver, trace_id, lambda s: len(_db_spans(s, "postgresql")) >= 2 and
                      len(_db_spans(s, "redis")) >= 1, 4)
    server = [s for s in spans if s["kind"] == SERVER]
    assert len(server) == 1
    redis = _db_spans(spans, "redis")
    assert len(redis) == 1, _describe(spans)
    a = _attrs(redis[0])
    assert redis[0]["status"]["code"] == STATUS_ERROR and a["error.type"] in ("disconnected", "timeout"), a
    assert a["server.port"] == int(dead.rsplit(":", 1)[1].split("/")[0])
    pg = _statements(spans)
    assert len(pg) == 2 and all(s["parentSpanId"] == server[0]["spanId"] for s in pg + redis), _describe(spans)


def test_unsampled_request_records_no_span_and_propagates_its_decision(stack, receiver, extra_app):
    app = extra_app({})
    trace_id = uuid.uuid4().hex
    tp = "00-%s-%s-00" % (trace_id, uuid.uuid4().hex[:16])
    article = _uncached(stack, 31)
    assert http_request(app.port, "GET", "/articles/%d" % article, headers=[("traceparent", tp)]).status == 200
    assert http_request(app.port, "POST", "/orders", body=json.dumps(
        {"customer_id": 5, "items": [{"sku": "U", "quantity": 1, "unit_price_cents": 1}]}).encode(),
        headers=[("traceparent", tp), ("Content-Type", "application/json"),
                 ("Idempotency-Key", uuid.uuid4().hex)]).status == 201
    time.sleep(1.6)  # more than the exporter's batch delay
    assert [s for s in receiver.spans() if s["traceId"] == trace_id] == []


def test_dead_collector_costs_the_app_nothing(stack, extra_app):
    dead = "http://127.0.0.1:%d/v1/traces" % free_port()
    app = extra_app({"upstream_app": {"tracing": _tracing(dead, 1.0, "upstream-app")}})
    worst = 0.0
    for i in range(40):
        t0 = time.monotonic()
        assert http_request(app.port, "GET", "/articles/%d" % (100 + i % 5)).status == 200
        worst = max(worst, time.monotonic() - t0)
    assert worst < 0.5, "a request waited %.3fs while the collector was down" % worst
    t0 = time.monotonic()
    stop_app(app)
    assert time.monotonic() - t0 < 5, "shutdown must not wait on a dead collector beyond its 2s budget"


# -- the schema check itself ------------------------------------------------------------------


def test_schema_check_rejects_broken_payloads(pair, receiver):
    trace_id, tp = _new_trace()
    assert http_request(pair.gw.port, "GET", "/articles/1", headers=[("traceparent", tp)]).status == 200
    _spans_of(receiver, trace_id, lambda s: len(s) >= 3, 3)
    body = next(json.loads(raw) for raw in receiver.raw_bodies() if trace_id.encode() in raw)
    assert validate_otlp_json([json.dumps(body)])["returncode"] == 0

    def span0(doc):
        return doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]

    def mutate(fn):
        doc = copy.deepcopy(body)
        fn(doc)
        return json.dumps(doc)

    def attr0(doc):
        return span0(doc)["attributes"][0]["value"]

    broken = {
        "unknown span field": lambda d: span0(d).update(bogus=1),
        "unknown top-level field": lambda d: d.update(resource_spans=[]),
        "snake_case key": lambda d: span0(d).update(start_time_unix_nano=span0(d).pop("startTimeUnixNano")),
        "enum as its name": lambda d: span0(d).update(kind="SPAN_KIND_SERVER"),
        "enum value out of range": lambda d: span0(d).update(kind=9),
        "status code as a name": lambda d: span0(d).update(status={"code": "STATUS_CODE_ERROR"}),
        "trace id in base64": lambda d: span0(d).update(traceId="S/kvNXezTaajzpKdDg5HNg=="),
        "span id too short": lambda d: span0(d).update(spanId="00f067aa"),
        "all-zero trace id": lambda d: span0(d).update(traceId="0" * 32),
        "int64 that is not a number": lambda d: span0(d).update(endTimeUnixNano="soon"),
        "uint32 as a string": lambda d: span0(d).update(droppedAttributesCount="1"),
        "two oneof members": lambda d: attr0(d).update(intValue="1"),
        "attribute value not an object": lambda d: span0(d)["attributes"][0].update(value="GET"),
        "null field": lambda d: span0(d).update(name=None),
        "spans not an array": lambda d: d["resourceSpans"][0]["scopeSpans"][0].update(spans={}),
    }
    for what, fn in broken.items():
        verdict = validate_otlp_json([mutate(fn)])
        assert verdict["returncode"] == 1 and verdict["errors"], "%s was accepted: %s" % (what, verdict)
