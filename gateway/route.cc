#include "gateway/route.h"

namespace gateway {

RouteNamer::RouteNamer(const cfg::GatewayConfig& config) {
  for (const cfg::RateLimitRule& r : config.rate_limits) {
    routes_.push_back({r.path, r.prefix, r.name});
  }
  for (const cfg::CacheRule& r : config.cache.rules) {
    routes_.push_back({r.path, r.prefix, r.path.empty() ? r.prefix : r.path});
  }
}

std::string_view RouteNamer::nameFor(std::string_view path) const {
  if (path == "/healthz" || path == "/readyz") {
    return path.substr(1);
  }
  for (const Route& r : routes_) {
    if (ruleMatches(r.path, r.prefix, path)) {
      return r.name;
    }
  }
  return "other";
}

}  // namespace gateway
