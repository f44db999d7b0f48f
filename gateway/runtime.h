#pragma once
// State shared by every worker of one gateway process: the startup config (for what only a
// restart changes: listeners, workers, the upstream address), the current reloadable Policy, and
// the counters that implement process-wide limits.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "common/config/app_config.h"
#include "common/http/client.h"
#include "common/resilience/backoff.h"
#include "common/resilience/circuit_breaker.h"
#include "common/resilience/failure.h"
#include "common/obs/trace/tracer.h"
#include "gateway/policy.h"
#include "gateway/stats.h"

namespace gateway {

struct Runtime {
  cfg::Config config;               // as loaded at startup
  http::PoolSettings upstreamPool;  // resolved once at startup

  std::atomic<int64_t> clientConnections{0};
  std::atomic<int64_t> inFlight{0};
  std::atomic<int> upstreamOpenConnections{0};
  std::atomic<bool> draining{false};
  std::atomic<bool> upstreamHealthy{false};
  std::atomic<bool> redisHealthy{false};  // probed only when rate limits use Redis
  http::PoolStats upstreamPoolStats;

  std::unique_ptr<GatewayStats> stats;  // set before workers start
  // gateway.tracing as loaded at startup (a reload that changes it is reported as needing a
  // restart); exports from its own thread.
  std::unique_ptr<obs::trace::Tracer> tracer;

  const cfg::GatewayConfig& gateway() const { return config.gateway; }

  // The current policy. Cheap to poll: compare policyGeneration with the one you hold.
  std::shared_ptr<const Policy> policy() const {
    std::lock_guard lock(policyMu_);
    return policy_;
  }
  void publish(std::shared_ptr<const Policy> p) {
    const uint64_t generation = p->generation;
    {
      std::lock_guard lock(policyMu_);
      policy_ = std::move(p);
    }
    policyGeneration.store(generation, std::memory_order_release);
  }
  std::atomic<uint64_t> policyGeneration{0};

 private:
  mutable std::mutex policyMu_;
  std::shared_ptr<const Policy> policy_;
};

}  // namespace gateway
