"""CONTRACT §4 Proxying, Request ID, upstream errors, concurrency limit and
health endpoints, against a scripted fake upstream."""

import json
import re
import threading
import time

import pytest

from fake_upstream import expected_sha256, generated_chunks
from gateway_harness import (
    RawConn,
    ResponseTimeout,
    RssSampler,
    ServerClosed,
    ServerReset,
    build_request,
    error_json_problems,
    free_port,
    http_request,
)

MIB = 1024 * 1024
WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Streaming must not hold a large body in memory (CONTRACT §4 Proxying).
RSS_BUDGET_KIB = 16 * 1024

HOP_BY_HOP = ["keep-alive", "te", "trailer", "upgrade", "proxy-connection", "transfer-encoding"]


# ----- keep-alive -------------------------------------------------------------


def test_keep_alive_reuses_one_connection_on_each_side(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"workers": 1}}, upstream=fake_upstream)
    with RawConn(gw.port, timeout=3.0) as conn:
        for i in range(50):
            conn.send(build_request("GET", "/ka/%d" % i))
            try:
                resp = conn.read_response()
            except (ServerClosed, ServerReset) as exc:
                pytest.fail("request %d of 50 on one keep-alive connection: %s" % (i, exc))
            assert resp.status == 200, "request %d: %s" % (i, resp.describe())
            assert "close" not in resp.connection_tokens(), "request %d closed the connection: %s" % (
                i,
                resp.describe(),
            )
            assert resp.json()["path"] == "/ka/%d" % i
    conns = fake_upstream.conn_ids_for("/ka/")
    assert len(fake_upstream.requests_for("/ka/")) == 50
    assert len(conns) == 1, (
        "50 sequential requests through 1 worker used %d upstream connections (expected 1 reused): %r"
        % (len(conns), sorted(conns))
    )


# ----- hop-by-hop and forwarding headers ----------------------------------------


def test_hop_by_hop_request_headers_are_not_forwarded(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    raw = (
        b"GET /hop/request HTTP/1.1\r\n"
        b"Host: example.test\r\n"
        b"Connection: keep-alive, X-Foo\r\n"
        b"X-Foo: connection-scoped\r\n"
        b"Keep-Alive: timeout=5, max=100\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-Checksum\r\n"
        b"Upgrade: foo/1\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"X-Keep-Me: yes\r\n"
        b"\r\n"
    )
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(raw)
        resp = conn.read_response()
    assert resp.status == 200, resp.describe()
    seen = fake_upstream.requests_for("/hop/request")
    assert len(seen) == 1
    rec = seen[0]
    leaked = sorted(rec.header_names() & set(HOP_BY_HOP + ["x-foo"]))
    assert not leaked, "hop-by-hop headers forwarded to the upstream: %r (all headers %r)" % (leaked, rec.headers)
    # The gateway may state its own hop's persistence, never the client's tokens.
    conn_tokens = {t.strip().lower() for t in (rec.header("connection") or "").split(",") if t.strip()}
    assert conn_tokens <= {"keep-alive", "close"}, "upstream got Connection: %r" % rec.header("connection")
    assert rec.header("x-keep-me") == "yes", "end-to-end header lost: %r" % rec.headers


def test_hop_by_hop_response_headers_are_not_returned(start_gateway, fake_upstream):
    fake_upstream.route(
        "/hop/response",
        headers=[
            ("Connection", "keep-alive, X-Bar"),
            ("X-Bar", "connection-scoped"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "foo/1"),
            ("Trailer", "X-Checksum"),
            ("X-Keep", "yes"),
        ],
    )
    gw = start_gateway(upstream=fake_upstream)
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(build_request("GET", "/hop/response"))
        resp = conn.read_response()
        assert resp.status == 200, resp.describe()
        leaked = sorted(
            {n.lower() for (n, _) in resp.headers} & {"x-bar", "keep-alive", "proxy-connection", "upgrade", "trailer"}
        )
        assert not leaked, "hop-by-hop response headers returned to the client: %r in %s" % (leaked, resp.describe())
        assert resp.connection_tokens() <= {"keep-alive", "close"}, (
            "client got Connection: %r" % resp.header("connection")
        )
        assert resp.header("x-keep") == "yes", resp.describe()
        # The client connection stays usable.
        conn.send(build_request("GET", "/hop/after"))
        assert conn.read_response().status == 200


def test_upstream_chunked_response_reaches_client_with_single_framing(start_gateway, fake_upstream):
    fake_upstream.route("/hop/chunked", stream_size=100_000, chunked=True)
    gw = start_gateway(upstream=fake_upstream)
    with RawConn(gw.port, timeout=5.0) as conn:
        conn.send(build_request("GET", "/hop/chunked"))
        resp = conn.read_response()
        assert resp.status == 200, resp.describe()
        te = resp.header_list("transfer-encoding")
        cl = resp.header_list("content-length")
        assert (te == ["chunked"] and not cl) or (not te and len(cl) == 1), (
            "response framing: Transfer-Encoding %r, Content-Length %r" % (te, cl)
        )
        assert len(resp.body) == 100_000
        assert resp.body_sha256 == expected_sha256(100_000)
        conn.send(build_request("GET", "/hop/after"))
        assert conn.read_response().status == 200


def test_upstream_response_with_both_framings_is_not_passed_through(start_gateway, fake_upstream):
    """An upstream answer with Content-Length and Transfer-Encoding (response
    smuggling): the gateway either reframes it (chunked wins, RFC 9112 §6.3) or
    answers 502; never both headers to the client, never a desynced connection."""
    fake_upstream.route(
        "/hop/both",
        stream_size=1000,
        chunked=True,
        raw_framing=True,
        headers=[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
    )
    gw = start_gateway(upstream=fake_upstream)
    with RawConn(gw.port, timeout=5.0) as conn:
        conn.send(build_request("GET", "/hop/both"))
        resp = conn.read_response()
        te = resp.header_list("transfer-encoding")
        cl = resp.header_list("content-length")
        assert not (te and cl), "client got both Transfer-Encoding %r and Content-Length %r" % (te, cl)
        if resp.status == 200:
            assert resp.body_sha256 == expected_sha256(1000), "reframed body differs: %s" % resp.describe()
        else:
            assert resp.status == 502, "upstream sent CL+TE: %s" % resp.describe()
        if "close" not in resp.connection_tokens():
            conn.send(build_request("GET", "/hop/after-both"))
            after = conn.read_response()
            assert after.status == 200 and after.header("x-echo-path") == "/hop/after-both", after.describe()


def test_forwarded_headers_set_and_x_forwarded_for_appended(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    resp = http_request(
        gw.port,
        "GET",
        "/fwd/existing",
        headers=[("X-Forwarded-For", "203.0.113.7")],
    )
    assert resp.status == 200, resp.describe()
    rec = fake_upstream.requests_for("/fwd/existing")[0]
    xff = [p.strip() for p in (rec.header("x-forwarded-for") or "").split(",")]
    # nginx's $proxy_add_x_forwarded_for: existing list, then the peer address.
    assert xff == ["203.0.113.7", "127.0.0.1"], "upstream X-Forwarded-For: %r" % rec.header("x-forwarded-for")
    assert rec.header("x-forwarded-proto") == "http", rec.headers
    # build_request sends Host: gateway.test
    assert rec.header("x-forwarded-host") == "gateway.test", rec.headers


def test_x_forwarded_for_set_when_absent(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/fwd/absent")
    assert resp.status == 200, resp.describe()
    rec = fake_upstream.requests_for("/fwd/absent")[0]
    assert rec.header("x-forwarded-for") == "127.0.0.1", rec.headers
    assert rec.header("x-forwarded-proto") == "http", rec.headers
    assert rec.header("x-forwarded-host") == "gateway.test", rec.headers


# ----- request ID -------------------------------------------------------------------


@pytest.mark.parametrize(
    "incoming",
    ["abc.DEF_123-x", "A" * 128, "0"],
    ids=["mixed", "128_chars", "one_char"],
)
def test_well_formed_request_id_is_kept_and_echoed(start_gateway, fake_upstream, incoming):
    gw = start_gateway(upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/rid/kept", headers=[("X-Request-ID", incoming)])
    assert resp.status == 200, resp.describe()
    rec = fake_upstream.requests_for("/rid/kept")[0]
    assert rec.header("x-request-id") == incoming, "upstream got X-Request-ID %r, sent %r" % (
        rec.header("x-request-id"),
        incoming,
    )
    assert resp.header("x-request-id") == incoming, "response X-Request-ID %r, sent %r" % (
        resp.header("x-request-id"),
        incoming,
    )


@pytest.mark.parametrize(
    "incoming",
    ["a" * 129, "a" * 200, "has space", "a<b>", "semi;colon", "slash/id"],
    ids=["129_chars", "200_chars", "space", "angle_brackets", "semicolon", "slash"],
)
def test_malformed_request_id_is_replaced_consistently(start_gateway, fake_upstream, incoming):
    gw = start_gateway(upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/rid/replaced", headers=[("X-Request-ID", incoming)])
    assert resp.status == 200, resp.describe()
    rec = fake_upstream.requests_for("/rid/replaced")[0]
    upstream_ids = [v for (n, v) in rec.headers if n.lower() == "x-request-id"]
    assert len(upstream_ids) == 1, "upstream got X-Request-ID headers %r for incoming %r" % (upstream_ids, incoming)
    new_id = upstream_ids[0]
    assert new_id != incoming, "malformed X-Request-ID %r was forwarded unchanged" % incoming
    assert WELL_FORMED_ID.match(new_id), "generated X-Request-ID %r is not well-formed" % new_id
    assert resp.header_list("x-request-id") == [new_id], (
        "response X-Request-ID %r differs from the one the upstream saw %r" % (resp.header_list("x-request-id"), new_id)
    )


def test_missing_request_id_is_generated_unique_and_consistent(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    ids = []
    for i in range(3):
        resp = http_request(gw.port, "GET", "/rid/new/%d" % i)
        assert resp.status == 200, resp.describe()
        rec = fake_upstream.requests_for("/rid/new/%d" % i)[0]
        rid = rec.header("x-request-id")
        assert rid and WELL_FORMED_ID.match(rid), "upstream X-Request-ID %r" % rid
        assert resp.header("x-request-id") == rid, "response %r vs upstream %r" % (resp.header("x-request-id"), rid)
        ids.append(rid)
    assert len(set(ids)) == 3, "generated request IDs repeat: %r" % ids


# ----- pipelining --------------------------------------------------------------------


def test_pipelined_requests_answered_in_order(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    requests = []
    for i in range(10):
        # Make early ones slow so that a gateway answering out of order shows it.
        delay = {0: 150, 1: 80, 4: 40}.get(i, 0)
        path = "/pipe/%d?delay_ms=%d" % (i, delay)
        if i == 5:
            requests.append(build_request("POST", path, body=b"pipelined-body"))
        else:
            requests.append(build_request("GET", path))
    with RawConn(gw.port, timeout=5.0) as conn:
        conn.send(b"".join(requests))
        for i in range(10):
            try:
                resp = conn.read_response()
            except (ServerClosed, ServerReset, ResponseTimeout) as exc:
                pytest.fail("10 pipelined requests in one write: response %d missing: %s" % (i, exc))
            assert resp.status == 200, "pipelined response %d: %s" % (i, resp.describe())
            assert resp.header("x-echo-path") == "/pipe/%d" % i, (
                "pipelined response %d is for %r" % (i, resp.header("x-echo-path"))
            )
            doc = resp.json()
            assert doc["path"] == "/pipe/%d" % i
            if i == 5:
                assert doc["body_len"] == len(b"pipelined-body"), doc


# ----- large bodies streamed -------------------------------------------------------


def _send_upload(conn: RawConn, size: int, framing: str, path: str) -> None:
    headers = [("Content-Type", "application/octet-stream")]
    if framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        conn.send(build_request("POST", path, headers=headers))
        for piece in generated_chunks(size):
            conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
    else:
        headers.append(("Content-Length", str(size)))
        conn.send(build_request("POST", path, headers=headers))
        for piece in generated_chunks(size):
            conn.send(piece)


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_50mib_upload_is_streamed_to_upstream_with_bounded_memory(start_gateway, fake_upstream, framing):
    size = 50 * MIB
    # The upstream stops reading for 1s after the first MiB: a gateway that
    # does not apply backpressure would buffer the rest of the body.
    fake_upstream.route("/upload", read_pause=(MIB, 1.0))
    gw = start_gateway({"gateway": {"max_body_bytes": "64MiB"}}, upstream=fake_upstream)
    assert http_request(gw.port, "POST", "/upload/warmup", body=b"x" * 65536).status == 200
    with RawConn(gw.port, timeout=30.0) as conn:
        with RssSampler(gw.pid) as rss:
            _send_upload(conn, size, framing, "/upload/big")
            resp = conn.read_response(timeout=30.0)
    assert resp.status == 200, resp.describe()
    doc = resp.json()
    assert doc["body_len"] == size, "upstream got %d of %d bytes" % (doc["body_len"], size)
    assert doc["body_sha256"] == expected_sha256(size), "upstream body sha256 mismatch"
    if gw.is_sanitized():
        pytest.skip("RSS budget not checked under ASan (quarantine keeps freed memory); streaming checked")
    assert rss.growth_kib < RSS_BUDGET_KIB, (
        "gateway VmRSS grew by %d KiB (baseline %d, peak %d) during a 50 MiB %s upload"
        % (rss.growth_kib, rss.baseline_kib, rss.peak_kib, framing)
    )


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_50mib_download_is_streamed_to_client_with_bounded_memory(start_gateway, fake_upstream, framing):
    size = 50 * MIB
    fake_upstream.route("/download", stream_size=size, chunked=(framing == "chunked"))
    fake_upstream.route("/download/warmup", stream_size=65536)
    gw = start_gateway(upstream=fake_upstream)
    assert http_request(gw.port, "GET", "/download/warmup").status == 200
    with RawConn(gw.port, timeout=30.0) as conn:
        with RssSampler(gw.pid) as rss:
            conn.send(build_request("GET", "/download/big"))
            # The client stops reading for 1s after the first MiB: the gateway
            # must stop reading the upstream rather than buffer 49 MiB.
            resp = conn.read_response(timeout=30.0, keep_body=False, body_pause=(MIB, 1.0))
    assert resp.status == 200, resp.describe()
    assert resp.body_sha256 == expected_sha256(size), "downloaded body sha256 mismatch"
    if gw.is_sanitized():
        pytest.skip("RSS budget not checked under ASan (quarantine keeps freed memory); streaming checked")
    assert rss.growth_kib < RSS_BUDGET_KIB, (
        "gateway VmRSS grew by %d KiB (baseline %d, peak %d) during a 50 MiB %s download"
        % (rss.growth_kib, rss.baseline_kib, rss.peak_kib, framing)
    )


# ----- upstream failures -------------------------------------------------------------


def test_upstream_down_gives_502_json(start_gateway):
    dead = "127.0.0.1:%d" % free_port()
    gw = start_gateway(upstream_address=dead, wait_ready=False)
    t0 = time.monotonic()
    resp = http_request(gw.port, "GET", "/down", headers=[("X-Request-ID", "down-1")], timeout=10.0)
    elapsed = time.monotonic() - t0
    assert resp.status == 502, "GET /down with nothing on %s: %s" % (dead, resp.describe())
    problems = error_json_problems(resp)
    assert not problems, "502 body: %s; %s" % (problems, resp.describe())
    assert resp.json()["request_id"] == "down-1", resp.describe()
    # Default retry: 3 attempts, backoff 200ms..1s with full jitter.
    assert elapsed < 4.0, "502 took %.2fs" % elapsed


def test_upstream_slower_than_read_timeout_gives_504_json(start_gateway, fake_upstream):
    fake_upstream.route("/slow", delay=2.0)
    gw = start_gateway(
        # One attempt so that the timing checks the read timeout, not retries.
        {"gateway": {"upstream": {"read_timeout": "300ms", "retry": {"attempts": 1}}}},
        upstream=fake_upstream,
    )
    t0 = time.monotonic()
    resp = http_request(gw.port, "GET", "/slow/one", timeout=5.0)
    elapsed = time.monotonic() - t0
    assert resp.status == 504, "GET /slow/one (upstream answers after 2s, read_timeout 300ms): %s" % resp.describe()
    problems = error_json_problems(resp)
    assert not problems, "504 body: %s; %s" % (problems, resp.describe())
    assert 0.25 <= elapsed <= 1.5, "504 after %.2fs with read_timeout 300ms" % elapsed


def test_upstream_closing_without_response_gives_502_and_post_is_not_retried(start_gateway, fake_upstream):
    fake_upstream.route("/dies", close_without_response=True)
    gw = start_gateway({"gateway": {"upstream": {"retry": {"backoff_base": "10ms", "backoff_max": "50ms"}}}},
                       upstream=fake_upstream)
    resp = http_request(gw.port, "POST", "/dies/post", body=b"payload", timeout=10.0)
    assert resp.status == 502, "POST, upstream closes without answering: %s" % resp.describe()
    problems = error_json_problems(resp)
    assert not problems, "502 body: %s; %s" % (problems, resp.describe())
    time.sleep(0.2)
    attempts = fake_upstream.requests_for("/dies/post")
    assert len(attempts) == 1, "a POST must not be retried (CONTRACT §4), upstream saw it %d times" % len(attempts)


def test_upstream_closing_without_response_get_is_retried_then_502(start_gateway, fake_upstream):
    fake_upstream.route("/dies", close_without_response=True)
    gw = start_gateway({"gateway": {"upstream": {"retry": {"backoff_base": "10ms", "backoff_max": "50ms"}}}},
                       upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/dies/get", timeout=10.0)
    assert resp.status == 502, "GET, upstream closes without answering: %s" % resp.describe()
    assert not error_json_problems(resp), resp.describe()
    time.sleep(0.2)
    attempts = fake_upstream.requests_for("/dies/get")
    # retry.attempts 3 (total) and retry_on includes `reset` (CONTRACT §3).
    assert len(attempts) == 3, "GET with retry.attempts 3: upstream saw %d attempts" % len(attempts)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_pooled_connection_closed_by_upstream_while_idle_is_not_reused(start_gateway, fake_upstream, method):
    """The keep-alive race of CONTRACT §3: the upstream closes an idle
    connection (its keep-alive timeout) without notice; the next request, even a
    non-idempotent one, must not fail because of it."""
    fake_upstream.route("/stale", silent_close_after=0.05)
    gw = start_gateway(upstream=fake_upstream)
    with RawConn(gw.port, timeout=5.0) as conn:
        conn.send(build_request("GET", "/stale/first"))
        first = conn.read_response()
        assert first.status == 200, first.describe()
        time.sleep(0.3)  # the upstream has closed the pooled connection by now
        body = b"second" if method == "POST" else None
        conn.send(build_request(method, "/stale/second", body=body))
        second = conn.read_response()
    assert second.status == 200, (
        "%s after the upstream silently closed the pooled connection: %s" % (method, second.describe())
    )
    assert len(fake_upstream.requests_for("/stale/second")) == 1


def test_request_timeout_bounds_the_whole_exchange_with_504(start_gateway, fake_upstream):
    fake_upstream.route("/slow", delay=3.0)
    gw = start_gateway(
        {"gateway": {"request_timeout": "500ms", "upstream": {"read_timeout": "5s", "retry": {"attempts": 1}}}},
        upstream=fake_upstream,
    )
    t0 = time.monotonic()
    resp = http_request(gw.port, "GET", "/slow/whole", timeout=6.0)
    elapsed = time.monotonic() - t0
    assert resp.status == 504, "request_timeout 500ms, upstream needs 3s: %s" % resp.describe()
    assert not error_json_problems(resp), resp.describe()
    assert 0.4 <= elapsed <= 1.5, "504 after %.2fs with request_timeout 500ms" % elapsed


def test_waiting_longer_than_pool_timeout_gives_503(start_gateway, fake_upstream):
    fake_upstream.route("/pool/slow", delay=1.5)
    gw = start_gateway(
        {
            "gateway": {
                "upstream": {
                    "max_connections": 1,
                    "max_idle_connections": 1,
                    "pool_timeout": "200ms",
                    "retry": {"attempts": 1},
                }
            }
        },
        upstream=fake_upstream,
    )
    results = {}
    threads = _start_slow_requests(gw.port, ["/pool/slow/1"], results)
    assert fake_upstream.wait_for_requests("/pool/slow/", 1, timeout=3.0)
    t0 = time.monotonic()
    resp = http_request(gw.port, "GET", "/pool/second", timeout=5.0)
    elapsed = time.monotonic() - t0
    assert resp.status == 503, "upstream.max_connections 1 busy, pool_timeout 200ms: %s" % resp.describe()
    assert not error_json_problems(resp), resp.describe()
    assert 0.15 <= elapsed <= 1.0, "503 after %.2fs with pool_timeout 200ms" % elapsed
    for t in threads:
        t.join(timeout=10)
    first = results.get("/pool/slow/1")
    assert getattr(first, "status", None) == 200, repr(first)


# ----- concurrency limit ----------------------------------------------------------


def _start_slow_requests(port: int, paths: list, results: dict) -> list:
    threads = []
    for path in paths:

        def run(p=path):
            try:
                results[p] = http_request(port, "GET", p, timeout=10.0)
            except Exception as exc:  # reported by the test
                results[p] = exc

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
    return threads


def test_limit_concurrency_rejects_with_503_retry_after_at_once(start_gateway, fake_upstream):
    fake_upstream.route("/conc/slow", delay=1.5)
    gw = start_gateway({"gateway": {"limit_concurrency": 2, "workers": 2}}, upstream=fake_upstream)
    results = {}
    threads = _start_slow_requests(gw.port, ["/conc/slow/1", "/conc/slow/2"], results)
    arrived = fake_upstream.wait_for_requests("/conc/slow/", 2, timeout=3.0)
    assert len(arrived) == 2, "the 2 slow requests did not reach the upstream: %r" % results
    t0 = time.monotonic()
    resp = http_request(gw.port, "GET", "/conc/third", timeout=5.0)
    elapsed = time.monotonic() - t0
    assert resp.status == 503, "3rd request with 2 in flight (limit_concurrency 2): %s" % resp.describe()
    assert resp.header("retry-after") == "1", "Retry-After: %r" % resp.header("retry-after")
    problems = error_json_problems(resp)
    assert not problems, "503 body: %s; %s" % (problems, resp.describe())
    assert elapsed < 0.3, "503 took %.2fs (the slow upstream needs 1.5s)" % elapsed
    assert not fake_upstream.requests_for("/conc/third"), "the rejected request reached the upstream"
    for t in threads:
        t.join(timeout=10)
    for path in ("/conc/slow/1", "/conc/slow/2"):
        got = results.get(path)
        assert not isinstance(got, Exception) and got is not None and got.status == 200, (
            "slow request %s: %r" % (path, got.describe() if hasattr(got, "describe") else got)
        )
    # Slots are given back: a new request passes.
    resp = http_request(gw.port, "GET", "/conc/after", timeout=5.0)
    assert resp.status == 200, resp.describe()


def test_health_endpoints_not_counted_against_limit_concurrency(start_gateway, fake_upstream):
    fake_upstream.route("/conc/slow", delay=1.5)
    gw = start_gateway({"gateway": {"limit_concurrency": 2, "workers": 1}}, upstream=fake_upstream)
    results = {}
    threads = _start_slow_requests(gw.port, ["/conc/slow/a", "/conc/slow/b"], results)
    arrived = fake_upstream.wait_for_requests("/conc/slow/", 2, timeout=3.0)
    assert len(arrived) == 2
    for port, label in ((gw.port, "listen"), (gw.admin_port, "admin_listen")):
        for path in ("/healthz", "/readyz"):
            resp = http_request(port, "GET", path, timeout=2.0)
            assert resp.status == 200, "%s on %s with limit_concurrency saturated: %s" % (path, label, resp.describe())
    for t in threads:
        t.join(timeout=10)


# ----- health endpoints -----------------------------------------------------------


def test_healthz_and_readyz_answered_on_both_listeners_without_reaching_upstream(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    sent_ids = []
    for port, label in ((gw.port, "listen"), (gw.admin_port, "admin_listen")):
        rid = "probe-healthz-%s" % label.replace("_", "-")
        sent_ids.append(rid)
        resp = http_request(port, "GET", "/healthz", headers=[("X-Request-ID", rid)])
        assert resp.status == 200, "/healthz on %s: %s" % (label, resp.describe())
        assert resp.json() == {"ok": True}, "/healthz on %s: %s" % (label, resp.describe())

        rid = "probe-readyz-%s" % label.replace("_", "-")
        sent_ids.append(rid)
        resp = http_request(port, "GET", "/readyz", headers=[("X-Request-ID", rid)])
        assert resp.status == 200, "/readyz on %s: %s" % (label, resp.describe())
        doc = resp.json()
        assert doc.get("status") == "ready" and doc.get("upstream") == "ok", "/readyz on %s: %r" % (label, doc)
    forwarded = [
        (r.method, r.target, r.header("x-request-id"))
        for r in fake_upstream.requests(include_health=True)
        if r.header("x-request-id") in sent_ids or r.path == "/healthz"
    ]
    assert not forwarded, "health probes reached the upstream: %r" % forwarded


def _wait_readyz(port: int, status: int, timeout: float):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = http_request(port, "GET", "/readyz", timeout=1.0)
            if last.status == status:
                return last
        except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
            last = exc
        time.sleep(0.05)
    return last


def test_readyz_follows_upstream_health_path(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    fake_upstream.set_health(503)
    got = _wait_readyz(gw.admin_port, 503, 1.5)
    assert getattr(got, "status", None) == 503, (
        "upstream /readyz answers 503 for 1.5s (health_interval 100ms) but gateway /readyz: %r"
        % (got.describe() if hasattr(got, "describe") else got)
    )
    doc = got.json()
    assert doc.get("upstream") not in (None, "ok") and doc.get("status") != "ready", (
        "503 /readyz should name the failing upstream: %r" % doc
    )
    on_listen = http_request(gw.port, "GET", "/readyz")
    assert on_listen.status == 503, "/readyz on listen while upstream unhealthy: %s" % on_listen.describe()

    fake_upstream.set_health(200)
    got = _wait_readyz(gw.admin_port, 200, 1.5)
    assert getattr(got, "status", None) == 200, "upstream healthy again but gateway /readyz: %r" % (
        got.describe() if hasattr(got, "describe") else got
    )
    doc = got.json()
    assert doc.get("status") == "ready" and doc.get("upstream") == "ok", doc
    health_polls = [r for r in fake_upstream.requests(include_health=True) if r.path == "/readyz"]
    assert health_polls, "the gateway never polled the upstream's health_path"


# ----- logs -------------------------------------------------------------------------


def test_access_log_is_json_with_request_id_and_no_secrets(start_gateway, fake_upstream):
    gw = start_gateway(upstream=fake_upstream)
    resp = http_request(
        gw.port,
        "GET",
        "/logs/one?q=1",
        headers=[
            ("X-Request-ID", "log-check-1"),
            ("Authorization", "Bearer secret-token-9f8e7d"),
            ("Cookie", "session=cookie-secret-4c3b2a"),
        ],
    )
    assert resp.status == 200, resp.describe()
    # Stop first so that buffered log lines are flushed (CONTRACT §4 Shutdown).
    code = gw.stop(timeout=5)
    assert code == 0, "exit code %s after SIGTERM" % code
    out = gw.stdout_text()
    everything = out + gw.stderr_text()
    for secret in ("secret-token-9f8e7d", "cookie-secret-4c3b2a"):
        assert secret not in everything, "%r appears in the gateway's output" % secret
    access = []
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            pytest.fail("stdout line is not JSON: %r" % line)
        assert {"ts", "level", "msg"} <= set(doc), "log line lacks ts/level/msg: %r" % line
        if doc.get("request_id") == "log-check-1":
            access.append(doc)
    assert access, "no log line carries request_id log-check-1; stdout:\n%s" % out[-3000:]
    line = next((d for d in access if "status" in d), None)
    assert line is not None, "no access line (with status) for the request: %r" % access
    for key in ("method", "path", "status", "bytes", "duration_ms", "upstream_ms", "request_id",
                "trace_id", "client_ip", "cache", "retries"):
        assert key in line, "access line lacks %r: %r" % (key, line)
    assert line["method"] == "GET" and line["status"] == 200, line
    assert line["path"].startswith("/logs/one"), line
    assert line["client_ip"] == "127.0.0.1", line
