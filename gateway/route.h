#pragma once
// The bounded `route` label of metrics and logs: the name of the first rate-limit rule that
// matches, else the path/prefix of the first cache rule, else "other". Never the raw path, so
// the label's cardinality is bounded by the config.
#include <string>
#include <string_view>
#include <vector>

#include "common/config/app_config.h"

namespace gateway {

// Rule matching of CONTRACT §3: `path` matches exactly, `prefix` matches a prefix.
inline bool ruleMatches(const std::string& path, const std::string& prefix, std::string_view requestPath) {
  if (!path.empty()) {
    return requestPath == path;
  }
  return !prefix.empty() && requestPath.substr(0, prefix.size()) == prefix;
}

class RouteNamer {
 public:
  explicit RouteNamer(const cfg::GatewayConfig& config);
  std::string_view nameFor(std::string_view path) const;

 private:
  struct Route {
    std::string path;
    std::string prefix;
    std::string name;
  };
  std::vector<Route> routes_;
};

}  // namespace gateway
