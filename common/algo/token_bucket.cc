#include "common/algo/token_bucket.h"

#include <algorithm>

namespace algo {

RateLimitDecision TokenBucket::decide(State& state, const RateLimitRule& ruleIn, int64_t nowMs) {
  const RateLimitRule rule = ruleIn.normalized();
  const int64_t perToken = rule.windowMs;
  const int64_t capacity = rule.limit * rule.windowMs;
  if (!state.initialized) {
    state = State{true, capacity, nowMs};
  }
  if (nowMs > state.lastMs) {
    // After one window the bucket is full whatever it held, so the elapsed time is capped there;
    // that also keeps elapsed * limit far from overflow after a long idle.
    const int64_t elapsed = std::min(nowMs - state.lastMs, rule.windowMs);
    state.level = std::min(capacity, state.level + elapsed * rule.limit);
    state.lastMs = nowMs;
  }
  RateLimitDecision d;
  d.limit = rule.limit;
  d.allowed = state.level >= perToken;
  if (d.allowed) {
    state.level -= perToken;
  } else {
    d.retryAfterMs = ceilDiv(perToken - state.level, rule.limit);
  }
  d.remaining = state.level / perToken;
  d.resetAfterMs = ceilDiv(capacity - state.level, rule.limit);
  return d;
}

bool TokenBucket::idle(const State& state, const RateLimitRule& ruleIn, int64_t nowMs) {
  if (!state.initialized) {
    return true;
  }
  const RateLimitRule rule = ruleIn.normalized();
  const int64_t capacity = rule.limit * rule.windowMs;
  return nowMs - state.lastMs >= ceilDiv(capacity - state.level, rule.limit);
}

}  // namespace algo
