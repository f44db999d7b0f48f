"""upstream_app against a real stack of its own (PostgreSQL 15 + PgBouncer + Redis on free ports),
because these tests change the servers: PostgreSQL logs every statement (log_statement = all) so
statements are counted from the server's own log, and Redis and PostgreSQL are stopped or
restarted under the running app.

Counting method: ALTER SYSTEM SET log_statement = 'all' + pg_reload_conf() on this stack; each
statement the app sends through PgBouncer is logged by PostgreSQL as `execute <unnamed>: <sql>`
(extended protocol). The tests run one request at a time and count the new lines of the
application's role (`app@app`) in log/postgres.log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.stack import STACK_SCRIPT, DataStack  # noqa: E402

from test_app_api import (  # noqa: E402
    assert_error,
    call,
    concurrently,
    migrate_and_seed,
    redis_key,
    start_app,
    stop_app,
    uncached_article,
)

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
EXECUTE = re.compile(r" app@app LOG:  execute <unnamed>: (.*)$")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not STACK_SCRIPT.exists():
        pytest.skip("scripts/stack.sh is missing")
    with DataStack() as s:
        migrate_and_seed(s, tmp_path_factory.mktemp("resilience-migrate"))
        s.psql("ALTER SYSTEM SET log_statement = 'all'", via_pgbouncer=False, user="postgres", database="postgres")
        s.psql("SELECT pg_reload_conf()", via_pgbouncer=False, user="postgres", database="postgres")
        time.sleep(0.3)  # backends pick the new setting up before their next statement
        yield s


@pytest.fixture
def app(stack, tmp_path, register_process):
    proc = start_app(stack, tmp_path, {"upstream_app": {"database": {"pool_size": 4, "max_overflow": 4}}})
    register_process(proc)
    yield proc
    stop_app(proc)
    restart(stack)  # whatever a test stopped comes back for the next one


# -- server control ---------------------------------------------------------------------------------


def restart(stack: DataStack) -> None:
    """scripts/stack.sh start: starts whatever is not running, on the same ports."""
    env = dict(os.environ, STACK_FSYNC="off", STACK_WAIT_SECONDS="30")
    result = subprocess.run(
        [str(STACK_SCRIPT), "start", str(stack.directory), str(stack.pg_port), str(stack.pgbouncer_port),
         str(stack.redis_port)],
        capture_output=True, text=True, timeout=150, env=env,
    )
    assert result.returncode == 0, "stack restart failed:\n%s%s\n%s" % (result.stdout, result.stderr, stack.log_tail())


def stop_redis(stack: DataStack) -> None:
    pid = int((stack.directory / "run" / "redis.pid").read_text().split()[0])
    os.kill(pid, 15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError("redis did not stop")


def pg_ctl(stack: DataStack, *args: str) -> None:
    cmd = [str(PG_BIN / "pg_ctl"), "-D", str(stack.directory / "pg"), "-l", str(stack.directory / "log" / "postgres.log"),
           *args]
    if os.geteuid() == 0:
        user = os.environ.get("STACK_USER", "postgres")
        cmd = ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"] + cmd
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=str(stack.directory))
    assert result.returncode == 0, "pg_ctl %s failed: %s%s" % (args, result.stdout, result.stderr)


# -- statement log ------------------------------------------------------------------------------------


class StatementLog:
    """The app's statements that PostgreSQL logged since the last mark()."""

    def __init__(self, stack: DataStack):
        self.path = stack.directory / "log" / "postgres.log"
        self.offset = 0

    def mark(self) -> None:
        time.sleep(0.1)  # let earlier lines land
        self.offset = self.path.stat().st_size

    def statements(self, settle: float = 0.3) -> list:
        time.sleep(settle)
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        return [m.group(1) for m in (EXECUTE.search(line) for line in text.splitlines()) if m]


# -- tests ----------------------------------------------------------------------------------------------


def test_orders_page_uses_the_same_statements_whatever_the_limit(stack, app):
    log = StatementLog(stack)
    counts = {}
    for limit in (1, 20, 100):
        call(app, "GET", "/orders?limit=%d" % limit)  # warm: the connection exists already
        log.mark()
        resp = call(app, "GET", "/orders?limit=%d" % limit)
        statements = log.statements()
        assert resp.status == 200
        assert len(resp.json()["orders"]) == limit
        counts[limit] = statements
    # set_config (statement_timeout, same transaction) + the one query, for every page size.
    for limit, statements in counts.items():
        assert len(statements) == 2, (limit, statements)
        assert statements[0].startswith("SELECT set_config('statement_timeout'")
        assert "FROM page o LEFT JOIN LATERAL" in statements[1]


def test_concurrent_misses_on_one_key_make_one_database_read(stack, app):
    assert call(app, "GET", "/orders/1").status == 200  # the filler need not connect first
    article = uncached_article(stack, 4242)
    log = StatementLog(stack)
    log.mark()
    results = concurrently(20, lambda i: call(app, "GET", "/articles/%d" % article))
    assert [r.status for r in results] == [200] * 20
    assert len({r.body for r in results}) == 1
    reads = [s for s in log.statements() if "FROM articles WHERE id = $1" in s]
    assert len(reads) == 1, reads
    assert stack.redis_cli("EXISTS", redis_key(article)) == "1"


def test_redis_stopped_articles_come_from_postgres_and_readyz_says_so(stack, app):
    assert call(app, "GET", "/readyz").status == 200
    cached = call(app, "GET", "/articles/11")
    stop_redis(stack)
    log = StatementLog(stack)
    log.mark()
    for article in (11, 12):
        resp = call(app, "GET", "/articles/%d" % article, timeout=5)
        assert resp.status == 200, resp.describe()
        assert resp.json()["id"] == article
    assert resp.header("etag") and resp.header("cache-control") == "public, max-age=60"
    assert call(app, "GET", "/articles/11").body == cached.body
    assert len([s for s in log.statements() if "FROM articles WHERE id = $1" in s]) == 3  # every read is a miss
    ready = call(app, "GET", "/readyz", timeout=5)
    assert ready.status == 503 and ready.json() == {"db": "ok", "cache": "down"}
    # Orders work; an Idempotency-Key cannot be honoured without the store.
    body = {"customer_id": 5, "items": [{"sku": "R", "quantity": 1, "unit_price_cents": 1}]}
    assert call(app, "POST", "/orders", body=body).status == 201
    assert_error(call(app, "POST", "/orders", body=body, headers=[("Idempotency-Key", "redis-down")]), 503,
                 error="idempotency store unavailable")
    # Redis back: the app reconnects by itself and caches again.
    restart(stack)
    deadline = time.monotonic() + 15
    while call(app, "GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, app.log_tail()
        time.sleep(0.1)
    # The app's own Redis client reconnects on its own backoff (up to 1s), maybe after readiness's.
    deadline = time.monotonic() + 5
    while True:
        assert call(app, "GET", "/articles/13").status == 200
        time.sleep(0.05)
        if stack.redis_cli("EXISTS", redis_key(13)) == "1":
            break
        assert time.monotonic() < deadline, app.log_tail()


def test_postgres_restart_mid_run_recovers_without_restarting_the_app(stack, app):
    assert call(app, "GET", "/orders/1").status == 200
    # A request in flight when PostgreSQL goes down, and others while it is down: each gets an
    # answer (JSON error or success after a retry), none hangs.
    uncached_article(stack, 31)
    pg_ctl(stack, "-m", "fast", "-w", "-t", "60", "restart")
    answers = []
    t0 = time.monotonic()
    recovered = None
    while time.monotonic() - t0 < 40:
        t = time.monotonic()
        resp = call(app, "GET", "/orders/1", timeout=15)
        answers.append((round(t - t0, 2), resp.status, round(time.monotonic() - t, 2)))
        if resp.status == 200:
            recovered = time.monotonic() - t0
            break
        assert_error(resp, resp.status)
        assert resp.status in (503, 504), resp.describe()
        time.sleep(0.2)
    assert recovered is not None, (answers, app.log_tail())
    assert app.running()
    for path in ("/articles/31", "/orders?limit=5", "/heavy"):
        assert call(app, "GET", path, timeout=10).status == 200, path
    body = {"customer_id": 6, "items": [{"sku": "PG", "quantity": 1, "unit_price_cents": 1}]}
    assert call(app, "POST", "/orders", body=body).status == 201
    assert call(app, "GET", "/readyz").status == 200


def test_postgres_stopped_gives_json_errors_then_recovers(stack, app):
    assert call(app, "GET", "/orders/2").status == 200
    pg_ctl(stack, "-m", "fast", "-w", "-t", "60", "stop")
    try:
        t0 = time.monotonic()
        resp = call(app, "GET", "/orders/2", timeout=20)
        took = time.monotonic() - t0
        assert resp.status in (503, 504), resp.describe()
        assert_error(resp, resp.status)
        assert took < 12, took  # statement bound (5s default) + margin, not PgBouncer's 120s wait
        ready = call(app, "GET", "/readyz", timeout=10)
        assert ready.status == 503 and ready.json()["db"] == "down"
    finally:
        restart(stack)
    deadline = time.monotonic() + 40
    while call(app, "GET", "/orders/2", timeout=15).status != 200:
        assert time.monotonic() < deadline, app.log_tail()
        time.sleep(0.2)
