"""End to end through both real binaries: client -> gateway -> upstream_app.

Both processes read one YAML file (CONTRACT §1), so the tests write one config
and start each binary with it. The readiness chain (gateway /readyz ->
upstream_app /readyz -> PostgreSQL `SELECT 1` + Redis `PING`) needs the real
data stack from tests/harness/stack.py.
"""

import signal
import time

import pytest

from gateway_harness import (
    Gateway,
    ResponseTimeout,
    ServerClosed,
    ServerReset,
    UpstreamApp,
    free_port,
    gateway_config,
    http_request,
)


def _e2e_config(db_url: str, redis_url: str) -> dict:
    app_port = free_port()
    return gateway_config(
        "127.0.0.1:%d" % app_port,
        redis_url,
        {
            "gateway": {"drain_delay": "100ms", "graceful_timeout": "2s"},
            "upstream_app": {
                "listen": "127.0.0.1:%d" % app_port,
                "workers": 1,
                "keep_alive_timeout": "90s",
                "database": {"url": db_url},
                "tracing": {"enabled": False},
            },
        },
    )


class _Pair:
    def __init__(self, app: UpstreamApp, gw: Gateway):
        self.app = app
        self.gw = gw


@pytest.fixture
def start_pair(tmp_path, register_process):
    started = []

    def start(db_url: str, redis_url: str, wait_gateway_ready: bool) -> _Pair:
        config = _e2e_config(db_url, redis_url)
        app = UpstreamApp(config, tmp_path, name="upstream_app")
        register_process(app)
        started.append(app)
        app.start()
        app.wait_http_ok(app.port, "/healthz", timeout=15)
        gw = Gateway(config, tmp_path, name="gateway")
        register_process(gw)
        started.append(gw)
        gw.start_and_wait()
        if wait_gateway_ready:
            gw.wait_http_ok(gw.port, "/readyz", timeout=10)
        return _Pair(app, gw)

    yield start
    problems = []
    for proc in reversed(started):
        if proc.returncode is not None:
            continue
        code = proc.stop(timeout=10)
        if code != 0:
            problems.append("%s exit code after SIGTERM: %s\n%s" % (proc.name, code, proc.log_tail()))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_upstream_app_healthz_answers_ok(start_pair, redis_url):
    # The app must start and be alive even when its database is unreachable.
    pair = start_pair("postgresql://app@127.0.0.1:%d/app" % free_port(), redis_url, wait_gateway_ready=False)
    resp = http_request(pair.app.port, "GET", "/healthz")
    assert resp.status == 200, resp.describe()
    assert resp.json() == {"ok": True}, resp.describe()


def test_request_proxied_to_upstream_app_returns_its_404(start_pair, redis_url):
    pair = start_pair("postgresql://app@127.0.0.1:%d/app" % free_port(), redis_url, wait_gateway_ready=False)
    direct = http_request(pair.app.port, "GET", "/nope", headers=[("X-Request-ID", "e2e-direct-404")])
    assert direct.status == 404, "upstream_app GET /nope directly: %s" % direct.describe()
    via = http_request(pair.gw.port, "GET", "/nope", headers=[("X-Request-ID", "e2e-via-404")])
    assert via.status == 404, "GET /nope through the gateway: %s" % via.describe()
    assert via.header("x-request-id") == "e2e-via-404", via.describe()
    # Same body as the app's own answer, apart from the request id it may carry.
    assert via.body.replace(b"e2e-via-404", b"ID") == direct.body.replace(b"e2e-direct-404", b"ID"), (
        "gateway changed the app's 404: direct %s / via %s" % (direct.describe(), via.describe())
    )


def _wait_status(port: int, path: str, status: int, timeout: float):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = http_request(port, "GET", path, timeout=1.0)
            if last.status == status:
                return last, None
        except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
            last = exc
        time.sleep(0.02)
    return None, last


def test_gateway_readyz_follows_upstream_app_with_real_data_stack(start_pair, data_stack):
    pair = start_pair(data_stack.db_url, data_stack.redis_url, wait_gateway_ready=False)
    app_ready, last = _wait_status(pair.app.port, "/readyz", 200, 15.0)
    assert app_ready is not None, "upstream_app /readyz with the real stack never 200: %r" % (
        last.describe() if hasattr(last, "describe") else last
    )
    gw_ready, last = _wait_status(pair.gw.port, "/readyz", 200, 5.0)
    assert gw_ready is not None, "gateway /readyz never 200 while upstream_app is ready: %r" % (
        last.describe() if hasattr(last, "describe") else last
    )
    doc = gw_ready.json()
    assert doc.get("status") == "ready" and doc.get("upstream") == "ok", doc

    pair.app.signal(signal.SIGKILL)
    pair.app.wait_exit(5)
    t0 = time.monotonic()
    gw_unready, last = _wait_status(pair.gw.admin_port, "/readyz", 503, 3.0)
    elapsed = time.monotonic() - t0
    assert gw_unready is not None, "gateway /readyz still not 503 3s after upstream_app was killed: %r" % (
        last.describe() if hasattr(last, "describe") else last
    )
    assert elapsed <= 1.0, "gateway /readyz turned 503 %.2fs after upstream_app died (health_interval 100ms)" % elapsed
    doc = gw_unready.json()
    assert doc.get("upstream") not in (None, "ok"), "503 /readyz should name the upstream: %r" % doc
    on_listen = http_request(pair.gw.port, "GET", "/readyz")
    assert on_listen.status == 503, on_listen.describe()
