#include "upstream_app/app_handler.h"

#include <chrono>

#include "common/obs/log.h"
#include "common/obs/trace/context.h"
#include "common/obs/trace/log_context.h"
#include "common/obs/trace/semconv.h"
#include "upstream_app/app_context.h"
#include "upstream_app/routes/params.h"
#include "upstream_app/routes/router.h"
#include "upstream_app/routes/routes.h"

namespace app {
namespace {

// Request bodies the app accepts (JSON documents); the gateway enforces its own limit first.
constexpr size_t kMaxAppBodyBytes = 1024 * 1024;

std::string_view pathOf(const std::string& target) { return routes::splitTarget(target).first; }

}  // namespace

void AppHandler::onRequestHead(http::ServerConnection& c) {
  body_.clear();
  answered_ = false;
  routeLabel_ = "unmatched";
  pending_.reset();
  namespace tr = obs::trace;
  const http::MessageHead& req = c.request();
  const std::string* tp = req.headers.find("traceparent");
  const std::string* ts = req.headers.find("tracestate");
  const tr::ParentContext parent = tr::extractParent(tp != nullptr ? std::string_view(*tp) : std::string_view(),
                                                     ts != nullptr ? std::string_view(*ts) : std::string_view());
  span_ = ctx_.tracer().startServerSpan(req.methodName(), parent);
  if (span_.recording()) {
    span_.setString(tr::attr::kHttpRequestMethod, req.methodName())
        .setString(tr::attr::kUrlPath, pathOf(req.target))
        .setString(tr::attr::kClientAddress, c.clientIp());
  }
}

void AppHandler::onRequestBody(http::ServerConnection& c, const char* data, size_t len) {
  if (answered_) {
    return;
  }
  if (body_.size() + len > kMaxAppBodyBytes) {
    answered_ = true;
    c.sendLocalError(413, "request body too large", {}, true);
    return;
  }
  body_.append(data, len);
}

void AppHandler::onRequestEnd(http::ServerConnection& c) {
  if (!answered_) {
    dispatch(c);
  }
}

void AppHandler::onExchangeAborted(http::ServerConnection&) {
  pending_.reset();
  answered_ = true;
  if (span_.recording()) {
    span_.setError("exchange aborted");
  }
  span_.end();
}

void AppHandler::onExchangeComplete(http::ServerConnection& c) {
  pending_.reset();  // a late second answer must not reach the next exchange
  const double durationMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c.requestStart()).count();
  if (c.hasRequest()) {
    ctx_.metrics().recordRequest(c.request().methodName(), c.responseStatus(), routeLabel_, durationMs / 1000.0);
  }
  if (span_.recording()) {
    span_.setString(obs::trace::attr::kHttpRoute, routeLabel_);
    obs::trace::setHttpResponseStatus(span_, c.responseStatus());
  }
  const obs::trace::LogIds logIds = obs::trace::logIds(span_.context());
  span_.end();
  if (!ctx_.config().upstream_app.logging.access_log || !obs::enabled(obs::Level::Info)) {
    return;
  }
  obs::LogFields f;
  f.str("method", c.hasRequest() ? c.request().methodName() : "-")
      .str("path", c.hasRequest() ? pathOf(c.request().target) : "-")
      .num("status", c.responseStatus())
      .num("bytes", static_cast<int64_t>(c.responseBodyBytes()))
      .real("duration_ms", durationMs)
      .str("request_id", c.requestId())
      .str("trace_id", logIds.traceId())
      .str("span_id", logIds.spanId())
      .str("client_ip", c.clientIp());
  obs::info("access", f);
}

void AppHandler::dispatch(http::ServerConnection& c) {
  answered_ = true;
  const http::MessageHead& req = c.request();
  const auto [path, query] = routes::splitTarget(req.target);
  const routes::RouteMatch match = routes::matchRoute(routes::appRoutes(), req.method, path);
  if (match.route == nullptr) {
    if (match.methodNotAllowed) {
      c.sendLocalError(405, "method not allowed", "Allow: " + match.allow + "\r\n");
      return;
    }
    c.sendLocalError(404, "not found");
    return;
  }
  routeLabel_ = match.route->pattern;
  pending_ = std::make_shared<http::ServerConnection*>(&c);
  routes::RouteRequest request{ctx_, c, path, query, match.id, body_, routes::Responder(pending_)};
  // The route's database transactions and Redis commands capture this span as their parent
  // (SpanParent::current()) and carry it through their callbacks.
  obs::trace::CurrentSpanScope scope(span_);
  match.route->handler(request);
}

}  // namespace app
