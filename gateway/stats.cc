#include "gateway/stats.h"

#include "common/obs/metrics_process.h"
#include "gateway/runtime.h"

namespace gateway {
namespace {

constexpr http::UpstreamError kAllErrors[] = {
    http::UpstreamError::ConnectFailed, http::UpstreamError::ConnectTimeout, http::UpstreamError::PoolTimeout,
    http::UpstreamError::ReadTimeout,   http::UpstreamError::WriteTimeout,   http::UpstreamError::Reset,
    http::UpstreamError::Protocol};

}  // namespace

GatewayStats::GatewayStats(unsigned shards) : registry(std::make_unique<obs::MetricsRegistry>(shards)) {
  obs::MetricsRegistry& r = *registry;
  // method (bounded by obs::methodLabel) x code (bounded) x route (rule names + a few fixed words).
  requests = &r.counterFamily("gateway_requests_total", "Requests answered, by method, status code and route.",
                              {"method", "code", "route"}, 1024);
  requestDuration = &r.histogramFamily("gateway_request_duration_seconds",
                                       "Time from request head to the last response byte queued.", {"route"});
  upstreamRequests = &r.counterFamily("gateway_upstream_requests_total", "Upstream attempts, by outcome.", {"outcome"});
  upstreamSuccess = upstreamRequests->labels({"success"});
  for (http::UpstreamError e : kAllErrors) {
    upstreamErrors[static_cast<int>(e)] = upstreamRequests->labels({http::upstreamErrorName(e)});
  }
  upstreamCircuitOpen = upstreamRequests->labels({"circuit_open"});
  upstreamRetries = r.counter("gateway_upstream_retries_total", "Upstream attempts after the first.");
  concurrencyRejected =
      r.counter("gateway_concurrency_rejected_total", "Requests answered 503 because limit_concurrency was reached.");
  obs::CounterFamily& reloads =
      r.counterFamily("gateway_config_reloads_total", "Config reloads (SIGHUP or file change), by result.", {"result"});
  configReloadSuccess = reloads.labels({"success"});
  configReloadFailure = reloads.labels({"failure"});
  rateLimited = &r.counterFamily("gateway_rate_limited_total", "Requests answered 429, by rate-limit rule.", {"rule"});
  cacheRequests = &r.counterFamily("gateway_cache_requests_total", "Response cache lookups, by result.", {"result"});
  for (std::string_view result : {"hit", "miss", "bypass"}) {
    cacheRequests->labels({result});
  }
  compressedResponses = &r.counterFamily("gateway_compressed_responses_total",
                                         "Responses compressed by the gateway, by encoding.", {"encoding"});
  obs::registerProcessMetrics(r);
}

void GatewayStats::bindRuntime(const Runtime& rt) {
  obs::MetricsRegistry& r = *registry;
  r.callbackGauge("gateway_in_flight_requests", "Requests being handled now (limit_concurrency counts these).",
                  [&rt] { return static_cast<double>(rt.inFlight.load(std::memory_order_relaxed)); });
  r.callbackGauge("gateway_connections_active", "Open client connections.",
                  [&rt] { return static_cast<double>(rt.clientConnections.load(std::memory_order_relaxed)); });
  r.callbackGauge("gateway_circuit_breaker_state", "Upstream circuit breaker: 0 closed, 1 open, 2 half-open.",
                  [&rt] { return static_cast<double>(rt.policy()->breaker->stateValue()); });
  r.callbackCounter("gateway_trace_spans_dropped_total", "Spans dropped: queue full, export given up, or left at exit.",
                    [&rt] { return rt.tracer ? static_cast<double>(rt.tracer->droppedSpans()) : 0.0; });
  r.callbackCounter("gateway_trace_spans_exported_total", "Spans the OTLP exporter delivered.",
                    [&rt] { return rt.tracer ? static_cast<double>(rt.tracer->stats().exportedSpans) : 0.0; });
  obs::CallbackFamily& pool = r.callbackGaugeFamily("gateway_upstream_pool_connections",
                                                    "Upstream connections of the pool, by state.", {"state"});
  pool.add({"active"}, [&rt] { return static_cast<double>(rt.upstreamPoolStats.active.load()); });
  pool.add({"idle"}, [&rt] { return static_cast<double>(rt.upstreamPoolStats.idle.load()); });
  pool.add({"connecting"}, [&rt] { return static_cast<double>(rt.upstreamPoolStats.connecting.load()); });
}

obs::Counter GatewayStats::upstreamOutcome(http::UpstreamError error) const {
  return upstreamErrors[static_cast<int>(error)];
}

}  // namespace gateway
