"""upstream_app `GET /readyz` against real PostgreSQL 15 + PgBouncer (transaction
mode) + Redis (CONTRACT §5): 200 {"db":"ok","cache":"ok"} after a real SELECT 1
and PING; 503 naming the failing part, within the checks' bounds (db: min(statement_timeout, 2s),
cache: redis.command_timeout); back to 200 when the server returns.

The stack is this module's own (tests/harness/stack.py on free ports), because
the tests stop and restart its servers one by one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.stack import STACK_SCRIPT, DataStack  # noqa: E402

from gateway_harness import (  # noqa: E402
    ResponseTimeout,
    ServerClosed,
    ServerReset,
    UpstreamApp,
    free_port,
    http_request,
)

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# db bound is min(statement_timeout, 2s); an answer must never take much longer.
READYZ_MAX_SECONDS = 3.0


@pytest.fixture(scope="module")
def stack():
    if not STACK_SCRIPT.exists():
        pytest.skip("scripts/stack.sh is missing")
    with DataStack() as s:
        yield s


@pytest.fixture
def app(stack, tmp_path, register_process):
    config = {
        "redis": {"url": stack.redis_url},
        "upstream_app": {
            "listen": "127.0.0.1:%d" % free_port(),
            "workers": 1,
            "database": {"url": stack.db_url},
        },
    }
    proc = UpstreamApp(config, tmp_path, name="upstream_app")
    register_process(proc)
    proc.start()
    proc.wait_http_ok(proc.port, "/healthz", timeout=10)
    yield proc
    if proc.returncode is None:
        code = proc.stop(timeout=10)
        assert code == 0, "upstream_app exit code %s after SIGTERM\n%s" % (code, proc.log_tail())
    # Whatever a test stopped comes back for the next one.
    restart(stack)


# -- server control ---------------------------------------------------------


def _kill_pidfile(stack: DataStack, name: str) -> None:
    pidfile = stack.directory / "run" / ("%s.pid" % name)
    pid = int(pidfile.read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError("%s (pid %d) did not stop" % (name, pid))


def stop_redis(stack: DataStack) -> None:
    _kill_pidfile(stack, "redis")


def stop_pgbouncer(stack: DataStack) -> None:
    _kill_pidfile(stack, "pgbouncer")


def stop_postgres(stack: DataStack) -> None:
    cmd = [str(PG_BIN / "pg_ctl"), "-D", str(stack.directory / "pg"), "-m", "fast", "-w", "-t", "30", "stop"]
    if os.geteuid() == 0:
        # PostgreSQL refuses root; scripts/stack.sh runs it as STACK_USER the same way.
        user = os.environ.get("STACK_USER", "postgres")
        cmd = ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"] + cmd
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=str(stack.directory))
    assert result.returncode == 0, "pg_ctl stop failed: %s%s" % (result.stdout, result.stderr)


def restart(stack: DataStack) -> None:
    """scripts/stack.sh start: starts whatever is not running, on the same ports."""
    env = dict(os.environ, STACK_FSYNC="off", STACK_WAIT_SECONDS="30")
    result = subprocess.run(
        [str(STACK_SCRIPT), "start", str(stack.directory), str(stack.pg_port), str(stack.pgbouncer_port),
         str(stack.redis_port)],
        capture_output=True, text=True, timeout=150, env=env,
    )
    assert result.returncode == 0, "stack restart failed:\n%s%s\n%s" % (result.stdout, result.stderr, stack.log_tail())


# -- /readyz ----------------------------------------------------------------


def readyz(app: UpstreamApp):
    """(status, parsed body, seconds taken) of one GET /readyz."""
    t0 = time.monotonic()
    resp = http_request(app.port, "GET", "/readyz", timeout=10)
    took = time.monotonic() - t0
    assert (resp.header("content-type") or "").startswith("application/json"), resp.describe()
    return resp.status, json.loads(resp.body), took


def wait_readyz(app: UpstreamApp, status: int, body: dict, within: float):
    """Polls /readyz until it answers `status` with `body` (the db/cache members); returns the
    seconds it took. Every answer must come within READYZ_MAX_SECONDS."""
    t0 = time.monotonic()
    seen = []
    while True:
        try:
            got_status, got_body, took = readyz(app)
        except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
            raise AssertionError("GET /readyz failed: %r\n%s" % (exc, app.log_tail()))
        assert took < READYZ_MAX_SECONDS, "GET /readyz took %.2fs (%d %r)" % (took, got_status, got_body)
        part = {k: got_body.get(k) for k in ("db", "cache")}
        seen.append((round(time.monotonic() - t0, 2), got_status, part))
        if got_status == status and part == body:
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            raise AssertionError(
                "no %d %r within %.1fs; answers (t, status, body): %s\n%s"
                % (status, body, within, seen[-10:], app.log_tail(30)))
        time.sleep(0.05)


OK = {"db": "ok", "cache": "ok"}


def test_app_readyz_ok_when_postgres_pgbouncer_and_redis_answer(app):
    wait_readyz(app, 200, OK, within=5)
    for _ in range(5):
        status, body, took = readyz(app)
        assert (status, {k: body.get(k) for k in ("db", "cache")}) == (200, OK)
        assert took < 0.5, "a healthy /readyz took %.3fs" % took


def test_app_readyz_names_cache_when_redis_stops_and_recovers(stack, app):
    wait_readyz(app, 200, OK, within=5)
    stop_redis(stack)
    took = wait_readyz(app, 503, {"db": "ok", "cache": "down"}, within=2)
    assert took < 2
    restart(stack)
    wait_readyz(app, 200, OK, within=5)


def test_app_readyz_names_db_when_pgbouncer_stops_and_recovers(stack, app):
    wait_readyz(app, 200, OK, within=5)
    stop_pgbouncer(stack)
    wait_readyz(app, 503, {"db": "down", "cache": "ok"}, within=3)
    restart(stack)
    wait_readyz(app, 200, OK, within=5)


def test_app_readyz_names_db_when_postgres_stops_behind_pgbouncer(stack, app):
    # PgBouncer still accepts and queues the SELECT 1; the check's own bound (2s) decides.
    wait_readyz(app, 200, OK, within=5)
    stop_postgres(stack)
    wait_readyz(app, 503, {"db": "down", "cache": "ok"}, within=5)
    restart(stack)
    wait_readyz(app, 200, OK, within=10)


def test_app_stops_cleanly_while_its_dependencies_are_down(stack, app):
    # Reconnect timers and half-open connections must not keep the process alive.
    wait_readyz(app, 200, OK, within=5)
    stop_redis(stack)
    stop_pgbouncer(stack)
    wait_readyz(app, 503, {"db": "down", "cache": "down"}, within=3)
    code = app.stop(timeout=10)
    assert code == 0, "exit code %s after SIGTERM\n%s" % (code, app.log_tail())
