#pragma once
// The gateway's request path for client listeners: health endpoints, the concurrency limit, and
// the reverse proxy to the upstream pool with streaming both ways, retries and timeouts.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/http/client.h"
#include "common/http/server.h"
#include "common/obs/trace/span.h"
#include "common/resilience/backoff.h"
#include "common/resilience/circuit_breaker.h"
#include "common/resilience/failure.h"
#include "common/uv/deadline_timer.h"
#include "common/uv/timer.h"
#include "gateway/filters/filter.h"
#include "gateway/runtime.h"

namespace redisx {
class RedisClient;
}

namespace gateway {

// Per-loop context the handlers of one worker share.
struct WorkerContext {
  Runtime& runtime;
  uv_loop_t* loop;
  http::ConnectionPool& upstreamPool;
  // Runs `task` on this worker's loop thread; callable from any thread.
  std::function<void(std::function<void()>)> post;
  // This loop's Redis connection (rate limits); null when no rule needs Redis.
  redisx::RedisClient* redis = nullptr;
};

// One instance per client connection; handles that connection's exchanges one after another.
class ProxyHandler : public http::RequestHandler, public http::ClientUser, public FilterCallbacks {
 public:
  explicit ProxyHandler(WorkerContext& ctx);
  ~ProxyHandler() override;

  // http::RequestHandler
  void onRequestHead(http::ServerConnection& c) override;
  void onRequestBody(http::ServerConnection& c, const char* data, size_t len) override;
  void onRequestEnd(http::ServerConnection& c) override;
  void onDownstreamDrained(http::ServerConnection& c) override;
  void onExchangeAborted(http::ServerConnection& c) override;
  void onExchangeComplete(http::ServerConnection& c) override;
  // Between exchanges a handler holds only the worker's policy and its filters' reusable state.
  bool reusable() const override { return phase_ == Phase::Idle && upstream_ == nullptr && !inFlightCounted_; }

  // http::ClientUser
  void onUpstreamReady(http::ClientConnection& conn) override;
  bool onUpstreamHead(http::ClientConnection& conn, http::MessageHead& head) override;
  bool onUpstreamBody(http::ClientConnection& conn, const char* data, size_t len) override;
  void onUpstreamComplete(http::ClientConnection& conn) override;
  void onUpstreamError(http::ClientConnection* conn, http::UpstreamError error) override;
  void onUpstreamDrained(http::ClientConnection& conn) override;

  // FilterCallbacks
  const http::MessageHead& request() const override { return conn_->request(); }
  std::string_view path() const override;
  const std::string& clientIp() const override { return conn_->clientIp(); }
  const std::string& requestId() const override { return conn_->requestId(); }
  uv_loop_t* loop() const override { return ctx_.loop; }
  void sendLocalReply(int status, std::string_view contentType, std::string_view body,
                      std::string_view extraHeaders = {}) override;
  void sendLocalResponse(ResponseHead& head, std::string_view body) override;
  void sendLocalError(int status, std::string_view message, std::string_view extraHeaders = {}) override;
  void continueRequest() override;
  void setCacheStatus(std::string_view status) override { cacheStatus_ = status; }

 private:
  enum class Phase { Idle, Local, Filtering, Acquiring, Proxying, Backoff, Done };

  void runRequestFilters(size_t from);
  void startServerSpan(const http::MessageHead& req);
  void startProxy();
  // Runs the response hooks (last filter first), then writes the head.
  void sendHead(ResponseHead& head);
  // Sends body bytes through the filters that transform it.
  void sendBody(std::string_view data, bool end);
  // Writes the (possibly held) head to the client.
  void writeHead(ResponseHead& head);
  // Releases a held head: after the whole body (end) or when it outgrew the limit.
  void releaseHeldHead(bool complete);
  void finishFilters(bool aborted);

  void buildUpstreamHead(const http::ServerConnection& c);
  void startAttempt();
  void queueBody(std::string_view framed);
  // Schedules the next attempt when the failure, the method and the body allow it (CONTRACT §4).
  bool scheduleRetry(resilience::FailureKind kind, int status, bool immediate);
  // For a retryable 5xx head: the body is read and dropped, then the retry starts.
  bool scheduleRetryAfterResponse(int status);
  void onRequestTimeout();
  // The one place an upstream failure becomes a status code and a JSON error.
  void replyUpstreamError(http::UpstreamError error);
  void releaseUpstream();
  void resetExchange();

  // Takes the current policy (and new filter instances) if a reload published one.
  void refreshPolicy();

  WorkerContext& ctx_;
  std::shared_ptr<const Policy> policy_;  // the one this connection's filters were made from
  std::vector<std::unique_ptr<HttpFilter>> filters_;
  std::vector<HttpFilter*> bodyFilters_;  // of the current response
  size_t nextFilter_ = 0;
  bool filtersEngaged_ = false;
  ResponseHead responseHead_;
  std::string bodyScratch_[2];
  size_t holdLimit_ = 0;  // > 0 while the head is held for a filter that needs the whole body
  std::string heldBody_;
  http::ServerConnection* conn_ = nullptr;
  http::ClientConnection* upstream_ = nullptr;
  uvx::DeadlineTimer requestTimer_;
  uvx::Timer backoffTimer_;
  Phase phase_ = Phase::Idle;
  std::string upstreamHead_;
  std::string responseHeaders_;  // serialized head, reused per response
  std::string pendingBody_;  // framed body bytes not yet handed to an upstream connection
  std::string replayBody_;   // framed body bytes already sent, kept while small enough to resend
  bool bodySentUnreplayable_ = false;
  bool requestEnded_ = false;
  bool inFlightCounted_ = false;
  bool chunkedBody_ = false;
  bool responseHeadSent_ = false;
  obs::trace::Span span_;  // the request's server span (empty when not sampled or tracing is off)
  std::string parentTracestate_;
  std::string_view cacheStatus_ = "BYPASS";  // static strings only
  std::optional<resilience::RetryState> retry_;
  resilience::CircuitBreaker::Permit permit_;
  bool discardResponse_ = false;
  uint64_t pendingRetryDelayMs_ = 0;
  std::string lastError_;
  std::chrono::steady_clock::time_point upstreamStart_{};
  double upstreamMs_ = -1;
  // The request metrics' series of this connection's last exchange: a keep-alive connection
  // usually repeats them, and resolving labels costs more than the rest of the accounting.
  struct RequestSeries {
    const void* stats = nullptr;
    std::string_view method;  // static label strings
    std::string_view code;
    std::string route;  // a copy: the policy that named it may be replaced by a reload
    obs::Counter requests;
    obs::Histogram duration;
  };
  RequestSeries lastSeries_;
};

}  // namespace gateway
