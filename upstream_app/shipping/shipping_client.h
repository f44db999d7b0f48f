#pragma once
// The app's client for the external shipping service (CONTRACT §5 `GET /orders/{id}/shipment`):
// `GET <shipping.base_url>/shipments/<id>` over the project's pooled HTTP/1.1 client, with
// timeouts, retries with full-jitter backoff and a circuit breaker.
//
//   ShippingShared  one per process (built before the loops start): the parsed and resolved
//                   base_url, the circuit breaker shared by every loop, the process-wide
//                   connection count (shipping.max_connections holds for the whole process) and
//                   the pool gauges.
//   ShippingClient  one per loop: that loop's http::ConnectionPool and the calls in flight.
//
// One fetch():
//   for each try (at most shipping.retry.attempts):
//     breaker.tryAcquire(): refused -> CircuitOpen at once, the service is not contacted
//                           (also when a retry is refused: the breaker opened meanwhile);
//     connection from the pool (pool_timeout), request, response (connect_timeout,
//     read_timeout between bytes);
//     the try's outcome goes to the breaker: connect errors, timeouts, resets, unparsable
//     answers and 5xx are failures (FailureSet::breakerDefault), any other answer a success;
//     retried after uniform[0, min(backoff_max, backoff_base * 2^retry)] when it failed with a
//     condition of shipping.retry.retry_on (default connect_failure, reset, 502, 503, 504) or
//     with a read/connect timeout: the lookup is a GET, so a timed-out try is always safe to
//     repeat.
//   PoolTimeout (every allowed connection busy for pool_timeout) is local congestion, not a
//   service failure: not retried, not counted by the breaker.
//
// Outcome -> the route's answer (answerFor):
//   Ok          200 with the service's JSON (2xx only)
//   NotFound    404 "shipment not found" (the service said 404)
//   CircuitOpen 503 "shipping unavailable" (+ Retry-After: 1)
//   PoolBusy    503 "shipping unavailable" (+ Retry-After: 1)
//   Timeout     504 "shipping timeout" (the last try timed out: read_timeout or connect_timeout)
//   BadGateway  502 "shipping error" (connect failure, reset, bad answer, 5xx or another status,
//               after the retries)
//   Unusable    503 "shipping unavailable": base_url is not plain http or did not resolve
//               (logged once at startup)
//
// Tracing: fetch() captures the calling thread's current span (obs::trace::SpanParent). Each try
// sends a W3C `traceparent` (and `tracestate`): when the request is sampled, that of a CLIENT span
// per try (http.request.method, server.address/port, url.full, http.request.resend_count,
// http.response.status_code; Error on 4xx/5xx and on failures without an answer, error.type =
// the try outcome); otherwise the request span's own context, so the service follows our
// sampling decision. The callback runs inside CurrentSpanScope(parent).
//
// Threading: ShippingShared may be used from every loop (breaker: mutex; counters: atomics);
// a ShippingClient only on its loop.
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/config/app_config.h"
#include "common/http/client.h"
#include "common/obs/metrics.h"
#include "common/resilience/circuit_breaker.h"
#include "common/resilience/failure.h"
#include "common/uv/timer.h"

namespace app::shipping {

// "http://host[:port][/prefix]" -> host, port (80 by default), prefix without a trailing '/'.
struct BaseUrl {
  std::string host;
  uint16_t port = 80;
  std::string pathPrefix;  // "" or "/v1"
};
// nullopt for anything but plain http (https is refused: this client speaks cleartext only),
// a missing host, a bad port, a query or fragment, or userinfo; *error says why.
std::optional<BaseUrl> parseBaseUrl(std::string_view url, std::string* error);

enum class Outcome { Ok, NotFound, CircuitOpen, PoolBusy, Timeout, BadGateway, Unusable };
const char* outcomeName(Outcome o);

struct Answer {
  int status = 200;
  const char* error = nullptr;  // the error message, null for Ok
  bool retryAfter = false;      // add Retry-After: 1
};
Answer answerFor(Outcome o);

// How one try ended: the label of http_client_requests_total{outcome}.
enum class TryOutcome : int {
  Success,        // an HTTP answer below 500
  ServerError,    // an HTTP 5xx answer
  ConnectFailed,  // refused, unreachable
  ConnectTimeout,
  PoolTimeout,
  ReadTimeout,
  WriteTimeout,
  Reset,
  Protocol,     // unparsable response, body too large, or a 2xx body that is not JSON
  CircuitOpen,  // refused by the breaker, the service was not contacted
  Count,
};
const char* tryOutcomeName(TryOutcome o);

// The transport-level FailureKind and status a try ended with (for retry_on and the breaker).
struct TryResult {
  TryOutcome outcome = TryOutcome::Success;
  resilience::FailureKind kind = resilience::FailureKind::None;
  int status = 0;
};
TryResult tryResultFor(http::UpstreamError e);

// Metric handles; default-constructed ones are detached (tests).
struct ShippingMetrics {
  obs::Counter tries[static_cast<int>(TryOutcome::Count)];
  obs::Counter retries;
  obs::Histogram tryDuration;
};

class ShippingShared {
 public:
  // Parses and resolves shipping.base_url (getaddrinfo: call before the loops start).
  explicit ShippingShared(const cfg::ShippingConfig& config, algo::NowFn now = algo::steadyNow());
  ShippingShared(const ShippingShared&) = delete;
  ShippingShared& operator=(const ShippingShared&) = delete;

  bool usable() const { return usable_; }
  const std::string& error() const { return error_; }
  const cfg::ShippingConfig& config() const { return config_; }
  resilience::CircuitBreaker& breaker() { return breaker_; }
  const resilience::FailureSet& retryOn() const { return retryOn_; }
  const resilience::FailureSet& breakerFailures() const { return breakerFailures_; }
  // Pool settings for one loop (address, limits, timeouts, the shared connection counter).
  const http::PoolSettings& poolSettings() const { return poolSettings_; }
  http::PoolStats& poolStats() { return poolStats_; }
  const std::string& pathPrefix() const { return pathPrefix_; }
  // base_url's host and port (span attributes server.address / server.port), and base_url
  // without a trailing '/' (url.full is it + "/shipments/<id>").
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  const std::string& baseUrl() const { return baseUrl_; }
  ShippingMetrics& metrics() { return metrics_; }
  void setMetrics(ShippingMetrics m) { metrics_ = std::move(m); }

 private:
  cfg::ShippingConfig config_;
  bool usable_ = false;
  std::string error_;
  resilience::CircuitBreaker breaker_;
  resilience::FailureSet retryOn_;
  resilience::FailureSet breakerFailures_;
  std::atomic<int> openConnections_{0};
  http::PoolSettings poolSettings_;
  http::PoolStats poolStats_;
  std::string pathPrefix_;
  std::string host_;
  uint16_t port_ = 0;
  std::string baseUrl_;
  ShippingMetrics metrics_;
};

struct ShipmentResult {
  Outcome outcome = Outcome::Unusable;
  int status = 0;     // the service's last HTTP status (0 when none arrived)
  std::string body;   // the service's body on Ok (validated JSON)
  int tries = 0;      // tries that reached the pool (breaker refusals excluded)
  std::string detail; // for logs: the last failure ("read_timeout", "status 503", ...)
};

class ShippingClient {
 public:
  using Callback = std::function<void(ShipmentResult)>;

  ShippingClient(uv_loop_t* loop, ShippingShared& shared);
  ~ShippingClient();
  ShippingClient(const ShippingClient&) = delete;
  ShippingClient& operator=(const ShippingClient&) = delete;

  // GET /shipments/<shipmentId>; cb runs exactly once, never inside fetch(). After close(), cb
  // runs (asynchronously) with Unusable.
  void fetch(int64_t shipmentId, Callback cb);

  // Shutdown: drops calls in flight without calling back, abandons their connections, closes
  // idle ones and the timers. Safe to call twice.
  void close();

  size_t inFlight() const { return calls_.size(); }

 private:
  class Call;
  friend class Call;
  void retire(Call* call);
  void reap();

  uv_loop_t* loop_;
  ShippingShared& shared_;
  std::unique_ptr<http::ConnectionPool> pool_;
  std::unordered_map<Call*, std::unique_ptr<Call>> calls_;
  std::vector<std::unique_ptr<Call>> dead_;  // finished, deleted on the next loop turn
  uvx::Timer reaper_;
  bool closed_ = false;
};

}  // namespace app::shipping
