"""CONTRACT §4 ETag and response cache, through the real gateway and a scripted upstream that
counts what reaches it."""

import gzip
import threading
import time

import pytest

from gateway_harness import deep_merge, http_request

BODY = b'{"id":1,"title":"cached","body":"' + b"x" * 3000 + b'"}'
JSON = [("Content-Type", "application/json")]


def _route(fake_upstream, prefix, headers=(), body=BODY, **kw):
    fake_upstream.route(prefix, body=body, headers=JSON + list(headers), replace_headers=True, **kw)


def _cfg(extra=None):
    """The harness turns caching off by default; these tests use the contract's rule."""
    base = {"gateway": {"cache": {"rules": [{"prefix": "/articles/", "ttl": "60s", "cache_control": "public, max-age=60"}]}}}
    return deep_merge(base, extra or {})


def _hits(fake_upstream, prefix):
    return len(fake_upstream.requests_for(prefix))


def test_cache_miss_then_hit_with_x_cache_age_and_rule_cache_control(start_gateway, fake_upstream):
    _route(fake_upstream, "/articles/")
    gw = start_gateway(_cfg(), upstream=fake_upstream)
    first = http_request(gw.port, "GET", "/articles/1")
    assert first.status == 200 and first.header("X-Cache") == "MISS", first.describe()
    assert first.header("Cache-Control") == "public, max-age=60", "the rule's Cache-Control when the upstream set none"
    etag = first.header("ETag")
    assert etag and etag.startswith('"'), "a strong ETag is generated for a cacheable 200 without one"
    time.sleep(1.1)
    second = http_request(gw.port, "GET", "/articles/1")
    assert second.status == 200 and second.header("X-Cache") == "HIT", second.describe()
    assert int(second.header("Age")) >= 1
    assert second.body == BODY and second.header("ETag") == etag
    assert _hits(fake_upstream, "/articles/1") == 1
    head = http_request(gw.port, "HEAD", "/articles/1")
    assert head.status == 200 and head.header("X-Cache") == "HIT" and head.body == b""
    assert int(head.header("Content-Length")) == len(BODY)
    assert _hits(fake_upstream, "/articles/1") == 1


def test_cache_if_none_match_gives_304_from_cache_and_on_miss(start_gateway, fake_upstream):
    _route(fake_upstream, "/articles/")
    gw = start_gateway(_cfg(), upstream=fake_upstream)
    etag = http_request(gw.port, "GET", "/articles/7").header("ETag")
    for inm in (etag, "W/" + etag, '"nope", ' + etag, "*"):
        resp = http_request(gw.port, "GET", "/articles/7", headers=[("If-None-Match", inm)])
        assert resp.status == 304, "If-None-Match %s: %s" % (inm, resp.describe())
        assert resp.body == b"" and resp.header("ETag") == etag
        assert resp.header("Cache-Control") == "public, max-age=60"
    other = http_request(gw.port, "GET", "/articles/7", headers=[("If-None-Match", '"different"')])
    assert other.status == 200 and other.body == BODY
    # A miss whose generated ETag matches is answered 304 as well.
    fresh = http_request(gw.port, "GET", "/articles/8", headers=[("If-None-Match", etag)])
    assert fresh.status == 304, fresh.describe()


@pytest.mark.parametrize(
    "why,headers,req_headers",
    [
        ("no-store", [("Cache-Control", "no-store")], []),
        ("private", [("Cache-Control", "private, max-age=60")], []),
        ("Set-Cookie", [("Set-Cookie", "session=secret")], []),
        ("Authorization without public", [], [("Authorization", "Bearer x")]),
    ],
)
def test_cache_does_not_store_what_it_must_not(start_gateway, fake_upstream, why, headers, req_headers):
    _route(fake_upstream, "/articles/", headers=headers)
    gw = start_gateway(_cfg(), upstream=fake_upstream)
    for _ in range(2):
        resp = http_request(gw.port, "GET", "/articles/3", headers=req_headers)
        assert resp.status == 200 and resp.header("X-Cache") == "MISS", "%s: %s" % (why, resp.describe())
    assert _hits(fake_upstream, "/articles/3") == 2, why


def test_cache_requests_outside_rules_and_posts_are_not_cached(start_gateway, fake_upstream):
    _route(fake_upstream, "/other/")
    _route(fake_upstream, "/articles/")
    gw = start_gateway(_cfg(), upstream=fake_upstream)
    for _ in range(2):
        resp = http_request(gw.port, "GET", "/other/1")
        assert resp.header("X-Cache") is None
        assert http_request(gw.port, "POST", "/articles/1", body=b"{}").status == 200
    assert _hits(fake_upstream, "/other/1") == 2
    assert _hits(fake_upstream, "/articles/1") == 2


def test_cache_keys_by_encoding_and_stores_the_compressed_variant(start_gateway, fake_upstream):
    _route(fake_upstream, "/articles/")
    gw = start_gateway(_cfg(), upstream=fake_upstream)
    gz = [("Accept-Encoding", "gzip")]
    a = http_request(gw.port, "GET", "/articles/9", headers=gz)
    b = http_request(gw.port, "GET", "/articles/9", headers=gz)
    plain = http_request(gw.port, "GET", "/articles/9")
    assert a.header("X-Cache") == "MISS" and b.header("X-Cache") == "HIT", b.describe()
    assert b.header("Content-Encoding") == "gzip" and gzip.decompress(b.body) == BODY
    assert plain.header("X-Cache") == "MISS" and plain.header("Content-Encoding") is None and plain.body == BODY
    assert _hits(fake_upstream, "/articles/9") == 2  # one per encoding


def test_cache_concurrent_misses_make_one_upstream_request(start_gateway, fake_upstream):
    _route(fake_upstream, "/articles/", delay=0.5)
    gw = start_gateway(_cfg({"gateway": {"workers": 2}}), upstream=fake_upstream)
    results = []

    def fetch():
        results.append(http_request(gw.port, "GET", "/articles/42", timeout=5))

    threads = [threading.Thread(target=fetch) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in results] == [200] * 10
    assert all(r.body == BODY for r in results)
    assert _hits(fake_upstream, "/articles/42") == 1, "concurrent misses must coalesce into one upstream request"
    assert sorted(r.header("X-Cache") for r in results).count("MISS") == 1


def test_cache_objects_over_max_object_bytes_stream_uncached(start_gateway, fake_upstream):
    big = b"y" * (300 * 1024)
    _route(fake_upstream, "/articles/", body=big)
    gw = start_gateway(_cfg({"gateway": {"cache": {"max_object_bytes": "64KiB"}}}), upstream=fake_upstream)
    for _ in range(2):
        resp = http_request(gw.port, "GET", "/articles/big")
        assert resp.status == 200 and resp.body == big
        assert resp.header("X-Cache") == "MISS"
    assert _hits(fake_upstream, "/articles/big") == 2


def test_cache_metrics_count_hits_and_misses(start_gateway, fake_upstream):
    _route(fake_upstream, "/articles/")
    gw = start_gateway(_cfg(), upstream=fake_upstream)
    for _ in range(3):
        http_request(gw.port, "GET", "/articles/5")
    text = http_request(gw.admin_port, "GET", "/metrics").body.decode()
    assert 'gateway_cache_requests_total{result="miss"} 1' in text
    assert 'gateway_cache_requests_total{result="hit"} 2' in text
