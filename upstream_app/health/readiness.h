#pragma once
// app::ReadinessChecker: the work behind upstream_app's `GET /readyz` (CONTRACT §5): a real
// `SELECT 1` through the configured database URL (PgBouncer) and a Redis `PING`, run in
// parallel, each bounded by a timeout, reported together.
//
//   db:    one kept PgConnection (connected on first use, reconnected when broken). Bound:
//          min(upstream_app.database.statement_timeout, 2s) for connect + SELECT 1 together. A
//          kept connection that turns out to be broken is replaced within the same check when
//          time remains (a PgBouncer restart must not make one probe fail).
//   cache: a RedisClient (connects at construction, reconnects with backoff). Bound:
//          redis.command_timeout (default 50ms). While Redis is down the PING fails at once.
//
// One loop, one checker: create it on the loop thread that serves /readyz.
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config/app_config.h"
#include "common/redis/redis_client.h"
#include "upstream_app/db/pg_connection.h"

namespace app {

class ReadinessChecker {
 public:
  // dbError / cacheError are one-line reasons (empty when ok), for logs; the HTTP body only says
  // "ok"/"down".
  using Callback = std::function<void(bool dbOk, std::string dbError, bool cacheOk, std::string cacheError)>;

  // Starts connecting to Redis at once (the database connection is opened by the first check).
  ReadinessChecker(uv_loop_t* loop, const cfg::Config& config);
  // Drops callbacks of a running check without calling them; closes every handle (the loop must
  // run once more to finish the close callbacks).
  ~ReadinessChecker();
  ReadinessChecker(const ReadinessChecker&) = delete;
  ReadinessChecker& operator=(const ReadinessChecker&) = delete;

  // Runs a check and calls cb once with both results. While a check runs, further calls join it
  // and get its result. cb never runs before check() returns, except after close(): then it runs
  // at once with both parts down ("shutting down").
  void check(Callback cb);

  // For shutdown: closes the database connection and the Redis client (all their handles). A
  // running check's callbacks run with both parts down before close() returns. The loop can then
  // finish; destroy the checker before uv_loop_close().
  void close();

  // The bound of the database part (min(statement_timeout, 2s)).
  std::chrono::milliseconds dbTimeout() const { return dbTimeout_; }

 private:
  void startDbCheck();
  void connectThenSelect();
  void runSelect(bool reusedConnection);
  void dbFinished(bool ok, std::string error);
  void cacheFinished(bool ok, std::string error);
  void maybeFinish();
  std::chrono::milliseconds dbRemaining() const;

  uv_loop_t* loop_;
  std::chrono::milliseconds dbTimeout_;
  db::PgConnection pg_;
  redisx::RedisClient redis_;
  std::string redisStartError_;  // unusable redis.url: every check reports it

  bool running_ = false;
  bool closed_ = false;
  uint64_t checkSerial_ = 0;  // ignores answers of a check that close() already finished
  uint64_t dbDeadlineMs_ = 0;
  bool dbDone_ = false;
  bool cacheDone_ = false;
  bool dbOk_ = false;
  bool cacheOk_ = false;
  std::string dbError_;
  std::string cacheError_;
  std::vector<Callback> waiters_;
  int loggedDbOk_ = -1;  // last logged state (-1 = none yet): a change of state is logged once
  int loggedCacheOk_ = -1;
  std::shared_ptr<bool> alive_;
};

}  // namespace app
