#include "gateway/policy.h"

#include "common/obs/log.h"
#include "gateway/filters/registry.h"

namespace gateway {
namespace {

bool sameBreakerSettings(const cfg::CircuitBreakerConfig& a, const cfg::CircuitBreakerConfig& b) {
  return a.failure_ratio == b.failure_ratio && a.min_requests == b.min_requests && a.window == b.window &&
         a.open_duration == b.open_duration && a.half_open_requests == b.half_open_requests;
}

}  // namespace

bool loadTls(const cfg::GatewayConfig& g, std::shared_ptr<uvx::TlsContext>& out, std::string& error) {
  out.reset();
  if (g.tls.cert_file.empty()) {
    return true;
  }
  out = uvx::TlsContext::loadServer(g.tls.cert_file, g.tls.key_file, error);
  return out != nullptr;
}

std::shared_ptr<const Policy> buildPolicy(cfg::Config config, uint64_t generation, const Policy* previous,
                                          std::shared_ptr<uvx::TlsContext> tls) {
  auto p = std::make_shared<Policy>();
  p->tls = std::move(tls);
  p->generation = generation;
  p->config = std::move(config);
  const cfg::GatewayConfig& g = p->config.gateway;
  p->filters = buildFilterChain(p->config);
  p->routes = std::make_unique<RouteNamer>(g);
  p->retryOn = *resilience::FailureSet::parse(g.upstream.retry.retry_on);  // validated at load
  p->breakerFailures = resilience::FailureSet::breakerDefault();
  p->backoff = resilience::BackoffPolicy::fromConfig(g.upstream.retry);
  if (previous != nullptr && sameBreakerSettings(previous->gateway().upstream.circuit_breaker, g.upstream.circuit_breaker)) {
    p->breaker = previous->breaker;
  } else {
    p->breaker = std::make_shared<resilience::CircuitBreaker>(
        resilience::CircuitBreaker::Options::fromConfig(g.upstream.circuit_breaker));
    p->breaker->setTransitionHook([](resilience::CircuitBreaker::State from, resilience::CircuitBreaker::State to) {
      static constexpr const char* kNames[] = {"closed", "open", "half_open"};
      obs::warn("circuit breaker state change", obs::LogFields()
                                                    .str("from", kNames[static_cast<int>(from)])
                                                    .str("to", kNames[static_cast<int>(to)]));
    });
  }
  return p;
}

}  // namespace gateway
