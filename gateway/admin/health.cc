#include "gateway/admin/health.h"

namespace gateway {

bool serveHealth(std::string_view path, http::ServerConnection& c, const Runtime& rt) {
  static constexpr std::string_view kJson = "application/json";
  static constexpr std::string_view kNoStore = "Cache-Control: no-store\r\n";
  if (path == "/healthz") {
    c.sendResponse(200, kJson, R"({"ok":true})", kNoStore);
    return true;
  }
  if (path != "/readyz") {
    return false;
  }
  if (rt.draining.load(std::memory_order_relaxed)) {
    c.sendResponse(503, kJson, R"({"status":"draining"})", kNoStore);
    return true;
  }
  const std::shared_ptr<const Policy> policy = rt.policy();
  const cfg::GatewayConfig& g = policy->gateway();
  const bool upstreamOk = rt.upstreamHealthy.load(std::memory_order_relaxed);
  // Redis matters for readiness only through rate limits: with every rule fail_open the gateway
  // keeps serving (in-process limits) and reports "degraded"; a fail_open: false rule makes a
  // dead Redis a reason to take this replica out of the Service.
  std::string_view redis = "unused";
  bool redisBlocks = false;
  if (!g.rate_limits.empty()) {
    const bool redisOk = rt.redisHealthy.load(std::memory_order_relaxed);
    bool anyFailClosed = false;
    for (const cfg::RateLimitRule& r : g.rate_limits) {
      anyFailClosed = anyFailClosed || !r.fail_open;
    }
    redis = redisOk ? "ok" : (anyFailClosed ? "down" : "degraded");
    redisBlocks = !redisOk && anyFailClosed;
  }
  const bool ready = upstreamOk && !redisBlocks;
  std::string body = ready ? R"({"status":"ready","upstream":")" : R"({"status":"not_ready","upstream":")";
  body += upstreamOk ? "ok" : "down";
  body += R"(","redis":")";
  body += redis;
  body += "\"}";
  c.sendResponse(ready ? 200 : 503, kJson, body, kNoStore);
  return true;
}

}  // namespace gateway
