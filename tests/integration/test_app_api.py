"""upstream_app's articles/orders API (CONTRACT §5) against the real stack: PostgreSQL 15 through
PgBouncer in transaction pooling mode, and Redis (the session `data_stack` of conftest.py).

Covers every endpoint's success and error paths, the Redis cache-aside (observed with redis-cli),
invalidation on PUT, ETag/304, Idempotency-Key (retried and concurrent), pool exhaustion (503
"database busy"), statement_timeout (504), and that no password reaches the logs.

Tests that stop servers or change PostgreSQL's logging live in test_app_resilience.py, on a stack
of their own. Helpers here are imported by it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pytest

from gateway_harness import (
    UpstreamApp,
    deep_merge,
    free_port,
    http_request,
    run_cli,
    to_yaml,
    upstream_app_binary,
)

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ETAG = re.compile(r'^"[0-9a-f]{16}"$')


# -- helpers (also used by test_app_resilience.py) ----------------------------------------------


def app_config(stack, overrides: Optional[dict] = None) -> dict:
    config = {
        "redis": {"url": stack.redis_url, "command_timeout": "200ms"},
        "upstream_app": {
            "listen": "127.0.0.1:%d" % free_port(),
            "workers": 1,
            "database": {"url": stack.db_url, "pool_size": 5, "max_overflow": 5, "pool_timeout": "2s"},
            "logging": {"level": "info", "access_log": True},
        },
    }
    return deep_merge(config, overrides or {})


def migrate_and_seed(stack, workdir: Path) -> None:
    """--migrate then --seed-demo (both idempotent) with a config naming this stack."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "migrate.yaml"
    config_path.write_text(to_yaml(app_config(stack)))
    for flag in ("--migrate", "--seed-demo"):
        result = run_cli(upstream_app_binary(), ["--config", str(config_path), flag], timeout=120)
        assert result.returncode == 0, "%s failed:\n%s%s" % (flag, result.stdout, result.stderr)


def start_app(stack, workdir: Path, overrides: Optional[dict] = None, name: str = "upstream_app") -> UpstreamApp:
    proc = UpstreamApp(app_config(stack, overrides), workdir, name=name)
    proc.start()
    proc.wait_http_ok(proc.port, "/healthz", timeout=10)
    return proc


def stop_app(proc: UpstreamApp) -> None:
    if proc.returncode is None:
        code = proc.stop(timeout=10)
        assert code == 0, "upstream_app exit code %s after SIGTERM\n%s" % (code, proc.log_tail())


def call(app, method: str, path: str, body=None, headers=None, timeout: float = 10.0):
    hdrs = list(headers or [])
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.append(("Content-Type", "application/json"))
    return http_request(app.port, method, path, headers=hdrs, body=data, timeout=timeout)


def assert_error(resp, status: int, field: Optional[str] = None, error: Optional[str] = None) -> dict:
    assert resp.status == status, resp.describe()
    assert (resp.header("content-type") or "").startswith("application/json"), resp.describe()
    doc = resp.json()
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    assert doc.get("request_id") == resp.header("x-request-id"), doc
    if error is not None:
        assert doc["error"] == error, doc
    if field is not None:
        assert doc.get("field") == field, doc
        assert field.split("[")[0] in doc["error"] or field == "body", "message does not name the field: %r" % doc
    return doc


def psql(stack, sql: str) -> str:
    return stack.psql(sql)


class TableLock:
    """Holds ACCESS EXCLUSIVE on a table from another session (straight to PostgreSQL) for
    `seconds`, so the app's statements on it block: a slow query on demand."""

    def __init__(self, stack, table: str, seconds: float):
        sql = "BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(%s); COMMIT;" % (table, seconds)
        self.stack = stack
        self.table = table
        self.app_name = "test-table-lock-%s" % uuid.uuid4().hex[:8]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGAPPNAME"] = self.app_name
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", "app", "-d", "app", "-c", sql],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            held = stack.psql(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = '%s' AND l.mode = 'AccessExclusiveLock' AND l.granted" % table,
                via_pgbouncer=False,
            )
            if held == "1":
                return
            time.sleep(0.02)
        self.release()
        raise AssertionError("could not lock %s" % table)

    def release(self) -> None:
        # Killing psql is not enough: its backend keeps the lock until pg_sleep ends.
        if self.proc.poll() is None:
            self.stack.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE application_name = '%s'" % self.app_name, via_pgbouncer=False)
        self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def concurrently(n: int, fn):
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda i: fn(i), range(n)))


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(data_stack, tmp_path_factory):
    migrate_and_seed(data_stack, tmp_path_factory.mktemp("app-migrate"))
    return data_stack


@pytest.fixture(scope="module")
def app(stack, tmp_path_factory):
    proc = start_app(stack, tmp_path_factory.mktemp("app"))
    yield proc
    stop_app(proc)


@pytest.fixture
def extra_app(stack, tmp_path, register_process):
    """Starts an app with its own settings for one test; stopped (exit 0 required) afterwards."""
    started = []

    def start(overrides: dict, name: str = "upstream_app_extra") -> UpstreamApp:
        proc = UpstreamApp(app_config(stack, overrides), tmp_path, name=name)
        register_process(proc)
        started.append(proc)
        proc.start()
        proc.wait_http_ok(proc.port, "/healthz", timeout=10)
        return proc

    yield start
    for proc in started:
        stop_app(proc)


def redis_key(article_id: int) -> str:
    return "app:article:%d" % article_id


def uncached_article(stack, article_id: int) -> int:
    stack.redis_cli("DEL", redis_key(article_id), redis_key(article_id) + ":fill")
    return article_id


# -- health, routing -----------------------------------------------------------------------------


def test_healthz_unknown_path_and_method(app):
    resp = call(app, "GET", "/healthz")
    assert resp.status == 200 and resp.json() == {"ok": True}
    assert_error(call(app, "GET", "/nope"), 404)
    assert_error(call(app, "GET", "/orders/1/nope"), 404)
    resp = call(app, "DELETE", "/orders")
    assert_error(resp, 405)
    assert resp.header("allow") == "GET, HEAD, POST"
    resp = call(app, "POST", "/articles/1", body={"title": "x", "body": "y"})
    assert_error(resp, 405)
    assert resp.header("allow") == "GET, HEAD, PUT"


# -- articles -------------------------------------------------------------------------------------


def test_get_article_fields_etag_cache_control(app, stack):
    resp = call(app, "GET", "/articles/%d" % uncached_article(stack, 42))
    assert resp.status == 200, resp.describe()
    assert resp.header("content-type") == "application/json"
    doc = resp.json()
    assert set(doc) == {"id", "title", "body", "updated_at"}
    assert doc["id"] == 42
    assert doc["title"] == psql(stack, "SELECT title FROM articles WHERE id = 42")
    assert len(doc["body"].encode()) == int(psql(stack, "SELECT octet_length(body) FROM articles WHERE id = 42"))
    assert RFC3339_UTC.match(doc["updated_at"]), doc["updated_at"]
    etag = resp.header("etag")
    assert ETAG.match(etag), etag  # strong: quoted, no W/
    assert resp.header("cache-control") == "public, max-age=60"
    # The same representation from the cache carries the same ETag.
    again = call(app, "GET", "/articles/42")
    assert again.body == resp.body and again.header("etag") == etag
    head = call(app, "HEAD", "/articles/42")
    assert head.status == 200 and head.body == b"" and head.header("etag") == etag


def test_if_none_match_gives_304(app):
    etag = call(app, "GET", "/articles/43").header("etag")
    for value in (etag, "W/" + etag, '"other", ' + etag, "*"):
        resp = call(app, "GET", "/articles/43", headers=[("If-None-Match", value)])
        assert resp.status == 304, (value, resp.describe())
        assert resp.body == b""
        assert resp.header("etag") == etag
        assert resp.header("cache-control") == "public, max-age=60"
    resp = call(app, "GET", "/articles/43", headers=[("If-None-Match", '"0000000000000000"')])
    assert resp.status == 200 and resp.header("etag") == etag


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "1e3", "%31", "99999999999999999999"])
def test_article_id_must_be_a_positive_integer(app, bad):
    assert_error(call(app, "GET", "/articles/" + bad), 400, field="id")


def test_article_not_found(app):
    assert_error(call(app, "GET", "/articles/999999999"), 404, error="article not found")


def test_cache_aside_miss_fills_redis_then_hits(app, stack):
    article = uncached_article(stack, 77)
    assert stack.redis_cli("EXISTS", redis_key(article)) == "0"
    first = call(app, "GET", "/articles/%d" % article)
    assert first.status == 200
    # Filled after the answer: give the fill its round trip.
    deadline = time.monotonic() + 2
    while stack.redis_cli("EXISTS", redis_key(article)) != "1" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stack.redis_cli("GET", redis_key(article)) == first.body.decode()
    ttl = int(stack.redis_cli("PTTL", redis_key(article)))
    assert 50_000 < ttl <= 60_000, ttl  # cache_ttl 60s
    assert stack.redis_cli("EXISTS", redis_key(article) + ":fill") == "0"
    # Change the row behind the app's back: a hit still serves the cached body...
    psql(stack, "UPDATE articles SET title = 'changed behind the cache' WHERE id = %d" % article)
    hit = call(app, "GET", "/articles/%d" % article)
    assert hit.body == first.body
    # ...until the entry goes.
    stack.redis_cli("DEL", redis_key(article))
    miss = call(app, "GET", "/articles/%d" % article)
    assert miss.json()["title"] == "changed behind the cache"


def test_put_updates_bumps_updated_at_and_invalidates(app, stack):
    article = 78
    before = call(app, "GET", "/articles/%d" % article)
    old = before.json()
    old_etag = before.header("etag")
    time.sleep(0.05)
    assert stack.redis_cli("EXISTS", redis_key(article)) == "1"
    new_title = "Updated %s" % uuid.uuid4().hex[:8]
    resp = call(app, "PUT", "/articles/%d" % article, body={"title": new_title, "body": "new body ✓"})
    assert resp.status == 200, resp.describe()
    doc = resp.json()
    assert doc["id"] == article and doc["title"] == new_title and doc["body"] == "new body ✓"
    assert doc["updated_at"] > old["updated_at"]
    assert ETAG.match(resp.header("etag"))
    # Invalidated before the answer.
    assert stack.redis_cli("EXISTS", redis_key(article)) == "0"
    after = call(app, "GET", "/articles/%d" % article)
    assert after.json() == doc
    assert after.header("etag") == resp.header("etag") != old_etag
    assert call(app, "GET", "/articles/%d" % article, headers=[("If-None-Match", old_etag)]).status == 200
    assert psql(stack, "SELECT title FROM articles WHERE id = %d" % article) == new_title


@pytest.mark.parametrize(
    "body,field",
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[]", "body"),
        (b'{"title":"t","body":"b"} trailing', "body"),
        (b'{"body":"x"}', "title"),
        (b'{"title":"","body":"x"}', "title"),
        (b'{"title":5,"body":"x"}', "title"),
        (b'{"title":"t"}', "body"),
        (b'{"title":"t","body":7}', "body"),
        (b'{"title":"t","body":"a\\u0000b"}', "body"),
    ],
)
def test_put_article_rejects_bad_input_with_422(app, body, field):
    assert_error(call(app, "PUT", "/articles/79", body=body), 422, field=field)


def test_put_article_not_found_and_bad_id(app):
    assert_error(call(app, "PUT", "/articles/999999999", body={"title": "t", "body": "b"}), 404)
    assert_error(call(app, "PUT", "/articles/x", body={"title": "t", "body": "b"}), 400, field="id")


# -- orders ---------------------------------------------------------------------------------------


def _check_order_shape(order: dict) -> None:
    assert set(order) == {"id", "customer_id", "status", "created_at", "items"}, order
    assert isinstance(order["id"], int) and isinstance(order["customer_id"], int)
    assert RFC3339_UTC.match(order["created_at"]), order
    assert order["items"], order
    ids = [i["id"] for i in order["items"]]
    assert ids == sorted(ids)
    for item in order["items"]:
        assert set(item) == {"id", "sku", "quantity", "unit_price_cents"}, item
        assert item["quantity"] > 0 and item["unit_price_cents"] >= 0


def test_orders_first_page_default_limit(app, stack):
    resp = call(app, "GET", "/orders")
    assert resp.status == 200, resp.describe()
    doc = resp.json()
    orders = doc["orders"]
    assert len(orders) == 20
    ids = [o["id"] for o in orders]
    assert ids == sorted(ids, reverse=True)
    assert ids[0] == int(psql(stack, "SELECT max(id) FROM orders"))
    assert doc["next_after"] == ids[-1]
    for order in orders:
        _check_order_shape(order)
    # Items match the database exactly.
    sample = orders[3]
    rows = psql(stack, "SELECT string_agg(sku || ':' || quantity || ':' || unit_price_cents, ',' ORDER BY id)"
                       " FROM order_items WHERE order_id = %d" % sample["id"])
    assert rows == ",".join("%s:%d:%d" % (i["sku"], i["quantity"], i["unit_price_cents"]) for i in sample["items"])


def test_orders_limit_100_and_keyset_pages_cover_everything(app, stack):
    resp = call(app, "GET", "/orders?limit=100")
    assert resp.status == 200
    assert len(resp.json()["orders"]) == 100
    assert all(o["items"] for o in resp.json()["orders"])
    seen = []
    after = None
    for _ in range(100):
        path = "/orders?limit=100" + ("&after=%d" % after if after else "")
        doc = call(app, "GET", path).json()
        page = [o["id"] for o in doc["orders"]]
        if seen and page:
            assert page[0] < seen[-1]
        seen.extend(page)
        after = doc["next_after"]
        if after is None:
            break
    assert len(seen) == len(set(seen))
    assert len(seen) == int(psql(stack, "SELECT count(*) FROM orders"))


@pytest.mark.parametrize(
    "query,field",
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("limit=1&limit=2", "limit"),
        ("after=0", "after"),
        ("after=x", "after"),
        ("limit=5&after=-3", "after"),
    ],
)
def test_orders_bad_query_parameters(app, query, field):
    assert_error(call(app, "GET", "/orders?" + query), 400, field=field)


def test_get_order_by_id(app, stack):
    resp = call(app, "GET", "/orders/5")
    assert resp.status == 200, resp.describe()
    order = resp.json()
    _check_order_shape(order)
    assert order["id"] == 5
    assert order["customer_id"] == int(psql(stack, "SELECT customer_id FROM orders WHERE id = 5"))
    assert len(order["items"]) == int(psql(stack, "SELECT count(*) FROM order_items WHERE order_id = 5"))
    assert_error(call(app, "GET", "/orders/999999999"), 404, error="order not found")
    assert_error(call(app, "GET", "/orders/abc"), 400, field="id")


def _new_customer() -> int:
    return 10_000_000 + uuid.uuid4().int % 1_000_000_000


def test_post_order_creates_it_in_one_transaction(app, stack):
    customer = _new_customer()
    body = {"customer_id": customer, "items": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 150},
                                               {"sku": 'quote"comma,brace{}', "quantity": 1, "unit_price_cents": 0}]}
    resp = call(app, "POST", "/orders", body=body)
    assert resp.status == 201, resp.describe()
    order = resp.json()
    _check_order_shape(order)
    assert order["customer_id"] == customer and order["status"] == "pending"
    assert [(i["sku"], i["quantity"], i["unit_price_cents"]) for i in order["items"]] == [
        ("A-1", 2, 150), ('quote"comma,brace{}', 1, 0)]
    assert resp.header("location") == "/orders/%d" % order["id"]
    assert call(app, "GET", "/orders/%d" % order["id"]).json() == order
    assert psql(stack, "SELECT count(*) FROM orders WHERE customer_id = %d" % customer) == "1"
    assert psql(stack, "SELECT count(*) FROM order_items WHERE order_id = %d" % order["id"]) == "2"


@pytest.mark.parametrize(
    "body,field",
    [
        (b"{", "body"),
        (b"[]", "body"),
        (b'{"items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}', "customer_id"),
        (b'{"customer_id":0,"items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}', "customer_id"),
        (b'{"customer_id":"1","items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}', "customer_id"),
        (b'{"customer_id":1.5,"items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}', "customer_id"),
        (b'{"customer_id":1}', "items"),
        (b'{"customer_id":1,"items":[]}', "items"),
        (b'{"customer_id":1,"items":"A"}', "items"),
        (b'{"customer_id":1,"items":[7]}', "items[0]"),
        (b'{"customer_id":1,"items":[{"quantity":1,"unit_price_cents":1}]}', "items[0].sku"),
        (b'{"customer_id":1,"items":[{"sku":"","quantity":1,"unit_price_cents":1}]}', "items[0].sku"),
        (b'{"customer_id":1,"items":[{"sku":"A","quantity":0,"unit_price_cents":1}]}', "items[0].quantity"),
        (b'{"customer_id":1,"items":[{"sku":"A","quantity":"2","unit_price_cents":1}]}', "items[0].quantity"),
        (b'{"customer_id":1,"items":[{"sku":"A","quantity":1,"unit_price_cents":-5}]}', "items[0].unit_price_cents"),
        (b'{"customer_id":1,"items":[{"sku":"A","quantity":1}]}', "items[0].unit_price_cents"),
        (b'{"customer_id":1,"items":[{"sku":"A","quantity":1,"unit_price_cents":1},{"sku":"B","quantity":-1,'
         b'"unit_price_cents":1}]}', "items[1].quantity"),
    ],
)
def test_post_order_rejects_bad_input_with_422(app, stack, body, field):
    before = psql(stack, "SELECT count(*) FROM orders")
    assert_error(call(app, "POST", "/orders", body=body), 422, field=field)
    assert psql(stack, "SELECT count(*) FROM orders") == before


def _order_body(customer: int) -> dict:
    return {"customer_id": customer, "items": [{"sku": "IDEM", "quantity": 3, "unit_price_cents": 999}]}


def test_idempotency_key_retry_returns_the_first_result(app, stack):
    customer = _new_customer()
    key = "retry-" + uuid.uuid4().hex
    first = call(app, "POST", "/orders", body=_order_body(customer), headers=[("Idempotency-Key", key)])
    assert first.status == 201, first.describe()
    # The same order written differently is the same request.
    same = json.dumps(_order_body(customer), indent=2).encode()
    second = call(app, "POST", "/orders", body=same, headers=[("Idempotency-Key", key)])
    assert second.status == 201
    assert second.body == first.body
    assert second.header("idempotent-replayed") == "true"
    assert psql(stack, "SELECT count(*) FROM orders WHERE customer_id = %d" % customer) == "1"
    stored = stack.redis_cli("PTTL", "app:idem:orders:" + key)
    assert 23 * 3600 * 1000 < int(stored) <= 24 * 3600 * 1000
    # Another key creates another order.
    third = call(app, "POST", "/orders", body=_order_body(customer), headers=[("Idempotency-Key", key + "-2")])
    assert third.status == 201 and third.json()["id"] != first.json()["id"]


def test_idempotency_key_concurrent_duplicates_create_one_order(app, stack):
    customer = _new_customer()
    key = "concurrent-" + uuid.uuid4().hex
    results = concurrently(
        12, lambda i: call(app, "POST", "/orders", body=_order_body(customer), headers=[("Idempotency-Key", key)]))
    statuses = sorted(r.status for r in results)
    assert statuses == [201] * 12, [r.describe() for r in results if r.status != 201]
    assert len({r.body for r in results}) == 1
    assert sum(1 for r in results if r.header("idempotent-replayed") is None) == 1
    assert psql(stack, "SELECT count(*) FROM orders WHERE customer_id = %d" % customer) == "1"


def test_idempotency_key_reused_with_another_body_or_malformed(app, stack):
    key = "mismatch-" + uuid.uuid4().hex
    assert call(app, "POST", "/orders", body=_order_body(_new_customer()),
                headers=[("Idempotency-Key", key)]).status == 201
    assert_error(call(app, "POST", "/orders", body=_order_body(_new_customer()), headers=[("Idempotency-Key", key)]),
                 422, field="Idempotency-Key")
    assert_error(call(app, "POST", "/orders", body=_order_body(1), headers=[("Idempotency-Key", "k" * 256)]),
                 400, field="Idempotency-Key")
    # Bad input is refused before the key is taken: the key stays free for a corrected request.
    key2 = "invalid-first-" + uuid.uuid4().hex
    assert_error(call(app, "POST", "/orders", body=b'{"customer_id":1}', headers=[("Idempotency-Key", key2)]),
                 422, field="items")
    assert stack.redis_cli("EXISTS", "app:idem:orders:" + key2) == "0"


# -- /heavy ---------------------------------------------------------------------------------------


def test_heavy(app):
    resp = call(app, "GET", "/heavy", timeout=20)
    assert resp.status == 200, resp.describe()
    doc = resp.json()
    assert len(doc["top_skus"]) == 10
    revenues = [s["revenue_cents"] for s in doc["top_skus"]]
    assert revenues == sorted(revenues, reverse=True)
    assert doc["articles"]["count"] >= 10000
    assert re.match(r"^[0-9a-f]{32}$", doc["articles"]["digest"])


# -- pool and statement bounds ----------------------------------------------------------------------


def test_pool_exhausted_gives_503_database_busy_after_pool_timeout(stack, extra_app):
    app = extra_app({"upstream_app": {"database": {"pool_size": 2, "max_overflow": 0, "pool_timeout": "500ms",
                                                   "statement_timeout": "10s"}}})
    ids = [uncached_article(stack, 900 + i) for i in range(4)]
    with TableLock(stack, "articles", 2.5):
        t0 = time.monotonic()

        def one(i):
            resp = call(app, "GET", "/articles/%d" % ids[i], timeout=15)
            return resp, time.monotonic() - t0

        results = concurrently(4, one)
    busy = [(r, t) for (r, t) in results if r.status == 503]
    ok = [(r, t) for (r, t) in results if r.status == 200]
    assert len(busy) == 2 and len(ok) == 2, [(r.status, r.body[:80], round(t, 2)) for (r, t) in results]
    for resp, took in busy:
        assert_error(resp, 503, error="database busy")
        assert 0.45 <= took < 2.0, took  # after pool_timeout, long before the lock goes
    for resp, took in ok:
        assert took >= 2.0  # they waited for the lock, holding the two connections


def test_statement_timeout_stops_a_slow_query(stack, extra_app):
    app = extra_app({"upstream_app": {"database": {"statement_timeout": "300ms", "slow_query_threshold": "100ms"}}})
    article = uncached_article(stack, 950)
    with TableLock(stack, "articles", 3):
        t0 = time.monotonic()
        resp = call(app, "GET", "/articles/%d" % article, timeout=10)
        took = time.monotonic() - t0
    assert_error(resp, 504, error="database statement timeout")
    assert took < 1.5, took
    # The slow query was logged with its duration and label, not its parameters.
    deadline = time.monotonic() + 3
    while '"slow query"' not in app.stdout_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(l) for l in app.stdout_text().splitlines() if '"slow query"' in l]
    assert lines, app.log_tail()
    assert lines[0]["label"] == "articles.get" and lines[0]["duration_ms"] >= 250
    assert str(article) not in json.dumps(lines[0])
    assert call(app, "GET", "/articles/%d" % article).status == 200  # the lock is gone


def test_heavy_is_bounded_by_statement_timeout(stack, extra_app):
    app = extra_app({"upstream_app": {"database": {"statement_timeout": "5ms"}}})
    t0 = time.monotonic()
    resp = call(app, "GET", "/heavy", timeout=10)
    assert_error(resp, 504, error="database statement timeout")
    assert time.monotonic() - t0 < 2


# -- secrets ----------------------------------------------------------------------------------------


def test_no_password_in_logs(stack, extra_app):
    secret = "Sup3rS3cretPw"
    db_url = stack.db_url.replace("postgresql://app@", "postgresql://app:%s@" % secret)
    redis_url = stack.redis_url.replace("redis://", "redis://:%s@" % secret)
    # PgBouncer trusts local connections, so the password is accepted and unused; Redis has no
    # password, so AUTH fails and the app runs without its cache.
    app = extra_app({"redis": {"url": redis_url}, "upstream_app": {"database": {"url": db_url}}}, name="secret_app")
    dead = extra_app({"upstream_app": {"database": {"url": "postgresql://app:%s@127.0.0.1:%d/app"
                                                            % (secret, free_port())}}}, name="dead_db_app")
    assert call(app, "GET", "/articles/5").status == 200
    assert call(app, "GET", "/orders?limit=2").status == 200
    assert call(app, "POST", "/orders", body=_order_body(1), headers=[("Idempotency-Key", "x")]).status == 503
    assert call(app, "GET", "/readyz").status == 503
    assert_error(call(dead, "GET", "/orders/1"), 503, error="database unavailable")
    assert call(dead, "GET", "/readyz").status == 503
    time.sleep(0.3)  # the log writer thread flushes
    for proc in (app, dead):
        assert proc.stop(timeout=10) == 0
        text = proc.stdout_text() + proc.stderr_text()
        assert "access" in text
        assert secret not in text, [l for l in text.splitlines() if secret in l][:3]
