#pragma once
// Circuit breaker for one upstream (CONTRACT §4 "Upstream resilience"; the same class guards
// upstream_app's shipping client). I/O-free: time comes from an injected NowFn.
//
//   Closed   requests flow; each outcome is counted in a rolling window of `window` made of
//            `buckets` time buckets. When the window holds at least `minRequests` outcomes and
//            failures/total >= failureRatio, the breaker opens.
//   Open     tryAcquire() refuses at once (the caller answers 503 without touching the upstream).
//            After `openDuration` the next tryAcquire() or state() moves it to HalfOpen.
//   HalfOpen at most `halfOpenRequests` probe permits are out at a time; the rest are refused as
//            if Open. Once `halfOpenRequests` probes succeeded -> Closed with an empty window; the
//            first failed probe -> Open for another `openDuration`.
//
// Window granularity: an outcome is dropped between (buckets-1)/buckets * window and `window`
// after it was recorded (one bucket's width of slack, 1s with the defaults).
//
// Outcomes are only counted for the period in which their permit was issued: a request admitted
// while Closed that fails after the breaker opened (or after a later recovery) does not count
// again, and only probes decide a HalfOpen period.
//
// Threads: one breaker per upstream is shared by every worker thread. All state sits behind one
// std::mutex; the critical sections are a few integer operations (no allocation, no callback),
// so the cost is two uncontended lock/unlock pairs per request (tens of ns) and contention only
// matters at millions of requests/s across workers. That was judged simpler and cheaper to get
// right than per-thread windows that must be merged to decide. The transition hook runs after the
// lock is released, on whichever thread caused the transition; hooks from different threads can
// therefore be reported out of order (each call names both states).
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "common/algo/clock.h"

namespace cfg {
struct CircuitBreakerConfig;
}

namespace resilience {

class CircuitBreaker {
 public:
  // Values are the gateway_circuit_breaker_state gauge: 0 closed, 1 open, 2 half-open.
  enum class State : int { Closed = 0, Open = 1, HalfOpen = 2 };

  struct Options {
    double failureRatio = 0.5;  // (0, 1]
    int minRequests = 20;       // >= 1
    algo::Millis window{10000};
    algo::Millis openDuration{5000};
    int halfOpenRequests = 3;  // >= 1
    int buckets = 10;          // >= 1; window / buckets is the window's granularity

    static Options fromConfig(const cfg::CircuitBreakerConfig& config);
  };

  // Runs after each state change, outside the breaker's lock (it may call state()).
  using TransitionHook = std::function<void(State from, State to)>;

  // The right to make one upstream call, from tryAcquire(). Move-only RAII: record the outcome
  // once with recordSuccess()/recordFailure(); a permit destroyed or release()d without an outcome
  // (the client went away before the upstream answered) counts as nothing but gives its
  // half-open probe slot back. The breaker must outlive its permits.
  class Permit {
   public:
    Permit() = default;  // a refused permit
    Permit(Permit&& other) noexcept;
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit();

    // false: the breaker is open (or half-open with every probe slot taken): answer 503 now.
    bool admitted() const { return breaker_ != nullptr; }
    explicit operator bool() const { return admitted(); }
    // This call is a half-open probe (its outcome decides whether the breaker closes).
    bool isProbe() const { return probe_; }

    void recordSuccess() { finish(Outcome::Success); }
    void recordFailure() { finish(Outcome::Failure); }
    void record(bool failed) { finish(failed ? Outcome::Failure : Outcome::Success); }
    void release() { finish(Outcome::None); }

   private:
    friend class CircuitBreaker;
    enum class Outcome { None, Success, Failure };
    Permit(CircuitBreaker* breaker, uint64_t generation, bool probe)
        : breaker_(breaker), generation_(generation), probe_(probe) {}
    void finish(Outcome outcome);

    CircuitBreaker* breaker_ = nullptr;
    uint64_t generation_ = 0;
    bool probe_ = false;
  };

  explicit CircuitBreaker(Options options, algo::NowFn now = algo::steadyNow());
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Set before the breaker is shared between threads (not synchronised).
  void setTransitionHook(TransitionHook hook) { hook_ = std::move(hook); }

  // Call before each upstream call (each try of a retried request takes its own permit, so every
  // try's outcome counts). Never blocks beyond the internal lock.
  Permit tryAcquire();

  // Current state; moves Open -> HalfOpen when openDuration has passed, so a gauge read by
  // /metrics shows half-open without waiting for traffic.
  State state();
  int stateValue() { return static_cast<int>(state()); }

  struct Snapshot {
    State state = State::Closed;
    int64_t windowTotal = 0;     // outcomes in the rolling window (Closed only)
    int64_t windowFailures = 0;  // failures among them
    int probesInFlight = 0;      // HalfOpen only
    int probeSuccesses = 0;      // HalfOpen only
    uint64_t transitions = 0;    // state changes since construction
  };
  // For tests and debug endpoints.
  Snapshot snapshot();

  const Options& options() const { return options_; }

 private:
  struct Bucket {
    int64_t index = -1;  // absolute bucket number since origin_, -1 = never used
    int64_t total = 0;
    int64_t failures = 0;
  };
  struct Transition {
    bool happened = false;
    State from = State::Closed;
    State to = State::Closed;
  };

  void complete(uint64_t generation, bool probe, Permit::Outcome outcome);
  // The helpers below run with mu_ held.
  void maybeHalfOpenLocked(algo::TimePoint now, Transition& t);
  void moveLocked(State to, algo::TimePoint now, Transition& t);
  int64_t bucketIndexLocked(algo::TimePoint now) const;
  void windowTotalsLocked(algo::TimePoint now, int64_t& total, int64_t& failures) const;
  void notify(const Transition& t) const;

  const Options options_;
  const algo::NowFn now_;
  const algo::TimePoint origin_;
  const algo::SteadyClock::duration bucketWidth_;
  TransitionHook hook_;

  std::mutex mu_;
  State state_ = State::Closed;
  uint64_t generation_ = 0;  // +1 on every transition; permits of older periods are ignored
  std::vector<Bucket> buckets_;
  algo::TimePoint openUntil_{};
  int probesInFlight_ = 0;
  int probeSuccesses_ = 0;
};

}  // namespace resilience
