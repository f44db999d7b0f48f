#pragma once
// The time source every algorithm in common/algo and common/resilience reads. The algorithms never
// call the system clock themselves: a NowFn is injected at construction so tests drive time by hand
// (ManualClock) and production passes steadyNow(). Monotonic time only: wall-clock jumps (NTP
// steps) must not open breakers or refill buckets.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace algo {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
using Millis = std::chrono::milliseconds;
using NowFn = std::function<TimePoint()>;

// The production clock.
inline NowFn steadyNow() {
  return [] { return SteadyClock::now(); };
}

// Whole milliseconds since the clock's epoch (floor). Rate limiters count in integer ms so that
// the in-process limiters and the Redis scripts (which see TIME in ms) do identical arithmetic.
inline int64_t toEpochMs(TimePoint t) {
  return std::chrono::duration_cast<Millis>(t.time_since_epoch()).count();
}

// A clock that only moves when told to. Safe to read from several threads (the value is atomic),
// so concurrency tests can share one. Starts at an arbitrary non-zero instant unless set.
class ManualClock {
 public:
  explicit ManualClock(TimePoint start = TimePoint{} + std::chrono::hours(1000))
      : ns_(start.time_since_epoch().count()) {}

  TimePoint now() const { return TimePoint{SteadyClock::duration{ns_.load(std::memory_order_relaxed)}}; }
  void set(TimePoint t) { ns_.store(t.time_since_epoch().count(), std::memory_order_relaxed); }
  void advance(SteadyClock::duration d) { ns_.fetch_add(d.count(), std::memory_order_relaxed); }
  // The NowFn to inject; the ManualClock must outlive whatever holds it.
  NowFn fn() const {
    return [this] { return now(); };
  }

 private:
  std::atomic<SteadyClock::rep> ns_;
};

}  // namespace algo
