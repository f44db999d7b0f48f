#include "upstream_app/app_handler.h"

#include <chrono>

#include "common/obs/log.h"
#include "upstream_app/app_context.h"

namespace app {
namespace {

constexpr std::string_view kJson = "application/json";
// Request bodies the app accepts (JSON documents); the gateway enforces its own limit first.
constexpr size_t kMaxAppBodyBytes = 1024 * 1024;

std::string_view pathOf(const std::string& target) {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

}  // namespace

void AppHandler::onRequestHead(http::ServerConnection&) {
  body_.clear();
  answered_ = false;
  pending_.reset();
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
}

void AppHandler::onExchangeComplete(http::ServerConnection& c) {
  if (!ctx_.config().upstream_app.logging.access_log || !obs::enabled(obs::Level::Info)) {
    return;
  }
  const double durationMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c.requestStart()).count();
  obs::LogFields f;
  f.str("method", c.hasRequest() ? c.request().methodName() : "-")
      .str("path", c.hasRequest() ? pathOf(c.request().target) : "-")
      .num("status", c.responseStatus())
      .num("bytes", static_cast<int64_t>(c.responseBodyBytes()))
      .real("duration_ms", durationMs)
      .str("request_id", c.requestId())
      .str("client_ip", c.clientIp());
  obs::info("access", f);
}

void AppHandler::dispatch(http::ServerConnection& c) {
  answered_ = true;
  const http::MessageHead& req = c.request();
  const std::string_view path = pathOf(req.target);
  if (path == "/healthz") {
    c.sendResponse(200, kJson, R"({"ok":true})");
    return;
  }
  if (path == "/readyz") {
    const auto& probe = ctx_.readinessProbe();
    if (!probe) {
      c.sendResponse(503, kJson, R"({"db":"unchecked","cache":"unchecked"})");
      return;
    }
    pending_ = std::make_shared<http::ServerConnection*>(&c);
    std::weak_ptr<http::ServerConnection*> weak = pending_;
    probe([weak](bool dbOk, const std::string& dbError, bool cacheOk, const std::string& cacheError) {
      const auto alive = weak.lock();
      if (!alive) {
        return;  // the client went away meanwhile
      }
      http::ServerConnection& c = **alive;
      std::string body = "{\"db\":\"";
      body += dbOk ? "ok" : "down";
      body += "\",\"cache\":\"";
      body += cacheOk ? "ok" : "down";
      body += "\"}";
      if (!dbOk || !cacheOk) {
        obs::warn("not ready", obs::LogFields().str("db_error", dbError).str("cache_error", cacheError));
      }
      c.sendResponse(dbOk && cacheOk ? 200 : 503, kJson, body);
    });
    return;
  }
  c.sendLocalError(404, "not found");
}

}  // namespace app
