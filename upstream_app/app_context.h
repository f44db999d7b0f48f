#pragma once
// Per-loop context of upstream_app: config and the dependencies routes use.
#include <uv.h>

#include <functional>
#include <string>

#include "common/config/app_config.h"

namespace app {

class AppContext {
 public:
  using ReadinessCallback = std::function<void(bool dbOk, const std::string& dbError, bool cacheOk,
                                               const std::string& cacheError)>;
  using ReadinessProbe = std::function<void(ReadinessCallback)>;

  AppContext(uv_loop_t* loop, const cfg::Config& config) : loop_(loop), config_(config) {}
  uv_loop_t* loop() const { return loop_; }
  const cfg::Config& config() const { return config_; }

  // Checks PostgreSQL and Redis for /readyz; set by the process wiring.
  void setReadinessProbe(ReadinessProbe probe) { readiness_ = std::move(probe); }
  const ReadinessProbe& readinessProbe() const { return readiness_; }

 private:
  uv_loop_t* loop_;
  const cfg::Config& config_;
  ReadinessProbe readiness_;
};

}  // namespace app
