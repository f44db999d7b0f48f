#pragma once
// Everything a request reads that a config reload may change, built once per (re)load and then
// immutable. Workers pick up a new Policy between exchanges: requests in flight finish under the
// policy they started with, and no connection is dropped.
#include <cstdint>
#include <memory>

#include "common/config/app_config.h"
#include "common/resilience/backoff.h"
#include "common/resilience/circuit_breaker.h"
#include "common/resilience/failure.h"
#include "gateway/filters/filter.h"
#include "gateway/route.h"

namespace gateway {

struct Policy {
  uint64_t generation = 0;
  cfg::Config config;
  FilterChain filters;
  std::unique_ptr<RouteNamer> routes;
  resilience::FailureSet retryOn;          // gateway.upstream.retry.retry_on
  resilience::FailureSet breakerFailures;  // what counts against the breaker
  resilience::BackoffPolicy backoff;
  // Kept across reloads while gateway.upstream.circuit_breaker is unchanged, so a reload does
  // not close an open breaker.
  std::shared_ptr<resilience::CircuitBreaker> breaker;

  const cfg::GatewayConfig& gateway() const { return config.gateway; }
};

std::shared_ptr<const Policy> buildPolicy(cfg::Config config, uint64_t generation, const Policy* previous);

}  // namespace gateway
