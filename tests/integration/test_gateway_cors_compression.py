"""CONTRACT §4 CORS and Compression through the real gateway and a scripted upstream."""

import gzip
import json
import zlib

import pytest

from gateway_harness import http_request

ORIGIN = "https://example.com"
BIG_JSON = json.dumps([{"id": i, "title": "article %d" % i, "body": "lorem ipsum " * 5} for i in range(300)]).encode()


def _json_route(fake_upstream, prefix, body=BIG_JSON, extra_headers=(), chunked=False):
    fake_upstream.route(
        prefix,
        body=body,
        chunked=chunked,
        headers=[("Content-Type", "application/json")] + list(extra_headers),
        replace_headers=True,
    )


# ---------------------------------------------------------------- CORS


def test_cors_preflight_allowed_is_answered_by_gateway_with_204(start_gateway, fake_upstream):
    gw = start_gateway({}, upstream=fake_upstream)
    resp = http_request(
        gw.port,
        "OPTIONS",
        "/cors/thing",
        headers=[
            ("Origin", ORIGIN),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "content-type, x-request-id"),
        ],
    )
    assert resp.status == 204, resp.describe()
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    assert resp.header("Access-Control-Allow-Credentials") == "true"
    assert "PUT" in resp.header("Access-Control-Allow-Methods")
    assert "content-type" in resp.header("Access-Control-Allow-Headers").lower()
    assert resp.header("Access-Control-Max-Age") == "600"
    assert "origin" in resp.header("Vary").lower()
    assert fake_upstream.requests_for("/cors") == [], "a preflight must not reach the upstream"


@pytest.mark.parametrize(
    "origin,method,headers",
    [
        ("https://evil.example", "PUT", None),  # origin not allowed
        ("http://example.com", "PUT", None),  # scheme differs
        ("https://example.com:8443", "PUT", None),  # port differs
        (ORIGIN, "TRACE", None),  # method not allowed
        (ORIGIN, "PUT", "x-secret-header"),  # header not allowed
    ],
)
def test_cors_preflight_denied_gets_403(start_gateway, fake_upstream, origin, method, headers):
    gw = start_gateway({}, upstream=fake_upstream)
    req_headers = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if headers:
        req_headers.append(("Access-Control-Request-Headers", headers))
    resp = http_request(gw.port, "OPTIONS", "/cors/thing", headers=req_headers)
    assert resp.status == 403, resp.describe()
    assert resp.header("Access-Control-Allow-Origin") is None, resp.describe()
    assert fake_upstream.requests_for("/cors") == []


def test_cors_actual_request_from_allowed_origin_gets_origin_never_star(start_gateway, fake_upstream):
    _json_route(fake_upstream, "/cors/data", body=b'{"ok":true}')
    gw = start_gateway({}, upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/cors/data", headers=[("Origin", ORIGIN)])
    assert resp.status == 200, resp.describe()
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    assert resp.header("Access-Control-Allow-Credentials") == "true"
    assert "X-Request-ID" in resp.header("Access-Control-Expose-Headers")
    assert any("origin" in v.lower() for v in resp.header_list("Vary"))

    other = http_request(gw.port, "GET", "/cors/data", headers=[("Origin", "https://evil.example")])
    assert other.status == 200
    assert other.header("Access-Control-Allow-Origin") is None
    assert any("origin" in v.lower() for v in other.header_list("Vary"))


def test_cors_headers_also_on_gateway_errors(start_gateway, fake_upstream):
    fake_upstream.route("/cors/broken", close_without_response=True)
    gw = start_gateway({"gateway": {"upstream": {"retry": {"attempts": 1}}}}, upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/cors/broken", headers=[("Origin", ORIGIN)])
    assert resp.status == 502, resp.describe()
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN


# ---------------------------------------------------------------- Compression


def _decode(encoding, body):
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import ctypes.util

        lib = ctypes.util.find_library("brotlidec")
        if lib is None:
            pytest.skip("libbrotlidec not found for the test's decoder")
        import ctypes

        dec = ctypes.CDLL(lib)
        out = ctypes.create_string_buffer(len(BIG_JSON) * 2 + 1024)
        size = ctypes.c_size_t(len(out))
        rc = dec.BrotliDecoderDecompress(ctypes.c_size_t(len(body)), body, ctypes.byref(size), out)
        assert rc == 1, "BrotliDecoderDecompress failed"
        return out.raw[: size.value]
    raise AssertionError("unexpected encoding " + encoding)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    "accept,expected",
    [
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, br", "br"),  # tie: server preference (algorithms: [br, gzip])
        ("br;q=0.5, gzip;q=0.9", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("*", "br"),
        ("*;q=0.1, br;q=0", "gzip"),
    ],
)
def test_compression_negotiates_and_decodes_to_exact_upstream_bytes(start_gateway, fake_upstream, accept, expected, chunked):
    _json_route(fake_upstream, "/comp/big", extra_headers=[("ETag", '"strong-1"')], chunked=chunked)
    gw = start_gateway({}, upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/comp/big", headers=[("Accept-Encoding", accept)])
    assert resp.status == 200, resp.describe()
    assert resp.header("Content-Encoding") == expected, resp.describe()
    assert any("accept-encoding" in v.lower() for v in resp.header_list("Vary"))
    assert resp.header("ETag") == 'W/"strong-1"', "a strong ETag becomes weak when the body changes"
    assert _decode(expected, resp.body) == BIG_JSON
    assert len(resp.body) < len(BIG_JSON) / 3


@pytest.mark.parametrize(
    "why,accept,method,route_kwargs",
    [
        ("q=0 forbids every coding", "gzip;q=0, br;q=0", "GET", {}),
        ("no Accept-Encoding", None, "GET", {}),
        ("below min_size", "gzip", "GET", {"body": b'{"small":true}'}),
        ("type not listed", "gzip", "GET", {"content_type": "image/png"}),
        ("already encoded", "gzip", "GET", {"extra": [("Content-Encoding", "gzip")]}),
        ("no-transform", "gzip", "GET", {"extra": [("Cache-Control", "no-transform")]}),
        ("HEAD", "gzip", "HEAD", {}),
    ],
)
def test_compression_is_skipped_when_it_must_be(start_gateway, fake_upstream, why, accept, method, route_kwargs):
    body = route_kwargs.get("body", BIG_JSON)
    headers = [("Content-Type", route_kwargs.get("content_type", "application/json"))] + route_kwargs.get("extra", [])
    fake_upstream.route("/comp/skip", body=body, headers=headers, replace_headers=True)
    gw = start_gateway({}, upstream=fake_upstream)
    req_headers = [("Accept-Encoding", accept)] if accept else []
    resp = http_request(gw.port, method, "/comp/skip", headers=req_headers)
    assert resp.status == 200, "%s: %s" % (why, resp.describe())
    encoding = resp.header("Content-Encoding")
    if "already encoded" in why:
        assert encoding == "gzip" and resp.body == body, why  # passed through untouched
    else:
        assert encoding is None, "%s: got Content-Encoding %s" % (why, encoding)
        if method != "HEAD":
            assert resp.body == body, why


def test_compressed_responses_are_counted_in_metrics(start_gateway, fake_upstream):
    _json_route(fake_upstream, "/comp/m")
    gw = start_gateway({}, upstream=fake_upstream)
    for _ in range(2):
        assert http_request(gw.port, "GET", "/comp/m", headers=[("Accept-Encoding", "gzip")]).status == 200
    metrics = http_request(gw.admin_port, "GET", "/metrics").body.decode()
    assert 'gateway_compressed_responses_total{encoding="gzip"} 2' in metrics
