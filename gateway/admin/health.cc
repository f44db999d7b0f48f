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
  } else if (!rt.upstreamHealthy.load(std::memory_order_relaxed)) {
    c.sendResponse(503, kJson, R"({"status":"not_ready","upstream":"down"})", kNoStore);
  } else {
    c.sendResponse(200, kJson, R"({"status":"ready","upstream":"ok"})", kNoStore);
  }
  return true;
}

}  // namespace gateway
