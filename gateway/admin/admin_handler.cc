#include "gateway/admin/admin_handler.h"

#include "common/obs/metrics.h"
#include "gateway/admin/health.h"

namespace gateway {
void AdminHandler::onRequestHead(http::ServerConnection& c) {
  std::string_view path = c.request().target;
  path = path.substr(0, path.find('?'));
  if (serveHealth(path, c, rt_)) {
    return;
  }
  if (path == "/metrics") {
    c.sendResponse(200, obs::kPrometheusContentType, rt_.stats->registry->render());
    return;
  }
  c.sendLocalError(404, "not found");
}

}  // namespace gateway
