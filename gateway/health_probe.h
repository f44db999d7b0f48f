#pragma once
// Polls the upstream's health_path (and, when rate limits use it, Redis with PING) every
// health_interval on the main loop and publishes the results in Runtime (read by /readyz).
#include <memory>
#include <string>

#include "common/http/client.h"
#include "common/redis/redis_client.h"
#include "common/uv/timer.h"
#include "gateway/runtime.h"

namespace gateway {

class HealthProbe : public http::ClientUser {
 public:
  HealthProbe(uv_loop_t* loop, Runtime& rt);
  ~HealthProbe() override;
  void start();
  void stop();

  void onUpstreamReady(http::ClientConnection& conn) override;
  bool onUpstreamHead(http::ClientConnection& conn, http::MessageHead& head) override;
  bool onUpstreamBody(http::ClientConnection&, const char*, size_t) override { return true; }
  void onUpstreamComplete(http::ClientConnection& conn) override;
  void onUpstreamError(http::ClientConnection* conn, http::UpstreamError error) override;

 private:
  void probe();
  void report(bool healthy, const std::string& why);
  void probeRedis();

  Runtime& rt_;
  http::PoolStats stats_;
  std::unique_ptr<http::ConnectionPool> pool_;
  std::unique_ptr<redisx::RedisClient> redis_;
  bool redisInProbe_ = false;
  uvx::Timer timer_;
  std::string request_;
  http::ClientConnection* current_ = nullptr;
  int lastStatus_ = 0;
  bool inProbe_ = false;
  bool stopped_ = false;
  int lastReported_ = -1;
};

}  // namespace gateway
