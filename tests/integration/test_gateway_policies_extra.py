"""Issue 5 "Done when", the parts beyond test_gateway_cors_compression.py and
test_gateway_cache.py: compression edge cases, byte-exact round trips checked
with the real command-line decoders (`gzip -dc`, `brotli -dc`, `zstd -dc`) and
with real `curl --compressed`, and the response cache's expiry, LRU eviction
under `max_bytes`, storage refusals, 100 coalesced concurrent misses and
`If-None-Match` 304s.

Everything goes through a real gateway and a scripted upstream on 127.0.0.1.
The decoders and curl are Debian packages (`gzip`, `brotli`, `zstd`, `curl`);
a test whose tool is missing is skipped with the package to install.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from fake_upstream import FakeUpstream
from gateway_harness import RawConn, build_request, deep_merge, http_request

JSON = [("Content-Type", "application/json")]


def _json_doc(size: int, seed: int = 5) -> bytes:
    """A deterministic JSON document of about `size` bytes (compressible, but not trivially)."""
    rng = random.Random(seed)
    words = "gateway upstream cache etag brotli gzip zstd chunk stream header vary origin".split()
    items = []
    total = 2
    i = 0
    while total < size:
        item = json.dumps(
            {"id": i, "name": " ".join(rng.choice(words) for _ in range(5)), "n": rng.randrange(10**9)},
            separators=(",", ":"),
        )
        items.append(item)
        total += len(item) + 1
        i += 1
    return ("[" + ",".join(items) + "]").encode()


BIG_JSON = _json_doc(200 * 1024)
# Every byte value, in a random order: a text/* body that is not text at all. A codec or a
# proxy that treats the body as a C string or as UTF-8 would corrupt it.
ALL_BYTES = bytes(random.Random(7).getrandbits(8) for _ in range(64 * 1024)) + bytes(range(256)) * 64


# ---------------------------------------------------------------- tools


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip("%s not installed (Debian package %s)" % (name, package))
    return path


_DECODERS = {"gzip": ("gzip", "gzip"), "br": ("brotli", "brotli"), "zstd": ("zstd", "zstd")}


def cli_decode(encoding: str, data: bytes) -> bytes:
    """Decodes `data` with the real command-line decoder for `encoding` (stdin -> stdout)."""
    binary, package = _DECODERS[encoding]
    path = _tool(binary, package)
    proc = subprocess.run([path, "-dc"], input=data, capture_output=True, timeout=30)
    assert proc.returncode == 0, "%s -dc failed (rc %d): %r" % (binary, proc.returncode, proc.stderr[:500])
    return proc.stdout


def _curl_features() -> set:
    path = shutil.which("curl")
    if path is None:
        return set()
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"^Features:(.*)$", out, re.M)
    return set(m.group(1).split()) if m else set()


# The curl feature that means it can decode each content coding.
_CURL_FEATURE = {"gzip": "libz", "br": "brotli", "zstd": "zstd"}


# ---------------------------------------------------------------- upstream


class ChunkingUpstream(FakeUpstream):
    """FakeUpstream that can also send a fixed body as many chunks of chosen sizes, optionally
    pausing before the last one (FakeUpstream sends a fixed body as a single chunk)."""

    def __init__(self):
        self._plans = {}
        self.last_chunk_sent_at = {}
        super().__init__()

    def chunked_route(self, prefix, body, sizes, content_type="application/json", pause_before_last=0.0, extra=()):
        self._plans[prefix] = (body, list(sizes), content_type, pause_before_last, list(extra))
        # Recorded like any route (requests_for works), answered by _respond below.
        self.route(prefix, body=body)

    def _respond(self, conn, rec, behaviour, close, head_only):
        plan = next((p for prefix, p in self._plans.items() if rec.path.startswith(prefix)), None)
        if plan is None:
            return super()._respond(conn, rec, behaviour, close, head_only)
        body, sizes, content_type, pause, extra = plan
        lines = ["HTTP/1.1 200 OK", "Content-Type: " + content_type, "Transfer-Encoding: chunked"]
        lines += ["%s: %s" % kv for kv in extra]
        if close:
            lines.append("Connection: close")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if head_only:
            return
        pieces = []
        offset = 0
        i = 0
        while offset < len(body):
            n = sizes[i % len(sizes)]
            pieces.append(body[offset : offset + n])
            offset += n
            i += 1
        for index, piece in enumerate(pieces):
            if index == len(pieces) - 1 and pause > 0:
                time.sleep(pause)
                self.last_chunk_sent_at[rec.path] = time.monotonic()
            conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        conn.sendall(b"0\r\n\r\n")


@pytest.fixture
def chunking_upstream():
    upstream = ChunkingUpstream()
    yield upstream
    upstream.stop()


def _route(upstream, prefix, body, content_type="application/json", extra=(), chunked=False, **kw):
    upstream.route(
        prefix,
        body=body,
        headers=[("Content-Type", content_type)] + list(extra) if content_type else list(extra),
        replace_headers=True,
        chunked=chunked,
        **kw,
    )


ZSTD_TOO = {"gateway": {"compression": {"algorithms": ["br", "gzip", "zstd"]}}}


# ================================================================ compression


@pytest.mark.parametrize(
    "accept",
    ["identity", "*;q=0", "identity;q=0", "identity;q=0, *;q=0", "gzip;q=0, br;q=0, zstd;q=0, *;q=0", "compress, deflate"],
)
def test_compression_refused_by_client_gets_identity_not_406(start_gateway, fake_upstream, accept):
    """When the client accepts none of the offered codings, the gateway sends the upstream's
    bytes unencoded with 200, never 406 Not Acceptable, even for `*;q=0` or `identity;q=0`
    where the client said identity is not acceptable either.

    Why: RFC 9110 §12.5.3 lets a server that cannot satisfy Accept-Encoding either answer 406
    or disregard the header and send the representation without a content coding. The gateway
    is a proxy, not the origin of the representation: the upstream already chose to answer
    200, and turning that into a 406 would fail a request that a client with a too-strict
    header could still use; nginx and Envoy also send identity. (See
    gateway/filters/compression/negotiate.h, EncodingChoice::identityAcceptable.)
    """
    _route(fake_upstream, "/neg/", BIG_JSON)
    gw = start_gateway({}, upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/neg/x", headers=[("Accept-Encoding", accept)])
    assert resp.status == 200, resp.describe()
    assert resp.header("Content-Encoding") is None, "Accept-Encoding %r: %s" % (accept, resp.describe())
    assert resp.body == BIG_JSON


@pytest.mark.parametrize(
    "size,compressed",
    [(1, False), (1023, False), (1024, True), (1025, True)],
)
def test_compression_min_size_boundary_with_content_length(start_gateway, fake_upstream, size, compressed):
    """min_size (1 KiB here) is inclusive: a body of exactly min_size bytes is compressed."""
    body = (b'{"pad":"' + b"a" * size)[:size]
    _route(fake_upstream, "/size/", body)
    gw = start_gateway({"gateway": {"compression": {"min_size": "1KiB"}}}, upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/size/x", headers=[("Accept-Encoding", "gzip")])
    assert resp.status == 200, resp.describe()
    if compressed:
        assert resp.header("Content-Encoding") == "gzip", resp.describe()
        assert cli_decode("gzip", resp.body) == body
    else:
        assert resp.header("Content-Encoding") is None, resp.describe()
        assert resp.body == body
        assert resp.header("Content-Length") == str(size), "an untouched small body keeps its Content-Length"


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compression_small_chunked_body_decodes_exactly(start_gateway, chunking_upstream, encoding):
    """A chunked body's size is unknown when the head goes out, so min_size cannot be checked;
    whatever the gateway decides, the client must get the exact bytes (with a matching
    Content-Encoding or none)."""
    body = b'{"small":true}'
    chunking_upstream.chunked_route("/tiny/", body, sizes=[3, 5])
    gw = start_gateway(ZSTD_TOO, upstream=chunking_upstream)
    resp = http_request(gw.port, "GET", "/tiny/x", headers=[("Accept-Encoding", encoding)])
    assert resp.status == 200, resp.describe()
    got = resp.header("Content-Encoding")
    assert got in (None, encoding), resp.describe()
    assert (cli_decode(encoding, resp.body) if got else resp.body) == body


@pytest.mark.parametrize(
    "content_type,compressed",
    [
        ("image/png", False),
        ("application/octet-stream", False),
        ("application/jsonx", False),  # a listed type is matched whole, not as a prefix
        ("video/mp4", False),
        (None, False),  # no Content-Type at all
        ("application/json; charset=utf-8", True),  # parameters ignored
        ("APPLICATION/JSON", True),  # case-insensitive
        ("text/plain", True),  # text/*
        ("text/html;charset=UTF-8", True),
        ("image/svg+xml", True),
        ("application/javascript", True),
    ],
)
def test_compression_content_types(start_gateway, fake_upstream, content_type, compressed):
    _route(fake_upstream, "/types/", BIG_JSON, content_type=content_type)
    gw = start_gateway({}, upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/types/x", headers=[("Accept-Encoding", "gzip")])
    assert resp.status == 200, resp.describe()
    if compressed:
        assert resp.header("Content-Encoding") == "gzip", "%s: %s" % (content_type, resp.describe())
        assert cli_decode("gzip", resp.body) == BIG_JSON
    else:
        assert resp.header("Content-Encoding") is None, "%s: %s" % (content_type, resp.describe())
        assert resp.body == BIG_JSON


@pytest.mark.parametrize("status", [204, 304])
def test_compression_skips_bodiless_statuses(start_gateway, fake_upstream, status):
    fake_upstream.route("/nobody/", status=status, headers=JSON, replace_headers=True, body=b"")
    gw = start_gateway({}, upstream=fake_upstream)
    with RawConn(gw.port) as conn:
        conn.send(build_request("GET", "/nobody/x", [("Accept-Encoding", "gzip")]))
        resp = conn.read_response()
        assert resp.status == status, resp.describe()
        assert resp.header("Content-Encoding") is None, resp.describe()
        assert resp.header("Transfer-Encoding") is None, "a %d has no body to frame: %s" % (status, resp.describe())
        # Nothing stray followed the head: the connection carries the next exchange cleanly.
        conn.send(build_request("GET", "/nobody/y"))
        assert conn.read_response().status == status


def test_compression_skips_range_responses(start_gateway, fake_upstream):
    part = BIG_JSON[:4096]
    _route(
        fake_upstream,
        "/range/",
        part,
        extra=[("Content-Range", "bytes 0-4095/%d" % len(BIG_JSON))],
        status=206,
    )
    gw = start_gateway({}, upstream=fake_upstream)
    resp = http_request(gw.port, "GET", "/range/x", headers=[("Accept-Encoding", "gzip"), ("Range", "bytes=0-4095")])
    assert resp.status == 206, resp.describe()
    assert resp.header("Content-Encoding") is None and resp.body == part


# ---------------------------------------------------------------- byte-exact with the real decoders


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize(
    "name,body,content_type",
    [
        ("json-200KiB", BIG_JSON, "application/json"),
        ("all-byte-values", ALL_BYTES, "text/plain"),
        ("json-2MiB", _json_doc(2 * 1024 * 1024, seed=11), "application/json"),
    ],
    ids=["json-200KiB", "all-byte-values", "json-2MiB"],
)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_compression_round_trip_with_cli_decoders(start_gateway, chunking_upstream, encoding, name, body, content_type, framing):
    """The compressed body decodes, with the real gzip/brotli/zstd command-line decoders, to
    exactly the upstream's bytes; for Content-Length and for chunked upstream bodies (the
    chunked one in many pieces of odd sizes, 1-byte ones included)."""
    if framing == "chunked":
        chunking_upstream.chunked_route("/rt/", body, sizes=[1, 7, 4093, 65536, 3, 130001], content_type=content_type)
    else:
        _route(chunking_upstream, "/rt/", body, content_type=content_type)
    gw = start_gateway(ZSTD_TOO, upstream=chunking_upstream)
    resp = http_request(gw.port, "GET", "/rt/" + name, headers=[("Accept-Encoding", encoding)], timeout=20)
    assert resp.status == 200, resp.describe()
    assert resp.header("Content-Encoding") == encoding, resp.describe()
    assert resp.header("Content-Length") is None or int(resp.header("Content-Length")) == len(resp.body)
    assert any("accept-encoding" in v.lower() for v in resp.header_list("Vary")), resp.describe()
    decoded = cli_decode(encoding, resp.body)
    assert len(decoded) == len(body) and decoded == body, "%s/%s/%s: decoded %d bytes, upstream sent %d" % (
        encoding,
        name,
        framing,
        len(decoded),
        len(body),
    )
    if content_type == "application/json":
        assert len(resp.body) < len(body) / 2, "JSON should compress well (%d -> %d)" % (len(body), len(resp.body))


def _read_chunked_with_timing(conn: socket.socket, timeout: float):
    """Reads one chunked response; returns (head, body, time the first body data arrived)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    first_body_at = None
    head_end = -1
    while True:
        if time.monotonic() > deadline:
            raise AssertionError("response not complete in %.0fs: %r" % (timeout, bytes(buf[:300])))
        conn.settimeout(max(0.05, deadline - time.monotonic()))
        data = conn.recv(65536)
        if not data:
            raise AssertionError("closed early: %r" % bytes(buf[:300]))
        buf += data
        if head_end < 0:
            head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0 and first_body_at is None and len(buf) > head_end + 4 + 16:
            first_body_at = time.monotonic()
        if head_end >= 0 and buf.endswith(b"0\r\n\r\n"):
            try:
                body = _dechunk(bytes(buf[head_end + 4 :]))
            except ValueError:
                continue  # "0\r\n\r\n" happened to end a data piece; keep reading
            return bytes(buf[:head_end]).decode("latin-1"), body, first_body_at


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("incomplete")
        size = int(data[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            if data[pos:] != b"\r\n":
                raise ValueError("incomplete")
            return bytes(out)
        if pos + size + 2 > len(data):
            raise ValueError("incomplete")
        out += data[pos : pos + size]
        pos += size + 2


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compression_streams_a_chunked_body_without_waiting_for_its_end(start_gateway, chunking_upstream, encoding):
    """A body of unknown length is compressed as it flows: compressed bytes reach the client
    while the upstream still holds back its last chunk (1.5 s), and the whole decodes exactly."""
    body = _json_doc(1024 * 1024, seed=3)
    chunking_upstream.chunked_route("/stream/", body, sizes=[16 * 1024], pause_before_last=1.5)
    gw = start_gateway(ZSTD_TOO, upstream=chunking_upstream)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(build_request("GET", "/stream/x", [("Accept-Encoding", encoding), ("Connection", "close")]))
        head, data, first_body_at = _read_chunked_with_timing(conn, timeout=20)
    assert head.startswith("HTTP/1.1 200"), head
    assert re.search(r"(?im)^content-encoding:\s*%s\s*$" % encoding, head), head
    last_sent = chunking_upstream.last_chunk_sent_at["/stream/x"]
    assert first_body_at is not None and first_body_at < last_sent - 0.5, (
        "compressed output only started %.2fs after the upstream's last chunk was sent: the body was buffered"
        % ((first_body_at or 0) - last_sent)
    )
    assert cli_decode(encoding, data) == body


# ---------------------------------------------------------------- curl --compressed


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_curl_compressed_output_is_byte_identical(start_gateway, chunking_upstream, tmp_path, encoding, framing):
    """Real `curl --compressed` (which advertises every coding it can decode) through a gateway
    offering only `encoding`: the response is encoded with it and curl's output is byte for
    byte the upstream body. Codings this curl was built without are skipped."""
    curl = _tool("curl", "curl")
    if _CURL_FEATURE[encoding] not in _curl_features():
        pytest.skip("this curl cannot decode %s (no %r in `curl --version` Features)" % (encoding, _CURL_FEATURE[encoding]))
    body = _json_doc(300 * 1024, seed=13)
    if framing == "chunked":
        chunking_upstream.chunked_route("/curl/", body, sizes=[8191, 1, 65536])
    else:
        _route(chunking_upstream, "/curl/", body)
    gw = start_gateway({"gateway": {"compression": {"algorithms": [encoding]}}}, upstream=chunking_upstream)
    out = tmp_path / "curl.out"
    proc = subprocess.run(
        [
            curl, "-sS", "--compressed", "--max-time", "20", "-o", str(out),
            "-w", "%{http_code} %header{content-encoding}",
            "http://127.0.0.1:%d/curl/x" % gw.port,
        ],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, "curl failed: %s" % proc.stderr
    status, _, got_encoding = proc.stdout.partition(" ")
    assert status == "200" and got_encoding.strip() == encoding, proc.stdout
    assert out.read_bytes() == body, "curl --compressed output differs from the upstream body"


def test_curl_compressed_against_the_default_config_gets_brotli(start_gateway, fake_upstream, tmp_path):
    """With the contract's `algorithms: [br, gzip]`, curl's `Accept-Encoding: deflate, gzip, br,
    zstd` (all q=1) is a tie that the server's order breaks: br."""
    curl = _tool("curl", "curl")
    if "brotli" not in _curl_features():
        pytest.skip("this curl has no brotli")
    _route(fake_upstream, "/curl/", BIG_JSON)
    gw = start_gateway({}, upstream=fake_upstream)
    out = tmp_path / "curl.out"
    proc = subprocess.run(
        [curl, "-sS", "--compressed", "--max-time", "20", "-o", str(out), "-w", "%header{content-encoding}",
         "http://127.0.0.1:%d/curl/x" % gw.port],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "br"
    assert out.read_bytes() == BIG_JSON


# ================================================================ cache

CACHE_BODY = b'{"id":1,"title":"cached","body":"' + b"x" * 2900 + b'"}'  # ~3 KB


def _cache_cfg(rule=None, extra=None):
    """The harness turns caching off by default (`rules: []`); give the rule explicitly."""
    rule = rule or {"prefix": "/c/", "ttl": "60s", "cache_control": "public, max-age=60"}
    return deep_merge({"gateway": {"cache": {"rules": [rule]}}}, extra or {})


def _upstream_hits(upstream, prefix):
    return len(upstream.requests_for(prefix))


def _get(gw, path, headers=None):
    resp = http_request(gw.port, "GET", path, headers=headers or [])
    assert resp.status in (200, 304), resp.describe()
    return resp


def test_cache_entry_expires_after_the_rule_ttl(start_gateway, fake_upstream):
    _route(fake_upstream, "/c/", CACHE_BODY)
    gw = start_gateway(_cache_cfg({"prefix": "/c/", "ttl": "1s"}), upstream=fake_upstream)
    assert _get(gw, "/c/ttl").header("X-Cache") == "MISS"
    assert _get(gw, "/c/ttl").header("X-Cache") == "HIT"
    time.sleep(1.3)
    again = _get(gw, "/c/ttl")
    assert again.header("X-Cache") == "MISS", "the entry must expire after the rule's 1s ttl: " + again.describe()
    assert again.body == CACHE_BODY
    assert _upstream_hits(fake_upstream, "/c/ttl") == 2
    assert _get(gw, "/c/ttl").header("X-Cache") == "HIT", "the refetched response is stored again"


@pytest.mark.parametrize("cache_control", ["max-age=1", "public, max-age=1", "s-maxage=1, max-age=60"])
def test_cache_upstream_lifetime_overrides_the_rule_ttl(start_gateway, fake_upstream, cache_control):
    """The upstream's own freshness (s-maxage before max-age) wins over the rule's 60s ttl, and
    its Cache-Control is passed on rather than replaced by the rule's."""
    _route(fake_upstream, "/c/", CACHE_BODY, extra=[("Cache-Control", cache_control)])
    gw = start_gateway(_cache_cfg(), upstream=fake_upstream)
    first = _get(gw, "/c/maxage")
    assert first.header("X-Cache") == "MISS" and first.header("Cache-Control") == cache_control, first.describe()
    hit = _get(gw, "/c/maxage")
    assert hit.header("X-Cache") == "HIT", hit.describe()
    time.sleep(1.3)
    assert _get(gw, "/c/maxage").header("X-Cache") == "MISS", "upstream %r must expire the entry after 1s" % cache_control
    assert _upstream_hits(fake_upstream, "/c/maxage") == 2


def test_cache_evicts_the_least_recently_used_entry_under_max_bytes(start_gateway, fake_upstream):
    """max_bytes 12 KiB holds three ~3.6 KB entries (body + headers + key + overhead), not four.
    After A, B, C are stored and A is read again, storing D must evict B (least recently used):
    B misses again while A (recently used) is still a hit."""
    _route(fake_upstream, "/c/", CACHE_BODY)
    gw = start_gateway(
        _cache_cfg(extra={"gateway": {"cache": {"max_bytes": "12KiB", "max_object_bytes": "8KiB"}}}),
        upstream=fake_upstream,
    )
    for name in ("a", "b", "c"):
        assert _get(gw, "/c/" + name).header("X-Cache") == "MISS"
    for name in ("a", "b", "c"):
        assert _get(gw, "/c/" + name).header("X-Cache") == "HIT", "three entries must fit in 12 KiB"
    assert _get(gw, "/c/a").header("X-Cache") == "HIT"  # order now (most recent first): a, c, b
    assert _get(gw, "/c/d").header("X-Cache") == "MISS"  # stored; b is the one to go
    assert _get(gw, "/c/a").header("X-Cache") == "HIT", "a recently used entry must stay"
    assert _get(gw, "/c/d").header("X-Cache") == "HIT"
    evicted = _get(gw, "/c/b")
    assert evicted.header("X-Cache") == "MISS", "the least recently used entry must be evicted: " + evicted.describe()
    assert evicted.body == CACHE_BODY
    assert {p: _upstream_hits(fake_upstream, "/c/" + p) for p in "abcd"} == {"a": 1, "b": 2, "c": 1, "d": 1}


@pytest.mark.parametrize(
    "why,headers,req_headers",
    [
        ("Set-Cookie even with public", [("Cache-Control", "public, max-age=60"), ("Set-Cookie", "s=1")], []),
        ("no-cache", [("Cache-Control", "no-cache")], []),
        ("no-store among other directives", [("Cache-Control", "public, max-age=60, no-store")], []),
        ("max-age=0", [("Cache-Control", "max-age=0")], []),
        ("Expires in the past", [("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")], []),
        ("invalid Expires", [("Expires", "0")], []),
        ("Vary beyond Accept-Encoding", [("Vary", "Accept-Language")], []),
        ("request Cache-Control: no-store", [], [("Cache-Control", "no-store")]),
    ],
)
def test_cache_does_not_store_more_cases(start_gateway, fake_upstream, why, headers, req_headers):
    """Beyond test_gateway_cache.py's no-store / private / Set-Cookie / Authorization cases."""
    _route(fake_upstream, "/c/", CACHE_BODY, extra=headers)
    gw = start_gateway(_cache_cfg(), upstream=fake_upstream)
    for _ in range(2):
        resp = _get(gw, "/c/nostore", headers=req_headers)
        assert resp.status == 200 and resp.body == CACHE_BODY, why
        assert resp.header("X-Cache") != "HIT", "%s: %s" % (why, resp.describe())
    assert _upstream_hits(fake_upstream, "/c/nostore") == 2, why


def test_cache_authorization_request_stored_when_response_is_public(start_gateway, fake_upstream):
    _route(fake_upstream, "/c/", CACHE_BODY, extra=[("Cache-Control", "public, max-age=60")])
    gw = start_gateway(_cache_cfg(), upstream=fake_upstream)
    auth = [("Authorization", "Bearer t")]
    assert _get(gw, "/c/auth", auth).header("X-Cache") == "MISS"
    assert _get(gw, "/c/auth", auth).header("X-Cache") == "HIT"
    assert _upstream_hits(fake_upstream, "/c/auth") == 1


def test_cache_100_concurrent_misses_make_one_upstream_request(start_gateway, fake_upstream):
    """100 clients ask for one uncached key at once, on a gateway with 2 workers, while the
    upstream takes 1.5 s to answer: exactly one request reaches the upstream, every client
    gets the full body, exactly one response says MISS. All 100 requests are checked to have
    been sent before the upstream answered, so they really were concurrent misses."""
    _route(fake_upstream, "/c/", CACHE_BODY, delay=1.5)
    gw = start_gateway(_cache_cfg(extra={"gateway": {"workers": 2}}), upstream=fake_upstream)
    n = 100
    barrier = threading.Barrier(n)
    results = [None] * n
    sent_at = [None] * n

    def fetch(i):
        try:
            with RawConn(gw.port, timeout=15) as conn:
                barrier.wait(timeout=15)
                conn.send(build_request("GET", "/c/stampede"))
                sent_at[i] = time.monotonic()
                results[i] = conn.read_response()
        except Exception as exc:  # reported below with the others
            results[i] = exc

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    failures = [r for r in results if not hasattr(r, "status")]
    assert not failures, "%d requests failed, e.g. %r" % (len(failures), failures[:3])
    assert [r.status for r in results] == [200] * n, sorted({r.status for r in results})
    assert all(r.body == CACHE_BODY for r in results)
    upstream = fake_upstream.requests_for("/c/stampede")
    assert len(upstream) == 1, "%d upstream requests for 100 concurrent misses of one key" % len(upstream)
    answered_at = upstream[0].received_at + 1.5
    late = [t for t in sent_at if t >= answered_at]
    assert not late, "%d requests were sent after the upstream answered: not a concurrency test" % len(late)
    verdicts = [r.header("X-Cache") for r in results]
    assert verdicts.count("MISS") == 1 and verdicts.count("HIT") == n - 1, sorted(set(verdicts))


@pytest.mark.parametrize("accept", [None, "gzip", "br"])
def test_cache_if_none_match_304_carries_etag_cache_control_vary_and_no_body(start_gateway, fake_upstream, accept):
    """CONTRACT §4: If-None-Match matching the ETag gives 304 with no body, with ETag,
    Cache-Control and Vary (RFC 9110 §15.4.5: the fields a 200 would have carried). Checked on
    the miss that fills the entry and on a hit, for the identity and compressed variants; the
    connection must then carry another exchange, which proves no body bytes followed the 304."""
    big = _json_doc(8 * 1024)
    _route(fake_upstream, "/c/", big)
    gw = start_gateway(_cache_cfg(), upstream=fake_upstream)
    ae = [("Accept-Encoding", accept)] if accept else []
    full = _get(gw, "/c/inm", ae)
    assert full.status == 200 and full.header("X-Cache") == "MISS"
    etag = full.header("ETag")
    assert etag, full.describe()
    full_vary = {v.strip().lower() for v in ",".join(full.header_list("Vary")).split(",") if v.strip()}
    if accept:
        assert full.header("Content-Encoding") == accept and "accept-encoding" in full_vary

    def check_304(path, expect_cache):
        with RawConn(gw.port) as conn:
            conn.send(build_request("GET", path, ae + [("If-None-Match", etag)]))
            resp = conn.read_response()
            assert resp.status == 304, resp.describe()
            assert resp.header("ETag") == etag, resp.describe()
            assert resp.header("Cache-Control") == "public, max-age=60", resp.describe()
            vary = {v.strip().lower() for v in ",".join(resp.header_list("Vary")).split(",") if v.strip()}
            assert full_vary <= vary and vary, "304 Vary %r lacks what the 200 had (%r)" % (vary, full_vary)
            assert resp.header("Transfer-Encoding") is None, resp.describe()
            assert resp.header("Content-Length") in (None, "0", str(len(full.body))), resp.describe()
            if expect_cache:
                assert resp.header("X-Cache") == expect_cache, resp.describe()
            conn.send(build_request("GET", path, ae))
            follow = conn.read_response()
            assert follow.status == 200 and follow.body == full.body, "after the 304: " + follow.describe()

    check_304("/c/inm", "HIT")
    # A second path with the same body fills its entry on this very request: the 304 is made
    # from the live upstream response (the generated ETag is a hash of the same bytes).
    check_304("/c/inm-other", "MISS")


# ---------------------------------------------------------------- cache x CORS

ORIGIN_A = "https://a.example"
ORIGIN_B = "https://b.example"

@pytest.mark.parametrize(
    "second_origin,expected",
    [(ORIGIN_A, ORIGIN_A), (ORIGIN_B, ORIGIN_B), ("https://evil.example", None), (None, None)],
)
def test_cache_hit_carries_cors_headers_for_its_own_origin_only(start_gateway, fake_upstream, second_origin, expected):
    """CORS headers depend on the request's Origin, so they are not part of a cached response:
    a hit gets exactly the Access-Control-* headers its own Origin calls for, once."""
    _route(fake_upstream, "/c/", CACHE_BODY)
    gw = start_gateway(
        _cache_cfg(extra={"gateway": {"cors": {"allow_origins": [ORIGIN_A, ORIGIN_B]}}}), upstream=fake_upstream
    )
    first = _get(gw, "/c/cors", [("Origin", ORIGIN_A)])
    assert first.header("X-Cache") == "MISS" and first.header_list("Access-Control-Allow-Origin") == [ORIGIN_A]
    hit = _get(gw, "/c/cors", [("Origin", second_origin)] if second_origin else [])
    assert hit.header("X-Cache") == "HIT", hit.describe()
    acao = hit.header_list("Access-Control-Allow-Origin")
    assert acao == ([expected] if expected else []), "hit for Origin %r: %s" % (second_origin, hit.describe())
    assert len(hit.header_list("Access-Control-Allow-Credentials")) == (1 if expected else 0), hit.describe()
    assert _upstream_hits(fake_upstream, "/c/cors") == 1


def test_cache_result_is_in_the_access_log(start_gateway, fake_upstream):
    """CONTRACT §4 Logs: the access line has `cache`; it must tell a miss from a hit."""
    _route(fake_upstream, "/c/", CACHE_BODY)
    gw = start_gateway(_cache_cfg(), upstream=fake_upstream)
    assert _get(gw, "/c/logged", [("X-Request-ID", "log-miss")]).header("X-Cache") == "MISS"
    assert _get(gw, "/c/logged", [("X-Request-ID", "log-hit")]).header("X-Cache") == "HIT"
    assert _get(gw, "/other", [("X-Request-ID", "log-bypass")]).header("X-Cache") is None
    deadline = time.monotonic() + 3
    seen = {}
    while time.monotonic() < deadline and len(seen) < 3:
        for line in gw.stdout_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("msg") == "access" and doc.get("request_id", "").startswith("log-"):
                seen[doc["request_id"]] = doc.get("cache")
        time.sleep(0.05)
    assert seen.get("log-miss") == "MISS" and seen.get("log-hit") == "HIT", seen
    assert seen.get("log-bypass") in ("BYPASS", "-", "", None), seen


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compression_does_not_hold_back_server_sent_events(start_gateway, chunking_upstream, encoding):
    """An event stream with the default config and a browser-like Accept-Encoding: the first
    events must reach the client while the upstream is still waiting to send the next one."""
    body = b"data: event 1\n\n" * 4 + b"data: last\n\n"
    chunking_upstream.chunked_route("/events", body, sizes=[15], content_type="text/event-stream", pause_before_last=2.0)
    gw = start_gateway(ZSTD_TOO, upstream=chunking_upstream)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(build_request("GET", "/events", [("Accept-Encoding", encoding), ("Connection", "close")]))
        head, data, first_body_at = _read_chunked_with_timing(conn, timeout=15)
    last_sent = chunking_upstream.last_chunk_sent_at["/events"]
    got = re.search(r"(?im)^content-encoding:\s*(\S+)", head)
    assert (cli_decode(got.group(1), data) if got else data) == body
    assert first_body_at is not None and first_body_at < last_sent - 1.0, (
        "the first events reached the client %.2fs after the upstream's last one was sent (%s)"
        % ((first_body_at or 0) - last_sent, got.group(0) if got else "identity")
    )
