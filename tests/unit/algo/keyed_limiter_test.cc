// algo::KeyedLimiter: per-key state, the maxKeys bound (LRU), idle keys dropped, the factory and
// concurrent use, with a ManualClock.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/algo/clock.h"
#include "common/algo/keyed_limiter.h"

using namespace std::chrono_literals;
using algo::ManualClock;
using algo::RateLimitRule;

TEST_CASE("algo keyed limiter: keys are independent, both algorithms") {
  for (const char* algorithm : {"token_bucket", "sliding_window"}) {
    CAPTURE(algorithm);
    ManualClock clock;
    auto limiter = algo::makeLocalRateLimiter(algorithm, RateLimitRule{3, 1000}, 100, clock.fn());
    REQUIRE(limiter);
    int a = 0;
    int b = 0;
    for (int i = 0; i < 10; ++i) {
      a += limiter->check("10.0.0.1").allowed ? 1 : 0;
    }
    for (int i = 0; i < 10; ++i) {
      b += limiter->check("10.0.0.2").allowed ? 1 : 0;
    }
    CHECK(a == 3);
    CHECK(b == 3);
    CHECK(limiter->size() == 2);
    const auto d = limiter->check("10.0.0.1");
    CHECK_FALSE(d.allowed);
    CHECK(d.limit == 3);
    CHECK(d.retryAfterMs > 0);
  }
  CHECK(algo::makeLocalRateLimiter("fixed_window", RateLimitRule{3, 1000}) == nullptr);
}

TEST_CASE("algo keyed limiter: at most maxKeys, least recently used evicted first") {
  ManualClock clock;
  algo::TokenBucketLimiter limiter(RateLimitRule{2, 60000}, 100, clock.fn());
  // "hot" exhausts its quota, then stays recently used while 1000 other clients pass.
  CHECK(limiter.check("hot").allowed);
  CHECK(limiter.check("hot").allowed);
  for (int i = 0; i < 1000; ++i) {
    limiter.check("client-" + std::to_string(i));
    CHECK_FALSE(limiter.check("hot").allowed);  // its state survives: it is never the LRU one
    REQUIRE(limiter.size() <= 100);
  }
  CHECK(limiter.size() == 100);
  // A cold client evicted long ago starts afresh (lenient, documented).
  limiter.check("cold");
  limiter.check("cold");
  CHECK_FALSE(limiter.check("cold").allowed);
  for (int i = 0; i < 200; ++i) {
    limiter.check("flood-" + std::to_string(i));
  }
  CHECK(limiter.check("cold").allowed);
}

TEST_CASE("algo keyed limiter: idle keys are dropped as traffic passes, so the map shrinks") {
  for (const char* algorithm : {"token_bucket", "sliding_window"}) {
    CAPTURE(algorithm);
    ManualClock clock;
    auto limiter = algo::makeLocalRateLimiter(algorithm, RateLimitRule{5, 1000}, 10000, clock.fn());
    for (int i = 0; i < 500; ++i) {
      limiter->check("ip-" + std::to_string(i));
    }
    CHECK(limiter->size() == 500);
    clock.advance(2s);  // every one of them is back to a fresh state
    for (int i = 0; i < 100; ++i) {
      limiter->check("steady");
    }
    CHECK(limiter->size() == 501 - 2 * 100);  // two idle keys dropped per call
    for (int i = 0; i < 200; ++i) {
      limiter->check("steady");
    }
    CHECK(limiter->size() == 1);
  }
}

TEST_CASE("algo keyed limiter: shared by threads, a frozen clock allows exactly limit in total") {
  for (const char* algorithm : {"token_bucket", "sliding_window"}) {
    CAPTURE(algorithm);
    ManualClock clock;
    auto limiter = algo::makeLocalRateLimiter(algorithm, RateLimitRule{1000, 60000}, 16, clock.fn());
    std::atomic<int> allowed{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < 2000; ++i) {
          if (limiter->check("shared").allowed) {
            ++allowed;
          }
          limiter->check("own-" + std::to_string(t * 1000 + i % 50));  // churn the LRU too
        }
      });
    }
    for (auto& th : pool) {
      th.join();
    }
    CHECK(allowed.load() == 1000);
    CHECK(limiter->size() <= 16);
  }
}

TEST_CASE("algo keyed limiter: decision maps to RateLimit-* and Retry-After seconds") {
  struct Row {
    int64_t resetMs;
    int64_t retryMs;
    int64_t wantReset;
    int64_t wantRetry;
  };
  const Row rows[] = {
      {0, 0, 0, 1}, {1, 1, 1, 1}, {999, 999, 1, 1}, {1000, 1000, 1, 1}, {1001, 1001, 2, 2}, {60000, 6000, 60, 6},
  };
  for (const Row& r : rows) {
    algo::RateLimitDecision d;
    d.resetAfterMs = r.resetMs;
    d.retryAfterMs = r.retryMs;
    CHECK(d.resetSeconds() == r.wantReset);
    CHECK(d.retryAfterSeconds() == r.wantRetry);
  }
  const auto d = algo::decisionFromScriptReply(10, 0, -1, 5000, 250);
  CHECK_FALSE(d.allowed);
  CHECK(d.limit == 10);
  CHECK(d.remaining == 0);
  CHECK(d.resetAfterMs == 5000);
  CHECK(d.retryAfterMs == 250);
  CHECK(algo::decisionFromScriptReply(10, 1, 9, 100, 77).retryAfterMs == 0);
}
