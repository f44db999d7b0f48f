#pragma once
// upstream_app's request path: the body is collected (bounded), then one route answers.
#include <functional>
#include <memory>

#include "common/obs/trace/span.h"
#include <string>
#include <string_view>

#include "common/config/app_config.h"
#include "common/http/server.h"

namespace app {

class AppContext;

class AppHandler : public http::RequestHandler {
 public:
  explicit AppHandler(AppContext& ctx) : ctx_(ctx) {}
  void onRequestHead(http::ServerConnection& c) override;
  void onRequestBody(http::ServerConnection& c, const char* data, size_t len) override;
  void onRequestEnd(http::ServerConnection& c) override;
  void onExchangeAborted(http::ServerConnection& c) override;
  void onExchangeComplete(http::ServerConnection& c) override;

 private:
  void dispatch(http::ServerConnection& c);

  AppContext& ctx_;
  std::string body_;
  obs::trace::Span span_;  // this request's server span (child of the gateway's)
  bool answered_ = false;
  // The matched route's pattern (the bounded `route` metric label); "unmatched" for 404/405.
  std::string_view routeLabel_ = "unmatched";
  // Handed (weakly) to asynchronous work; reset when the exchange ends or the handler goes, so a
  // late answer for a gone client is dropped instead of touching freed memory.
  std::shared_ptr<http::ServerConnection*> pending_;
};

}  // namespace app
