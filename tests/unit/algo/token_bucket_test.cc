// algo::TokenBucket: burst, continuous refill, exact retry/reset times, idle detection.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "common/algo/token_bucket.h"

using algo::RateLimitDecision;
using algo::RateLimitRule;
using algo::TokenBucket;

namespace {

const int64_t kT0 = 1'700'000'000'000;  // an epoch-ms like Redis TIME gives

}  // namespace

TEST_CASE("algo token bucket: a burst of 30 with limit 10 allows exactly the first 10") {
  const RateLimitRule rule{10, 60000};
  TokenBucket::State st;
  int allowed = 0;
  for (int i = 0; i < 30; ++i) {
    const RateLimitDecision d = TokenBucket::decide(st, rule, kT0);
    CAPTURE(i);
    CHECK(d.limit == 10);
    if (i < 10) {
      CHECK(d.allowed);
      CHECK(d.remaining == 9 - i);
      CHECK(d.retryAfterMs == 0);
      CHECK(d.resetAfterMs == (i + 1) * 6000);  // one token per 6s
    } else {
      CHECK_FALSE(d.allowed);
      CHECK(d.remaining == 0);
      CHECK(d.retryAfterMs == 6000);
      CHECK(d.resetAfterMs == 60000);
      CHECK(d.retryAfterSeconds() == 6);
      CHECK(d.resetSeconds() == 60);
    }
    allowed += d.allowed ? 1 : 0;
  }
  CHECK(allowed == 10);
}

TEST_CASE("algo token bucket: continuous refill, step by step") {
  // limit 10 per 1000ms: one token every 100ms.
  const RateLimitRule rule{10, 1000};
  struct Step {
    int64_t atMs;  // from kT0
    int requests;
    int wantAllowed;
    int64_t wantRemaining;   // after the last request of the step
    int64_t wantRetryAfter;  // of the last request
    int64_t wantReset;       // of the last request
  };
  const Step steps[] = {
      {0, 10, 10, 0, 0, 1000},    // full burst
      {0, 1, 0, 0, 100, 1000},    // empty: next token in 100ms
      {50, 1, 0, 0, 50, 950},     // half a token
      {99, 1, 0, 0, 1, 901},
      {100, 1, 1, 0, 0, 1000},    // one token exactly at 100ms, taken
      {350, 3, 2, 0, 50, 950},    // 2.5 tokens: two taken, the third waits 50ms
      {1350, 12, 10, 0, 100, 1000},  // after a long pause: capped at 10, not 10.5
      {100000, 1, 1, 9, 0, 100},
  };
  TokenBucket::State st;
  for (const Step& s : steps) {
    CAPTURE(s.atMs);
    int allowed = 0;
    RateLimitDecision last;
    for (int i = 0; i < s.requests; ++i) {
      last = TokenBucket::decide(st, rule, kT0 + s.atMs);
      allowed += last.allowed ? 1 : 0;
    }
    CHECK(allowed == s.wantAllowed);
    CHECK(last.remaining == s.wantRemaining);
    CHECK(last.retryAfterMs == s.wantRetryAfter);
    CHECK(last.resetAfterMs == s.wantReset);
  }
}

TEST_CASE("algo token bucket: rates that do not divide the window round retry-after up") {
  const RateLimitRule rule{3, 1000};  // a token every 333.3ms
  TokenBucket::State st;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(TokenBucket::decide(st, rule, kT0).allowed);
  }
  const auto d = TokenBucket::decide(st, rule, kT0);
  CHECK_FALSE(d.allowed);
  CHECK(d.retryAfterMs == 334);
  TokenBucket::State copy = st;
  CHECK_FALSE(TokenBucket::decide(copy, rule, kT0 + 333).allowed);
  CHECK(TokenBucket::decide(st, rule, kT0 + 334).allowed);
}

TEST_CASE("algo token bucket: retry-after is exact (denied 1ms before, allowed at it), randomised") {
  std::mt19937_64 rng(42);
  const RateLimitRule rules[] = {{1, 1000}, {10, 1000}, {7, 60000}, {100, 1000}, {1000, 10}, {5, 3}};
  for (const RateLimitRule& rule : rules) {
    CAPTURE(rule.limit);
    CAPTURE(rule.windowMs);
    TokenBucket::State st;
    int64_t now = kT0;
    for (int i = 0; i < 2000; ++i) {
      now += static_cast<int64_t>(rng() % static_cast<uint64_t>(rule.windowMs / rule.limit + 2));
      const RateLimitDecision d = TokenBucket::decide(st, rule, now);
      REQUIRE(d.remaining >= 0);
      REQUIRE(d.remaining <= rule.limit);
      if (!d.allowed) {
        REQUIRE(d.retryAfterMs >= 1);
        if (d.retryAfterMs > 1) {
          TokenBucket::State before = st;
          REQUIRE_FALSE(TokenBucket::decide(before, rule, now + d.retryAfterMs - 1).allowed);
        }
        TokenBucket::State at = st;
        REQUIRE(TokenBucket::decide(at, rule, now + d.retryAfterMs).allowed);
      }
      // After resetAfterMs the whole limit is available again.
      TokenBucket::State full = st;
      int burst = 0;
      for (int64_t k = 0; k < rule.limit + 1; ++k) {
        burst += TokenBucket::decide(full, rule, now + d.resetAfterMs).allowed ? 1 : 0;
      }
      REQUIRE(burst == rule.limit);
    }
  }
}

TEST_CASE("algo token bucket: long-run rate is limit per window plus the initial burst") {
  const RateLimitRule rule{10, 1000};
  TokenBucket::State st;
  int allowed = 0;
  for (int64_t ms = 0; ms < 10000; ++ms) {
    allowed += TokenBucket::decide(st, rule, kT0 + ms).allowed ? 1 : 0;
  }
  // 10 at t=0, then one every 100ms: 99 more by t=9999.
  CHECK(allowed == 109);
}

TEST_CASE("algo token bucket: idle when full again; time going backwards refills nothing") {
  const RateLimitRule rule{4, 1000};
  TokenBucket::State st;
  CHECK(TokenBucket::idle(st, rule, kT0));
  TokenBucket::decide(st, rule, kT0);
  CHECK_FALSE(TokenBucket::idle(st, rule, kT0 + 249));
  CHECK(TokenBucket::idle(st, rule, kT0 + 250));

  for (int i = 0; i < 3; ++i) {
    TokenBucket::decide(st, rule, kT0);
  }
  CHECK_FALSE(TokenBucket::decide(st, rule, kT0 - 5000).allowed);  // clock stepped back
  CHECK_FALSE(TokenBucket::decide(st, rule, kT0).allowed);
  CHECK(TokenBucket::decide(st, rule, kT0 + 250).allowed);
  // A huge gap neither overflows nor overfills.
  int burst = 0;
  for (int i = 0; i < 10; ++i) {
    burst += TokenBucket::decide(st, rule, INT64_MAX / 4).allowed ? 1 : 0;
  }
  CHECK(burst == 4);
}
