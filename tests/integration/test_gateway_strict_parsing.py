"""CONTRACT §4 Strict parsing: requests that could be read two ways get 400
and the connection is closed; none of them reaches the upstream.

Each case is sent as exact bytes in one write on a fresh connection (so the
gateway sees the whole request, body included, before it could forward
anything), then we read one response and expect the server to close.
"""

import time

import pytest

from fake_upstream import FakeUpstream
from gateway_harness import (
    Gateway,
    RawConn,
    ServerClosed,
    ServerReset,
    build_request,
    error_json_problems,
    gateway_config,
)

H = b"Host: gateway.test\r\n"

CASES = [
    # Request smuggling: two framings.
    ("cl_and_te", b"POST /strict/cl_and_te HTTP/1.1\r\n" + H
     + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te_and_cl", b"POST /strict/te_and_cl HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("two_differing_cl", b"POST /strict/two_cl HTTP/1.1\r\n" + H
     + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("cl_list_differing", b"POST /strict/cl_list HTTP/1.1\r\n" + H
     + b"Content-Length: 5, 6\r\n\r\nhello!"),
    ("cl_abc", b"POST /strict/cl_abc HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n"),
    ("cl_negative", b"POST /strict/cl_neg HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n"),
    ("cl_with_space", b"POST /strict/cl_space HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\nxyz"),
    ("cl_plus_sign", b"POST /strict/cl_plus HTTP/1.1\r\n" + H + b"Content-Length: +1\r\n\r\nx"),
    # Transfer-Encoding must be exactly a final "chunked".
    ("te_gzip", b"POST /strict/te_gzip HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n"),
    ("te_chunked_then_gzip", b"POST /strict/te_cg HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("te_identity", b"POST /strict/te_identity HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n"),
    # Obsolete line folding.
    ("obs_fold", b"GET /strict/obs_fold HTTP/1.1\r\n" + H + b"X-Folded: first\r\n  continued\r\n\r\n"),
    ("obs_fold_tab", b"GET /strict/obs_fold_tab HTTP/1.1\r\n" + H + b"X-Folded: first\r\n\tcontinued\r\n\r\n"),
    # Control characters inside header values and names.
    ("cr_in_value", b"GET /strict/cr_value HTTP/1.1\r\n" + H + b"X-Bad: a\rb\r\n\r\n"),
    ("lf_in_value", b"GET /strict/lf_value HTTP/1.1\r\n" + H + b"X-Bad: a\nb\r\n\r\n"),
    ("nul_in_value", b"GET /strict/nul_value HTTP/1.1\r\n" + H + b"X-Bad: a\x00b\r\n\r\n"),
    ("cr_in_name", b"GET /strict/cr_name HTTP/1.1\r\n" + H + b"X-B\rad: 1\r\n\r\n"),
    ("lf_in_name", b"GET /strict/lf_name HTTP/1.1\r\n" + H + b"X-B\nad: 1\r\n\r\n"),
    ("nul_in_name", b"GET /strict/nul_name HTTP/1.1\r\n" + H + b"X-B\x00ad: 1\r\n\r\n"),
    # Bare LF line endings.
    ("bare_lf_request_line", b"GET /strict/lf_reqline HTTP/1.1\n" + H + b"\r\n"),
    ("bare_lf_header_line", b"GET /strict/lf_header HTTP/1.1\r\nHost: gateway.test\nX-A: 1\r\n\r\n"),
    ("bare_lf_everywhere", b"GET /strict/lf_all HTTP/1.1\nHost: gateway.test\nX-A: 1\n\n"),
    ("bare_lf_end_of_head", b"GET /strict/lf_end HTTP/1.1\r\nHost: gateway.test\r\n\n"),
    # Invalid chunk sizes.
    ("chunk_size_zz", b"POST /strict/chunk_zz HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_overflow", b"POST /strict/chunk_overflow HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_overflow_f", b"POST /strict/chunk_overflow_f HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 20 + b"\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_negative", b"POST /strict/chunk_negative HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    # Whitespace between the field name and the colon.
    ("space_before_colon", b"GET /strict/space_colon HTTP/1.1\r\nHost : gateway.test\r\n\r\n"),
    ("tab_before_colon", b"GET /strict/tab_colon HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n"),
]


@pytest.fixture(scope="module")
def strict_env(tmp_path_factory, redis_url):
    """One gateway + fake upstream shared by all cases (each case uses its own connection)."""
    upstream = FakeUpstream()
    workdir = tmp_path_factory.mktemp("strict")
    config = gateway_config(
        upstream.address,
        redis_url,
        {"gateway": {"drain_delay": "100ms", "graceful_timeout": "2s"}},
    )
    gw = Gateway(config, workdir, name="gateway-strict")
    try:
        gw.start_and_wait()
        gw.wait_ready()
        yield gw, upstream
    finally:
        code = gw.stop(timeout=10)
        upstream.stop()
        assert code == 0, "gateway exit code after SIGTERM: %s\n%s" % (code, gw.log_tail())


@pytest.fixture
def strict(strict_env, register_process):
    gw, upstream = strict_env
    register_process(gw)
    return gw, upstream


def _expect_400_then_close(gw: Gateway, raw: bytes) -> None:
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(raw)
        try:
            resp = conn.read_response(timeout=3.0)
        except (ServerClosed, ServerReset) as exc:
            pytest.fail("sent %r: no 400 response, %s" % (raw, exc))
        assert resp.status == 400, "sent %r: expected 400, got %s" % (raw, resp.describe())
        problems = error_json_problems(resp)
        assert not problems, "sent %r: 400 body problems %s; response %s" % (raw, problems, resp.describe())
        state = conn.wait_closed(2.0)
        assert state in ("closed", "reset"), (
            "sent %r: after the 400 the connection should be closed by the gateway, but it is %s"
            % (raw, state)
        )


@pytest.mark.parametrize("raw", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_ambiguous_request_gets_400_and_close_without_reaching_upstream(strict, raw):
    gw, upstream = strict
    before = len(upstream.requests())
    _expect_400_then_close(gw, raw)
    # Give a (wrong) asynchronous forward a moment to show up at the upstream.
    time.sleep(0.1)
    leaked = upstream.requests()[before:]
    assert not leaked, "sent %r: the upstream received %r" % (
        raw,
        [(r.method, r.target, r.headers) for r in leaked],
    )


def test_valid_request_on_new_connection_after_a_400_works(strict):
    gw, upstream = strict
    _expect_400_then_close(gw, CASES[0][1])
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(build_request("GET", "/strict/valid-after"))
        resp = conn.read_response()
    assert resp.status == 200, "GET /strict/valid-after after a 400: %s" % resp.describe()
    assert resp.json()["path"] == "/strict/valid-after"
    assert [r.path for r in upstream.requests_for("/strict/valid-after")] == ["/strict/valid-after"]


def test_plain_content_length_post_is_forwarded(strict):
    """Control case: a well-formed Content-Length body goes through, so the 400s
    above are about the ambiguity and not about POST bodies in general."""
    gw, upstream = strict
    with RawConn(gw.port, timeout=3.0) as conn:
        conn.send(build_request("POST", "/strict/post-ok", body=b"hello"))
        resp = conn.read_response()
    assert resp.status == 200, resp.describe()
    doc = resp.json()
    assert doc["body_len"] == 5, doc
