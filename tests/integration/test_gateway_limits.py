"""CONTRACT §4 Limits: header/body size, header/keep-alive timeouts,
requests per connection, connections per gateway."""

import socket
import time

import pytest

from gateway_harness import (
    RawConn,
    ResponseTimeout,
    ServerClosed,
    ServerReset,
    build_request,
    error_json_problems,
)


def _assert_error_then_close(conn: RawConn, resp, status: int, sent: str) -> None:
    assert resp.status == status, "%s: expected %d, got %s" % (sent, status, resp.describe())
    problems = error_json_problems(resp)
    assert not problems, "%s: %d body problems %s; response %s" % (sent, status, problems, resp.describe())
    state = conn.wait_closed(2.0)
    assert state in ("closed", "reset"), "%s: after the %d the connection is %s, expected closed" % (
        sent,
        status,
        state,
    )


def test_head_larger_than_max_header_bytes_gets_431_and_close(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"max_header_bytes": "4KiB"}}, upstream=fake_upstream)
    raw = build_request("GET", "/limits/big-head", headers=[("X-Big", "a" * 8192)])
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(raw)
        try:
            resp = conn.read_response()
        except (ServerClosed, ServerReset) as exc:
            pytest.fail("GET with an 8 KiB header (max_header_bytes 4KiB): no response, %s" % exc)
        _assert_error_then_close(conn, resp, 431, "GET with an 8 KiB X-Big header, max_header_bytes 4KiB")
    assert not fake_upstream.requests_for("/limits"), "the upstream saw the oversized request"


def test_head_just_under_max_header_bytes_is_forwarded(start_gateway, fake_upstream):
    """Control for the 431 case: a 3 KiB header under a 4 KiB limit passes."""
    gw = start_gateway({"gateway": {"max_header_bytes": "4KiB"}}, upstream=fake_upstream)
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(build_request("GET", "/limits/ok-head", headers=[("X-Big", "a" * 3072)]))
        resp = conn.read_response()
    assert resp.status == 200, resp.describe()


def test_declared_content_length_over_max_body_bytes_gets_413_without_contacting_upstream(
    start_gateway, fake_upstream
):
    gw = start_gateway({"gateway": {"max_body_bytes": "1MiB"}}, upstream=fake_upstream)
    # Only the head: the gateway must decide from the declared length alone.
    raw = (
        b"POST /limits/declared HTTP/1.1\r\nHost: gateway.test\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 2097152\r\n\r\n"
    )
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(raw)
        t0 = time.monotonic()
        try:
            resp = conn.read_response(timeout=3.0)
        except (ServerClosed, ServerReset, ResponseTimeout) as exc:
            pytest.fail("POST head with Content-Length 2097152 (max_body_bytes 1MiB), no body sent: %s" % exc)
        elapsed = time.monotonic() - t0
        _assert_error_then_close(conn, resp, 413, "POST with Content-Length 2 MiB > max_body_bytes 1MiB")
    assert elapsed < 1.0, "413 for a declared oversized body took %.2fs" % elapsed
    time.sleep(0.1)
    assert not fake_upstream.requests_for("/limits"), "the upstream was contacted: %r" % [
        (r.method, r.target) for r in fake_upstream.requests_for("/limits")
    ]


def test_chunked_body_growing_past_max_body_bytes_gets_413_and_close(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"max_body_bytes": "1MiB"}}, upstream=fake_upstream)
    head = (
        b"POST /limits/streamed HTTP/1.1\r\nHost: gateway.test\r\n"
        b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent_body = 0
    with RawConn(gw.port, timeout=5.0) as conn:
        conn.send(head)
        # Send up to 3 MiB but stop as soon as the gateway answers, like a
        # well-behaved client (a gateway should also drain before closing).
        send_error = None
        while sent_body < 3 * 1024 * 1024:
            if conn.readable(0.0):
                break
            try:
                conn.send(chunk)
            except (BrokenPipeError, ConnectionResetError) as exc:
                send_error = exc
                break
            sent_body += len(piece)
        try:
            resp = conn.read_response(timeout=3.0)
        except (ServerClosed, ServerReset, ResponseTimeout) as exc:
            pytest.fail(
                "chunked POST of %d bytes so far (max_body_bytes 1MiB, send error %r): no 413 response: %s"
                % (sent_body, send_error, exc)
            )
        _assert_error_then_close(
            conn, resp, 413, "chunked POST growing past max_body_bytes 1MiB (%d bytes sent)" % sent_body
        )
    # The upstream may have seen the head and part of the body, never all of it.
    for rec in fake_upstream.requests_for("/limits/streamed"):
        assert rec.body_len <= 1024 * 1024 + 65536, "upstream got %d body bytes" % rec.body_len


def test_incomplete_head_past_header_timeout_gets_408_and_close(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"header_timeout": "500ms"}}, upstream=fake_upstream)
    with RawConn(gw.port, timeout=5.0) as conn:
        t0 = time.monotonic()
        conn.send(b"GET /limits/slow-head HTTP/1.1\r\nHost: gateway.test\r\nX-Partial: yes\r\n")
        try:
            resp = conn.read_response(timeout=4.0)
        except (ServerClosed, ServerReset, ResponseTimeout) as exc:
            pytest.fail("partial head, header_timeout 500ms: expected 408, %s after %.2fs" % (exc, time.monotonic() - t0))
        elapsed = time.monotonic() - t0
        _assert_error_then_close(conn, resp, 408, "partial head with header_timeout 500ms")
    assert 0.4 <= elapsed <= 2.0, "408 came after %.2fs, header_timeout is 500ms" % elapsed


def test_head_trickled_byte_by_byte_still_times_out_after_header_timeout(start_gateway, fake_upstream):
    """header_timeout bounds the whole head (slowloris), it is not an idle timer."""
    gw = start_gateway({"gateway": {"header_timeout": "500ms"}}, upstream=fake_upstream)
    head = b"GET /limits/trickle HTTP/1.1\r\nHost: gateway.test\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with RawConn(gw.port, timeout=5.0) as conn:
        t0 = time.monotonic()
        got_response = False
        for i in range(len(head)):
            if conn.readable(0.0):
                got_response = True
                break
            try:
                conn.send(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 3.0:
                break
        try:
            resp = conn.read_response(timeout=2.0)
        except (ServerClosed, ServerReset, ResponseTimeout) as exc:
            pytest.fail("head trickled 1 byte/50ms, header_timeout 500ms: expected 408, %s" % exc)
        elapsed = time.monotonic() - t0
        assert got_response or elapsed <= 2.0
        _assert_error_then_close(conn, resp, 408, "head trickled one byte every 50ms, header_timeout 500ms")
    assert elapsed <= 2.0, "408 came after %.2fs of trickling, header_timeout is 500ms" % elapsed


def test_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"keep_alive_timeout": "500ms"}}, upstream=fake_upstream)
    with RawConn(gw.port, timeout=5.0) as conn:
        conn.send(build_request("GET", "/limits/ka"))
        resp = conn.read_response()
        assert resp.status == 200, resp.describe()
        assert "close" not in resp.connection_tokens(), "first response already closes: %s" % resp.describe()
        t0 = time.monotonic()
        state = conn.wait_closed(3.0)
        elapsed = time.monotonic() - t0
    assert state in ("closed", "reset"), "idle connection after keep_alive_timeout 500ms: %s" % state
    assert 0.4 <= elapsed <= 2.0, "idle connection closed after %.2fs, keep_alive_timeout is 500ms" % elapsed


def test_max_requests_per_connection_third_response_closes(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"max_requests_per_connection": 3}}, upstream=fake_upstream)
    with RawConn(gw.port, timeout=3.0) as conn:
        for i in (1, 2, 3):
            conn.send(build_request("GET", "/limits/mrpc/%d" % i))
            try:
                resp = conn.read_response()
            except (ServerClosed, ServerReset) as exc:
                pytest.fail("request %d of 3 on one connection (max_requests_per_connection 3): %s" % (i, exc))
            assert resp.status == 200, "request %d: %s" % (i, resp.describe())
            if i < 3:
                assert "close" not in resp.connection_tokens(), "response %d closes early: %s" % (i, resp.describe())
            else:
                assert "close" in resp.connection_tokens(), (
                    "3rd response lacks Connection: close (max_requests_per_connection 3): %s" % resp.describe()
                )
        state = conn.wait_closed(2.0)
        assert state in ("closed", "reset"), "after the 3rd response the connection is %s" % state


def test_max_connections_third_concurrent_connection_is_refused_or_closed(start_gateway, fake_upstream):
    # Two workers: the limit is per gateway (CONTRACT §3), not per worker.
    gw = start_gateway(
        {"gateway": {"max_connections": 2, "workers": 2, "keep_alive_timeout": "10s"}},
        upstream=fake_upstream,
    )
    time.sleep(0.3)  # let the harness's probe connections be closed and uncounted
    held = []
    try:
        for name in ("a", "b"):
            conn = RawConn(gw.port, timeout=3.0)
            held.append(conn)
            conn.send(build_request("GET", "/limits/maxconn/" + name))
            try:
                resp = conn.read_response()
            except (ServerClosed, ServerReset) as exc:
                pytest.fail("connection %s of 2 (max_connections 2) was not served: %s" % (name, exc))
            assert resp.status == 200, resp.describe()

        outcome = None
        try:
            third = RawConn(gw.port, timeout=3.0)
        except ConnectionRefusedError:
            outcome = "refused"
        if outcome is None:
            with third:
                try:
                    third.send(build_request("GET", "/limits/maxconn/c"))
                    resp = third.read_response(timeout=3.0)
                except (ServerClosed, ServerReset, BrokenPipeError, ConnectionResetError) as exc:
                    outcome = "closed without response (%s)" % type(exc).__name__
                except ResponseTimeout:
                    pytest.fail(
                        "3rd concurrent connection (max_connections 2) was neither refused nor closed: "
                        "no answer within 3s"
                    )
                else:
                    # An error reply followed by close also counts as "closed".
                    assert resp.status == 503, (
                        "3rd concurrent connection (max_connections 2) was served: %s" % resp.describe()
                    )
                    state = third.wait_closed(2.0)
                    assert state in ("closed", "reset"), "after the 503 the 3rd connection is %s" % state
                    outcome = "503 then closed"
        assert outcome is not None
        assert not fake_upstream.requests_for("/limits/maxconn/c"), "the 3rd connection's request reached the upstream"

        # Give one slot back: a new connection is served again.
        held.pop(0).close()
        deadline = time.monotonic() + 2.0
        last = None
        while time.monotonic() < deadline:
            try:
                with RawConn(gw.port, timeout=2.0) as again:
                    again.send(build_request("GET", "/limits/maxconn/d"))
                    resp = again.read_response()
                    if resp.status == 200:
                        break
                    last = resp.describe()
            except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
                last = repr(exc)
            time.sleep(0.1)
        else:
            pytest.fail("after closing one of 2 connections, a new one is still not served: %s" % last)
    finally:
        for conn in held:
            conn.close()
