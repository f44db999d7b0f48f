#pragma once
// CONTRACT §4 "Rate limits": counted in Redis with one atomic script call per request, shared by
// every replica; 429 with Retry-After past the limit; RateLimit-* headers on every response of a
// limited route. When Redis is down or slower than redis.command_timeout, `fail_open: true` rules
// fall back to an in-process limiter with the same rule, `fail_open: false` rules answer 503.
#include <memory>
#include <string>
#include <vector>

#include "common/algo/keyed_limiter.h"
#include "common/config/app_config.h"
#include "gateway/filters/filter.h"
#include "gateway/filters/ratelimit/client_ip.h"

namespace gateway {

class RateLimitFilterFactory : public FilterFactory {
 public:
  struct Rule {
    cfg::RateLimitRule config;
    std::string script;  // the Lua source for its algorithm
    std::string sha;     // its SHA-1, for EVALSHA
    std::string headerName;  // key "header:NAME"; empty for client_ip
    std::string keyPrefix;   // "rl:NAME:", the Redis key before the client's key
    std::string limitArg;    // the script's numeric arguments, formatted once
    std::string windowArg;
    std::unique_ptr<algo::LocalRateLimiter> fallback;  // shared by every worker
  };

  RateLimitFilterFactory(const cfg::GatewayConfig& gateway, const cfg::RedisConfig& redis);
  std::string_view name() const override { return "rate_limit"; }
  std::unique_ptr<HttpFilter> createFilter(WorkerContext& ctx) const override;

  const std::vector<std::unique_ptr<Rule>>& rules() const { return rules_; }
  const TrustedProxies& trustedProxies() const { return trusted_; }
  std::chrono::milliseconds commandTimeout() const { return commandTimeout_; }

 private:
  std::vector<std::unique_ptr<Rule>> rules_;
  TrustedProxies trusted_;
  std::chrono::milliseconds commandTimeout_;
};

// True when at least one rule needs Redis (the worker then keeps a Redis client).
bool rateLimitsNeedRedis(const cfg::GatewayConfig& gateway);

}  // namespace gateway
