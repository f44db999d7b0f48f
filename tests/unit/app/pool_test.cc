// app::db::Pool against the real PostgreSQL 15 + PgBouncer (transaction mode) of scripts/stack.sh:
// pipelined transactions with statement_timeout, rollback, pool_timeout, overflow, recycle,
// pre-ping, retries of 40001/40P01 and of lost connections.
#include "upstream_app/db/pool.h"

#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/db/test_support.h"
#include "upstream_app/timer_queue.h"

using namespace std::chrono_literals;
using app::db::DbErrorKind;
using app::db::PgStatement;
using app::db::Pool;
using app::db::PoolSettings;
using app::db::Transaction;
using app::db::TxResult;
using testsupport::TestLoop;

namespace {

PoolSettings settingsFor(const testsupport::RealStack* stack) {
  PoolSettings s;
  s.conninfo = stack->dbUrl();
  s.poolSize = 2;
  s.maxOverflow = 0;
  s.poolTimeout = 2000ms;
  s.statementTimeout = 2000ms;
  s.connectTimeout = 2000ms;
  s.retryBackoffBase = 5ms;
  s.retryBackoffMax = 20ms;
  s.applicationName = "unit-tests-pool";
  return s;
}

Transaction tx(std::vector<std::string> sqls, bool idempotent = true) {
  Transaction t;
  t.label = "test";
  t.idempotent = idempotent;
  for (auto& sql : sqls) {
    t.statements.push_back(PgStatement{std::move(sql), {}});
  }
  return t;
}

TxResult runAndWait(TestLoop& loop, Pool& pool, Transaction t, uint64_t timeoutMs = 10000) {
  std::optional<TxResult> out;
  pool.run(std::move(t), [&](TxResult r) { out = std::move(r); });
  loop.runUntil([&] { return out.has_value(); }, timeoutMs);
  REQUIRE(out.has_value());
  return std::move(*out);
}

// Blocking SQL for set-up and fault injection (tests only; never on a serving loop).
std::string execBlocking(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  REQUIRE_MESSAGE(PQstatus(c) == CONNECTION_OK, PQerrorMessage(c));
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
  PGresult* r = PQexec(c, sql.c_str());
  const ExecStatusType st = PQresultStatus(r);
  std::string out = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
  const std::string err = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  REQUIRE_MESSAGE((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK), err);
  return out;
}

void installFaultFunction(const testsupport::RealStack* stack) {
  execBlocking(stack->dbUrl(),
               "CREATE OR REPLACE FUNCTION pool_test_fail_until(seq regclass, n int, code text) RETURNS bigint "
               "LANGUAGE plpgsql AS $$ DECLARE v bigint; BEGIN v := nextval(seq); "
               "IF v <= n THEN RAISE EXCEPTION 'injected failure %', v USING ERRCODE = code; END IF; "
               "RETURN v; END $$");
}

}  // namespace

TEST_SUITE("real-servers") {
  TEST_CASE("pool (real PgBouncer): one round trip, statement_timeout set locally, results in order") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PoolSettings s = settingsFor(stack);
      s.statementTimeout = 1234ms;
      Pool pool(loop.get(), s);
      int checkouts = 0;
      std::vector<std::string> queries;
      pool.setHooks(app::db::PoolHooks{[&](double seconds) {
                                         CHECK(seconds >= 0);
                                         ++checkouts;
                                       },
                                       [&](const char* label, double seconds, bool ok) {
                                         CHECK(seconds > 0);
                                         CHECK(ok);
                                         queries.emplace_back(label);
                                       }});
      TxResult r = runAndWait(loop, pool, tx({"SHOW statement_timeout", "SELECT 41 + 1", "SELECT 'third'"}));
      REQUIRE_MESSAGE(r.ok(), r.error.message);
      REQUIRE(r.results.size() == 3);
      CHECK(r.results[0].value(0, 0) == "1234ms");
      CHECK(r.results[1].value(0, 0) == "42");
      CHECK(r.attempts == 1);
      // SET LOCAL semantics: the next transaction on the same server connection starts clean.
      PGconn* direct = PQconnectdb(stack->dbUrl().c_str());
      REQUIRE(PQstatus(direct) == CONNECTION_OK);
      PGresult* show = PQexec(direct, "SHOW statement_timeout");
      CHECK(std::string(PQgetvalue(show, 0, 0)) == "0");
      PQclear(show);
      PQfinish(direct);
      const auto st = pool.stats();
      CHECK(st.statements == 4);  // set_config + 3
      CHECK(st.open == 1);
      CHECK(st.idle == 1);
      CHECK(st.transactions == 1);
      CHECK(checkouts == 1);
      CHECK(queries == std::vector<std::string>{"test"});
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool (real PgBouncer): a failing statement rolls the whole transaction back") {
    REQUIRE_REAL_STACK(stack);
    execBlocking(stack->dbUrl(), "CREATE TABLE IF NOT EXISTS pool_test_rows (x int)");
    execBlocking(stack->dbUrl(), "TRUNCATE pool_test_rows");
    TestLoop loop;
    {
      Pool pool(loop.get(), settingsFor(stack));
      TxResult r = runAndWait(
          loop, pool,
          tx({"INSERT INTO pool_test_rows VALUES (1)", "SELECT 1 / 0", "INSERT INTO pool_test_rows VALUES (2)"}));
      CHECK(r.error.kind == DbErrorKind::Server);
      CHECK(r.error.sqlState == "22012");
      CHECK(r.attempts == 1);
      CHECK(execBlocking(stack->dbUrl(), "SELECT count(*) FROM pool_test_rows") == "0");
      // The connection is still good for the next transaction.
      TxResult ok = runAndWait(loop, pool, tx({"INSERT INTO pool_test_rows VALUES (3)"}));
      CHECK(ok.ok());
      CHECK(execBlocking(stack->dbUrl(), "SELECT count(*) FROM pool_test_rows") == "1");
      CHECK(pool.stats().connectsOk == 1);
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool (real PgBouncer): statement_timeout stops a slow statement") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PoolSettings s = settingsFor(stack);
      s.statementTimeout = 150ms;
      s.slowQueryThreshold = 100ms;
      Pool pool(loop.get(), s);
      const uint64_t t0 = loop.nowMs();
      TxResult r = runAndWait(loop, pool, tx({"SELECT pg_sleep(3)"}));
      const uint64_t took = loop.nowMs() - t0;
      CHECK(r.error.kind == DbErrorKind::StatementTimeout);
      CHECK(r.error.sqlState == "57014");
      CHECK(r.attempts == 1);
      CHECK(took < 1500);
      CHECK(pool.stats().slowQueries == 1);
      // Not retried, and the connection survives (the server cancelled the statement only).
      CHECK(pool.stats().open == 1);
      CHECK(runAndWait(loop, pool, tx({"SELECT 1"})).ok());
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool (real PgBouncer): pool_timeout when every connection is busy") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PoolSettings s = settingsFor(stack);
      s.poolSize = 1;
      s.maxOverflow = 0;
      s.poolTimeout = 200ms;
      Pool pool(loop.get(), s);
      std::optional<TxResult> slow;
      std::optional<TxResult> waiting;
      std::optional<TxResult> late;
      pool.run(tx({"SELECT pg_sleep(0.7)"}), [&](TxResult r) { slow = std::move(r); });
      const uint64_t t0 = loop.nowMs();
      uint64_t waitedMs = 0;
      pool.run(tx({"SELECT 1"}), [&](TxResult r) {
        waitedMs = loop.nowMs() - t0;
        waiting = std::move(r);
      });
      CHECK(pool.stats().waiting == 1);
      loop.runUntil([&] { return waiting.has_value(); }, 3000);
      REQUIRE(waiting.has_value());
      CHECK(waiting->error.kind == DbErrorKind::PoolTimeout);
      CHECK(waitedMs >= 190);
      CHECK(waitedMs < 600);
      // A waiter that is served in time gets the connection the slow one gives back.
      pool.run(tx({"SELECT 2"}), [&](TxResult r) { late = std::move(r); });
      loop.runUntil([&] { return slow.has_value() && late.has_value(); }, 5000);
      REQUIRE(slow.has_value());
      CHECK(slow->ok());
      REQUIRE(late.has_value());
      // SELECT 2 waited for the rest of the 0.7 s: more than its pool_timeout, so it failed too,
      // unless the slow one finished first.
      CHECK((late->ok() || late->error.kind == DbErrorKind::PoolTimeout));
      CHECK(pool.stats().poolTimeouts >= 1);
      CHECK(pool.stats().connectsOk == 1);
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool (real PgBouncer): overflow connections open under load and close when idle") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PoolSettings s = settingsFor(stack);
      s.poolSize = 1;
      s.maxOverflow = 2;
      s.overflowIdleTimeout = 100ms;
      Pool pool(loop.get(), s);
      int done = 0;
      for (int i = 0; i < 3; ++i) {
        pool.run(tx({"SELECT pg_sleep(0.2)"}), [&](TxResult r) {
          CHECK(r.ok());
          ++done;
        });
      }
      CHECK(pool.stats().connecting == 3);
      loop.runUntil([&] { return done == 3; }, 5000);
      CHECK(done == 3);
      CHECK(pool.stats().open == 3);
      // A fourth concurrent one would have waited; now the sweep (every second) trims to pool_size.
      loop.runUntil([&] { return pool.stats().open == 1; }, 3000);
      CHECK(pool.stats().open == 1);
      CHECK(pool.stats().connectsOk == 3);
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool (real PgBouncer): recycle replaces old connections; pre-ping checks idle ones") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PoolSettings s = settingsFor(stack);
      s.recycle = 1ms;
      s.prePing = false;
      Pool pool(loop.get(), s);
      CHECK(runAndWait(loop, pool, tx({"SELECT 1"})).ok());
      loop.runFor(5);
      CHECK(runAndWait(loop, pool, tx({"SELECT 1"})).ok());
      CHECK(pool.stats().connectsOk == 2);
      CHECK(pool.stats().recycled >= 1);
      pool.close();
    }
    {
      PoolSettings s = settingsFor(stack);
      s.prePing = true;
      s.prePingAfterIdle = 20ms;
      Pool pool(loop.get(), s);
      CHECK(runAndWait(loop, pool, tx({"SELECT 1"})).ok());
      CHECK(runAndWait(loop, pool, tx({"SELECT 1"})).ok());  // used just now: no ping
      CHECK(pool.stats().prePings == 0);
      loop.runFor(40);
      CHECK(runAndWait(loop, pool, tx({"SELECT 1"})).ok());
      CHECK(pool.stats().prePings == 1);
      CHECK(pool.stats().connectsOk == 1);
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool (real PgBouncer): 40001 and 40P01 are retried with backoff, bounded") {
    REQUIRE_REAL_STACK(stack);
    installFaultFunction(stack);
    execBlocking(stack->dbUrl(), "DROP SEQUENCE IF EXISTS pool_test_s1, pool_test_s2, pool_test_s3, pool_test_s4");
    execBlocking(stack->dbUrl(), "CREATE SEQUENCE pool_test_s1");
    execBlocking(stack->dbUrl(), "CREATE SEQUENCE pool_test_s2");
    execBlocking(stack->dbUrl(), "CREATE SEQUENCE pool_test_s3");
    execBlocking(stack->dbUrl(), "CREATE SEQUENCE pool_test_s4");
    TestLoop loop;
    {
      PoolSettings s = settingsFor(stack);
      s.maxAttempts = 3;
      Pool pool(loop.get(), s);
      TxResult r = runAndWait(loop, pool, tx({"SELECT pool_test_fail_until('pool_test_s1', 2, '40001')"}, false));
      REQUIRE_MESSAGE(r.ok(), r.error.message);
      CHECK(r.attempts == 3);
      CHECK(r.results[0].value(0, 0) == "3");

      r = runAndWait(loop, pool, tx({"SELECT pool_test_fail_until('pool_test_s2', 1, '40P01')"}, false));
      REQUIRE_MESSAGE(r.ok(), r.error.message);
      CHECK(r.attempts == 2);

      r = runAndWait(loop, pool, tx({"SELECT pool_test_fail_until('pool_test_s3', 10, '40001')"}));
      CHECK(r.error.kind == DbErrorKind::Server);
      CHECK(r.error.sqlState == "40001");
      CHECK(r.attempts == 3);

      r = runAndWait(loop, pool, tx({"SELECT pool_test_fail_until('pool_test_s4', 10, '23505')"}));
      CHECK(r.error.kind == DbErrorKind::Server);
      CHECK(r.error.sqlState == "23505");
      CHECK(r.attempts == 1);
      CHECK(pool.stats().retries == 2 + 1 + 2);
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool (real PgBouncer): a lost connection is retried only when that is safe") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      Pool pool(loop.get(), settingsFor(stack));
      app::TimerQueue timers(loop.get());
      // Kills the server backend running our statement while it runs (once per run).
      auto killSoon = [&](const std::string& marker) {
        timers.after(150, [&, marker] {
          execBlocking(stack->directDbUrl(),
                       "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%" + marker +
                           "%' AND pid <> pg_backend_pid()");
        });
      };
      killSoon("retry_me_marker");
      TxResult r = runAndWait(loop, pool, tx({"SELECT pg_sleep(0.4), 'retry_me_marker'"}, true));
      REQUIRE_MESSAGE(r.ok(), r.error.message);
      CHECK(r.attempts == 2);

      killSoon("do_not_retry_marker");
      r = runAndWait(loop, pool, tx({"SELECT pg_sleep(0.4), 'do_not_retry_marker'"}, false));
      CHECK(r.error.kind == DbErrorKind::Unavailable);
      CHECK(r.attempts == 1);
      // And the pool recovers by itself.
      CHECK(runAndWait(loop, pool, tx({"SELECT 1"})).ok());
      timers.close();
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pool: nothing listening -> Unavailable after the allowed tries; close() fails waiters") {
    TestLoop loop;
    {
      PoolSettings s;
      s.conninfo = "postgresql://app@127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/app";
      s.poolSize = 1;
      s.maxOverflow = 0;
      s.connectTimeout = 500ms;
      s.retryBackoffBase = 5ms;
      s.retryBackoffMax = 10ms;
      Pool pool(loop.get(), s);
      TxResult r = runAndWait(loop, pool, tx({"SELECT 1"}));
      CHECK(r.error.kind == DbErrorKind::Unavailable);
      CHECK(r.attempts == 3);
      CHECK(pool.stats().connectsFailed == 3);
      CHECK(pool.stats().open == 0);

      std::vector<DbErrorKind> got;
      pool.run(tx({"SELECT 1"}), [&](TxResult t) { got.push_back(t.error.kind); });
      pool.run(tx({"SELECT 1"}), [&](TxResult t) { got.push_back(t.error.kind); });
      pool.close();
      CHECK(got.size() == 2);
      for (DbErrorKind k : got) {
        CHECK(k == DbErrorKind::Closed);
      }
      pool.run(tx({"SELECT 1"}), [&](TxResult t) { got.push_back(t.error.kind); });
      CHECK(got.size() == 3);
    }
    CHECK(loop.finish() == 0);
  }
}
