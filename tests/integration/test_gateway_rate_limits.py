"""CONTRACT §4 Rate limits: Redis-counted limits shared by replicas, 429 + Retry-After,
RateLimit-* headers, and the fail_open / fail_closed behaviour when Redis is down or slow."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from gateway_harness import free_port, http_request


def _rule(name, limit, algorithm="token_bucket", key="client_ip", fail_open=True, path="/limited"):
    return {"name": name, "prefix": path, "algorithm": algorithm, "limit": limit, "window": "60s",
            "key": key, "fail_open": fail_open}


def _cfg(*rules, redis_url=None, extra=None):
    cfg = {"gateway": {"rate_limits": list(rules)}}
    if redis_url:
        cfg["redis"] = {"url": redis_url, "command_timeout": "50ms", "connect_timeout": "200ms"}
    if extra:
        cfg["gateway"].update(extra)
    return cfg


class OwnRedis:
    """A redis-server this test can stop, freeze and restart."""

    def __init__(self, tmp_path):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("redis-server not installed")
        self.port = free_port()
        self.dir = tmp_path
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    r = OwnRedis(tmp_path)
    r.start()
    yield r
    if r.proc:
        os.kill(r.proc.pid, signal.SIGCONT)
    r.stop()


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
def test_rate_limit_allows_limit_then_429_with_headers(start_gateway, fake_upstream, redis_url, algorithm):
    name = "t_" + algorithm
    gw = start_gateway(_cfg(_rule(name, 5, algorithm), redis_url=redis_url), upstream=fake_upstream)
    time.sleep(0.3)  # the worker's Redis connection
    remaining = []
    for _ in range(5):
        resp = http_request(gw.port, "GET", "/limited/x")
        assert resp.status == 200, resp.describe()
        assert resp.header("RateLimit-Limit") == "5"
        remaining.append(int(resp.header("RateLimit-Remaining")))
        assert int(resp.header("RateLimit-Reset")) >= 0
    assert remaining == [4, 3, 2, 1, 0]
    denied = http_request(gw.port, "GET", "/limited/x")
    assert denied.status == 429, denied.describe()
    assert int(denied.header("Retry-After")) >= 1
    assert denied.header("RateLimit-Remaining") == "0"
    assert denied.json()["error"] and denied.json()["request_id"]
    assert len(fake_upstream.requests_for("/limited")) == 5
    metrics = http_request(gw.admin_port, "GET", "/metrics").body.decode()
    assert 'gateway_rate_limited_total{rule="%s"} 1' % name in metrics
    # Routes without a rule are neither limited nor decorated.
    free = http_request(gw.port, "GET", "/free")
    assert free.status == 200 and free.header("RateLimit-Limit") is None


def test_rate_limit_is_shared_by_replicas_through_redis(start_gateway, fake_upstream, redis_url):
    rule = _rule("shared", 6)
    a = start_gateway(_cfg(rule, redis_url=redis_url), upstream=fake_upstream, name="replica_a")
    b = start_gateway(_cfg(rule, redis_url=redis_url), upstream=fake_upstream, name="replica_b")
    time.sleep(0.3)
    statuses = [http_request(gw.port, "GET", "/limited/s").status for gw in (a, b, a, b, a, b)]
    assert statuses == [200] * 6
    assert http_request(a.port, "GET", "/limited/s").status == 429
    assert http_request(b.port, "GET", "/limited/s").status == 429


def test_rate_limit_header_key_gives_each_key_its_bucket(start_gateway, fake_upstream, redis_url):
    gw = start_gateway(_cfg(_rule("apikey", 2, key="header:X-Api-Key"), redis_url=redis_url), upstream=fake_upstream)
    time.sleep(0.3)
    for key in ("alice", "bob"):
        for _ in range(2):
            assert http_request(gw.port, "GET", "/limited/k", headers=[("X-Api-Key", key)]).status == 200
        assert http_request(gw.port, "GET", "/limited/k", headers=[("X-Api-Key", key)]).status == 429
    # Requests without the header share one bucket of their own.
    assert http_request(gw.port, "GET", "/limited/k").status == 200
    assert http_request(gw.port, "GET", "/limited/k").status == 200
    assert http_request(gw.port, "GET", "/limited/k").status == 429


def test_rate_limit_fail_open_falls_back_to_in_process_limiter(start_gateway, fake_upstream, own_redis):
    gw = start_gateway(_cfg(_rule("open", 3, fail_open=True), redis_url=own_redis.url), upstream=fake_upstream)
    own_redis.stop()
    time.sleep(0.2)
    statuses = [http_request(gw.port, "GET", "/limited/o").status for _ in range(4)]
    assert statuses == [200, 200, 200, 429], "the local limiter enforces the same rule while Redis is down"


def test_rate_limit_fail_closed_answers_503_when_redis_is_down(start_gateway, fake_upstream, own_redis):
    gw = start_gateway(_cfg(_rule("closed", 100, fail_open=False), redis_url=own_redis.url), upstream=fake_upstream)
    time.sleep(0.3)
    assert http_request(gw.port, "GET", "/limited/c").status == 200
    own_redis.stop()
    time.sleep(0.2)
    resp = http_request(gw.port, "GET", "/limited/c")
    assert resp.status == 503, resp.describe()
    assert fake_upstream.requests_for("/limited/c").__len__() == 1


def test_rate_limit_never_waits_longer_than_command_timeout_for_a_frozen_redis(start_gateway, fake_upstream, own_redis):
    gw = start_gateway(_cfg(_rule("frozen", 100, fail_open=True), redis_url=own_redis.url), upstream=fake_upstream)
    time.sleep(0.3)
    assert http_request(gw.port, "GET", "/limited/f").status == 200
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            resp = http_request(gw.port, "GET", "/limited/f", timeout=5)
            worst = max(worst, time.monotonic() - t0)
            assert resp.status == 200, resp.describe()
        # command_timeout is 50ms; allow scheduling noise on a busy 2-core machine.
        assert worst < 0.5, "a request waited %.3fs for a frozen Redis" % worst
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)


def _wait_readyz(gw, status, timeout=5.0):
    deadline = time.monotonic() + timeout
    resp = None
    while time.monotonic() < deadline:
        resp = http_request(gw.admin_port, "GET", "/readyz")
        if resp.status == status:
            return resp
        time.sleep(0.1)
    return resp


@pytest.mark.parametrize("fail_open,down_status,down_word", [(False, 503, "down"), (True, 200, "degraded")])
def test_readyz_names_redis_when_rate_limits_use_it(start_gateway, fake_upstream, own_redis, fail_open, down_status, down_word):
    gw = start_gateway(
        _cfg(_rule("ready_rl", 100, fail_open=fail_open), redis_url=own_redis.url,
             extra={"upstream": {"health_interval": "100ms"}}),
        upstream=fake_upstream,
        wait_ready=False,
    )
    ok = _wait_readyz(gw, 200)
    assert ok.status == 200 and ok.json() == {"status": "ready", "upstream": "ok", "redis": "ok"}, ok.describe()
    own_redis.stop()
    resp = _wait_readyz(gw, down_status) if down_status != 200 else None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        resp = http_request(gw.admin_port, "GET", "/readyz")
        if resp.json().get("redis") == down_word:
            break
        time.sleep(0.1)
    assert resp.status == down_status and resp.json().get("redis") == down_word, resp.describe()
