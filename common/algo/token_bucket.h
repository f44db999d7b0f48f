#pragma once
// Token bucket, the state of one key. Capacity `limit` tokens, refilled continuously at
// limit / window; a request takes one token or is denied (a denied request takes nothing, so a
// client that keeps hammering is not pushed further back). Allows a burst of `limit` after idling,
// then a steady limit / window.
//
// Exact integer arithmetic ("units"): one token = window_ms units, capacity = limit * window_ms
// units, each millisecond adds `limit` units. No rounding drift, and the Lua script
// (rate_limit_scripts.h, kTokenBucketScript) performs the same operations, so the in-process
// limiter and Redis decide identically for identical timestamps.
//
// Pure functions: no clock, no lock; KeyedLimiter (keyed_limiter.h) adds both.
#include <cstdint>

#include "common/algo/rate_limit.h"

namespace algo {

struct TokenBucket {
  struct State {
    bool initialized = false;
    int64_t level = 0;   // units, 0..limit*window
    int64_t lastMs = 0;  // when level was last brought up to date
  };

  // Takes one token at `nowMs` if there is one. Time going backwards is treated as no time passing.
  static RateLimitDecision decide(State& state, const RateLimitRule& rule, int64_t nowMs);

  // True when the state is indistinguishable from a fresh key at nowMs (the bucket is full again),
  // so dropping it loses nothing.
  static bool idle(const State& state, const RateLimitRule& rule, int64_t nowMs);
};

}  // namespace algo
