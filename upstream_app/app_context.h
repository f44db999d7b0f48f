#pragma once
// Per-loop context of upstream_app: config and the dependencies routes use. One per AppWorker,
// created and used on that worker's loop thread only.
//
// Owns, per loop: the PostgreSQL pool (db::Pool), a Redis client for the cache and the idempotency
// store (redis.url, command_timeout per command, reconnect with backoff), a TimerQueue for short
// waits, the article cache and the idempotency store built on them.
#include <uv.h>

#include "common/obs/trace/tracer.h"

#include <functional>
#include <memory>
#include <string>

#include "common/config/app_config.h"
#include "common/redis/redis_client.h"
#include "common/uv/timer.h"
#include "upstream_app/cache/article_cache.h"
#include "upstream_app/cache/idempotency.h"
#include "upstream_app/cache/traced_redis.h"
#include "upstream_app/db/pool.h"
#include "upstream_app/json/json.h"
#include "upstream_app/routes/metrics.h"
#include "upstream_app/shipping/shipping_client.h"
#include "upstream_app/timer_queue.h"

namespace app {

// Request counters of one loop (the /metrics issue exports them).
struct RouteStats {
  uint64_t idempotentReplays = 0;
  uint64_t idempotencyConflicts = 0;  // 409 in progress + 422 mismatch
};

// What the loops of one process share: the metrics registry and the shipping client's breaker,
// address and connection count. Built before the loops start (it resolves shipping.base_url).
struct AppShared {
  AppShared(const cfg::Config& config, int loops);
  std::unique_ptr<AppMetrics> metrics;
  std::unique_ptr<shipping::ShippingShared> shipping;
  // upstream_app.tracing: server spans per request, exported off the loops.
  std::unique_ptr<obs::trace::Tracer> tracer;
};

class AppContext {
 public:
  using ReadinessCallback =
      std::function<void(bool dbOk, const std::string& dbError, bool cacheOk, const std::string& cacheError)>;
  using ReadinessProbe = std::function<void(ReadinessCallback)>;

  // Starts connecting to Redis at once; database connections open on demand.
  // `shared` must outlive the context; `loopIndex` picks this loop's LoopGauges.
  AppContext(uv_loop_t* loop, const cfg::Config& config, AppShared& shared, int loopIndex);
  // A context with a private AppShared (one loop): tests and tools.
  AppContext(uv_loop_t* loop, const cfg::Config& config);
  // Drops pending callbacks (see close()); the loop must run once more to finish closing handles.
  ~AppContext();
  AppContext(const AppContext&) = delete;
  AppContext& operator=(const AppContext&) = delete;

  uv_loop_t* loop() const { return loop_; }
  const cfg::Config& config() const { return config_; }

  // Checks PostgreSQL and Redis for /readyz; set by the process wiring.
  void setReadinessProbe(ReadinessProbe probe) { readiness_ = std::move(probe); }
  const ReadinessProbe& readinessProbe() const { return readiness_; }

  db::Pool& pool() { return *pool_; }
  // Redis for routes: each command a client span of the current request (cache/traced_redis.h).
  TracedRedis redis() { return TracedRedis(*redis_); }
  TimerQueue& timers() { return *timers_; }
  ArticleCache& articles() { return *articles_; }
  IdempotencyStore& idempotency() { return *idempotency_; }
  RouteStats& stats() { return stats_; }
  AppMetrics& metrics() { return *shared_->metrics; }
  obs::trace::Tracer& tracer() { return *shared_->tracer; }
  LoopGauges& loopGauges() { return *loopGauges_; }
  shipping::ShippingClient& shipping() { return *shipping_; }
  // "public, max-age=<cache_ttl in seconds>" (CONTRACT §5: max-age=60 with the default cache_ttl).
  const std::string& articleCacheControl() const { return articleCacheControl_; }
  // A buffer for building one response synchronously; cleared on each call.
  json::Buffer& scratch() {
    scratch_.Clear();
    return scratch_;
  }

  // Shutdown: fails pending database work, closes every connection and timer. Callbacks of
  // in-flight requests run (with errors) and find their clients gone. Safe to call twice.
  void close();

 private:
  void init();

  uv_loop_t* loop_;
  const cfg::Config& config_;
  std::unique_ptr<AppShared> ownShared_;  // only with the one-loop constructor
  AppShared* shared_;
  LoopGauges* loopGauges_;
  std::unique_ptr<shipping::ShippingClient> shipping_;
  std::unique_ptr<uvx::Timer> gaugeTimer_;  // refreshes loopGauges_ every second
  ReadinessProbe readiness_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<redisx::RedisClient> redis_;
  std::unique_ptr<TimerQueue> timers_;
  std::unique_ptr<ArticleCache> articles_;
  std::unique_ptr<IdempotencyStore> idempotency_;
  RouteStats stats_;
  std::string articleCacheControl_;
  json::Buffer scratch_;
};

}  // namespace app
