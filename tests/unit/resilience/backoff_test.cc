// resilience::BackoffPolicy / RetryState: the exponential ceiling, full jitter bounds, attempts
// accounting and the deadline clamp, with pinned jitter and hand-set instants.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/config/app_config.h"
#include "common/resilience/backoff.h"

using namespace std::chrono_literals;
using resilience::BackoffPolicy;
using resilience::JitterSource;
using resilience::Millis;
using resilience::RetryState;
using resilience::TimePoint;

namespace {

const TimePoint kT0 = TimePoint{} + 1000h;

JitterSource fixedJitter(double fraction, std::vector<uint64_t>* seenMax = nullptr) {
  return [fraction, seenMax](uint64_t maxInclusive) -> uint64_t {
    if (seenMax != nullptr) {
      seenMax->push_back(maxInclusive);
    }
    return static_cast<uint64_t>(static_cast<double>(maxInclusive) * fraction);
  };
}

}  // namespace

TEST_CASE("resilience backoff: ceiling = min(max, base * 2^retry), saturating") {
  struct Row {
    int64_t base;
    int64_t max;
    int retry;
    int64_t want;
  };
  const Row rows[] = {
      {200, 1000, 0, 200},      {200, 1000, 1, 400},         {200, 1000, 2, 800},
      {200, 1000, 3, 1000},     {200, 1000, 10, 1000},       {200, 1000, 1000000, 1000},
      {300, 1000, 2, 1000},     {1, INT64_MAX, 62, int64_t{1} << 62}, {1, INT64_MAX, 200, INT64_MAX},
      {2000, 1000, 0, 1000},    {0, 1000, 5, 0},             {200, 0, 1, 0},
      {200, 1000, -3, 200},
  };
  for (const Row& r : rows) {
    CAPTURE(r.base);
    CAPTURE(r.max);
    CAPTURE(r.retry);
    BackoffPolicy p{3, Millis{r.base}, Millis{r.max}};
    CHECK(resilience::backoffCeiling(p, r.retry).count() == r.want);
  }
}

TEST_CASE("resilience backoff: full jitter draws in [0, ceiling] and never beyond") {
  const BackoffPolicy p{5, 200ms, 1000ms};
  struct Row {
    double fraction;
    int retry;
    int64_t want;
  };
  const Row rows[] = {
      {0.0, 0, 0}, {1.0, 0, 200}, {0.5, 0, 100}, {1.0, 1, 400}, {0.25, 2, 200}, {1.0, 5, 1000}, {1e9, 1, 400},
  };
  for (const Row& r : rows) {
    CAPTURE(r.fraction);
    CAPTURE(r.retry);
    std::vector<uint64_t> seen;
    CHECK(resilience::fullJitterDelay(p, r.retry, fixedJitter(r.fraction, &seen)).count() == r.want);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == static_cast<uint64_t>(resilience::backoffCeiling(p, r.retry).count()));
  }
}

TEST_CASE("resilience backoff: the default jitter source is uniform over [0, ceiling]") {
  const BackoffPolicy p{3, 400ms, 1000ms};
  const JitterSource jitter = resilience::defaultJitter();
  int64_t lo = INT64_MAX;
  int64_t hi = 0;
  double sum = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const int64_t d = resilience::fullJitterDelay(p, 0, jitter).count();
    REQUIRE(d >= 0);
    REQUIRE(d <= 400);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
    sum += static_cast<double>(d);
  }
  CHECK(lo < 20);
  CHECK(hi > 380);
  CHECK(sum / n == doctest::Approx(200).epsilon(0.05));
}

TEST_CASE("resilience backoff: clampToDeadline keeps minTryTime for the try or gives up") {
  struct Row {
    int64_t delay;
    int64_t left;  // deadline - now
    int64_t minTry;
    std::optional<int64_t> want;
  };
  const Row rows[] = {
      {100, 1000, 1, 100},     // plenty of time
      {100, 101, 1, 100},      // exactly fits
      {100, 100, 1, 99},       // shortened so the try starts with 1ms left
      {500, 300, 50, 250},     // shortened to keep 50ms for the try
      {0, 10, 1, 0},           // immediate retry
      {100, 1, 1, std::nullopt},   // nothing useful left
      {100, 0, 1, std::nullopt},   // at the deadline
      {100, -5, 1, std::nullopt},  // past it
      {-7, 100, 1, 0},         // negative delays are treated as 0
  };
  for (const Row& r : rows) {
    CAPTURE(r.delay);
    CAPTURE(r.left);
    CAPTURE(r.minTry);
    auto got = resilience::clampToDeadline(Millis{r.delay}, kT0, kT0 + Millis{r.left}, Millis{r.minTry});
    REQUIRE(got.has_value() == r.want.has_value());
    if (got) {
      CHECK(got->count() == *r.want);
    }
  }
}

TEST_CASE("resilience backoff: RetryState counts tries and stops at attempts") {
  const BackoffPolicy p{3, 200ms, 1000ms};
  RetryState rs(p, kT0 + 60s, fixedJitter(1.0));
  CHECK(rs.triesStarted() == 0);
  CHECK(rs.retries() == 0);
  CHECK(rs.beginTry() == 1);
  CHECK(rs.retries() == 0);
  auto d1 = rs.nextDelay(kT0);
  REQUIRE(d1);
  CHECK(d1->count() == 200);  // first retry: ceiling base
  CHECK(rs.beginTry() == 2);
  CHECK(rs.retries() == 1);
  auto d2 = rs.nextDelay(kT0 + 300ms);
  REQUIRE(d2);
  CHECK(d2->count() == 400);  // second retry: 2 * base
  CHECK(rs.beginTry() == 3);
  CHECK(rs.retries() == 2);
  CHECK_FALSE(rs.attemptsLeft());
  CHECK_FALSE(rs.nextDelay(kT0 + 1s).has_value());  // 3 tries were the budget
}

TEST_CASE("resilience backoff: RetryState table of attempts x deadline") {
  struct Row {
    int attempts;
    int64_t deadlineMs;  // from kT0
    int64_t failAtMs;    // when the first try fails
    std::optional<int64_t> want;
  };
  const Row rows[] = {
      {1, 60000, 10, std::nullopt},  // attempts: 1 = no retries at all
      {0, 60000, 10, std::nullopt},  // nonsense config behaves as 1
      {3, 60000, 10, 200},
      {3, 150, 10, 139},             // 140ms left: delay shortened to leave 1ms for the try
      {3, 11, 10, std::nullopt},     // 1ms left: give up
      {3, 5, 10, std::nullopt},      // the try failed after the deadline
  };
  for (const Row& r : rows) {
    CAPTURE(r.attempts);
    CAPTURE(r.deadlineMs);
    RetryState rs(BackoffPolicy{r.attempts, 200ms, 1000ms}, kT0 + Millis{r.deadlineMs}, fixedJitter(1.0));
    rs.beginTry();
    auto got = rs.nextDelay(kT0 + Millis{r.failAtMs});
    REQUIRE(got.has_value() == r.want.has_value());
    if (got) {
      CHECK(got->count() == *r.want);
    }
  }
}

TEST_CASE("resilience backoff: fromConfig copies retry.attempts/backoff_base/backoff_max") {
  cfg::RetryConfig c;
  c.attempts = 4;
  c.backoff_base = 50ms;
  c.backoff_max = 700ms;
  const BackoffPolicy p = BackoffPolicy::fromConfig(c);
  CHECK(p.attempts == 4);
  CHECK(p.base == 50ms);
  CHECK(p.max == 700ms);
}
