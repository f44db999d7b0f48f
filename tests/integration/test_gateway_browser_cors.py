"""CONTRACT §4 CORS checked by a real browser: headless Chromium loads a page from one origin
(a small http.server on 127.0.0.1:<portA>) whose script calls the gateway on another origin
(127.0.0.1:<gatewayPort>) with `credentials: "include"`, a custom header and a JSON PUT, so the
browser sends a preflight and applies its own CORS checks to every answer.

The page (tests/browser/cors_page.html) writes what its fetches saw into <pre id="result">;
`chromium --headless --dump-dom --virtual-time-budget=...` prints the DOM once the page is idle
(virtual time does not advance while fetches are pending), and the test reads the JSON there.
No DevTools protocol client and no chromedriver are needed.

Needs the Debian package `chromium`; without it (or if it cannot start here) the tests are
skipped with the reason.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from gateway_harness import REPO_ROOT, RawConn, build_request

PAGE_DIR = REPO_ROOT / "tests" / "browser"
CHROMIUM_TIMEOUT = 60  # seconds for one page load, start-up included


def _chromium_binary():
    for candidate in ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "chromium", "chromium-browser"):
        path = shutil.which(candidate) if not candidate.startswith("/") else (candidate if os.access(candidate, os.X_OK) else None)
        if path:
            return path
    return None


def _run_chromium(binary: str, url: str, profile_dir: Path, budget_ms: int = 10000):
    """Runs one headless page load; returns (returncode, stdout, stderr). Bounded in time: on
    timeout the whole process group (browser, renderer, GPU and utility processes) is killed."""
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",  # we run as root in a container: the setuid/namespace sandbox is unavailable
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--mute-audio",
        "--user-data-dir=%s" % profile_dir,
        "--dump-dom",
        "--virtual-time-budget=%d" % budget_ms,
        url,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            "chromium did not finish within %ds\nstderr tail:\n%s" % (CHROMIUM_TIMEOUT, err.decode(errors="replace")[-2000:])
        )
    finally:
        # Leftover helper processes of this browser only (its own process group).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    """The chromium binary, after one smoke run proved it can load a page here."""
    binary = _chromium_binary()
    if binary is None:
        pytest.skip("chromium not installed (Debian package `chromium`)")
    rc, out, err = _run_chromium(
        binary, "data:text/html,<p id=x>smoke</p>", tmp_path_factory.mktemp("chromium-smoke"), budget_ms=1000
    )
    if rc != 0 or "smoke" not in out:
        pytest.skip("chromium cannot run headless here (rc %s): %s" % (rc, err[-1500:]))
    return binary


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def end_headers(self):
        # The page must be fetched fresh on every run.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@pytest.fixture
def page_origin():
    """Origin A: serves tests/browser/ on 127.0.0.1:<free port>; yields its origin string."""
    handler = functools.partial(_QuietHandler, directory=str(PAGE_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="page-origin", daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _load_page(chromium, tmp_path, origin, gateway_port, steps):
    url = "%s/cors_page.html?gw=http://127.0.0.1:%d&steps=%s" % (origin, gateway_port, ",".join(steps))
    profile = tmp_path / ("profile-%s" % "-".join(steps))
    rc, out, err = _run_chromium(chromium, url, profile)
    m = re.search(r'<pre id="result">(.*?)</pre>', out, re.S)
    assert rc == 0 and m, "chromium rc %s, no result in the DOM:\n%s\nstderr tail:\n%s" % (rc, out[-2000:], err[-2000:])
    text = html.unescape(m.group(1))
    assert text != "pending", "the page's script did not finish within the virtual time budget:\n" + out[-2000:]
    return json.loads(text)


def _gateway_cfg(allow_origin, credentials=True, cache=False):
    cfg = {
        "gateway": {
            "cors": {
                "allow_origins": [allow_origin],
                "allow_credentials": credentials,
                "allow_methods": ["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                "allow_headers": ["Content-Type", "X-Request-ID"],
                "expose_headers": ["X-Request-ID"],
                "max_age": "0s",  # no preflight cache between runs in one browser profile
            }
        }
    }
    if cache:
        cfg["gateway"]["cache"] = {"rules": [{"prefix": "/c/", "ttl": "60s"}]}
    return cfg


def _access_lines(gw):
    lines = []
    for line in gw.stdout_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "status" in doc and "method" in doc:
            lines.append(doc)
    return lines


def _header(req, name):
    return req.header(name) if req is not None else None


def test_browser_credentialed_cross_origin_put_with_preflight_and_simple_get(
    chromium, page_origin, start_gateway, fake_upstream, tmp_path
):
    gw = start_gateway(_gateway_cfg(page_origin), upstream=fake_upstream)
    result = _load_page(chromium, tmp_path, page_origin, gw.port, ["put", "get"])

    put = result["put"]
    assert put["ok"], "the credentialed PUT failed in the browser: %r" % put
    assert put["status"] == 200
    assert put["requestId"] == "abc", "X-Request-ID is exposed and was kept: the script must read it"
    assert put["echoPath"] is None, "a header not in Access-Control-Expose-Headers must stay hidden"
    assert put["json"]["method"] == "PUT" and put["json"]["path"] == "/api/items/1"

    get = result["get"]
    assert get["ok"], "the credentialed simple GET failed in the browser: %r" % get
    assert get["status"] == 200 and get["json"]["path"] == "/api/simple"

    # The preflight was answered by the gateway (204), never forwarded.
    assert [r.method for r in fake_upstream.requests_for("/api/")] == ["PUT", "GET"], [
        (r.method, r.path) for r in fake_upstream.requests_for("/api/")
    ]
    preflights = [l for l in _access_lines(gw) if l.get("method") == "OPTIONS"]
    assert preflights and all(l["status"] == 204 for l in preflights), preflights
    # Credentials really went along: the page's cookie reached the upstream with both requests.
    upstream_put, upstream_get = fake_upstream.requests_for("/api/")
    assert "sid=from-browser-page" in (_header(upstream_put, "Cookie") or ""), upstream_put.headers
    assert "sid=from-browser-page" in (_header(upstream_get, "Cookie") or ""), upstream_get.headers
    assert _header(upstream_put, "Origin") == page_origin
    assert _header(upstream_put, "X-Request-ID") == "abc"


def test_browser_origin_not_allowed_is_blocked(chromium, page_origin, start_gateway, fake_upstream, tmp_path):
    """Only another origin is allowed: the preflight is refused (403), so the PUT is never sent;
    the simple GET reaches the upstream but the browser withholds the answer from the script."""
    gw = start_gateway(_gateway_cfg("http://127.0.0.1:1"), upstream=fake_upstream)
    result = _load_page(chromium, tmp_path, page_origin, gw.port, ["put", "get"])
    assert not result["put"]["ok"] and "TypeError" in result["put"]["error"], result
    assert not result["get"]["ok"] and "TypeError" in result["get"]["error"], result
    assert [r.method for r in fake_upstream.requests_for("/api/")] == ["GET"]
    preflights = [l for l in _access_lines(gw) if l.get("method") == "OPTIONS"]
    assert preflights and all(l["status"] == 403 for l in preflights), preflights


def test_browser_credentialed_fetch_fails_without_allow_credentials(
    chromium, page_origin, start_gateway, fake_upstream, tmp_path
):
    """allow_credentials: false: the origin is allowed but no Access-Control-Allow-Credentials is
    sent, so a fetch with credentials "include" must fail in the browser (Fetch standard)."""
    gw = start_gateway(_gateway_cfg(page_origin, credentials=False), upstream=fake_upstream)
    result = _load_page(chromium, tmp_path, page_origin, gw.port, ["put", "get"])
    assert not result["put"]["ok"], result
    assert not result["get"]["ok"], result


def test_browser_credentialed_get_of_a_cached_response(chromium, page_origin, start_gateway, fake_upstream, tmp_path):
    """Another client of the same site (same Origin) filled the cache; the browser's credentialed
    GET is then a cache hit, and the page must be able to read it like a miss."""
    fake_upstream.route("/c/page", body=b'{"page":"cached"}', headers=[("Content-Type", "application/json")], replace_headers=True)
    gw = start_gateway(_gateway_cfg(page_origin, cache=True), upstream=fake_upstream)
    # The cache key has the Host and the negotiated coding: send what Chromium sends.
    with RawConn(gw.port) as conn:
        conn.send(
            build_request(
                "GET",
                "/c/page",
                [("Origin", page_origin), ("Accept-Encoding", "gzip, deflate, br, zstd")],
                host="127.0.0.1:%d" % gw.port,
            )
        )
        fill = conn.read_response()
    assert fill.status == 200 and fill.header("X-Cache") == "MISS", fill.describe()
    result = _load_page(chromium, tmp_path, page_origin, gw.port, ["cached"])
    assert len(fake_upstream.requests_for("/c/page")) == 1, "the browser's GET must be a cache hit"
    assert result["cached"]["ok"], "the cache hit was blocked by the browser: %r" % result["cached"]
    assert result["cached"]["status"] == 200 and result["cached"]["json"] == {"page": "cached"}
