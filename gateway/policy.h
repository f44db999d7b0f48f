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
#include "common/uv/tls.h"
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
  // gateway.tls: certificate and key as loaded for this policy (null: plain HTTP).
  std::shared_ptr<uvx::TlsContext> tls;

  const cfg::GatewayConfig& gateway() const { return config.gateway; }
};

// `tls` was loaded off the event loops (loadTls); null when gateway.tls is not set.
std::shared_ptr<const Policy> buildPolicy(cfg::Config config, uint64_t generation, const Policy* previous,
                                          std::shared_ptr<uvx::TlsContext> tls);
// Loads gateway.tls (blocking file reads). Returns false with `error` set when it is set but bad.
bool loadTls(const cfg::GatewayConfig& g, std::shared_ptr<uvx::TlsContext>& out, std::string& error);

}  // namespace gateway
