#include "common/obs/trace/exporter.h"

#include <arpa/inet.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <charconv>

#include "common/obs/log.h"
#include "common/uv/tcp_stream.h"

namespace obs::trace {
namespace {

constexpr size_t kMaxResponseBodyBytes = 64 * 1024;
constexpr uint64_t kFailureLogIntervalMs = 30'000;
// Consecutive connect failures after which a host name is resolved again (the collector may
// have moved, e.g. a rescheduled pod behind a headless service).
constexpr int kReResolveAfterConnectFailures = 3;

bool isIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool retryableStatus(int status) { return status == 408 || status == 429 || status >= 500; }

// Retry-After as delay-seconds (the HTTP-date form is rare from collectors and ignored).
uint64_t parseRetryAfterMs(const std::string* value) {
  if (value == nullptr) {
    return 0;
  }
  const std::string_view v = http::trim(*value);
  uint64_t seconds = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (r.ec != std::errc() || r.ptr != v.data() + v.size() || seconds > 3600) {
    return 0;
  }
  return seconds * 1000;
}

// partialSuccess.rejectedSpans of an ExportTraceServiceResponse (int64: a string or a number).
uint64_t rejectedSpans(const std::string& body) {
  if (body.empty()) {
    return 0;
  }
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return 0;
  }
  const auto ps = doc.FindMember("partialSuccess");
  if (ps == doc.MemberEnd() || !ps->value.IsObject()) {
    return 0;
  }
  const auto rs = ps->value.FindMember("rejectedSpans");
  if (rs == ps->value.MemberEnd()) {
    return 0;
  }
  if (rs->value.IsUint64()) {
    return rs->value.GetUint64();
  }
  if (rs->value.IsString()) {
    uint64_t n = 0;
    const char* s = rs->value.GetString();
    const auto r = std::from_chars(s, s + rs->value.GetStringLength(), n);
    return r.ec == std::errc() ? n : 0;
  }
  return 0;
}

}  // namespace

OtlpExporter::OtlpExporter(HttpEndpoint endpoint, const ExportOptions& options, std::string_view serviceName,
                           BoundedQueue<SpanData*>& queue, ExportCounters& counters)
    : endpoint_(std::move(endpoint)),
      options_(options),
      encoder_(serviceName),
      queue_(queue),
      counters_(counters),
      backoff_{std::max(1, options.maxAttempts), options.backoffBase, options.backoffMax},
      jitter_(resilience::defaultJitter()),
      batchThreshold_(std::max<size_t>(1, std::min(options.maxBatch, queue.capacity() / 2))),
      watermarkSpans_(
          static_cast<size_t>(std::clamp(options.dropWatermark, 0.0, 1.0) * static_cast<double>(queue.capacity()))),
      hostIsLiteral_(isIpLiteral(endpoint_.host)) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, async_.get(), &OtlpExporter::onAsync);
  async_.markInitialized();
  async_.get()->data = this;
  asyncOpen_ = true;
  flushTimer_ = std::make_unique<uvx::Timer>(&loop_, [this] { onFlushTick(); });
  retryTimer_ = std::make_unique<uvx::Timer>(&loop_, [this] { onRetryTimer(); });
  deadlineTimer_ = std::make_unique<uvx::Timer>(&loop_, [this] { onDeadline(); });
  const auto tick = static_cast<uint64_t>(std::max<int64_t>(1, options_.maxDelay.count()));
  flushTimer_->start(tick, tick);
  scratch_.reserve(std::max<size_t>(1, options_.maxBatch));
}

OtlpExporter::~OtlpExporter() {
  shutdown(std::chrono::milliseconds(0));
  {
    std::lock_guard lock(joinMu_);
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  if (!tornDown_) {
    // start() never ran: the loop is still ours to close on this thread.
    finish(false);
    uv_run(&loop_, UV_RUN_DEFAULT);
    teardown();
  }
}

void OtlpExporter::start() {
  std::lock_guard lock(joinMu_);
  thread_ = std::thread([this] { run(); });
  started_.store(true, std::memory_order_release);
}

void OtlpExporter::run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  teardown();
}

void OtlpExporter::teardown() {
  pool_.reset();
  retiredPools_.clear();
  flushTimer_.reset();
  retryTimer_.reset();
  deadlineTimer_.reset();
  async_.close();
  uvx::releaseLoopState(&loop_);
  uv_run(&loop_, UV_RUN_DEFAULT);  // close callbacks free every handle's memory
  const int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    obs::LogFields f;
    f.str("error", uv_err_name(rc));
    obs::error("trace exporter loop did not close cleanly", f);
  }
  tornDown_ = true;
  {
    std::lock_guard lock(mu_);
    loopCloseResult_ = rc;
    done_ = true;
  }
  cv_.notify_all();
}

void OtlpExporter::wake() {
  if (wakePending_.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  std::lock_guard lock(mu_);
  if (asyncOpen_) {
    uv_async_send(async_.get());
  }
}

bool OtlpExporter::shutdown(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  if (!shutdownRequested_) {
    shutdownRequested_ = true;
    shutdownTimeout_ = std::max(timeout, std::chrono::milliseconds(0));
    if (asyncOpen_) {
      uv_async_send(async_.get());
    }
  }
  if (!started_.load(std::memory_order_acquire)) {
    return done_ && flushedAll_;
  }
  cv_.wait_until(lock, deadline, [this] { return done_; });
  const bool done = done_;
  const bool flushed = flushedAll_;
  lock.unlock();
  if (done) {
    std::lock_guard joinLock(joinMu_);
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  return done && flushed;
}

bool OtlpExporter::running() const {
  std::lock_guard lock(mu_);
  return started_.load(std::memory_order_acquire) && !done_;
}

bool OtlpExporter::loopClosed() const {
  std::lock_guard lock(mu_);
  return done_ && loopCloseResult_ == 0;
}

void OtlpExporter::onAsync(uv_async_t* handle) {
  if (auto* self = static_cast<OtlpExporter*>(handle->data)) {
    self->onWake();
  }
}

void OtlpExporter::onWake() {
  wakePending_.store(false, std::memory_order_release);
  bool stop = false;
  {
    std::lock_guard lock(mu_);
    stop = shutdownRequested_;
  }
  if (stop && !shuttingDown_) {
    beginShutdown();
  }
  pump();
}

void OtlpExporter::beginShutdown() {
  shuttingDown_ = true;
  flushPending_ = true;
  std::chrono::milliseconds timeout;
  {
    std::lock_guard lock(mu_);
    timeout = shutdownTimeout_;
  }
  // Leave a little of the caller's budget for closing the loop, so shutdown() sees us done.
  const auto margin = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(50), timeout / 10);
  const auto budget = timeout - margin;
  if (budget.count() <= 0) {
    onDeadline();
    return;
  }
  deadlineTimer_->start(static_cast<uint64_t>(budget.count()));
}

void OtlpExporter::onFlushTick() {
  sweepRetiredPools();
  flushPending_ = true;
  pump();
}

void OtlpExporter::onRetryTimer() {
  phase_ = Phase::Idle;
  pump();
}

void OtlpExporter::onDeadline() {
  if (finished_) {
    return;
  }
  // Whatever is still here was not confirmed by the collector: counted as dropped at shutdown.
  if (!body_.empty()) {
    dropBatch(counters_.droppedShutdown);
  }
  SpanData* s = nullptr;
  uint64_t left = 0;
  while (queue_.tryPop(s)) {
    delete s;
    ++left;
  }
  counters_.droppedShutdown.fetch_add(left, std::memory_order_relaxed);
  finish(false);
}

void OtlpExporter::pump() {
  if (finished_ || phase_ != Phase::Idle) {
    return;
  }
  if (body_.empty()) {
    const size_t queued = queue_.sizeApprox();
    if (queued == 0) {
      flushPending_ = false;
      if (shuttingDown_) {
        finish(true);
      }
      return;
    }
    if (queued < batchThreshold_ && !flushPending_ && !shuttingDown_) {
      return;  // wait for a full batch or the next tick
    }
    if (!takeBatch()) {
      return;
    }
  }
  attempt();
}

bool OtlpExporter::takeBatch() {
  scratch_.clear();
  SpanData* s = nullptr;
  while (scratch_.size() < options_.maxBatch && queue_.tryPop(s)) {
    scratch_.emplace_back(s);
  }
  if (scratch_.empty()) {
    return false;
  }
  encoder_.encode(scratch_, body_);
  batchSpans_ = scratch_.size();
  batchTries_ = 0;
  reusedRetryDone_ = false;
  scratch_.clear();  // the spans live on only as JSON
  request_.clear();
  request_.append("POST ").append(endpoint_.path).append(" HTTP/1.1\r\nHost: ").append(endpoint_.hostHeader);
  request_.append("\r\nContent-Type: application/json\r\nContent-Length: ").append(std::to_string(body_.size()));
  request_.append("\r\nUser-Agent: sidecar-otlp-exporter\r\n\r\n");
  return true;
}

bool OtlpExporter::ensurePool() {
  if (pool_) {
    return true;
  }
  // getaddrinfo blocks, but only this exporter's own loop, never a request loop.
  sockaddr_storage addr{};
  std::string error;
  if (!http::resolveAddress(endpoint_.host, endpoint_.port, addr, error)) {
    logFailure(error);
    return false;
  }
  http::PoolSettings s;
  s.address = addr;
  s.hostHeader = endpoint_.hostHeader;
  s.maxConnections = 1;  // one POST at a time: batches go out in order
  s.maxIdleConnections = 1;
  s.idleTimeoutMs = 4'000;  // below common server keep-alive timeouts, so we close first
  s.connectTimeoutMs = static_cast<uint64_t>(std::max<int64_t>(1, options_.connectTimeout.count()));
  s.readTimeoutMs = static_cast<uint64_t>(std::max<int64_t>(1, options_.requestTimeout.count()));
  s.writeTimeoutMs = s.readTimeoutMs;
  s.poolTimeoutMs = s.readTimeoutMs;
  s.sharedOpenConnections = nullptr;
  pool_ = std::make_unique<http::ConnectionPool>(&loop_, s, &poolStats_);
  return true;
}

void OtlpExporter::retirePool() {
  if (!pool_) {
    return;
  }
  // Its closing connections still call back into it: keep it until they are gone.
  pool_->closeIdle();
  retiredPools_.push_back(std::move(pool_));
}

void OtlpExporter::sweepRetiredPools() {
  std::erase_if(retiredPools_,
                [](const std::unique_ptr<http::ConnectionPool>& p) { return p->openConnections() == 0; });
}

void OtlpExporter::attempt() {
  if (!ensurePool()) {
    onAttemptFailed("cannot resolve " + endpoint_.host, false);
    return;
  }
  phase_ = Phase::Sending;
  status_ = 0;
  retryAfterMs_ = 0;
  responseBody_.clear();
  pool_->acquire(this);  // may call back before returning
}

void OtlpExporter::onUpstreamReady(http::ClientConnection& conn) {
  current_ = &conn;
  conn.send(request_);
  conn.send(body_);
  conn.requestSent();
}

bool OtlpExporter::onUpstreamHead(http::ClientConnection&, http::MessageHead& head) {
  status_ = head.status;
  if (head.status == 429 || head.status == 503) {
    retryAfterMs_ = parseRetryAfterMs(head.headers.find("Retry-After"));
  }
  return true;
}

bool OtlpExporter::onUpstreamBody(http::ClientConnection&, const char* data, size_t len) {
  const size_t room = kMaxResponseBodyBytes - std::min(kMaxResponseBodyBytes, responseBody_.size());
  responseBody_.append(data, std::min(room, len));
  return true;
}

void OtlpExporter::onUpstreamComplete(http::ClientConnection& conn) {
  current_ = nullptr;
  conn.release(true);
  onResponse();
}

void OtlpExporter::onUpstreamError(http::ClientConnection* conn, http::UpstreamError error) {
  current_ = nullptr;
  if (conn != nullptr && conn->reused() && !conn->responseStarted() && error == http::UpstreamError::Reset &&
      !reusedRetryDone_) {
    // The collector closed a keep-alive connection as we reused it: not a failure of the
    // collector, so one immediate retry on a fresh connection, uncounted.
    reusedRetryDone_ = true;
    phase_ = Phase::Waiting;
    retryTimer_->start(0);
    return;
  }
  const bool connectFailure =
      error == http::UpstreamError::ConnectFailed || error == http::UpstreamError::ConnectTimeout;
  onAttemptFailed(http::upstreamErrorName(error), connectFailure);
}

void OtlpExporter::onResponse() {
  const int status = status_;
  if (status >= 200 && status < 300) {
    const uint64_t rejected = std::min<uint64_t>(rejectedSpans(responseBody_), batchSpans_);
    counters_.requests.fetch_add(1, std::memory_order_relaxed);
    counters_.exported.fetch_add(batchSpans_ - rejected, std::memory_order_relaxed);
    counters_.droppedExport.fetch_add(rejected, std::memory_order_relaxed);
    body_.clear();
    batchSpans_ = 0;
    consecutiveFailures_ = 0;
    consecutiveConnectFailures_ = 0;
    if (failing_) {
      failing_ = false;
      obs::LogFields f;
      f.str("endpoint", endpoint_.hostHeader);
      obs::info("trace export recovered", f);
    }
    phase_ = Phase::Idle;
    pump();
    return;
  }
  const std::string reason = "status " + std::to_string(status);
  if (retryableStatus(status)) {
    onAttemptFailed(reason, false);
    return;
  }
  // The collector refuses this payload: sending it again would get the same answer.
  counters_.failures.fetch_add(1, std::memory_order_relaxed);
  logFailure(reason + " (batch dropped, not retried)");
  dropBatch(counters_.droppedExport);
  phase_ = Phase::Idle;
  pump();
}

void OtlpExporter::onAttemptFailed(const std::string& reason, bool connectFailure) {
  counters_.failures.fetch_add(1, std::memory_order_relaxed);
  ++consecutiveFailures_;
  ++batchTries_;
  logFailure(reason);
  if (connectFailure && ++consecutiveConnectFailures_ >= kReResolveAfterConnectFailures && !hostIsLiteral_) {
    consecutiveConnectFailures_ = 0;
    retirePool();  // the next attempt resolves the name again
  }
  if (batchTries_ >= backoff_.attempts || queue_.sizeApprox() >= watermarkSpans_) {
    dropBatch(counters_.droppedExport);
  }
  // The pause belongs to the collector, not to the batch: a fresh batch waits too.
  auto delay = resilience::fullJitterDelay(backoff_, consecutiveFailures_ - 1, jitter_);
  if (retryAfterMs_ > 0) {
    delay = std::max(delay, std::min(std::chrono::milliseconds(retryAfterMs_), options_.backoffMax));
  }
  phase_ = Phase::Waiting;
  retryTimer_->start(static_cast<uint64_t>(std::max<int64_t>(0, delay.count())));
}

void OtlpExporter::dropBatch(std::atomic<uint64_t>& counter) {
  counter.fetch_add(batchSpans_, std::memory_order_relaxed);
  body_.clear();
  batchSpans_ = 0;
  batchTries_ = 0;
}

void OtlpExporter::finish(bool flushedAll) {
  if (finished_) {
    return;
  }
  finished_ = true;
  if (flushTimer_) {
    flushTimer_->stop();
    retryTimer_->stop();
    deadlineTimer_->stop();
  }
  if (pool_) {
    pool_->cancel(this);
    if (current_ != nullptr) {
      current_->abandon();
      current_ = nullptr;
    }
    pool_->closeIdle();
  }
  {
    std::lock_guard lock(mu_);
    asyncOpen_ = false;
    flushedAll_ = flushedAll;
  }
  async_.close();  // with nothing active left, uv_run returns and the thread tears down
}

void OtlpExporter::logFailure(const std::string& reason) {
  const uint64_t now = uv_now(&loop_);
  if (failing_ && now - lastFailureLogMs_ < kFailureLogIntervalMs) {
    return;
  }
  failing_ = true;
  lastFailureLogMs_ = now;
  obs::LogFields f;
  f.str("endpoint", endpoint_.hostHeader)
      .str("path", endpoint_.path)
      .str("reason", reason)
      .num("failures", static_cast<int64_t>(counters_.failures.load(std::memory_order_relaxed)))
      .num("dropped", static_cast<int64_t>(counters_.droppedExport.load(std::memory_order_relaxed)));
  obs::warn("trace export failing", f);
}

}  // namespace obs::trace
