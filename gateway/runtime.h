#pragma once
// State shared by every worker of one gateway process: the immutable config and the counters
// that implement process-wide limits. Everything mutable here is atomic.
#include <atomic>
#include <cstdint>
#include <memory>

#include "common/config/app_config.h"
#include "common/http/client.h"
#include "common/resilience/backoff.h"
#include "common/resilience/circuit_breaker.h"
#include "common/resilience/failure.h"
#include "gateway/filters/filter.h"
#include "gateway/route.h"
#include "gateway/stats.h"

namespace gateway {

struct Runtime {
  cfg::Config config;
  http::PoolSettings upstreamPool;  // resolved once at startup
  FilterChain filters;              // built once at startup, shared read-only by workers

  std::atomic<int64_t> clientConnections{0};
  std::atomic<int64_t> inFlight{0};
  std::atomic<int> upstreamOpenConnections{0};
  std::atomic<bool> draining{false};
  std::atomic<bool> upstreamHealthy{false};
  std::atomic<bool> redisHealthy{false};  // probed only when rate limits use Redis
  http::PoolStats upstreamPoolStats;

  std::unique_ptr<GatewayStats> stats;  // set before workers start
  // Upstream resilience (CONTRACT §4), shared by every worker.
  std::unique_ptr<resilience::CircuitBreaker> breaker;
  resilience::FailureSet retryOn;          // gateway.upstream.retry.retry_on
  resilience::FailureSet breakerFailures;  // what counts against the breaker
  resilience::BackoffPolicy backoff;
  std::unique_ptr<RouteNamer> routes;

  const cfg::GatewayConfig& gateway() const { return config.gateway; }
};

}  // namespace gateway
