#include "upstream_app/health/readiness.h"

#include <algorithm>

#include "common/obs/log.h"

namespace app {

namespace {

constexpr std::chrono::milliseconds kMaxDbCheck{2000};

std::chrono::milliseconds dbCheckTimeout(const cfg::Config& config) {
  std::chrono::milliseconds statement = config.upstream_app.database.statement_timeout;
  if (statement.count() <= 0) {
    return kMaxDbCheck;
  }
  return std::min(statement, kMaxDbCheck);
}

redisx::RedisOptions redisOptions(const cfg::RedisConfig& c) {
  redisx::RedisOptions o;
  o.url = c.url;
  o.connectTimeout = c.connect_timeout;
  o.commandTimeout = c.command_timeout;
  return o;
}

void logChange(int& logged, bool ok, const char* part, const std::string& error) {
  int now = ok ? 1 : 0;
  if (logged == now) {
    return;
  }
  // The first result is logged only when it is bad; later, every change.
  if (ok && logged != -1) {
    obs::info("readiness: dependency is back", obs::LogFields().str("dependency", part));
  } else if (!ok) {
    obs::warn("readiness: dependency is down", obs::LogFields().str("dependency", part).str("error", error));
  }
  logged = now;
}

}  // namespace

ReadinessChecker::ReadinessChecker(uv_loop_t* loop, const cfg::Config& config)
    : loop_(loop),
      dbTimeout_(dbCheckTimeout(config)),
      pg_(loop, db::PgConnectionOptions{config.upstream_app.database.url, "upstream_app readyz"}),
      redis_(loop, redisOptions(config.redis)),
      alive_(std::make_shared<bool>(true)) {
  if (!redis_.start(&redisStartError_)) {
    obs::error("readiness: redis.url is not usable", obs::LogFields().str("error", redisStartError_));
  }
}

ReadinessChecker::~ReadinessChecker() { *alive_ = false; }

std::chrono::milliseconds ReadinessChecker::dbRemaining() const {
  uint64_t now = uv_now(loop_);
  return std::chrono::milliseconds(dbDeadlineMs_ > now ? static_cast<int64_t>(dbDeadlineMs_ - now) : 0);
}

void ReadinessChecker::check(Callback cb) {
  if (closed_) {
    cb(false, "shutting down", false, "shutting down");
    return;
  }
  waiters_.push_back(std::move(cb));
  if (running_) {
    return;  // joins the running check
  }
  running_ = true;
  ++checkSerial_;
  dbDone_ = false;
  cacheDone_ = false;
  dbOk_ = false;
  cacheOk_ = false;
  dbError_.clear();
  cacheError_.clear();

  // Neither client calls back inside these calls, so both parts are under way before either ends.
  startDbCheck();
  uint64_t serial = checkSerial_;
  redis_.command({"PING"}, [this, serial](redisx::RedisResult r) {
    if (serial != checkSerial_) {
      return;
    }
    if (!r.ok()) {
      cacheFinished(false, r.errorMessage);
    } else if (r.reply.type != redisx::ReplyType::Status || r.reply.str != "PONG") {
      cacheFinished(false, "unexpected reply to PING");
    } else {
      cacheFinished(true, "");
    }
  });
}

void ReadinessChecker::startDbCheck() {
  dbDeadlineMs_ = uv_now(loop_) + static_cast<uint64_t>(dbTimeout_.count());
  switch (pg_.state()) {
    case db::PgConnection::State::Ready:
      runSelect(/*reusedConnection=*/true);
      return;
    case db::PgConnection::State::Disconnected:
      connectThenSelect();
      return;
    default:
      // Not expected (checks do not overlap); start from a clean connection.
      pg_.disconnect();
      connectThenSelect();
      return;
  }
}

void ReadinessChecker::connectThenSelect() {
  std::chrono::milliseconds remaining = dbRemaining();
  if (remaining.count() <= 0) {
    dbFinished(false, "database check timed out after " + std::to_string(dbTimeout_.count()) + "ms");
    return;
  }
  uint64_t serial = checkSerial_;
  pg_.connect(remaining, [this, serial](db::PgError e) {
    if (serial != checkSerial_) {
      return;
    }
    if (!e.ok()) {
      dbFinished(false, e.describe());
      return;
    }
    runSelect(/*reusedConnection=*/false);
  });
}

void ReadinessChecker::runSelect(bool reusedConnection) {
  std::chrono::milliseconds remaining = dbRemaining();
  if (remaining.count() <= 0) {
    dbFinished(false, "database check timed out after " + std::to_string(dbTimeout_.count()) + "ms");
    return;
  }
  uint64_t serial = checkSerial_;
  pg_.query("SELECT 1", remaining, [this, serial, reusedConnection](db::PgQueryResult r) {
    if (serial != checkSerial_) {
      return;
    }
    if (r.ok()) {
      bool good = r.result.rows() == 1 && r.result.columns() == 1 && r.result.value(0, 0) == "1";
      dbFinished(good, good ? "" : "SELECT 1 returned an unexpected result");
      return;
    }
    // A kept connection can break while idle without us seeing it (a silently dropped socket);
    // that says nothing about the database, so try once on a fresh connection.
    if (reusedConnection && r.error.kind == db::PgErrorKind::ConnectionLost && dbRemaining().count() > 0) {
      connectThenSelect();
      return;
    }
    dbFinished(false, r.error.describe());
  });
}

void ReadinessChecker::dbFinished(bool ok, std::string error) {
  dbDone_ = true;
  dbOk_ = ok;
  dbError_ = std::move(error);
  maybeFinish();
}

void ReadinessChecker::cacheFinished(bool ok, std::string error) {
  cacheDone_ = true;
  cacheOk_ = ok;
  cacheError_ = std::move(error);
  maybeFinish();
}

void ReadinessChecker::maybeFinish() {
  if (!dbDone_ || !cacheDone_) {
    return;
  }
  running_ = false;
  logChange(loggedDbOk_, dbOk_, "db", dbError_);
  logChange(loggedCacheOk_, cacheOk_, "cache", cacheError_);
  // Copies: a waiter may start the next check, which resets the members.
  std::vector<Callback> waiters;
  waiters.swap(waiters_);
  bool dbOk = dbOk_;
  bool cacheOk = cacheOk_;
  std::string dbError = dbError_;
  std::string cacheError = cacheError_;
  auto alive = alive_;
  for (Callback& w : waiters) {
    if (!*alive) {
      return;
    }
    w(dbOk, dbError, cacheOk, cacheError);
  }
}

void ReadinessChecker::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  running_ = false;
  ++checkSerial_;  // the clients' close() answers their pending callbacks; ignore those
  std::vector<Callback> waiters;
  waiters.swap(waiters_);
  pg_.close();
  redis_.close();
  auto alive = alive_;
  for (Callback& w : waiters) {
    if (!*alive) {
      return;
    }
    w(false, "shutting down", false, "shutting down");
  }
}

}  // namespace app
