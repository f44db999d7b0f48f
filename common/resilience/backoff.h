#pragma once
// Retry pacing for upstream calls (gateway upstream, upstream_app's shipping client): exponential
// backoff with AWS-style "full jitter", attempts accounting, and the rule that no retry starts past
// the request's deadline (gateway.request_timeout). I/O-free: the caller owns timers and passes
// `now`; randomness is injected so tests pin it.
//
// Use, per request (RetryState lives in the request context, never shared):
//   RetryState retry(policy, requestDeadline);
//   retry.beginTry();                      // before the first try
//   ... try fails with an error that is retry-safe (see failure.h) ...
//   if (auto d = retry.nextDelay(now)) { start a timer for *d, then beginTry() and try again }
//   else { end the request with this error }
//   log/metric: retry.retries()
#include <cstdint>
#include <functional>
#include <optional>

#include "common/algo/clock.h"

namespace cfg {
struct RetryConfig;
}

namespace resilience {

using algo::Millis;
using algo::TimePoint;

struct BackoffPolicy {
  int attempts = 3;  // total tries, the first included; values < 1 behave as 1
  Millis base{200};  // ceiling of the first retry's delay
  Millis max{1000};  // no delay ceiling grows beyond this

  // retry.attempts / backoff_base / backoff_max as loaded (already validated).
  static BackoffPolicy fromConfig(const cfg::RetryConfig& config);
};

// Returns a uniformly distributed integer in [0, maxInclusive]. Must be callable from the thread
// that owns the RetryState; defaultJitter() is thread-safe (one generator per thread).
using JitterSource = std::function<uint64_t(uint64_t maxInclusive)>;
JitterSource defaultJitter();

// min(max, base * 2^retry) for retry = 0 (the pause before the 2nd try), 1, 2, ...
// Saturates instead of overflowing for any retry >= 0; negative retry counts as 0.
Millis backoffCeiling(const BackoffPolicy& policy, int retry);

// Full jitter: uniform in [0, backoffCeiling(policy, retry)]. Spreads the retries of many clients
// hit by the same outage over the whole interval instead of synchronising them (AWS Architecture
// Blog, "Exponential Backoff And Jitter"); a delay of 0 is a legitimate draw.
Millis fullJitterDelay(const BackoffPolicy& policy, int retry, const JitterSource& jitter);

// Fits a retry into the time left before `deadline`. The next try needs at least `minTryTime`
// to be worth making, so:
//   - time left <= minTryTime                -> nullopt: do not retry, end with the current error
//                                               (a try with no time left could only turn that
//                                               error into a later 504);
//   - otherwise the delay, shortened if needed so that the try starts with minTryTime left.
std::optional<Millis> clampToDeadline(Millis delay, TimePoint now, TimePoint deadline, Millis minTryTime);

class RetryState {
 public:
  RetryState(BackoffPolicy policy, TimePoint deadline, JitterSource jitter = defaultJitter());

  // Call right before each try, the first included. Returns the try's 1-based number.
  int beginTry();
  int triesStarted() const { return tries_; }
  // Tries beyond the first: the access log's `retries` and gateway_upstream_retries_total.
  int retries() const { return tries_ > 1 ? tries_ - 1 : 0; }
  bool attemptsLeft() const { return tries_ < policy_.attempts; }

  // After a try failed with a retry-safe error: the pause before the next try, or nullopt when
  // the request must end with this error now (attempts used up, or too close to the deadline;
  // see clampToDeadline). Draws fresh jitter on each call; does not count a try by itself.
  std::optional<Millis> nextDelay(TimePoint now, Millis minTryTime = Millis{1});

  TimePoint deadline() const { return deadline_; }

 private:
  BackoffPolicy policy_;
  TimePoint deadline_;
  JitterSource jitter_;
  int tries_ = 0;
};

}  // namespace resilience
