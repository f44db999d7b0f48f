#include "upstream_app/shipping/shipping_client.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <chrono>

#include "common/obs/log.h"
#include "common/obs/trace/context.h"
#include "common/obs/trace/log_context.h"
#include "common/obs/trace/semconv.h"
#include "common/resilience/backoff.h"

namespace app::shipping {

namespace {

// A shipment document is small; anything bigger is a broken or hostile service.
constexpr size_t kMaxBodyBytes = 256 * 1024;
// No overall request budget exists for the shipping call (no config key): attempts, timeouts and
// backoff_max bound it. RetryState still wants a deadline; this one is never the binding limit.
constexpr std::chrono::minutes kNoDeadline{10};

bool validJson(std::string_view body) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(body.data(), body.size());
  return !doc.HasParseError();
}

}  // namespace

std::optional<BaseUrl> parseBaseUrl(std::string_view url, std::string* error) {
  auto fail = [error](const char* why) -> std::optional<BaseUrl> {
    if (error != nullptr) {
      *error = why;
    }
    return std::nullopt;
  };
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || url.substr(0, kScheme.size()) != kScheme) {
    return fail("only plain http:// is supported");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return fail("a query or fragment is not allowed");
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    return fail("userinfo is not allowed");
  }
  BaseUrl out;
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return fail("unterminated IPv6 literal");
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return fail("bad authority");
      }
      port = after.substr(1);
      if (port.empty()) {
        return fail("empty port");
      }
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) {
      return fail("empty port");
    }
  }
  if (host.empty()) {
    return fail("missing host");
  }
  if (!port.empty()) {
    uint32_t p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) {
        return fail("bad port");
      }
      p = p * 10 + static_cast<uint32_t>(c - '0');
    }
    if (p == 0 || p > 65535) {
      return fail("bad port");
    }
    out.port = static_cast<uint16_t>(p);
  }
  out.host = std::string(host);
  while (!path.empty() && path.back() == '/') {
    path.remove_suffix(1);
  }
  out.pathPrefix = std::string(path);
  return out;
}

const char* outcomeName(Outcome o) {
  switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::NotFound: return "not_found";
    case Outcome::CircuitOpen: return "circuit_open";
    case Outcome::PoolBusy: return "pool_busy";
    case Outcome::Timeout: return "timeout";
    case Outcome::BadGateway: return "bad_gateway";
    case Outcome::Unusable: return "unusable";
  }
  return "unknown";
}

Answer answerFor(Outcome o) {
  switch (o) {
    case Outcome::Ok: return {200, nullptr, false};
    case Outcome::NotFound: return {404, "shipment not found", false};
    case Outcome::CircuitOpen: return {503, "shipping unavailable", true};
    case Outcome::PoolBusy: return {503, "shipping unavailable", true};
    case Outcome::Timeout: return {504, "shipping timeout", false};
    case Outcome::BadGateway: return {502, "shipping error", false};
    case Outcome::Unusable: return {503, "shipping unavailable", true};
  }
  return {502, "shipping error", false};
}

const char* tryOutcomeName(TryOutcome o) {
  switch (o) {
    case TryOutcome::Success: return "success";
    case TryOutcome::ServerError: return "server_error";
    case TryOutcome::ConnectFailed: return "connect_failure";
    case TryOutcome::ConnectTimeout: return "connect_timeout";
    case TryOutcome::PoolTimeout: return "pool_timeout";
    case TryOutcome::ReadTimeout: return "read_timeout";
    case TryOutcome::WriteTimeout: return "write_timeout";
    case TryOutcome::Reset: return "reset";
    case TryOutcome::Protocol: return "protocol_error";
    case TryOutcome::CircuitOpen: return "circuit_open";
    case TryOutcome::Count: break;
  }
  return "other";
}

TryResult tryResultFor(http::UpstreamError e) {
  using resilience::FailureKind;
  switch (e) {
    case http::UpstreamError::ConnectFailed: return {TryOutcome::ConnectFailed, FailureKind::ConnectFailure, 0};
    case http::UpstreamError::ConnectTimeout: return {TryOutcome::ConnectTimeout, FailureKind::ConnectFailure, 0};
    case http::UpstreamError::PoolTimeout: return {TryOutcome::PoolTimeout, FailureKind::None, 0};
    case http::UpstreamError::ReadTimeout: return {TryOutcome::ReadTimeout, FailureKind::Timeout, 0};
    case http::UpstreamError::WriteTimeout: return {TryOutcome::WriteTimeout, FailureKind::Timeout, 0};
    case http::UpstreamError::Reset: return {TryOutcome::Reset, FailureKind::Reset, 0};
    case http::UpstreamError::Protocol: return {TryOutcome::Protocol, FailureKind::Reset, 0};
  }
  return {TryOutcome::Protocol, FailureKind::Reset, 0};
}

// ---------------------------------------------------------------------------------------------
// ShippingShared

ShippingShared::ShippingShared(const cfg::ShippingConfig& config, algo::NowFn now)
    : config_(config),
      breaker_(resilience::CircuitBreaker::Options::fromConfig(config.circuit_breaker), std::move(now)),
      breakerFailures_(resilience::FailureSet::breakerDefault()) {
  std::string bad;
  if (auto set = resilience::FailureSet::parse(config.retry.retry_on, &bad)) {
    retryOn_ = *set;
  } else {
    retryOn_ = *resilience::FailureSet::parse({"connect_failure", "reset", "502", "503", "504"});
  }
  // A GET that timed out is safe to repeat (see the header).
  retryOn_.add("timeout");

  std::string why;
  std::optional<BaseUrl> url = parseBaseUrl(config.base_url, &why);
  if (!url) {
    error_ = "upstream_app.shipping.base_url: " + why;
  } else if (!http::resolveAddress(url->host, url->port, poolSettings_.address, why)) {
    error_ = "upstream_app.shipping.base_url: " + why;
  } else {
    usable_ = true;
    pathPrefix_ = url->pathPrefix;
    host_ = url->host;
    port_ = url->port;
    baseUrl_ = config.base_url;
    while (!baseUrl_.empty() && baseUrl_.back() == '/') {
      baseUrl_.pop_back();
    }
    const bool v6 = url->host.find(':') != std::string::npos;
    poolSettings_.hostHeader = (v6 ? "[" + url->host + "]" : url->host);
    if (url->port != 80) {
      poolSettings_.hostHeader += ":" + std::to_string(url->port);
    }
  }
  poolSettings_.maxConnections = config.max_connections;
  poolSettings_.maxIdleConnections = config.max_idle_connections;
  poolSettings_.connectTimeoutMs = static_cast<uint64_t>(config.connect_timeout.count());
  poolSettings_.readTimeoutMs = static_cast<uint64_t>(config.read_timeout.count());
  poolSettings_.writeTimeoutMs = static_cast<uint64_t>(config.read_timeout.count());
  poolSettings_.poolTimeoutMs = static_cast<uint64_t>(config.pool_timeout.count());
  // Shorter than any sane server keep-alive, so an idle connection is rarely closed under us.
  poolSettings_.idleTimeoutMs = 4'000;
  poolSettings_.sharedOpenConnections = &openConnections_;
  if (!usable_) {
    obs::error("shipping client disabled", obs::LogFields().str("error", error_));
  }
  breaker_.setTransitionHook([](resilience::CircuitBreaker::State from, resilience::CircuitBreaker::State to) {
    static constexpr const char* kNames[] = {"closed", "open", "half_open"};
    obs::LogFields f;
    f.str("from", kNames[static_cast<int>(from)]).str("to", kNames[static_cast<int>(to)]);
    if (to == resilience::CircuitBreaker::State::Open) {
      obs::warn("shipping circuit breaker", f);
    } else {
      obs::info("shipping circuit breaker", f);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// One shipment lookup: its tries, their backoff and the final answer.

class ShippingClient::Call : public http::ClientUser {
 public:
  Call(ShippingClient& client, int64_t id, Callback cb)
      : client_(client),
        shared_(client.shared_),
        cb_(std::move(cb)),
        retry_(resilience::BackoffPolicy::fromConfig(client.shared_.config().retry),
               algo::SteadyClock::now() + kNoDeadline),
        timer_(client.loop_, [this] { startTry(); }),
        parent_(obs::trace::SpanParent::current()),
        id_(id) {
    // Without trace context the head is complete here; with it, each try adds its traceparent.
    request_ = "GET " + shared_.pathPrefix() + "/shipments/" + std::to_string(id) +
               " HTTP/1.1\r\nHost: " + shared_.poolSettings().hostHeader +
               "\r\nAccept: application/json\r\nUser-Agent: upstream_app\r\n";
    if (!parent_.context().valid()) {
      request_.append("\r\n");
    }
  }

  // The first try starts on the next loop turn, so the callback never runs inside fetch().
  void start() { timer_.start(0); }

  // Shutdown: no callback.
  void drop() {
    done_ = true;
    endTrySpan(0, "cancelled");
    timer_.stop();
    client_.pool_->cancel(this);
    if (conn_ != nullptr) {
      conn_->abandon();
      conn_ = nullptr;
    }
    permit_.release();
  }

  void onUpstreamReady(http::ClientConnection& conn) override {
    conn_ = &conn;
    if (!parent_.context().valid()) {
      conn.send(request_);
    } else {
      // This try's span when it records, else the request's context (sampled flag 0).
      const obs::trace::SpanContext& ctx = trySpan_.context().valid() ? trySpan_.context() : parent_.context();
      std::string head = request_;
      head.append("traceparent: ").append(obs::trace::formatTraceparent(ctx).view()).append("\r\n");
      if (!parent_.tracestate().empty()) {
        head.append("tracestate: ").append(parent_.tracestate()).append("\r\n");
      }
      head.append("\r\n");
      conn.send(head);
    }
    conn.requestSent();
  }

  bool onUpstreamHead(http::ClientConnection&, http::MessageHead& head) override {
    status_ = head.status;
    body_.clear();
    return true;
  }

  bool onUpstreamBody(http::ClientConnection& conn, const char* data, size_t len) override {
    if (body_.size() + len > kMaxBodyBytes) {
      conn_ = nullptr;
      conn.abandon();
      tryFailed({TryOutcome::Protocol, resilience::FailureKind::Reset, 0}, "body too large");
      return false;
    }
    body_.append(data, len);
    return true;
  }

  void onUpstreamComplete(http::ClientConnection& conn) override {
    conn_ = nullptr;
    conn.release(true);
    if (done_) {
      return;
    }
    if (status_ >= 200 && status_ < 300 && !validJson(body_)) {
      tryFailed({TryOutcome::Protocol, resilience::FailureKind::Reset, 0}, "answer is not JSON");
      return;
    }
    endTrySpan(status_, nullptr);
    if (status_ >= 500) {
      tryFailed({TryOutcome::ServerError, resilience::FailureKind::None, status_}, "status " + std::to_string(status_));
      return;
    }
    observeTry(TryOutcome::Success);
    permit_.recordSuccess();
    if (status_ >= 200 && status_ < 300) {
      finish(Outcome::Ok, {});
    } else if (status_ == 404) {
      finish(Outcome::NotFound, "status 404");
    } else {
      finish(Outcome::BadGateway, "status " + std::to_string(status_));
    }
  }

  void onUpstreamError(http::ClientConnection*, http::UpstreamError error) override {
    conn_ = nullptr;
    if (done_) {
      return;
    }
    tryFailed(tryResultFor(error), http::upstreamErrorName(error));
  }

 private:
  void startTry() {
    if (done_) {
      return;
    }
    if (!shared_.usable() || client_.closed_) {
      finish(Outcome::Unusable, shared_.error());
      return;
    }
    permit_ = shared_.breaker().tryAcquire();
    if (!permit_.admitted()) {
      observeTry(TryOutcome::CircuitOpen);
      finish(Outcome::CircuitOpen, lastFailure_.empty() ? "circuit open" : lastFailure_ + ", then circuit open");
      return;
    }
    if (retry_.beginTry() > 1) {
      shared_.metrics().retries.inc();
    }
    ++tries_;
    status_ = 0;
    body_.clear();
    tryStart_ = algo::SteadyClock::now();
    startTrySpan();
    client_.pool_->acquire(this);  // may call back synchronously (idle connection, refused connect)
  }

  void observeTry(TryOutcome o) {
    shared_.metrics().tries[static_cast<int>(o)].inc();
    if (o != TryOutcome::CircuitOpen) {
      shared_.metrics().tryDuration.observe(
          std::chrono::duration<double>(algo::SteadyClock::now() - tryStart_).count());
    }
  }

  void startTrySpan() {
    if (!parent_.recording()) {
      return;
    }
    namespace tr = obs::trace;
    trySpan_ = parent_.startChild("GET", tr::SpanKind::Client);
    trySpan_.setString(tr::attr::kHttpRequestMethod, "GET")
        .setString(tr::attr::kServerAddress, shared_.host())
        .setInt(tr::attr::kServerPort, shared_.port())
        .setString(tr::attr::kUrlFull, shared_.baseUrl() + "/shipments/" + std::to_string(id_));
    if (tries_ > 1) {
      trySpan_.setInt("http.request.resend_count", tries_ - 1);
    }
  }

  // Ends the current try's span (if any) with the answer's status, or `failure` as error.type.
  void endTrySpan(int status, const char* failure) {
    if (!trySpan_.recording()) {
      return;
    }
    obs::trace::setHttpResponseStatus(trySpan_, status);
    if (failure != nullptr) {
      obs::trace::setSpanFailure(trySpan_, failure);
    }
    trySpan_.end();
  }

  void tryFailed(TryResult r, std::string detail) {
    // An HTTP answer's span error is its status code (setHttpResponseStatus); others name the outcome.
    endTrySpan(r.status != 0 ? r.status : status_,
               r.outcome == TryOutcome::ServerError ? nullptr : tryOutcomeName(r.outcome));
    observeTry(r.outcome);
    lastFailure_ = detail;
    if (r.outcome == TryOutcome::PoolTimeout) {
      permit_.release();  // our own congestion says nothing about the service
      finish(Outcome::PoolBusy, std::move(detail));
      return;
    }
    if (shared_.breakerFailures().matches(r.kind, r.status)) {
      permit_.recordFailure();
    } else {
      permit_.recordSuccess();
    }
    if (resilience::retryAllowed(shared_.retryOn(), "GET", r.kind, r.status, false, true)) {
      if (auto delay = retry_.nextDelay(algo::SteadyClock::now())) {
        timer_.start(static_cast<uint64_t>(delay->count()));
        return;
      }
    }
    const bool timedOut = r.outcome == TryOutcome::ReadTimeout || r.outcome == TryOutcome::WriteTimeout ||
                          r.outcome == TryOutcome::ConnectTimeout;
    finish(timedOut ? Outcome::Timeout : Outcome::BadGateway, std::move(detail));
  }

  void finish(Outcome outcome, std::string detail) {
    done_ = true;
    timer_.stop();
    ShipmentResult res;
    res.outcome = outcome;
    res.status = status_;
    res.tries = tries_;
    res.detail = std::move(detail);
    if (outcome == Outcome::Ok) {
      res.body = std::move(body_);
    }
    Callback cb = std::move(cb_);
    const obs::trace::SpanParent parent = parent_;
    client_.retire(this);  // deleted on the next loop turn, never inside one of its callbacks
    if (!cb) {
      return;
    }
    if (parent.context().valid()) {
      obs::trace::CurrentSpanScope scope(parent);  // the route's next steps stay in the trace
      cb(std::move(res));
      return;
    }
    cb(std::move(res));
  }

  ShippingClient& client_;
  ShippingShared& shared_;
  Callback cb_;
  resilience::RetryState retry_;
  resilience::CircuitBreaker::Permit permit_;
  uvx::Timer timer_;  // the first try, then each backoff pause
  std::string request_;
  http::ClientConnection* conn_ = nullptr;
  int status_ = 0;
  std::string body_;
  int tries_ = 0;
  std::string lastFailure_;
  algo::TimePoint tryStart_{};
  bool done_ = false;
  obs::trace::SpanParent parent_;  // the request span current at fetch()
  obs::trace::Span trySpan_;       // the try in flight, when the request is sampled
  int64_t id_ = 0;
};

// ---------------------------------------------------------------------------------------------
// ShippingClient

ShippingClient::ShippingClient(uv_loop_t* loop, ShippingShared& shared)
    : loop_(loop),
      shared_(shared),
      pool_(std::make_unique<http::ConnectionPool>(loop, shared.poolSettings(), &shared.poolStats())),
      reaper_(loop, [this] { reap(); }) {}

ShippingClient::~ShippingClient() {
  close();
  dead_.clear();
}

void ShippingClient::fetch(int64_t shipmentId, Callback cb) {
  auto call = std::make_unique<Call>(*this, shipmentId, std::move(cb));
  Call* raw = call.get();
  calls_.emplace(raw, std::move(call));
  raw->start();
}

void ShippingClient::retire(Call* call) {
  auto it = calls_.find(call);
  if (it == calls_.end()) {
    return;
  }
  dead_.push_back(std::move(it->second));
  calls_.erase(it);
  if (!closed_) {
    reaper_.start(0);
  }
}

void ShippingClient::reap() { dead_.clear(); }

void ShippingClient::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  for (auto& [raw, call] : calls_) {
    call->drop();
    dead_.push_back(std::move(call));
  }
  calls_.clear();
  reaper_.stop();
  dead_.clear();  // their timers are closed by their destructors; no callback reaches them now
  pool_->closeIdle();
}

}  // namespace app::shipping
