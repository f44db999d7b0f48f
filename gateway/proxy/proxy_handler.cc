#include "gateway/proxy/proxy_handler.h"

#include <algorithm>
#include <charconv>
#include <random>

#include "common/http/status.h"
#include "common/obs/trace/context.h"
#include "common/obs/trace/log_context.h"
#include "common/obs/trace/semconv.h"
#include "common/obs/trace/tracer.h"
#include "common/resilience/failure.h"
#include "common/obs/log.h"
#include "common/obs/metrics.h"
#include "gateway/admin/health.h"

namespace gateway {
namespace {

// Request body bytes kept so that a failed attempt can be replayed on a new connection. Larger
// bodies stream through without a copy and are not retried once a byte went upstream.
constexpr size_t kReplayLimit = 64 * 1024;
// Above this many buffered bytes the other side stops being read (backpressure).
constexpr size_t kHighWater = 256 * 1024;

std::string_view pathOf(const std::string& target) {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

resilience::FailureKind failureKindOf(http::UpstreamError e) {
  switch (e) {
    case http::UpstreamError::ConnectFailed:
    case http::UpstreamError::ConnectTimeout:
      return resilience::FailureKind::ConnectFailure;
    case http::UpstreamError::Reset:
    case http::UpstreamError::Protocol:
      return resilience::FailureKind::Reset;
    case http::UpstreamError::ReadTimeout:
    case http::UpstreamError::WriteTimeout:
      return resilience::FailureKind::Timeout;
    case http::UpstreamError::PoolTimeout:
      return resilience::FailureKind::None;  // our queue, not the upstream's failure
  }
  return resilience::FailureKind::None;
}

}  // namespace

ProxyHandler::ProxyHandler(WorkerContext& ctx)
    : ctx_(ctx),
      requestTimer_(ctx.loop, [this] { onRequestTimeout(); }),
      backoffTimer_(ctx.loop, [this] { startAttempt(); }) {
  refreshPolicy();
}

void ProxyHandler::refreshPolicy() {
  if (policy_ && policy_->generation == ctx_.runtime.policyGeneration.load(std::memory_order_acquire)) {
    return;
  }
  policy_ = ctx_.runtime.policy();
  filters_.clear();
  filters_.reserve(policy_->filters.size());
  for (const auto& factory : policy_->filters) {
    filters_.push_back(factory->createFilter(ctx_));
  }
}

ProxyHandler::~ProxyHandler() { releaseUpstream(); }

void ProxyHandler::onRequestHead(http::ServerConnection& c) {
  conn_ = &c;
  refreshPolicy();  // between exchanges: a reload applies from this request on
  const Runtime& rt = ctx_.runtime;
  if (serveHealth(path(), c, rt)) {
    phase_ = Phase::Local;
    return;
  }
  if (path() == "/metrics") {
    // Metrics are for the admin listener; the app's own /metrics is not published to clients.
    phase_ = Phase::Local;
    c.sendLocalError(404, "not found");
    return;
  }
  filtersEngaged_ = true;
  const int64_t limit = policy_->gateway().limit_concurrency;
  if (ctx_.runtime.inFlight.fetch_add(1, std::memory_order_relaxed) >= limit) {
    ctx_.runtime.inFlight.fetch_sub(1, std::memory_order_relaxed);
    ctx_.runtime.stats->concurrencyRejected.inc();
    sendLocalError(503, "too many requests in flight", "Retry-After: 1\r\n");
    return;
  }
  inFlightCounted_ = true;
  const http::MessageHead& req = c.request();
  startServerSpan(req);
  chunkedBody_ = req.body == http::BodyKind::Chunked;
  requestEnded_ = req.body == http::BodyKind::None;
  // request_timeout bounds the whole exchange, asynchronous filter work included.
  requestTimer_.start(static_cast<uint64_t>(policy_->gateway().request_timeout.count()));
  runRequestFilters(0);
}

std::string_view ProxyHandler::path() const { return pathOf(conn_->request().target); }

void ProxyHandler::startServerSpan(const http::MessageHead& req) {
  obs::trace::Tracer* tracer = ctx_.runtime.tracer.get();
  if (tracer == nullptr || !tracer->enabled()) {
    return;
  }
  namespace tr = obs::trace;
  const std::string* tp = req.headers.find("traceparent");
  const std::string* ts = req.headers.find("tracestate");
  const tr::ParentContext parent = tr::extractParent(tp != nullptr ? std::string_view(*tp) : std::string_view(),
                                                     ts != nullptr ? std::string_view(*ts) : std::string_view());
  parentTracestate_ = parent.tracestate;
  span_ = tracer->startServerSpan(req.methodName(), parent);
  if (span_.recording()) {
    span_.setString(tr::attr::kHttpRequestMethod, req.methodName())
        .setString(tr::attr::kUrlPath, path())
        .setString(tr::attr::kUrlScheme, ctx_.runtime.gateway().tls.cert_file.empty() ? "http" : "https")
        .setString(tr::attr::kHttpRoute, policy_->routes->nameFor(path()))
        .setString(tr::attr::kClientAddress, conn_->clientIp());
  }
}

void ProxyHandler::runRequestFilters(size_t from) {
  phase_ = Phase::Filtering;
  for (size_t i = from; i < filters_.size(); ++i) {
    if (filters_[i]->onRequestHeaders(*this) == HttpFilter::Status::Stop) {
      nextFilter_ = i + 1;  // replied (phase_ moved on) or will call continueRequest()
      return;
    }
  }
  startProxy();
}

void ProxyHandler::continueRequest() {
  if (phase_ == Phase::Filtering) {
    runRequestFilters(nextFilter_);
  }
}

void ProxyHandler::startProxy() {
  buildUpstreamHead(*conn_);
  upstreamStart_ = std::chrono::steady_clock::now();
  retry_.emplace(policy_->backoff, algo::steadyNow()() + policy_->gateway().request_timeout);
  startAttempt();
}

void ProxyHandler::buildUpstreamHead(const http::ServerConnection& c) {
  const http::MessageHead& req = c.request();
  const std::string& requestIdHeader = ctx_.runtime.gateway().request_id.header;
  const std::string* connection = req.headers.find("connection");
  const std::string_view connectionValue = connection != nullptr ? std::string_view(*connection) : std::string_view();
  const std::string* host = req.headers.find("host");
  const std::string* xff = nullptr;

  std::string& out = upstreamHead_;
  out.clear();
  out.append(req.methodName());
  out.push_back(' ');
  out.append(req.target);
  out.append(" HTTP/1.1\r\n");
  for (const http::Header& h : req.headers) {
    if (http::isHopByHop(h.name, connectionValue) || http::iequals(h.name, requestIdHeader) ||
        http::iequals(h.name, "x-forwarded-proto") || http::iequals(h.name, "x-forwarded-host")) {
      continue;
    }
    if (http::iequals(h.name, "x-forwarded-for")) {
      xff = &h.value;  // re-emitted below with the client appended (several headers: the last wins)
      continue;
    }
    if (span_.context().valid() && (http::iequals(h.name, "traceparent") || http::iequals(h.name, "tracestate"))) {
      continue;  // replaced by this hop's context below
    }
    out.append(h.name);
    out.append(": ");
    out.append(h.value);
    out.append("\r\n");
  }
  out.append("X-Forwarded-For: ");
  if (xff != nullptr && !xff->empty()) {
    out.append(*xff);
    out.append(", ");
  }
  out.append(c.clientIp());
  out.append("\r\nX-Forwarded-Proto: ");
  out.append(ctx_.runtime.gateway().tls.cert_file.empty() ? "http" : "https");
  if (host != nullptr) {
    out.append("\r\nX-Forwarded-Host: ");
    out.append(*host);
  } else {
    // An HTTP/1.0 request may come without Host; HTTP/1.1 upstream requests must carry one.
    out.append("\r\nHost: ");
    out.append(ctx_.upstreamPool.settings().hostHeader);
  }
  out.append("\r\n");
  out.append(requestIdHeader);
  out.append(": ");
  out.append(c.requestId());
  out.append("\r\n");
  if (span_.context().valid()) {
    out.append("traceparent: ");
    out.append(obs::trace::formatTraceparent(span_.context()).view());
    out.append("\r\n");
    if (!parentTracestate_.empty()) {
      out.append("tracestate: ");
      out.append(parentTracestate_);
      out.append("\r\n");
    }
  }
  if (req.body == http::BodyKind::Length) {
    char number[24];
    out.append("Content-Length: ");
    out.append(number, std::to_chars(number, number + sizeof number, req.contentLength).ptr);
    out.append("\r\n");
  } else if (req.body == http::BodyKind::Chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
  out.append("\r\n");
}

void ProxyHandler::startAttempt() {
  retry_->beginTry();
  permit_ = policy_->breaker->tryAcquire();
  if (!permit_) {
    // Open breaker: answered at once, the upstream is not touched.
    lastError_ = "circuit_open";
    ctx_.runtime.stats->upstreamCircuitOpen.inc();
    sendLocalError(503, "upstream circuit breaker open", "Retry-After: 1\r\n");
    return;
  }
  phase_ = Phase::Acquiring;
  ctx_.upstreamPool.acquire(this);  // may call back synchronously
}

bool ProxyHandler::scheduleRetry(resilience::FailureKind kind, int status, bool immediate) {
  const Runtime& rt = ctx_.runtime;
  if (!resilience::retryAllowed(policy_->retryOn, conn_->request().methodName(), kind, status, responseHeadSent_,
                                !bodySentUnreplayable_) ||
      !retry_->attemptsLeft()) {
    return false;
  }
  const std::optional<algo::Millis> delay = retry_->nextDelay(algo::steadyNow()());
  if (!delay) {
    return false;  // no time left before request_timeout
  }
  rt.stats->upstreamRetries.inc();
  phase_ = Phase::Backoff;
  backoffTimer_.start(immediate ? 0 : static_cast<uint64_t>(delay->count()));
  return true;
}

void ProxyHandler::onUpstreamReady(http::ClientConnection& conn) {
  if (phase_ != Phase::Acquiring) {
    conn.release(false);
    return;
  }
  upstream_ = &conn;
  phase_ = Phase::Proxying;
  if (conn_->request().method == HTTP_HEAD) {
    conn.expectNoBody();
  }
  conn.send(upstreamHead_);
  if (!replayBody_.empty()) {
    conn.send(replayBody_);
  }
  if (!pendingBody_.empty()) {
    conn.send(pendingBody_);
    if (!bodySentUnreplayable_ && replayBody_.size() + pendingBody_.size() <= kReplayLimit) {
      replayBody_.append(pendingBody_);
    } else {
      bodySentUnreplayable_ = true;
      replayBody_.clear();
    }
    pendingBody_.clear();
  }
  if (requestEnded_) {
    conn.requestSent();
  }
  if (conn.bufferedBytes() < kHighWater) {
    conn_->resumeRequestBody();
  }
}

void ProxyHandler::queueBody(std::string_view framed) {
  if (upstream_ != nullptr && phase_ == Phase::Proxying) {
    upstream_->send(framed);
    if (!bodySentUnreplayable_ && replayBody_.size() + framed.size() <= kReplayLimit) {
      replayBody_.append(framed);
    } else {
      bodySentUnreplayable_ = true;
      replayBody_.clear();
    }
    if (upstream_->bufferedBytes() > kHighWater) {
      conn_->pauseRequestBody();
    }
    return;
  }
  pendingBody_.append(framed);
  if (pendingBody_.size() > kHighWater) {
    conn_->pauseRequestBody();
  }
}

void ProxyHandler::onRequestBody(http::ServerConnection&, const char* data, size_t len) {
  if (phase_ == Phase::Local || phase_ == Phase::Done || phase_ == Phase::Idle) {
    return;  // answered already; the body is read and dropped
  }
  // While filters run (e.g. waiting for Redis) the body is buffered like before a connect.
  if (chunkedBody_) {
    char size[20];
    const int n = std::snprintf(size, sizeof size, "%zx\r\n", len);
    queueBody({size, static_cast<size_t>(n)});
    queueBody({data, len});
    queueBody("\r\n");
  } else {
    queueBody({data, len});
  }
}

void ProxyHandler::onRequestEnd(http::ServerConnection&) {
  if (phase_ == Phase::Local || phase_ == Phase::Done || phase_ == Phase::Idle || requestEnded_) {
    return;
  }
  if (chunkedBody_) {
    queueBody("0\r\n\r\n");
  }
  requestEnded_ = true;
  if (upstream_ != nullptr && phase_ == Phase::Proxying) {
    upstream_->requestSent();
  }
}

bool ProxyHandler::onUpstreamHead(http::ClientConnection&, http::MessageHead& head) {
  permit_.record(policy_->breakerFailures.matches(resilience::FailureKind::None, head.status));
  if (head.status >= 500 && scheduleRetryAfterResponse(head.status)) {
    return true;  // the body is read and dropped; the next attempt starts when it ends
  }
  const std::string& requestIdHeader = ctx_.runtime.gateway().request_id.header;
  const std::string* connection = head.headers.find("connection");
  const std::string_view connectionValue = connection != nullptr ? std::string_view(*connection) : std::string_view();
  ResponseHead& out = responseHead_;
  out.headers.clear();
  for (const http::Header& h : head.headers) {
    if (http::isHopByHop(h.name, connectionValue) || http::iequals(h.name, requestIdHeader)) {
      continue;
    }
    out.headers.add(h.name, h.value);
  }
  out.status = head.status;
  out.reason = head.reason;
  out.local = false;
  out.body = head.body;
  out.contentLength = head.contentLength;
  if (out.body == http::BodyKind::UntilClose) {
    out.body = http::BodyKind::Chunked;
  } else if (out.body == http::BodyKind::None && conn_->request().method == HTTP_HEAD &&
             head.headers.find("content-length") != nullptr) {
    out.body = http::BodyKind::Length;  // HEAD: announce the length, send no body
  }
  upstreamMs_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - upstreamStart_).count();
  sendHead(out);
  return true;
}

void ProxyHandler::sendHead(ResponseHead& head) {
  bodyFilters_.clear();
  holdLimit_ = 0;
  for (size_t i = filters_.size(); i-- > 0;) {
    filters_[i]->onResponseHeaders(*this, head);
    if (filters_[i]->transformsBody()) {
      bodyFilters_.push_back(filters_[i].get());
    }
    holdLimit_ = std::max(holdLimit_, filters_[i]->wholeBodyLimit());
  }
  responseHeadSent_ = true;  // from here on the exchange is committed to this response
  if (holdLimit_ > 0 && head.body != http::BodyKind::None && conn_->request().method != HTTP_HEAD) {
    heldBody_.clear();
    return;  // written by releaseHeldHead()
  }
  holdLimit_ = 0;
  writeHead(head);
}

void ProxyHandler::writeHead(ResponseHead& head) {
  std::string& text = responseHeaders_;
  text.clear();
  for (const http::Header& h : head.headers) {
    text.append(h.name);
    text.append(": ");
    text.append(h.value);
    text.append("\r\n");
  }
  conn_->sendResponseHead(head.status, head.reason, text, head.body, head.contentLength);
}

void ProxyHandler::releaseHeldHead(bool complete) {
  ResponseHead& head = responseHead_;
  holdLimit_ = 0;
  if (complete) {
    for (size_t i = filters_.size(); i-- > 0;) {
      if (filters_[i]->wholeBodyLimit() > 0) {
        filters_[i]->onWholeBody(*this, head, heldBody_);
      }
    }
    // The length is known now, so the client gets Content-Length rather than chunks.
    const bool noBody = head.status == 304 || head.status == 204;
    head.body = noBody ? http::BodyKind::None : http::BodyKind::Length;
    head.contentLength = noBody ? 0 : heldBody_.size();
    writeHead(head);
    if (!noBody) {
      conn_->sendResponseBody(heldBody_.data(), heldBody_.size());
    }
  } else {
    for (auto& f : filters_) {
      f->onWholeBodyAbandoned();
    }
    writeHead(head);
    conn_->sendResponseBody(heldBody_.data(), heldBody_.size());
  }
  heldBody_.clear();
}

void ProxyHandler::sendBody(std::string_view data, bool end) {
  std::string_view out = data;
  if (!bodyFilters_.empty()) {
    // Each transforming filter reads the previous one's output; two scratch buffers alternate.
    int which = 0;
    for (HttpFilter* f : bodyFilters_) {
      std::string& buf = bodyScratch_[which];
      buf.clear();
      f->onResponseData(*this, out, end, buf);
      out = buf;
      which ^= 1;
    }
  }
  if (holdLimit_ > 0) {
    heldBody_.append(out);
    if (end) {
      releaseHeldHead(true);
    } else if (heldBody_.size() > holdLimit_) {
      releaseHeldHead(false);
    }
    return;
  }
  conn_->sendResponseBody(out.data(), out.size());
}

bool ProxyHandler::onUpstreamBody(http::ClientConnection& conn, const char* data, size_t len) {
  if (discardResponse_) {
    return true;
  }
  sendBody({data, len}, false);
  if (conn_->downstreamBuffered() > kHighWater) {
    conn.pauseReading();
  }
  return true;
}

void ProxyHandler::sendLocalReply(int status, std::string_view contentType, std::string_view body,
                                  std::string_view extraHeaders) {
  ResponseHead& head = responseHead_;
  head.headers.clear();
  head.status = status;
  head.reason.clear();
  if (!contentType.empty()) {
    head.headers.add("Content-Type", contentType);
  }
  // extraHeaders is a small serialized block ("Name: value\r\n"...).
  while (!extraHeaders.empty()) {
    const size_t eol = extraHeaders.find("\r\n");
    const std::string_view line = extraHeaders.substr(0, eol);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      head.headers.add(line.substr(0, colon), http::trim(line.substr(colon + 1)));
    }
    if (eol == std::string_view::npos) {
      break;
    }
    extraHeaders.remove_prefix(eol + 2);
  }
  head.body = body.empty() ? http::BodyKind::None : http::BodyKind::Length;
  head.contentLength = body.size();
  sendLocalResponse(head, body);
}

void ProxyHandler::sendLocalResponse(ResponseHead& head, std::string_view body) {
  if (responseHeadSent_ || conn_ == nullptr) {
    return;
  }
  releaseUpstream();
  backoffTimer_.stop();
  requestTimer_.stop();
  phase_ = Phase::Local;
  head.local = true;
  sendHead(head);
  if (!body.empty() || !bodyFilters_.empty() || holdLimit_ > 0) {
    sendBody(body, true);
  }
  conn_->endResponse();
}

void ProxyHandler::sendLocalError(int status, std::string_view message, std::string_view extraHeaders) {
  sendLocalReply(status, "application/json", http::jsonErrorBody(message, conn_->requestId()), extraHeaders);
}

void ProxyHandler::onDownstreamDrained(http::ServerConnection&) {
  if (upstream_ != nullptr) {
    upstream_->resumeReading();
  }
}

void ProxyHandler::onUpstreamDrained(http::ClientConnection&) {
  if (conn_ != nullptr && phase_ == Phase::Proxying) {
    conn_->resumeRequestBody();
  }
}

void ProxyHandler::onUpstreamComplete(http::ClientConnection& conn) {
  upstream_ = nullptr;
  conn.release(requestEnded_);
  if (discardResponse_) {
    discardResponse_ = false;  // a retryable 5xx was read to the end; its retry is scheduled
    backoffTimer_.start(pendingRetryDelayMs_);
    return;
  }
  ctx_.runtime.stats->upstreamSuccess.inc();
  phase_ = Phase::Done;
  requestTimer_.stop();
  if (!bodyFilters_.empty() || holdLimit_ > 0) {
    sendBody({}, true);
  }
  conn_->endResponse();
}

void ProxyHandler::onUpstreamError(http::ClientConnection* conn, http::UpstreamError error) {
  upstream_ = nullptr;
  if (phase_ != Phase::Acquiring && phase_ != Phase::Proxying) {
    return;
  }
  lastError_ = http::upstreamErrorName(error);
  ctx_.runtime.stats->upstreamOutcome(error).inc();
  const resilience::FailureKind kind = failureKindOf(error);
  if (kind != resilience::FailureKind::None && policy_->breakerFailures.matches(kind, 0)) {
    permit_.recordFailure();
  } else {
    permit_.release();
  }
  if (responseHeadSent_ && holdLimit_ > 0) {
    // The head was held (nothing went to the client yet): an error reply is still possible.
    responseHeadSent_ = false;
    holdLimit_ = 0;
    heldBody_.clear();
    replyUpstreamError(error);
    return;
  }
  if (responseHeadSent_) {
    phase_ = Phase::Done;
    conn_->abortResponse();  // a truncated response must not look complete
    return;
  }
  // A reused keep-alive connection the upstream had just closed is retried at once: that
  // failure says nothing about the upstream's health.
  const bool staleReuse =
      error == http::UpstreamError::Reset && conn != nullptr && conn->reused() && !conn->responseStarted();
  if (kind != resilience::FailureKind::None && scheduleRetry(kind, 0, staleReuse)) {
    return;
  }
  replyUpstreamError(error);
}

bool ProxyHandler::scheduleRetryAfterResponse(int status) {
  const Runtime& rt = ctx_.runtime;
  if (!requestEnded_ ||
      !resilience::retryAllowed(policy_->retryOn, conn_->request().methodName(), resilience::FailureKind::None, status,
                                responseHeadSent_, !bodySentUnreplayable_) ||
      !retry_->attemptsLeft()) {
    return false;
  }
  const std::optional<algo::Millis> delay = retry_->nextDelay(algo::steadyNow()());
  if (!delay) {
    return false;
  }
  rt.stats->upstreamRetries.inc();
  lastError_ = "status_" + std::to_string(status);
  discardResponse_ = true;
  pendingRetryDelayMs_ = static_cast<uint64_t>(delay->count());
  return true;
}

void ProxyHandler::replyUpstreamError(http::UpstreamError error) {
  int status = 502;
  const char* message = "upstream unavailable";
  switch (error) {
    case http::UpstreamError::ConnectFailed:
    case http::UpstreamError::ConnectTimeout:
      status = 502;
      message = "upstream connect failed";
      break;
    case http::UpstreamError::Reset:
      status = 502;
      message = "upstream connection reset";
      break;
    case http::UpstreamError::Protocol:
      status = 502;
      message = "invalid response from upstream";
      break;
    case http::UpstreamError::PoolTimeout:
      status = 503;
      message = "upstream connection pool exhausted";
      break;
    case http::UpstreamError::ReadTimeout:
    case http::UpstreamError::WriteTimeout:
      status = 504;
      message = "upstream timed out";
      break;
  }
  sendLocalError(status, message);
}

void ProxyHandler::onRequestTimeout() {
  if (phase_ != Phase::Filtering && phase_ != Phase::Acquiring && phase_ != Phase::Proxying &&
      phase_ != Phase::Backoff) {
    return;
  }
  lastError_ = "request_timeout";
  releaseUpstream();
  backoffTimer_.stop();
  if (responseHeadSent_) {
    phase_ = Phase::Done;
    conn_->abortResponse();
    return;
  }
  sendLocalError(504, "request timed out");
}

void ProxyHandler::releaseUpstream() {
  permit_.release();
  // Withdraws us from the pool's wait queue and from a connect in flight for us (that connection
  // finishes connecting and joins the idle list).
  ctx_.upstreamPool.cancel(this);
  if (upstream_ != nullptr) {
    upstream_->abandon();
    upstream_ = nullptr;
  }
}

void ProxyHandler::finishFilters(bool aborted) {
  if (!filtersEngaged_) {
    return;
  }
  filtersEngaged_ = false;
  for (auto& f : filters_) {
    f->onComplete(*this, aborted);
  }
}

void ProxyHandler::onExchangeAborted(http::ServerConnection&) {
  if (span_.recording()) {
    span_.setError("exchange aborted");
  }
  span_.end();
  releaseUpstream();
  finishFilters(true);
  resetExchange();
}

void ProxyHandler::onExchangeComplete(http::ServerConnection& c) {
  const Runtime& rt = ctx_.runtime;
  const double durationMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c.requestStart()).count();
  const std::string_view route = c.hasRequest() ? policy_->routes->nameFor(pathOf(c.request().target)) : "other";
  const std::string_view method = c.hasRequest() ? obs::methodLabel(c.request().methodName()) : "other";
  const std::string_view code = obs::statusCodeLabel(c.responseStatus());
  RequestSeries& series = lastSeries_;
  if (series.stats != rt.stats.get() || series.route != route) {
    series.stats = rt.stats.get();
    series.route.assign(route);
    series.duration = rt.stats->requestDuration->labels({route});
    series.method = {};  // the requests counter below is resolved again too
  }
  if (series.method.data() != method.data() || series.code.data() != code.data()) {
    series.method = method;
    series.code = code;
    series.requests = rt.stats->requests->labels({method, code, route});
  }
  series.requests.inc();
  series.duration.observe(durationMs / 1000.0);
  if (policy_->gateway().logging.access_log && obs::enabled(obs::Level::Info)) {
    const obs::trace::LogIds logIds = obs::trace::logIds(span_.context());
    obs::LogFields f;
    const bool hasRequest = c.hasRequest();
    f.str("method", hasRequest ? c.request().methodName() : "-")
        .str("path", hasRequest ? pathOf(c.request().target) : "-")
        .num("status", c.responseStatus())
        .num("bytes", static_cast<int64_t>(c.responseBodyBytes()))
        .real("duration_ms", durationMs)
        .real("upstream_ms", upstreamMs_)
        .str("request_id", c.requestId())
        .str("trace_id", logIds.traceId())
        .str("span_id", logIds.spanId())
        .str("client_ip", c.clientIp())
        .str("cache", cacheStatus_)
        .num("retries", retry_ ? retry_->retries() : 0);
    if (!lastError_.empty()) {
      f.str("upstream_error", lastError_);
    }
    obs::info("access", f);
  }
  if (span_.recording()) {
    obs::trace::setHttpResponseStatus(span_, c.responseStatus());
    if (!lastError_.empty()) {
      span_.setString("error.type", lastError_);
    }
  }
  span_.end();
  releaseUpstream();
  finishFilters(false);
  resetExchange();
}

void ProxyHandler::resetExchange() {
  requestTimer_.stop();
  backoffTimer_.stop();
  if (inFlightCounted_) {
    ctx_.runtime.inFlight.fetch_sub(1, std::memory_order_relaxed);
    inFlightCounted_ = false;
  }
  phase_ = Phase::Idle;
  pendingBody_.clear();
  replayBody_.clear();
  bodySentUnreplayable_ = false;
  requestEnded_ = false;
  chunkedBody_ = false;
  responseHeadSent_ = false;
  bodyFilters_.clear();
  holdLimit_ = 0;
  heldBody_.clear();
  nextFilter_ = 0;
  retry_.reset();
  permit_.release();
  discardResponse_ = false;
  lastError_.clear();
  parentTracestate_.clear();
  cacheStatus_ = "BYPASS";
  upstreamMs_ = -1;
}

}  // namespace gateway
