#pragma once
// Shared vocabulary of the rate limiters: the rule (limit per window), the decision every limiter
// returns (in-process TokenBucket/SlidingWindow and the Redis scripts in rate_limit_scripts.h
// alike), and its mapping to the response headers of CONTRACT §4:
//   RateLimit-Limit: limit   RateLimit-Remaining: remaining   RateLimit-Reset: resetSeconds()
//   and, on 429 only, Retry-After: retryAfterSeconds().
//
// All arithmetic is on integer milliseconds and integers scaled by the window, so the in-process
// limiters and the Lua scripts (which compute in doubles, exact below 2^53) agree bit for bit on
// the same timestamps. Requirement: limit * window_ms < 2^53 (9e15), e.g. at most a million
// requests per 100-day window; beyond it the Lua side would lose precision.
#include <algorithm>
#include <cstdint>

namespace algo {

struct RateLimitRule {
  int64_t limit = 1;        // requests per window, >= 1
  int64_t windowMs = 1000;  // >= 1

  // limit and window clamped to >= 1 (config validation already guarantees it).
  RateLimitRule normalized() const { return {std::max<int64_t>(1, limit), std::max<int64_t>(1, windowMs)}; }
};

// ceil(a / b) for a >= 0, b > 0.
inline int64_t ceilDiv(int64_t a, int64_t b) {
  return a <= 0 ? 0 : (a + b - 1) / b;
}

struct RateLimitDecision {
  bool allowed = true;
  int64_t limit = 0;         // the rule's limit
  int64_t remaining = 0;     // requests that would still be allowed right now (after this one)
  int64_t resetAfterMs = 0;  // until the full quota is available again (0 = it is)
  int64_t retryAfterMs = 0;  // denied: until the next request would be allowed; allowed: 0

  // RateLimit-Reset is whole seconds; rounded up so that a client waiting that long finds the quota
  // restored.
  int64_t resetSeconds() const { return ceilDiv(resetAfterMs, 1000); }
  // Retry-After for a 429: whole seconds, rounded up, at least 1 (a "0" invites an instant retry
  // that would still be refused within the same millisecond).
  int64_t retryAfterSeconds() const { return std::max<int64_t>(1, ceilDiv(retryAfterMs, 1000)); }
};

// The 4-element reply of both Redis scripts, {allowed, remaining, reset_ms, retry_after_ms}, as a
// decision (the limit is the caller's rule; the script does not echo it).
inline RateLimitDecision decisionFromScriptReply(int64_t limit, int64_t allowed, int64_t remaining, int64_t resetMs,
                                                 int64_t retryAfterMs) {
  RateLimitDecision d;
  d.allowed = allowed != 0;
  d.limit = limit;
  d.remaining = std::max<int64_t>(0, remaining);
  d.resetAfterMs = std::max<int64_t>(0, resetMs);
  d.retryAfterMs = d.allowed ? 0 : std::max<int64_t>(0, retryAfterMs);
  return d;
}

}  // namespace algo
