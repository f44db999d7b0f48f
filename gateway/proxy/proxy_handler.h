#pragma once
// The gateway's request path for client listeners: health endpoints, the concurrency limit, and
// the reverse proxy to the upstream pool with streaming both ways, retries and timeouts.
#include <chrono>
#include <cstdint>
#include <string>

#include "common/http/client.h"
#include "common/http/server.h"
#include "common/uv/timer.h"
#include "gateway/runtime.h"

namespace gateway {

// Per-loop context the handlers of one worker share.
struct WorkerContext {
  Runtime& runtime;
  uv_loop_t* loop;
  http::ConnectionPool& upstreamPool;
};

// One instance per client connection; handles that connection's exchanges one after another.
class ProxyHandler : public http::RequestHandler, public http::ClientUser {
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

  // http::ClientUser
  void onUpstreamReady(http::ClientConnection& conn) override;
  bool onUpstreamHead(http::ClientConnection& conn, http::MessageHead& head) override;
  bool onUpstreamBody(http::ClientConnection& conn, const char* data, size_t len) override;
  void onUpstreamComplete(http::ClientConnection& conn) override;
  void onUpstreamError(http::ClientConnection* conn, http::UpstreamError error) override;
  void onUpstreamDrained(http::ClientConnection& conn) override;

 private:
  enum class Phase { Idle, Local, Acquiring, Proxying, Backoff, Done };

  void buildUpstreamHead(const http::ServerConnection& c);
  void startAttempt();
  void queueBody(std::string_view framed);
  bool canRetry(http::UpstreamError error) const;
  void onRequestTimeout();
  // The one place an upstream failure becomes a status code and a JSON error.
  void replyUpstreamError(http::UpstreamError error);
  void releaseUpstream();
  void resetExchange();

  WorkerContext& ctx_;
  http::ServerConnection* conn_ = nullptr;
  http::ClientConnection* upstream_ = nullptr;
  uvx::Timer requestTimer_;
  uvx::Timer backoffTimer_;
  Phase phase_ = Phase::Idle;
  std::string upstreamHead_;
  std::string responseHeaders_;  // reused per response
  std::string pendingBody_;  // framed body bytes not yet handed to an upstream connection
  std::string replayBody_;   // framed body bytes already sent, kept while small enough to resend
  bool bodySentUnreplayable_ = false;
  bool requestEnded_ = false;
  bool inFlightCounted_ = false;
  bool chunkedBody_ = false;
  bool responseHeadSent_ = false;
  int attempt_ = 0;
  int retries_ = 0;
  std::string lastError_;
  std::chrono::steady_clock::time_point upstreamStart_{};
  double upstreamMs_ = -1;
};

}  // namespace gateway
