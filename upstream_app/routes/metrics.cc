#include "upstream_app/routes/metrics.h"

#include "common/obs/metrics_process.h"
#include "upstream_app/app_context.h"
#include "upstream_app/shipping/shipping_client.h"

namespace app {

namespace {

// Sums one LoopGauges field over every loop (scrape time, any thread).
template <typename T>
std::function<double()> sumOf(const std::vector<std::unique_ptr<LoopGauges>>& loops, std::atomic<T> LoopGauges::*field) {
  return [&loops, field] {
    double total = 0;
    for (const auto& l : loops) {
      total += static_cast<double>(((*l).*field).load(std::memory_order_relaxed));
    }
    return total;
  };
}

}  // namespace

AppMetrics::AppMetrics(int loops) : registry_(std::make_unique<obs::MetricsRegistry>(static_cast<unsigned>(loops) + 1)) {
  for (int i = 0; i < loops; ++i) {
    loops_.push_back(std::make_unique<LoopGauges>());
  }
  obs::MetricsRegistry& r = *registry_;
  // method (bounded) x code (bounded) x route (the route table's patterns + "unmatched").
  requests_ = &r.counterFamily("http_requests_total", "Requests answered, by method, status code and route pattern.",
                               {"method", "code", "route"}, 1024);
  requestDuration_ = &r.histogramFamily("http_request_duration_seconds",
                                        "Time from request head to the answer queued, by route pattern.", {"route"});
  poolWait_ = r.histogram("db_pool_wait_seconds",
                          "Time a transaction waited for a database connection (connect time included).");
  queryDuration_ = &r.histogramFamily("db_query_duration_seconds",
                                      "Round trip of one try of a database transaction, by transaction label.",
                                      {"query"});

  obs::CallbackFamily& pool =
      r.callbackGaugeFamily("db_pool_connections", "Database connections of the pools, by state.", {"state"});
  pool.add({"idle"}, sumOf(loops_, &LoopGauges::poolIdle));
  pool.add({"in_use"}, sumOf(loops_, &LoopGauges::poolInUse));
  pool.add({"connecting"}, sumOf(loops_, &LoopGauges::poolConnecting));
  r.callbackGauge("db_pool_waiting", "Transactions waiting for a database connection.",
                  sumOf(loops_, &LoopGauges::poolWaiting));
  r.callbackCounter("db_pool_timeouts_total", "Transactions that got no connection within pool_timeout.",
                    sumOf(loops_, &LoopGauges::poolTimeouts));
  r.callbackCounter("db_slow_queries_total", "Transactions slower than slow_query_threshold.",
                    sumOf(loops_, &LoopGauges::slowQueries));

  obs::CallbackFamily& cache = r.callbackCounterFamily(
      "cache_requests_total", "Redis cache lookups, by cache and result (error: Redis down or slow).",
      {"cache", "result"});
  cache.add({"article", "hit"}, sumOf(loops_, &LoopGauges::articleHits));
  cache.add({"article", "miss"}, sumOf(loops_, &LoopGauges::articleMisses));
  cache.add({"article", "error"}, sumOf(loops_, &LoopGauges::articleErrors));
  cache.add({"shipment", "hit"}, sumOf(loops_, &LoopGauges::shipmentHits));
  cache.add({"shipment", "miss"}, sumOf(loops_, &LoopGauges::shipmentMisses));
  cache.add({"shipment", "error"}, sumOf(loops_, &LoopGauges::shipmentErrors));

  obs::registerProcessMetrics(r);
}

void AppMetrics::bindShipping(shipping::ShippingShared& s) {
  obs::MetricsRegistry& r = *registry_;
  shipping::ShippingMetrics m;
  obs::CounterFamily& tries =
      r.counterFamily("http_client_requests_total", "Tries to the shipping service, by outcome.", {"outcome"});
  for (int i = 0; i < static_cast<int>(shipping::TryOutcome::Count); ++i) {
    m.tries[i] = tries.labels({shipping::tryOutcomeName(static_cast<shipping::TryOutcome>(i))});
  }
  m.retries = r.counter("http_client_retries_total", "Tries to the shipping service after the first.");
  m.tryDuration = r.histogram("http_client_request_duration_seconds",
                              "One try to the shipping service, from the pool request to the answer or failure.");
  s.setMetrics(m);
  http::PoolStats* ps = &s.poolStats();
  obs::CallbackFamily& pool = r.callbackGaugeFamily(
      "http_client_pool_connections", "Connections to the shipping service, by state.", {"state"});
  pool.add({"active"}, [ps] { return static_cast<double>(ps->active.load(std::memory_order_relaxed)); });
  pool.add({"idle"}, [ps] { return static_cast<double>(ps->idle.load(std::memory_order_relaxed)); });
  pool.add({"connecting"}, [ps] { return static_cast<double>(ps->connecting.load(std::memory_order_relaxed)); });
  resilience::CircuitBreaker* breaker = &s.breaker();
  r.callbackGauge("shipping_circuit_breaker_state", "Shipping service circuit breaker: 0 closed, 1 open, 2 half-open.",
                  [breaker] { return static_cast<double>(breaker->stateValue()); });
}

void AppMetrics::recordRequest(std::string_view method, int status, std::string_view route, double seconds) {
  requests_->labels({obs::methodLabel(method), obs::statusCodeLabel(status), route}).inc();
  requestDuration_->labels({route}).observe(seconds);
}

void refreshLoopGauges(AppContext& ctx) {
  LoopGauges& g = ctx.loopGauges();
  const db::PoolStats ps = ctx.pool().stats();
  g.poolIdle.store(ps.idle, std::memory_order_relaxed);
  g.poolInUse.store(ps.inUse, std::memory_order_relaxed);
  g.poolConnecting.store(ps.connecting, std::memory_order_relaxed);
  g.poolWaiting.store(ps.waiting, std::memory_order_relaxed);
  g.poolTimeouts.store(ps.poolTimeouts, std::memory_order_relaxed);
  g.slowQueries.store(ps.slowQueries, std::memory_order_relaxed);
  const CacheStats& cs = ctx.articles().stats();
  // CacheStats::misses counts Redis errors too (they read the database); split them out.
  const uint64_t errors = std::min(cs.errors, cs.misses);
  g.articleHits.store(cs.hits, std::memory_order_relaxed);
  g.articleMisses.store(cs.misses - errors, std::memory_order_relaxed);
  g.articleErrors.store(errors, std::memory_order_relaxed);
}

namespace routes {

void metrics(RouteRequest& r) {
  refreshLoopGauges(r.ctx);
  r.reply.send(200, obs::kPrometheusContentType, r.ctx.metrics().registry().render());
}

}  // namespace routes

}  // namespace app
