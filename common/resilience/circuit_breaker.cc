#include "common/resilience/circuit_breaker.h"

#include <algorithm>
#include <utility>

#include "common/config/app_config.h"

namespace resilience {

using algo::SteadyClock;
using algo::TimePoint;

CircuitBreaker::Options CircuitBreaker::Options::fromConfig(const cfg::CircuitBreakerConfig& config) {
  Options o;
  o.failureRatio = config.failure_ratio;
  o.minRequests = config.min_requests;
  o.window = config.window;
  o.openDuration = config.open_duration;
  o.halfOpenRequests = config.half_open_requests;
  return o;
}

namespace {

CircuitBreaker::Options sanitized(CircuitBreaker::Options o) {
  // Config is validated at load; these only keep a hand-built Options from dividing by zero or
  // never closing.
  o.minRequests = std::max(1, o.minRequests);
  o.halfOpenRequests = std::max(1, o.halfOpenRequests);
  o.buckets = std::max(1, o.buckets);
  if (o.window.count() < 1) {
    o.window = algo::Millis{1};
  }
  if (o.openDuration.count() < 0) {
    o.openDuration = algo::Millis{0};
  }
  return o;
}

}  // namespace

CircuitBreaker::Permit::Permit(Permit&& other) noexcept
    : breaker_(std::exchange(other.breaker_, nullptr)), generation_(other.generation_), probe_(other.probe_) {}

CircuitBreaker::Permit& CircuitBreaker::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    release();
    breaker_ = std::exchange(other.breaker_, nullptr);
    generation_ = other.generation_;
    probe_ = other.probe_;
  }
  return *this;
}

CircuitBreaker::Permit::~Permit() {
  release();
}

void CircuitBreaker::Permit::finish(Outcome outcome) {
  if (breaker_ == nullptr) {
    return;  // refused, moved-from, or already recorded: recording twice is a no-op
  }
  CircuitBreaker* b = std::exchange(breaker_, nullptr);
  b->complete(generation_, probe_, outcome);
}

CircuitBreaker::CircuitBreaker(Options options, algo::NowFn now)
    : options_(sanitized(options)),
      now_(now ? std::move(now) : algo::steadyNow()),
      origin_(now_()),
      bucketWidth_(std::max<SteadyClock::duration>(
          SteadyClock::duration{1}, std::chrono::duration_cast<SteadyClock::duration>(options_.window) /
                                        options_.buckets)),
      buckets_(static_cast<size_t>(options_.buckets)) {}

int64_t CircuitBreaker::bucketIndexLocked(TimePoint now) const {
  // A clock that reads before origin_ (not monotonic in a test) lands in bucket 0.
  const auto since = now - origin_;
  return since.count() <= 0 ? 0 : since / bucketWidth_;
}

void CircuitBreaker::windowTotalsLocked(TimePoint now, int64_t& total, int64_t& failures) const {
  const int64_t current = bucketIndexLocked(now);
  const auto n = static_cast<int64_t>(buckets_.size());
  total = 0;
  failures = 0;
  for (const Bucket& b : buckets_) {
    if (b.index >= 0 && b.index > current - n && b.index <= current) {
      total += b.total;
      failures += b.failures;
    }
  }
}

void CircuitBreaker::moveLocked(State to, TimePoint now, Transition& t) {
  t.happened = true;
  t.from = state_;
  t.to = to;
  state_ = to;
  ++generation_;
  probesInFlight_ = 0;
  probeSuccesses_ = 0;
  if (to == State::Open) {
    openUntil_ = now + options_.openDuration;
  }
  if (to == State::Closed) {
    // Closing starts from a clean slate: the failures that opened the breaker are history.
    std::fill(buckets_.begin(), buckets_.end(), Bucket{});
  }
}

void CircuitBreaker::maybeHalfOpenLocked(TimePoint now, Transition& t) {
  if (state_ == State::Open && now >= openUntil_) {
    moveLocked(State::HalfOpen, now, t);
  }
}

void CircuitBreaker::notify(const Transition& t) const {
  if (t.happened && hook_) {
    hook_(t.from, t.to);
  }
}

CircuitBreaker::Permit CircuitBreaker::tryAcquire() {
  const TimePoint now = now_();
  Transition t;
  Permit permit;
  {
    std::lock_guard<std::mutex> lock(mu_);
    maybeHalfOpenLocked(now, t);
    switch (state_) {
      case State::Closed:
        permit = Permit(this, generation_, false);
        break;
      case State::Open:
        break;
      case State::HalfOpen:
        // Successful probes keep their slot: at most halfOpenRequests probes per half-open period
        // (plus replacements for probes released without a verdict).
        if (probesInFlight_ + probeSuccesses_ < options_.halfOpenRequests) {
          ++probesInFlight_;
          permit = Permit(this, generation_, true);
        }
        break;
    }
  }
  notify(t);
  return permit;
}

void CircuitBreaker::complete(uint64_t generation, bool probe, Permit::Outcome outcome) {
  const TimePoint now = now_();
  Transition t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation != generation_) {
      return;  // issued in an earlier period; that period was already decided
    }
    if (probe) {
      // generation matches, so state_ is still the HalfOpen period that issued the probe.
      --probesInFlight_;
      if (outcome == Permit::Outcome::Failure) {
        moveLocked(State::Open, now, t);
      } else if (outcome == Permit::Outcome::Success) {
        ++probeSuccesses_;
        if (probeSuccesses_ >= options_.halfOpenRequests) {
          moveLocked(State::Closed, now, t);
        }
      }
    } else if (state_ == State::Closed && outcome != Permit::Outcome::None) {
      const int64_t index = bucketIndexLocked(now);
      Bucket& b = buckets_[static_cast<size_t>(index % static_cast<int64_t>(buckets_.size()))];
      if (b.index != index) {
        b = Bucket{index, 0, 0};
      }
      ++b.total;
      if (outcome == Permit::Outcome::Failure) {
        ++b.failures;
      }
      int64_t total = 0;
      int64_t failures = 0;
      windowTotalsLocked(now, total, failures);
      // Division rather than failures >= ratio * total: both sides are then correctly rounded
      // images of the same exact value when the ratio is met exactly (3/30 vs 0.1).
      if (total >= options_.minRequests &&
          static_cast<double>(failures) / static_cast<double>(total) >= options_.failureRatio) {
        moveLocked(State::Open, now, t);
      }
    }
  }
  notify(t);
}

CircuitBreaker::State CircuitBreaker::state() {
  const TimePoint now = now_();
  Transition t;
  State s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    maybeHalfOpenLocked(now, t);
    s = state_;
  }
  notify(t);
  return s;
}

CircuitBreaker::Snapshot CircuitBreaker::snapshot() {
  const TimePoint now = now_();
  Transition t;
  Snapshot s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    maybeHalfOpenLocked(now, t);
    s.state = state_;
    if (state_ == State::Closed) {
      windowTotalsLocked(now, s.windowTotal, s.windowFailures);
    }
    s.probesInFlight = probesInFlight_;
    s.probeSuccesses = probeSuccesses_;
    s.transitions = generation_;
  }
  notify(t);
  return s;
}

}  // namespace resilience
