#pragma once
// The OTLP/HTTP JSON exporter: a background thread running its own libuv loop (never a request
// loop) that drains the tracer's span queue in batches (maxBatch spans, or whatever is queued
// every maxDelay), POSTs them to the collector through the project's HTTP/1.1 client pool, and
// retries failures (connect errors, timeouts, resets, 408/429/5xx) with full-jitter exponential
// backoff, honouring Retry-After. A batch is given up after maxAttempts tries, or at once while
// the queue is over its watermark; other 4xx answers drop the batch without retry. Every span
// ends up counted as exported or dropped (ExportCounters). Internal to Tracer.
#include <uv.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/http/client.h"
#include "common/obs/trace/endpoint.h"
#include "common/obs/trace/otlp_json.h"
#include "common/obs/trace/span_queue.h"
#include "common/obs/trace/tracer.h"
#include "common/resilience/backoff.h"
#include "common/uv/handle.h"
#include "common/uv/timer.h"

namespace obs::trace {

class OtlpExporter : private http::ClientUser {
 public:
  // Sets up the loop and its handles on the calling thread; start() runs it on a new thread.
  OtlpExporter(HttpEndpoint endpoint, const ExportOptions& options, std::string_view serviceName,
               BoundedQueue<SpanData*>& queue, ExportCounters& counters);
  // Requests an immediate stop if shutdown() was not called, then waits for the thread.
  ~OtlpExporter() override;
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  void start();
  // Any thread: the queue holds a full batch. Coalesced: at most one wake-up is pending.
  void wake();
  // Any thread: flush within `timeout`, then stop. See Tracer::shutdown.
  bool shutdown(std::chrono::milliseconds timeout);

  bool running() const;
  bool loopClosed() const;

 private:
  enum class Phase { Idle, Sending, Waiting };

  void run();
  void teardown();
  static void onAsync(uv_async_t* handle);
  void onWake();
  void beginShutdown();
  void onFlushTick();
  void onRetryTimer();
  void onDeadline();
  void pump();
  bool takeBatch();
  void attempt();
  bool ensurePool();
  void retirePool();
  void sweepRetiredPools();
  void onResponse();
  void onAttemptFailed(const std::string& reason, bool connectFailure);
  void dropBatch(std::atomic<uint64_t>& counter);
  void finish(bool flushedAll);
  void logFailure(const std::string& reason);

  // http::ClientUser (loop thread).
  void onUpstreamReady(http::ClientConnection& conn) override;
  bool onUpstreamHead(http::ClientConnection& conn, http::MessageHead& head) override;
  bool onUpstreamBody(http::ClientConnection& conn, const char* data, size_t len) override;
  void onUpstreamComplete(http::ClientConnection& conn) override;
  void onUpstreamError(http::ClientConnection* conn, http::UpstreamError error) override;

  const HttpEndpoint endpoint_;
  const ExportOptions options_;
  const OtlpJsonEncoder encoder_;
  BoundedQueue<SpanData*>& queue_;
  ExportCounters& counters_;
  const resilience::BackoffPolicy backoff_;
  const resilience::JitterSource jitter_;
  size_t batchThreshold_;
  size_t watermarkSpans_;
  bool hostIsLiteral_;

  // Cross-thread state.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool asyncOpen_ = false;
  bool shutdownRequested_ = false;
  std::chrono::milliseconds shutdownTimeout_{0};
  bool done_ = false;  // the thread finished (loop closed)
  bool flushedAll_ = false;
  int loopCloseResult_ = -1;
  std::atomic<bool> wakePending_{false};
  std::atomic<bool> started_{false};
  std::mutex joinMu_;  // shutdown() may be called from several threads; join exactly once
  std::thread thread_;

  // Loop-thread state.
  uv_loop_t loop_{};
  uvx::OwnedHandle<uv_async_t> async_;
  std::unique_ptr<uvx::Timer> flushTimer_;
  std::unique_ptr<uvx::Timer> retryTimer_;
  std::unique_ptr<uvx::Timer> deadlineTimer_;
  http::PoolStats poolStats_;
  std::unique_ptr<http::ConnectionPool> pool_;
  std::vector<std::unique_ptr<http::ConnectionPool>> retiredPools_;
  http::ClientConnection* current_ = nullptr;
  Phase phase_ = Phase::Idle;
  bool flushPending_ = false;
  bool shuttingDown_ = false;
  bool finished_ = false;
  bool tornDown_ = false;
  std::vector<std::unique_ptr<SpanData>> scratch_;
  std::string body_;  // the encoded batch being exported (empty: no batch)
  size_t batchSpans_ = 0;
  int batchTries_ = 0;
  bool reusedRetryDone_ = false;
  std::string request_;
  int status_ = 0;
  uint64_t retryAfterMs_ = 0;
  std::string responseBody_;
  int consecutiveFailures_ = 0;
  int consecutiveConnectFailures_ = 0;
  uint64_t lastFailureLogMs_ = 0;
  bool failing_ = false;
};

}  // namespace obs::trace
