#include "gateway/health_probe.h"

#include <algorithm>

#include "common/obs/log.h"

namespace gateway {

HealthProbe::HealthProbe(uv_loop_t* loop, Runtime& rt) : rt_(rt), timer_(loop, [this] { probe(); }) {
  http::PoolSettings s = rt.upstreamPool;
  s.maxConnections = 1;
  s.maxIdleConnections = 1;
  s.sharedOpenConnections = nullptr;  // the probe never takes a slot from client traffic
  const uint64_t interval = static_cast<uint64_t>(rt.gateway().upstream.health_interval.count());
  // A probe answer slower than the interval counts as a failure.
  s.readTimeoutMs = std::min<uint64_t>(s.readTimeoutMs, std::max<uint64_t>(interval, 100));
  pool_ = std::make_unique<http::ConnectionPool>(loop, s, &stats_);
  if (!rt.gateway().rate_limits.empty()) {
    redisx::RedisOptions ro;
    ro.url = rt.config.redis.url;
    ro.connectTimeout = rt.config.redis.connect_timeout;
    ro.commandTimeout = rt.config.redis.command_timeout;
    redis_ = std::make_unique<redisx::RedisClient>(loop, ro);
    redis_->start();
  }
  request_ = "GET " + rt.gateway().upstream.health_path + " HTTP/1.1\r\nHost: " + s.hostHeader +
             "\r\nUser-Agent: gateway-health-probe\r\n\r\n";
}

HealthProbe::~HealthProbe() { stop(); }

void HealthProbe::start() { timer_.start(0, static_cast<uint64_t>(rt_.gateway().upstream.health_interval.count())); }

void HealthProbe::stop() {
  stopped_ = true;
  timer_.stop();
  pool_->cancel(this);
  if (current_ != nullptr) {
    current_->abandon();
    current_ = nullptr;
  }
  if (redis_) {
    redis_->close();
  }
  pool_->closeIdle();
}

void HealthProbe::probeRedis() {
  if (!redis_ || redisInProbe_) {
    return;
  }
  redisInProbe_ = true;
  redis_->command({"PING"}, [this](redisx::RedisResult r) {
    redisInProbe_ = false;
    const bool ok = r.ok();
    if (rt_.redisHealthy.exchange(ok) != ok) {
      obs::LogFields f;
      f.str("redis", rt_.config.redis.url.substr(rt_.config.redis.url.find('@') + 1)).str("error", r.errorMessage);
      if (ok) {
        obs::info("redis healthy", f);
      } else {
        obs::warn("redis unhealthy", f);
      }
    }
  });
}

void HealthProbe::probe() {
  if (stopped_) {
    return;
  }
  probeRedis();
  if (inProbe_) {
    return;
  }
  inProbe_ = true;
  lastStatus_ = 0;
  pool_->acquire(this);
}

void HealthProbe::onUpstreamReady(http::ClientConnection& conn) {
  current_ = &conn;
  conn.send(request_);
  conn.requestSent();
}

bool HealthProbe::onUpstreamHead(http::ClientConnection&, http::MessageHead& head) {
  lastStatus_ = head.status;
  return true;
}

void HealthProbe::onUpstreamComplete(http::ClientConnection& conn) {
  current_ = nullptr;
  conn.release(true);
  inProbe_ = false;
  report(lastStatus_ == 200, "status " + std::to_string(lastStatus_));
}

void HealthProbe::onUpstreamError(http::ClientConnection*, http::UpstreamError error) {
  current_ = nullptr;
  inProbe_ = false;
  report(false, http::upstreamErrorName(error));
}

void HealthProbe::report(bool healthy, const std::string& why) {
  rt_.upstreamHealthy.store(healthy, std::memory_order_relaxed);
  if (lastReported_ != static_cast<int>(healthy)) {
    lastReported_ = static_cast<int>(healthy);
    obs::LogFields f;
    f.str("upstream", rt_.upstreamPool.hostHeader).str("path", rt_.gateway().upstream.health_path).str("result", why);
    if (healthy) {
      obs::info("upstream healthy", f);
    } else {
      obs::warn("upstream unhealthy", f);
    }
  }
}

}  // namespace gateway
