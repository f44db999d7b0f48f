"""`upstream_app --migrate` and `--seed-demo` against real PostgreSQL 15 behind
PgBouncer in transaction pooling mode (and the Redis of the same stack).

The stack runs on free 127.0.0.1 ports in a temporary directory (tests/harness/stack.py,
which drives scripts/stack.sh, the same script `make run` uses).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.stack import DataStack  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO_ROOT / "upstream_app" / "migrations"
COMMAND_TIMEOUT = 120


def app_binary() -> Path:
    build = Path(os.environ.get("SIDECAR_BUILD_DIR", "build"))
    if not build.is_absolute():
        build = REPO_ROOT / build
    return build / "upstream_app" / "upstream_app"


@pytest.fixture(scope="module")
def stack():
    with DataStack() as s:
        yield s


def write_config(path: Path, db_url: str, redis_url: str) -> Path:
    path.write_text(
        "redis:\n"
        "  url: %s\n"
        "upstream_app:\n"
        "  database:\n"
        "    url: %s\n" % (redis_url, db_url)
    )
    return path


@pytest.fixture(scope="module")
def config(stack, tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("conf") / "app.yaml", stack.db_url, stack.redis_url)


def run_app(config_path: Path, *args: str, env_extra=None) -> subprocess.CompletedProcess:
    binary = app_binary()
    if not binary.exists():
        pytest.fail("%s is missing: build first (make build)" % binary, pytrace=False)
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [str(binary), "--config", str(config_path), *args],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=env, cwd=REPO_ROOT,
    )


def expect_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (
        result.returncode, result.stdout, result.stderr)


def migration_versions() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))


def test_stack_serves_pgbouncer_in_transaction_mode_and_redis_without_persistence(stack):
    config = dict(
        line.split("|")[:2] for line in stack.psql("SHOW CONFIG", database="pgbouncer").splitlines()
    )
    assert config["pool_mode"] == "transaction"
    assert config["server_reset_query"] == ""
    assert config["default_pool_size"] == "20"
    assert config["listen_addr"] == "127.0.0.1"
    assert stack.psql("SHOW listen_addresses", via_pgbouncer=False, user="postgres", database="postgres") == "127.0.0.1"
    # Through PgBouncer as the app connects: role app owns database app.
    assert stack.psql("SELECT current_user || '/' || current_database()") == "app/app"
    assert stack.redis_cli("PING") == "PONG"
    assert stack.redis_cli("CONFIG", "GET", "save").splitlines()[1:] in ([], [""])
    assert stack.redis_cli("CONFIG", "GET", "appendonly").splitlines()[1] == "no"


def test_postgres_migrate_concurrently_then_again_is_idempotent(stack, config):
    # Three migrators at once on an empty database: the advisory lock serializes
    # them, each file is applied exactly once, and nobody fails.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: run_app(config, "--migrate"), range(3)))
    for result in results:
        expect_ok(result)

    versions = migration_versions()
    assert versions, "no migrations in %s" % MIGRATIONS_DIR
    assert stack.psql("SELECT version FROM schema_migrations ORDER BY version").splitlines() == versions
    tables = stack.psql(
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")
    assert tables == "articles,order_items,orders,schema_migrations"
    assert stack.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'order_items_order_id_idx'") == "1"

    applied_at = stack.psql("SELECT string_agg(applied_at::text, ',' ORDER BY version) FROM schema_migrations")
    expect_ok(run_app(config, "--migrate"))
    assert stack.psql("SELECT string_agg(applied_at::text, ',' ORDER BY version) FROM schema_migrations") == applied_at


# Every demo value is a function of the id; this digest changes if any row does.
FINGERPRINT = (
    "SELECT md5(string_agg(x, '|')) FROM ("
    " (SELECT string_agg(concat_ws(',', id, title, md5(body), updated_at), ';' ORDER BY id) AS x FROM articles)"
    " UNION ALL"
    " (SELECT string_agg(concat_ws(',', id, customer_id, status, created_at), ';' ORDER BY id) FROM orders)"
    " UNION ALL"
    " (SELECT string_agg(concat_ws(',', id, order_id, sku, quantity, unit_price_cents), ';' ORDER BY id)"
    "  FROM order_items)) t"
)


def test_postgres_seed_demo_twice_gives_the_same_data(stack, config):
    expect_ok(run_app(config, "--migrate"))
    expect_ok(run_app(config, "--seed-demo"))

    counts = stack.psql(
        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items)")
    articles, orders, items = (int(n) for n in counts.split("|"))
    assert articles == 10000
    assert orders == 1000
    assert 1000 <= items <= 5000
    # ~1 KiB bodies; every order has 1..5 items.
    assert stack.psql("SELECT min(octet_length(body)) >= 900 AND max(octet_length(body)) <= 1200 FROM articles") == "t"
    per_order = stack.psql(
        "SELECT min(n) || '-' || max(n) || '-' || count(*) FROM"
        " (SELECT o.id, count(i.id) AS n FROM orders o LEFT JOIN order_items i ON i.order_id = o.id GROUP BY o.id) t")
    assert per_order == "1-5-1000"

    before = stack.psql(FINGERPRINT)
    expect_ok(run_app(config, "--seed-demo"))
    assert stack.psql(FINGERPRINT) == before

    # The id sequences were moved past the seeded ids, so the app's inserts don't collide.
    next_ids = stack.psql(
        "BEGIN;"
        " INSERT INTO articles (title, body) VALUES ('t', 'b') RETURNING id;"
        " INSERT INTO orders (customer_id, status) VALUES (1, 'pending') RETURNING id;"
        " INSERT INTO order_items (order_id, sku, quantity, unit_price_cents) VALUES (1, 'A', 1, 1) RETURNING id;"
        " ROLLBACK;")
    article_id, order_id, item_id = (int(n) for n in next_ids.split())
    assert article_id > 10000
    assert order_id > 1000
    assert item_id > int(stack.psql("SELECT max(id) FROM order_items"))


@pytest.fixture(scope="module")
def scratch_db(stack) -> str:
    """A second, empty database, straight on PostgreSQL (PgBouncer only maps `app`)."""
    stack.psql("CREATE DATABASE scratch OWNER app", via_pgbouncer=False, user="postgres", database="postgres")
    return "postgresql://app@127.0.0.1:%d/scratch" % stack.pg_port


def test_postgres_seed_demo_without_schema_fails_and_names_migrate(stack, scratch_db, tmp_path):
    config = write_config(tmp_path / "app.yaml", scratch_db, stack.redis_url)
    result = run_app(config, "--seed-demo")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--migrate" in result.stdout + result.stderr


def test_postgres_failing_migration_is_rolled_back_with_file_and_line(stack, scratch_db, tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (migrations / path.name).write_text(path.read_text())
    (migrations / "9999_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\n\nCREATE TABLE broken (\n  id no_such_type\n);\n")
    config = write_config(tmp_path / "app.yaml", scratch_db, stack.redis_url)

    result = run_app(config, "--migrate", env_extra={"APP_MIGRATIONS_DIR": str(migrations)})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "9999_broken.sql:4:" in output, output
    scratch = dict(via_pgbouncer=False, database="scratch")
    # The good migrations are in; nothing of the broken file is.
    assert stack.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations", **scratch) == \
        ",".join(migration_versions())
    assert stack.psql("SELECT to_regclass('half_done') IS NULL", **scratch) == "t"
