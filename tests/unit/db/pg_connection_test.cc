// app::db::PgConnection against the real PostgreSQL 15 + PgBouncer (transaction mode) of
// scripts/stack.sh, and against local sockets that refuse or never answer.
#include "upstream_app/db/pg_connection.h"

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/db/test_support.h"

using namespace std::chrono_literals;
using app::db::PgConnection;
using app::db::PgConnectionOptions;
using app::db::PgError;
using app::db::PgErrorKind;
using app::db::PgQueryResult;
using testsupport::TestLoop;

namespace {

PgConnectionOptions optionsFor(const std::string& conninfo) {
  PgConnectionOptions o;
  o.conninfo = conninfo;
  o.applicationName = "unit-tests";
  return o;
}

// Connects and waits; returns the connect error (ok on success).
PgError connectAndWait(TestLoop& loop, PgConnection& conn, std::chrono::milliseconds timeout = 3000ms) {
  std::optional<PgError> out;
  conn.connect(timeout, [&](PgError e) { out = std::move(e); });
  loop.runUntil([&] { return out.has_value(); }, static_cast<uint64_t>(timeout.count()) + 2000);
  REQUIRE(out.has_value());
  return *out;
}

PgQueryResult queryAndWait(TestLoop& loop, PgConnection& conn, std::string sql, PgConnection::Params params = {},
                           std::chrono::milliseconds timeout = 3000ms) {
  std::optional<PgQueryResult> out;
  conn.query(std::move(sql), std::move(params), timeout, [&](PgQueryResult r) { out = std::move(r); });
  loop.runUntil([&] { return out.has_value(); }, static_cast<uint64_t>(timeout.count()) + 2000);
  REQUIRE(out.has_value());
  return std::move(*out);
}

}  // namespace

TEST_SUITE("real-servers") {
  TEST_CASE("pg connection (real PgBouncer): SELECT with parameters, NULLs, big values") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PgConnection conn(loop.get(), optionsFor(stack->dbUrl()));
      CHECK(conn.state() == PgConnection::State::Disconnected);
      PgError e = connectAndWait(loop, conn);
      REQUIRE_MESSAGE(e.ok(), e.describe());
      CHECK(conn.state() == PgConnection::State::Ready);
      CHECK(conn.target() == "127.0.0.1:" + std::to_string(stack->pgbouncerPort) + "/app");

      PgQueryResult r = queryAndWait(loop, conn, "SELECT $1::int + 1 AS n, $2::text IS NULL AS isnull, $3::text AS t",
                                     {"41", std::nullopt, "héllo, 'quoted'"});
      REQUIRE_MESSAGE(r.ok(), r.error.describe());
      CHECK(r.result.rows() == 1);
      CHECK(r.result.value(0, r.result.column("n")) == "42");
      CHECK(r.result.value(0, 1) == "t");
      CHECK(r.result.value(0, 2) == "héllo, 'quoted'");
      CHECK(conn.state() == PgConnection::State::Ready);

      // One command per call (extended protocol); the connection stays usable.
      PgQueryResult multi = queryAndWait(loop, conn, "SELECT 1; SELECT 2");
      CHECK(multi.error.kind == PgErrorKind::ServerError);
      CHECK(multi.error.sqlState == "42601");
      CHECK(conn.state() == PgConnection::State::Ready);

      // Big enough that PQflush has to be called again from the poll callback.
      std::string big(4 * 1024 * 1024, 'x');
      PgQueryResult len = queryAndWait(loop, conn, "SELECT length($1::text)", {big});
      REQUIRE_MESSAGE(len.ok(), len.error.describe());
      CHECK(len.result.value(0, 0) == "4194304");
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pg connection (real PgBouncer): a server error keeps the connection usable") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PgConnection conn(loop.get(), optionsFor(stack->dbUrl()));
      REQUIRE(connectAndWait(loop, conn).ok());
      PgQueryResult r = queryAndWait(loop, conn, "SELECT 1/0");
      CHECK(r.error.kind == PgErrorKind::ServerError);
      CHECK(r.error.sqlState == "22012");
      CHECK(r.error.message.find("division by zero") != std::string::npos);
      CHECK(conn.state() == PgConnection::State::Ready);
      PgQueryResult again = queryAndWait(loop, conn, "SELECT 1");
      CHECK(again.ok());
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pg connection (real PgBouncer): statement timeout closes the connection; reconnect works") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PgConnection conn(loop.get(), optionsFor(stack->dbUrl()));
      REQUIRE(connectAndWait(loop, conn).ok());
      uint64_t t0 = loop.nowMs();
      PgQueryResult r = queryAndWait(loop, conn, "SELECT pg_sleep(2)", {}, 100ms);
      uint64_t took = loop.nowMs() - t0;
      CHECK(r.error.kind == PgErrorKind::QueryTimeout);
      CHECK(r.error.maybeExecuted);
      CHECK(took >= 95);
      CHECK(took < 600);
      CHECK(conn.state() == PgConnection::State::Disconnected);
      REQUIRE(connectAndWait(loop, conn).ok());
      CHECK(queryAndWait(loop, conn, "SELECT 1").ok());
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pg connection (real PgBouncer): one statement at a time; refusals come asynchronously") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PgConnection conn(loop.get(), optionsFor(stack->dbUrl()));
      std::optional<PgQueryResult> early;
      conn.query("SELECT 1", 1000ms, [&](PgQueryResult r) { early = std::move(r); });
      CHECK_FALSE(early.has_value());  // never inside query()
      REQUIRE(loop.runUntil([&] { return early.has_value(); }, 200));
      CHECK(early->error.kind == PgErrorKind::NotConnected);

      REQUIRE(connectAndWait(loop, conn).ok());
      std::optional<PgQueryResult> first;
      std::optional<PgQueryResult> second;
      conn.query("SELECT pg_sleep(0.1), 7", 2000ms, [&](PgQueryResult r) { first = std::move(r); });
      CHECK(conn.state() == PgConnection::State::Busy);
      conn.query("SELECT 8", 2000ms, [&](PgQueryResult r) { second = std::move(r); });
      REQUIRE(loop.runUntil([&] { return first.has_value() && second.has_value(); }, 3000));
      CHECK(second->error.kind == PgErrorKind::Busy);
      REQUIRE(first->ok());
      CHECK(first->result.value(0, 1) == "7");

      std::optional<PgError> doubleConnect;
      conn.connect(1000ms, [&](PgError e) { doubleConnect = e; });
      REQUIRE(loop.runUntil([&] { return doubleConnect.has_value(); }, 200));
      CHECK(doubleConnect->kind == PgErrorKind::Busy);
      CHECK(conn.state() == PgConnection::State::Ready);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pg connection (real PostgreSQL): a server-side close is noticed while idle") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PgConnection victim(loop.get(), optionsFor(stack->directDbUrl()));
      PgConnection killer(loop.get(), optionsFor(stack->directDbUrl()));
      REQUIRE(connectAndWait(loop, victim).ok());
      REQUIRE(connectAndWait(loop, killer).ok());
      PgQueryResult pid = queryAndWait(loop, victim, "SELECT pg_backend_pid()");
      REQUIRE(pid.ok());
      PgQueryResult kill =
          queryAndWait(loop, killer, "SELECT pg_terminate_backend($1::int)", {std::string(pid.result.value(0, 0))});
      REQUIRE(kill.ok());
      CHECK(kill.result.value(0, 0) == "t");
      CHECK(loop.runUntil([&] { return victim.state() == PgConnection::State::Disconnected; }, 2000));
      CHECK(victim.lastError().find("closed") != std::string::npos);
      std::optional<PgQueryResult> after;
      victim.query("SELECT 1", 1000ms, [&](PgQueryResult r) { after = std::move(r); });
      REQUIRE(loop.runUntil([&] { return after.has_value(); }, 200));
      CHECK(after->error.kind == PgErrorKind::NotConnected);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pg connection (real PgBouncer): libpq moving to another socket during connect") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      // The first host refuses; libpq closes that socket and opens another (often with the same
      // descriptor number), so the poll handle must follow.
      std::string conninfo = "host=127.0.0.1,127.0.0.1 port=" + std::to_string(testsupport::closedPort()) + "," +
                             std::to_string(stack->pgbouncerPort) + " dbname=app user=app";
      PgConnection conn(loop.get(), optionsFor(conninfo));
      PgError e = connectAndWait(loop, conn);
      REQUIRE_MESSAGE(e.ok(), e.describe());
      CHECK(queryAndWait(loop, conn, "SELECT 1").ok());

      // sslmode=prefer asks PgBouncer for TLS first and falls back on the same socket.
      PgConnection prefer(loop.get(), optionsFor(stack->dbUrl() + "?sslmode=prefer"));
      REQUIRE(connectAndWait(loop, prefer).ok());
      CHECK(queryAndWait(loop, prefer, "SELECT 1").ok());
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pg connection (real PgBouncer): a host name is resolved off the loop, every address tried") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      PgConnection conn(loop.get(),
                        optionsFor("postgresql://app@localhost:" + std::to_string(stack->pgbouncerPort) + "/app"));
      PgError e = connectAndWait(loop, conn);
      REQUIRE_MESSAGE(e.ok(), e.describe());
      CHECK(queryAndWait(loop, conn, "SELECT 1").ok());
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("pg connection (real PgBouncer): destroyed or closed with a statement in flight") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      int calls = 0;
      auto conn = std::make_unique<PgConnection>(loop.get(), optionsFor(stack->dbUrl()));
      REQUIRE(connectAndWait(loop, *conn).ok());
      conn->query("SELECT pg_sleep(1)", 2000ms, [&](PgQueryResult) { ++calls; });
      conn.reset();
      loop.runFor(50);
      CHECK(calls == 0);

      PgConnection closing(loop.get(), optionsFor(stack->dbUrl()));
      REQUIRE(connectAndWait(loop, closing).ok());
      std::optional<PgQueryResult> r;
      closing.query("SELECT pg_sleep(1)", 2000ms, [&](PgQueryResult res) { r = std::move(res); });
      closing.close();
      REQUIRE(r.has_value());
      CHECK(r->error.kind == PgErrorKind::Closed);
      CHECK(closing.state() == PgConnection::State::Closed);

      // Destroyed from its own callback.
      auto self = std::make_unique<PgConnection>(loop.get(), optionsFor(stack->dbUrl()));
      REQUIRE(connectAndWait(loop, *self).ok());
      self->query("SELECT 1", 1000ms, [&](PgQueryResult res) {
        CHECK(res.ok());
        self.reset();
      });
      CHECK(loop.runUntil([&] { return self == nullptr; }, 2000));
    }
    CHECK(loop.finish() == 0);
  }
}

TEST_CASE("pg connection: refused, never answering, and invalid URLs") {
  TestLoop loop;
  {
    PgConnection refused(
        loop.get(), optionsFor("postgresql://app@127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/app"));
    uint64_t t0 = loop.nowMs();
    PgError e = connectAndWait(loop, refused);
    CHECK(e.kind == PgErrorKind::ConnectFailed);
    CHECK(e.message.find("refused") != std::string::npos);
    CHECK(loop.nowMs() - t0 < 500);
    CHECK(refused.state() == PgConnection::State::Disconnected);

    testsupport::SilentListener silent;
    PgConnection hung(loop.get(), optionsFor("postgresql://app@127.0.0.1:" + std::to_string(silent.port()) + "/app"));
    t0 = loop.nowMs();
    e = connectAndWait(loop, hung, 150ms);
    uint64_t took = loop.nowMs() - t0;
    CHECK(e.kind == PgErrorKind::ConnectTimeout);
    CHECK(took >= 140);
    CHECK(took < 600);
    CHECK(hung.state() == PgConnection::State::Disconnected);

    PgConnection invalid(loop.get(), optionsFor("postgresql://app@127.0.0.1:5432/app?nosuchoption=1"));
    e = connectAndWait(loop, invalid);
    CHECK(e.kind == PgErrorKind::ConnectFailed);
    CHECK(e.message.find("invalid database url") != std::string::npos);

    // close() during connect answers the connect callback before returning.
    PgConnection closing(loop.get(),
                         optionsFor("postgresql://app@127.0.0.1:" + std::to_string(silent.port()) + "/app"));
    std::optional<PgError> closed;
    closing.connect(1000ms, [&](PgError err) { closed = err; });
    loop.runFor(20);
    closing.close();
    REQUIRE(closed.has_value());
    CHECK(closed->kind == PgErrorKind::Closed);
  }
  CHECK(loop.finish() == 0);
}
