#include "gateway/filters/registry.h"

#include "gateway/filters/cache/cache_filter.h"
#include "gateway/filters/compression/compression_filter.h"
#include "gateway/filters/cors/cors_filter.h"
#include "gateway/filters/ratelimit/rate_limit_filter.h"

namespace gateway {

FilterChain buildFilterChain(const cfg::Config& all) {
  const cfg::GatewayConfig& config = all.gateway;
  FilterChain chain;
  // Request order: preflights are answered before anything counts them, rate limits apply to
  // cache hits too. Response hooks run in reverse: compression sees the upstream's response first,
  // the cache then stores the compressed variant (so a hit never compresses again), and CORS
  // decorates every reply, cache hits included, last.
  chain.push_back(std::make_unique<CorsFilterFactory>(config.cors));
  if (!config.rate_limits.empty()) {
    chain.push_back(std::make_unique<RateLimitFilterFactory>(config, all.redis));
  }
  chain.push_back(std::make_unique<CacheFilterFactory>(config));
  chain.push_back(std::make_unique<CompressionFilterFactory>(config.compression));
  return chain;
}

}  // namespace gateway
