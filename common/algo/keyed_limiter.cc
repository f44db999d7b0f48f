#include "common/algo/keyed_limiter.h"

namespace algo {

std::unique_ptr<LocalRateLimiter> makeLocalRateLimiter(std::string_view algorithm, RateLimitRule rule,
                                                       size_t maxKeys, NowFn now) {
  if (algorithm == "token_bucket") {
    return std::make_unique<TokenBucketLimiter>(rule, maxKeys, std::move(now));
  }
  if (algorithm == "sliding_window") {
    return std::make_unique<SlidingWindowLimiter>(rule, maxKeys, std::move(now));
  }
  return nullptr;
}

}  // namespace algo
