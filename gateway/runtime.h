#pragma once
// State shared by every worker of one gateway process: the immutable config and the counters
// that implement process-wide limits. Everything mutable here is atomic.
#include <atomic>
#include <cstdint>

#include "common/config/app_config.h"
#include "common/http/client.h"
#include "gateway/filters/filter.h"

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
  http::PoolStats upstreamPoolStats;

  std::atomic<uint64_t> requestsTotal{0};
  std::atomic<uint64_t> concurrencyRejected{0};
  std::atomic<uint64_t> upstreamRetries{0};

  const cfg::GatewayConfig& gateway() const { return config.gateway; }
};

}  // namespace gateway
