#pragma once
// upstream_app's Prometheus metrics (CONTRACT §5 `GET /metrics`): one registry per process, a
// shard per worker loop (obs::setMetricsShard(worker + 1) on each loop thread).
//
//   http_requests_total{method,code,route}        route = the matched pattern ("/articles/{id}"),
//                                                 "unmatched" for 404/405 -- never the raw path
//   http_request_duration_seconds{route}          request head -> answer queued
//   db_pool_connections{state}                    idle | in_use | connecting (all loops' pools)
//   db_pool_waiting                               transactions waiting for a connection
//   db_pool_wait_seconds                          time to get a connection (histogram)
//   db_query_duration_seconds{query}              one try of a transaction, by its label
//                                                 ("orders.get"); static strings, so bounded
//   db_pool_timeouts_total, db_slow_queries_total
//   cache_requests_total{cache,result}            cache = article | shipment; result = hit | miss |
//                                                 error (Redis down or slow; the read went to the
//                                                 database / the service instead)
//   http_client_requests_total{outcome}           each try to the shipping service: success,
//                                                 server_error, connect_failure, connect_timeout,
//                                                 pool_timeout, read_timeout, write_timeout, reset,
//                                                 protocol_error, circuit_open (no contact)
//   http_client_retries_total
//   http_client_request_duration_seconds          one try
//   http_client_pool_connections{state}           active | idle | connecting
//   shipping_circuit_breaker_state                0 closed, 1 open, 2 half-open
//   process_*                                     common/obs/metrics_process.h
//
// The database pool and the article cache keep plain per-loop counters (db::Pool::stats(),
// ArticleCache::stats()), readable only on their loop. Each loop copies them into its LoopGauges
// (atomics) every second and right before it renders /metrics, so a scrape sees the scraping
// loop exactly and the other loops at most ~1 s old.
#include <atomic>
#include <chrono>
#include <memory>
#include <string_view>
#include <vector>

#include "common/obs/metrics.h"
#include "upstream_app/routes/route.h"

namespace app::shipping {
class ShippingShared;
}

namespace app {

class AppContext;

// One loop's snapshot of its pool and cache counters, and its shipment cache counters.
struct LoopGauges {
  std::atomic<int64_t> poolIdle{0};
  std::atomic<int64_t> poolInUse{0};
  std::atomic<int64_t> poolConnecting{0};
  std::atomic<int64_t> poolWaiting{0};
  std::atomic<uint64_t> poolTimeouts{0};
  std::atomic<uint64_t> slowQueries{0};
  std::atomic<uint64_t> articleHits{0};
  std::atomic<uint64_t> articleMisses{0};  // misses that were not Redis errors
  std::atomic<uint64_t> articleErrors{0};
  std::atomic<uint64_t> shipmentHits{0};  // updated directly by the shipment route
  std::atomic<uint64_t> shipmentMisses{0};
  std::atomic<uint64_t> shipmentErrors{0};
};

class AppMetrics {
 public:
  // `loops`: the number of worker loops (one LoopGauges each).
  explicit AppMetrics(int loops);
  AppMetrics(const AppMetrics&) = delete;
  AppMetrics& operator=(const AppMetrics&) = delete;

  obs::MetricsRegistry& registry() { return *registry_; }
  LoopGauges& loop(int index) { return *loops_.at(static_cast<size_t>(index)); }

  // Declares the shipping families and hands their handles to `shipping`.
  void bindShipping(shipping::ShippingShared& shipping);

  // One answered request (on a loop thread).
  void recordRequest(std::string_view method, int status, std::string_view route, double seconds);
  void observePoolWait(double seconds) const { poolWait_.observe(seconds); }
  void observeQuery(const char* label, double seconds) { queryDuration_->labels({label}).observe(seconds); }

 private:
  std::unique_ptr<obs::MetricsRegistry> registry_;
  std::vector<std::unique_ptr<LoopGauges>> loops_;
  obs::CounterFamily* requests_ = nullptr;
  obs::HistogramFamily* requestDuration_ = nullptr;
  obs::Histogram poolWait_;
  obs::HistogramFamily* queryDuration_ = nullptr;
};

// Copies ctx's pool and article cache counters into its LoopGauges (loop thread).
void refreshLoopGauges(AppContext& ctx);

namespace routes {

// GET /metrics: refreshes this loop's gauges and renders the registry (text format 0.0.4).
void metrics(RouteRequest& r);

}  // namespace routes

}  // namespace app
