#include "upstream_app/routes/health.h"

#include "common/obs/log.h"
#include "upstream_app/app_context.h"

namespace app::routes {

void healthz(RouteRequest& r) { r.reply.json(200, R"({"ok":true})"); }

void readyz(RouteRequest& r) {
  const auto& probe = r.ctx.readinessProbe();
  if (!probe) {
    r.reply.json(503, R"({"db":"unchecked","cache":"unchecked"})");
    return;
  }
  probe([reply = r.reply](bool dbOk, const std::string& dbError, bool cacheOk, const std::string& cacheError) {
    if (reply.connection() == nullptr) {
      return;  // the client went away meanwhile
    }
    std::string body = "{\"db\":\"";
    body += dbOk ? "ok" : "down";
    body += "\",\"cache\":\"";
    body += cacheOk ? "ok" : "down";
    body += "\"}";
    if (!dbOk || !cacheOk) {
      obs::warn("not ready", obs::LogFields().str("db_error", dbError).str("cache_error", cacheError));
    }
    reply.json(dbOk && cacheOk ? 200 : 503, body);
  });
}

}  // namespace app::routes
