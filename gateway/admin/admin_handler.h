#pragma once
#include "common/http/server.h"
#include "gateway/runtime.h"

namespace gateway {

// The admin listener: /healthz, /readyz and /metrics; everything else is 404.
class AdminHandler : public http::RequestHandler {
 public:
  explicit AdminHandler(const Runtime& rt) : rt_(rt) {}
  void onRequestHead(http::ServerConnection& c) override;

 private:
  const Runtime& rt_;
};

}  // namespace gateway
