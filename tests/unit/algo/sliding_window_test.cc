// algo::SlidingWindow: the two-window estimate, no 2x burst at an edge, exact retry-after, and
// the documented worst-case error bound checked by brute force.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/algo/sliding_window.h"

using algo::RateLimitDecision;
using algo::RateLimitRule;
using algo::SlidingWindow;

namespace {

const int64_t kT0 = 1'700'000'040'000;  // a multiple of 1000 and 60000: window-aligned

int burst(SlidingWindow::State& st, const RateLimitRule& rule, int64_t at, int n) {
  int allowed = 0;
  for (int i = 0; i < n; ++i) {
    allowed += SlidingWindow::decide(st, rule, at).allowed ? 1 : 0;
  }
  return allowed;
}

}  // namespace

TEST_CASE("algo sliding window: a burst of 30 with limit 10 allows exactly the first 10") {
  const RateLimitRule rule{10, 60000};
  SlidingWindow::State st;
  for (int i = 0; i < 30; ++i) {
    CAPTURE(i);
    const RateLimitDecision d = SlidingWindow::decide(st, rule, kT0 + 1000);
    CHECK(d.allowed == (i < 10));
    CHECK(d.remaining == std::max(0, 9 - i));
    // Counted requests weigh until the end of the next fixed window.
    CHECK(d.resetAfterMs == 59000 + 60000);
    if (i >= 10) {
      // The window is full: wait for its end, then for 1/limit of the next one.
      CHECK(d.retryAfterMs == 59000 + 6000);
    }
  }
}

TEST_CASE("algo sliding window: no 2x burst across a window edge (a fixed window would allow it)") {
  const RateLimitRule rule{10, 1000};
  struct Row {
    int64_t firstAt;   // offset in window 0
    int64_t secondAt;  // absolute offset of the second burst
    int wantSecond;
  };
  const Row rows[] = {
      {999, 1000, 0},   // straddling the edge by 1ms: nothing more
      {900, 1050, 0},   // prev weighs 0.95
      {900, 1100, 1},   // weighs 0.9: 9 + 1 fits
      {900, 1500, 5},   // half of it slid out
      {900, 1999, 9},   // 10 * 1/1000 still weighs -> 9, not 10
      {900, 2000, 10},  // prev of prev: gone
      {0, 999, 0},      // same window: a plain limit
  };
  for (const Row& r : rows) {
    CAPTURE(r.firstAt);
    CAPTURE(r.secondAt);
    SlidingWindow::State st;
    CHECK(burst(st, rule, kT0 + r.firstAt, 10) == 10);
    CHECK(burst(st, rule, kT0 + r.secondAt, 10) == r.wantSecond);
  }
}

TEST_CASE("algo sliding window: retry-after, remaining and reset by hand") {
  const RateLimitRule rule{10, 1000};
  SlidingWindow::State st;
  REQUIRE(burst(st, rule, kT0 + 900, 10) == 10);

  RateLimitDecision d = SlidingWindow::decide(st, rule, kT0 + 1000);
  CHECK_FALSE(d.allowed);
  CHECK(d.retryAfterMs == 100);  // 10 * (1000 - e) + 1000 <= 10000 from e = 100
  CHECK(d.remaining == 0);
  CHECK(d.resetAfterMs == 1000);  // only prev left, weighing until the end of window 1
  d = SlidingWindow::decide(st, rule, kT0 + 1099);
  CHECK_FALSE(d.allowed);
  CHECK(d.retryAfterMs == 1);
  d = SlidingWindow::decide(st, rule, kT0 + 1100);
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  CHECK(d.resetAfterMs == 900 + 1000);

  // A full current window waits for the next one: curr = limit at e = 0.
  SlidingWindow::State full;
  REQUIRE(burst(full, rule, kT0, 10) == 10);
  d = SlidingWindow::decide(full, rule, kT0 + 500);
  CHECK_FALSE(d.allowed);
  CHECK(d.retryAfterMs == 500 + 100);
  CHECK_FALSE(SlidingWindow::decide(full, rule, kT0 + 1099).allowed);
  CHECK(SlidingWindow::decide(full, rule, kT0 + 1100).allowed);
}

TEST_CASE("algo sliding window: retry-after is exact (denied 1ms before, allowed at it), randomised") {
  std::mt19937_64 rng(7);
  const RateLimitRule rules[] = {{1, 1000}, {10, 1000}, {7, 60000}, {100, 1000}, {1000, 10}, {5, 3}, {3, 1000}};
  for (const RateLimitRule& rule : rules) {
    CAPTURE(rule.limit);
    CAPTURE(rule.windowMs);
    SlidingWindow::State st;
    int64_t now = kT0 + 17;
    for (int i = 0; i < 3000; ++i) {
      now += static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * rule.windowMs / rule.limit + 2));
      const RateLimitDecision d = SlidingWindow::decide(st, rule, now);
      REQUIRE(d.remaining >= 0);
      REQUIRE(d.remaining <= rule.limit);
      if (!d.allowed) {
        REQUIRE(d.retryAfterMs >= 1);
        if (d.retryAfterMs > 1) {
          SlidingWindow::State before = st;
          REQUIRE_FALSE(SlidingWindow::decide(before, rule, now + d.retryAfterMs - 1).allowed);
        }
        SlidingWindow::State at = st;
        REQUIRE(SlidingWindow::decide(at, rule, now + d.retryAfterMs).allowed);
      }
      SlidingWindow::State full = st;
      REQUIRE(burst(full, rule, now + d.resetAfterMs, static_cast<int>(rule.limit) + 1) == rule.limit);
    }
  }
}

TEST_CASE("algo sliding window: brute-force check of the documented error bound") {
  // Over any interval of length d <= W the allowed count is at most limit + limit*d/W; an exact
  // sliding window would allow `limit`. Patterns: a client that tries every ms, one that bursts
  // at the end of each window, and random arrivals.
  const RateLimitRule rule{10, 1000};
  const int64_t w = rule.windowMs;
  std::mt19937_64 rng(3);
  std::vector<std::vector<int64_t>> patterns(3);
  for (int64_t t = 0; t < 10 * w; ++t) {
    patterns[0].push_back(t);
    if (t % w >= w - 5 || t % w < 5) {
      for (int k = 0; k < 5; ++k) {
        patterns[1].push_back(t);
      }
    }
    if (rng() % 20 == 0) {
      patterns[2].push_back(t);
    }
  }
  for (size_t p = 0; p < patterns.size(); ++p) {
    CAPTURE(p);
    SlidingWindow::State st;
    std::vector<int64_t> allowed;
    for (int64_t t : patterns[p]) {
      if (SlidingWindow::decide(st, rule, kT0 + t).allowed) {
        allowed.push_back(t);
      }
    }
    for (int64_t d : {1, 10, 100, 250, 500, 999, 1000}) {
      CAPTURE(d);
      size_t worst = 0;
      size_t j = 0;
      for (size_t i = 0; i < allowed.size(); ++i) {
        while (allowed[i] - allowed[j] >= d) {
          ++j;
        }
        worst = std::max(worst, i - j + 1);
      }
      const double bound = static_cast<double>(rule.limit) + static_cast<double>(rule.limit * d) / w;
      CHECK(static_cast<double>(worst) <= bound);
      if (d <= 10) {
        CHECK(worst <= 11);  // never anything like a fixed window's 2 x 10 at the edge
      }
    }
  }
}

TEST_CASE("algo sliding window: idle detection and a clock stepping back") {
  const RateLimitRule rule{5, 1000};
  SlidingWindow::State st;
  CHECK(SlidingWindow::idle(st, rule, kT0));
  SlidingWindow::decide(st, rule, kT0 + 10);
  CHECK_FALSE(SlidingWindow::idle(st, rule, kT0 + 1999));  // curr weighs through window 1
  CHECK(SlidingWindow::idle(st, rule, kT0 + 2000));

  SlidingWindow::State back;
  CHECK(burst(back, rule, kT0 + 1500, 5) == 5);
  // 900ms back, into window 0: counted in window 1 at its start (most conservative), so still full.
  const auto d = SlidingWindow::decide(back, rule, kT0 + 600);
  CHECK_FALSE(d.allowed);
  CHECK(d.retryAfterMs > 0);
}
