#include "common/resilience/backoff.h"

#include <algorithm>
#include <limits>
#include <random>

#include "common/config/app_config.h"

namespace resilience {

BackoffPolicy BackoffPolicy::fromConfig(const cfg::RetryConfig& config) {
  BackoffPolicy p;
  p.attempts = config.attempts;
  p.base = config.backoff_base;
  p.max = config.backoff_max;
  return p;
}

JitterSource defaultJitter() {
  return [](uint64_t maxInclusive) -> uint64_t {
    // One generator per thread: no lock on the request path, and threads do not share a sequence.
    thread_local std::mt19937_64 gen{std::random_device{}()};
    std::uniform_int_distribution<uint64_t> dist(0, maxInclusive);
    return dist(gen);
  };
}

Millis backoffCeiling(const BackoffPolicy& policy, int retry) {
  const int64_t base = std::max<int64_t>(0, policy.base.count());
  const int64_t cap = std::max<int64_t>(0, policy.max.count());
  if (base == 0 || cap == 0) {
    return Millis{0};
  }
  int64_t ceiling = base;
  // Doubling until the cap instead of shifting: no overflow whatever `retry` is.
  for (int i = 0; i < retry && ceiling < cap; ++i) {
    ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
  }
  return Millis{std::min(ceiling, cap)};
}

Millis fullJitterDelay(const BackoffPolicy& policy, int retry, const JitterSource& jitter) {
  const auto ceiling = static_cast<uint64_t>(backoffCeiling(policy, retry).count());
  if (ceiling == 0) {
    return Millis{0};
  }
  // A misbehaving source must not escape the documented bound.
  const uint64_t drawn = std::min(jitter(ceiling), ceiling);
  return Millis{static_cast<int64_t>(drawn)};
}

std::optional<Millis> clampToDeadline(Millis delay, TimePoint now, TimePoint deadline, Millis minTryTime) {
  if (delay.count() < 0) {
    delay = Millis{0};
  }
  const auto left = std::chrono::duration_cast<Millis>(deadline - now);
  if (left <= minTryTime) {
    return std::nullopt;
  }
  return std::min(delay, left - minTryTime);
}

RetryState::RetryState(BackoffPolicy policy, TimePoint deadline, JitterSource jitter)
    : policy_(policy), deadline_(deadline), jitter_(std::move(jitter)) {
  policy_.attempts = std::max(1, policy_.attempts);
  if (!jitter_) {
    jitter_ = defaultJitter();
  }
}

int RetryState::beginTry() {
  return ++tries_;
}

std::optional<Millis> RetryState::nextDelay(TimePoint now, Millis minTryTime) {
  if (!attemptsLeft()) {
    return std::nullopt;
  }
  // tries_ == 1 -> the first retry -> exponent 0.
  const int retry = std::max(0, tries_ - 1);
  return clampToDeadline(fullJitterDelay(policy_, retry, jitter_), now, deadline_, minTryTime);
}

}  // namespace resilience
