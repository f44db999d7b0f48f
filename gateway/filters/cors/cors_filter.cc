#include "gateway/filters/cors/cors_filter.h"

#include <string>

#include "gateway/filters/cors/cors_policy.h"

namespace gateway {
namespace {

class CorsFilter : public HttpFilter {
 public:
  explicit CorsFilter(const cors::CorsPolicy& policy) : policy_(policy) {}

  Status onRequestHeaders(FilterCallbacks& cb) override {
    const http::HeaderList& headers = cb.request().headers;
    const std::string* origin = headers.find("origin");
    const std::string* requestMethod = headers.find("access-control-request-method");
    if (!cors::isPreflight(cb.request().methodName(), origin != nullptr, requestMethod != nullptr)) {
      return Status::Continue;
    }
    preflight_ = true;
    const std::string* requestHeaders = headers.find("access-control-request-headers");
    const cors::PreflightResult result =
        policy_.evaluatePreflight(*origin, *requestMethod, requestHeaders != nullptr ? *requestHeaders : "");
    std::string extra;
    for (const cors::HeaderField& f : result.headers) {
      extra.append(f.name);
      extra.append(": ");
      extra.append(f.value);
      extra.append("\r\n");
    }
    if (result.allowed) {
      cb.sendLocalReply(204, {}, {}, extra);
    } else {
      cb.sendLocalError(403, "CORS preflight denied: " + std::string(cors::denialName(result.denial)), extra);
    }
    return Status::Stop;
  }

  void onResponseHeaders(FilterCallbacks& cb, ResponseHead& head) override {
    if (preflight_) {
      return;  // the preflight reply carries its own headers
    }
    const std::string* origin = cb.request().headers.find("origin");
    policy_.addActualResponseHeaders(origin != nullptr ? std::string_view(*origin) : std::string_view(), head);
  }

  void onComplete(FilterCallbacks&, bool) override { preflight_ = false; }

 private:
  const cors::CorsPolicy& policy_;
  bool preflight_ = false;
};

}  // namespace

std::unique_ptr<HttpFilter> CorsFilterFactory::createFilter(WorkerContext&) const {
  return std::make_unique<CorsFilter>(policy_);
}

}  // namespace gateway
