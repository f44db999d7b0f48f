#pragma once
// Every metric the gateway exports (CONTRACT §4 "Metrics"), declared once at startup. Workers
// update them lock-free (per-worker shards); /metrics on the admin listener renders the sum.
#include <memory>
#include <string_view>

#include "common/http/client.h"
#include "common/obs/metrics.h"

namespace gateway {

struct Runtime;

struct GatewayStats {
  explicit GatewayStats(unsigned shards);

  // Callback gauges that read Runtime's atomics at scrape time.
  void bindRuntime(const Runtime& rt);
  obs::Counter upstreamOutcome(http::UpstreamError error) const;

  std::unique_ptr<obs::MetricsRegistry> registry;
  obs::CounterFamily* requests = nullptr;         // gateway_requests_total{method,code,route}
  obs::HistogramFamily* requestDuration = nullptr;  // gateway_request_duration_seconds{route}
  obs::CounterFamily* upstreamRequests = nullptr;  // gateway_upstream_requests_total{outcome}
  obs::Counter upstreamSuccess;
  obs::Counter upstreamErrors[8];                  // indexed by http::UpstreamError
  obs::Counter upstreamCircuitOpen;
  obs::Counter upstreamRetries;
  obs::Counter concurrencyRejected;
  obs::Counter configReloadSuccess;               // gateway_config_reloads_total{result}
  obs::Counter configReloadFailure;
  obs::CounterFamily* rateLimited = nullptr;       // gateway_rate_limited_total{rule}
  obs::CounterFamily* cacheRequests = nullptr;     // gateway_cache_requests_total{result}
  obs::CounterFamily* compressedResponses = nullptr;  // gateway_compressed_responses_total{encoding}
};

}  // namespace gateway
