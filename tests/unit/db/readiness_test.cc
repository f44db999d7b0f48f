// app::ReadinessChecker (upstream_app/health) against the real stack. Lives next to the database
// tests because it needs the same real servers and helpers.
#include "upstream_app/health/readiness.h"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>

#include "common/config/app_config.h"
#include "tests/unit/db/test_support.h"

using namespace std::chrono_literals;
using testsupport::TestLoop;

namespace {

struct Outcome {
  bool dbOk = false;
  std::string dbError;
  bool cacheOk = false;
  std::string cacheError;
};

app::ReadinessChecker::Callback store(std::optional<Outcome>& out) {
  return [&out](bool dbOk, std::string dbError, bool cacheOk, std::string cacheError) {
    REQUIRE_FALSE(out.has_value());  // exactly once
    out = Outcome{dbOk, std::move(dbError), cacheOk, std::move(cacheError)};
  };
}

cfg::Config configFor(const std::string& dbUrl, const std::string& redisUrl) {
  cfg::Config c;
  c.upstream_app.database.url = dbUrl;
  c.redis.url = redisUrl;
  return c;  // contract defaults: statement_timeout 5s, connect 200ms, command 50ms
}

Outcome checkOnce(TestLoop& loop, app::ReadinessChecker& checker, uint64_t waitMs = 5000) {
  std::optional<Outcome> out;
  checker.check(store(out));
  CHECK_FALSE(out.has_value());  // never inside check()
  loop.runUntil([&] { return out.has_value(); }, waitMs);
  REQUIRE(out.has_value());
  return *out;
}

}  // namespace

TEST_SUITE("real-servers") {
  TEST_CASE("readiness (real PgBouncer + Redis): both up, both ok; the connection is kept") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      app::ReadinessChecker checker(loop.get(), configFor(stack->dbUrl(), stack->redisUrl()));
      CHECK(checker.dbTimeout() == 2000ms);
      loop.runFor(100);  // Redis connects at construction
      for (int i = 0; i < 3; ++i) {
        Outcome o = checkOnce(loop, checker);
        CHECK_MESSAGE(o.dbOk, o.dbError);
        CHECK_MESSAGE(o.cacheOk, o.cacheError);
        CHECK(o.dbError.empty());
        CHECK(o.cacheError.empty());
      }
      checker.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("readiness (real PgBouncer + Redis): concurrent checks share one result") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      app::ReadinessChecker checker(loop.get(), configFor(stack->dbUrl(), stack->redisUrl()));
      loop.runFor(100);
      std::optional<Outcome> a;
      std::optional<Outcome> b;
      checker.check(store(a));
      checker.check(store(b));
      REQUIRE(loop.runUntil([&] { return a.has_value() && b.has_value(); }, 5000));
      CHECK(a->dbOk);
      CHECK(b->dbOk);
      CHECK(a->cacheOk);
      CHECK(b->cacheOk);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("readiness (real PgBouncer): Redis unreachable -> cache down at once, db ok") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      std::string deadRedis = "redis://127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/0";
      app::ReadinessChecker checker(loop.get(), configFor(stack->dbUrl(), deadRedis));
      uint64_t t0 = loop.nowMs();
      Outcome o = checkOnce(loop, checker);
      CHECK(loop.nowMs() - t0 < 1000);
      CHECK(o.dbOk);
      CHECK_FALSE(o.cacheOk);
      CHECK(o.cacheError.find("refused") != std::string::npos);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("readiness (real Redis): database unreachable or hung -> db down within its bound") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      std::string deadDb = "postgresql://app@127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/app";
      app::ReadinessChecker refused(loop.get(), configFor(deadDb, stack->redisUrl()));
      loop.runFor(100);
      Outcome o = checkOnce(loop, refused);
      CHECK_FALSE(o.dbOk);
      CHECK(o.dbError.find("refused") != std::string::npos);
      CHECK(o.cacheOk);

      testsupport::SilentListener silent;
      cfg::Config c =
          configFor("postgresql://app@127.0.0.1:" + std::to_string(silent.port()) + "/app", stack->redisUrl());
      c.upstream_app.database.statement_timeout = 300ms;
      app::ReadinessChecker hung(loop.get(), c);
      CHECK(hung.dbTimeout() == 300ms);
      loop.runFor(100);
      uint64_t t0 = loop.nowMs();
      o = checkOnce(loop, hung);
      uint64_t took = loop.nowMs() - t0;
      CHECK_FALSE(o.dbOk);
      CHECK(o.dbError.find("timeout") != std::string::npos);
      CHECK(took >= 290);
      CHECK(took < 1000);
      CHECK(o.cacheOk);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("readiness (real PgBouncer + Redis): Redis stopped and started again") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      app::ReadinessChecker checker(loop.get(), configFor(stack->dbUrl(), stack->redisUrl()));
      loop.runFor(100);
      REQUIRE(checkOnce(loop, checker).cacheOk);
      REQUIRE(stack->stopRedis());
      Outcome down;
      bool sawDown = loop.runUntil(
          [&] {
            down = checkOnce(loop, checker);
            return !down.cacheOk;
          },
          2000);
      CHECK(sawDown);
      CHECK(down.dbOk);
      REQUIRE(stack->restart());
      Outcome up;
      bool sawUp = loop.runUntil(
          [&] {
            up = checkOnce(loop, checker);
            return up.cacheOk;
          },
          5000);
      CHECK_MESSAGE(sawUp, up.cacheError);
      CHECK(up.dbOk);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("readiness (real PgBouncer + Redis): close() answers a running check") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      app::ReadinessChecker checker(loop.get(), configFor(stack->dbUrl(), stack->redisUrl()));
      std::optional<Outcome> running;
      checker.check(store(running));
      checker.close();
      REQUIRE(running.has_value());
      CHECK_FALSE(running->dbOk);
      CHECK(running->dbError == "shutting down");
      std::optional<Outcome> after;
      checker.check(store(after));
      REQUIRE(after.has_value());
      CHECK_FALSE(after->cacheOk);
      loop.runFor(20);
    }
    CHECK(loop.finish() == 0);
  }
}

TEST_CASE("readiness: an unusable redis.url reports the cache down with the reason") {
  TestLoop loop;
  {
    std::string deadDb = "postgresql://app@127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/app";
    app::ReadinessChecker checker(loop.get(), configFor(deadDb, "rediss://127.0.0.1:6379/0"));
    Outcome o = checkOnce(loop, checker);
    CHECK_FALSE(o.cacheOk);
    CHECK(o.cacheError.find("TLS") != std::string::npos);
    CHECK_FALSE(o.dbOk);
  }
  CHECK(loop.finish() == 0);
}
