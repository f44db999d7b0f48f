#pragma once
// CONTRACT §4 CORS: preflights are answered here (204 or 403); every other reply to a request
// from an allowed origin gets Access-Control-Allow-Origin, Vary: Origin and the credentials and
// expose headers.
#include <memory>

#include "gateway/filters/cors/cors_policy.h"
#include "gateway/filters/filter.h"

namespace gateway {

class CorsFilterFactory : public FilterFactory {
 public:
  explicit CorsFilterFactory(const cfg::CorsConfig& config) : policy_(config) {}
  std::string_view name() const override { return "cors"; }
  std::unique_ptr<HttpFilter> createFilter(WorkerContext& ctx) const override;

 private:
  cors::CorsPolicy policy_;
};

}  // namespace gateway
