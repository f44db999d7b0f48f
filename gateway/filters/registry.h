#pragma once
#include "common/config/app_config.h"
#include "gateway/filters/filter.h"

namespace gateway {

// The policy chain in request order, built once from config. Adding a policy is adding its
// directory under gateway/filters/ and one line in registry.cc.
FilterChain buildFilterChain(const cfg::Config& config);

}  // namespace gateway
