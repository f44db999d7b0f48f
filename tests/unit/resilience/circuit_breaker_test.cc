// resilience::CircuitBreaker driven by a ManualClock: opening on the windowed failure ratio,
// failing fast while open, half-open probes, stale outcomes, hooks and concurrent use.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/algo/clock.h"
#include "common/config/app_config.h"
#include "common/resilience/circuit_breaker.h"

using namespace std::chrono_literals;
using algo::ManualClock;
using resilience::CircuitBreaker;
using State = resilience::CircuitBreaker::State;

namespace {

CircuitBreaker::Options contractDefaults() {
  return CircuitBreaker::Options{};  // 0.5, 20, 10s, 5s, 3, 10 buckets
}

// Runs one admitted call with the given outcome; false if the breaker refused it.
bool call(CircuitBreaker& b, bool fail) {
  auto p = b.tryAcquire();
  if (!p) {
    return false;
  }
  p.record(fail);
  return true;
}

// 'S' success, 'F' failure, in order; returns how many were admitted.
int run(CircuitBreaker& b, const std::string& outcomes) {
  int admitted = 0;
  for (char c : outcomes) {
    admitted += call(b, c == 'F') ? 1 : 0;
  }
  return admitted;
}

void openIt(CircuitBreaker& b) {
  run(b, std::string(static_cast<size_t>(b.options().minRequests), 'F'));
  REQUIRE(b.state() == State::Open);
}

}  // namespace

TEST_CASE("resilience circuit breaker: opens on failure_ratio over at least min_requests") {
  struct Row {
    const char* name;
    std::string outcomes;
    State want;
  };
  const std::vector<Row> rows = {
      {"19 failures: below min_requests", std::string(19, 'F'), State::Closed},
      {"20 failures", std::string(20, 'F'), State::Open},
      {"10 ok then 10 failed: ratio 0.5 reached", std::string(10, 'S') + std::string(10, 'F'), State::Open},
      {"10 failed then 10 ok: 0.5 reached on the 20th", std::string(10, 'F') + std::string(10, 'S'), State::Open},
      {"11 ok 9 failed: 0.45", std::string(11, 'S') + std::string(9, 'F'), State::Closed},
      {"11 ok 10 failed: 0.476", std::string(11, 'S') + std::string(10, 'F'), State::Closed},
      {"11 ok 11 failed: 0.5", std::string(11, 'S') + std::string(11, 'F'), State::Open},
      {"100 ok", std::string(100, 'S'), State::Closed},
      {"60 ok 40 failed: 0.4", std::string(60, 'S') + std::string(40, 'F'), State::Closed},
  };
  for (const Row& r : rows) {
    CAPTURE(r.name);
    ManualClock clock;
    CircuitBreaker b(contractDefaults(), clock.fn());
    run(b, r.outcomes);
    CHECK(b.state() == r.want);
    CHECK(b.stateValue() == static_cast<int>(r.want));
  }
}

TEST_CASE("resilience circuit breaker: ratios that are not binary fractions still trip exactly") {
  ManualClock clock;
  CircuitBreaker::Options o;
  o.failureRatio = 0.1;
  o.minRequests = 30;
  CircuitBreaker b(o, clock.fn());
  run(b, std::string(27, 'S') + std::string(2, 'F'));
  CHECK(b.state() == State::Closed);
  run(b, "F");  // 3 / 30 == 0.1
  CHECK(b.state() == State::Open);
}

TEST_CASE("resilience circuit breaker: the rolling window forgets old outcomes bucket by bucket") {
  ManualClock clock;
  CircuitBreaker b(contractDefaults(), clock.fn());  // 10s window, 1s buckets
  run(b, std::string(15, 'F'));
  CHECK(b.snapshot().windowFailures == 15);

  clock.advance(9999ms);  // still in the window (the bucket of t=0 is the oldest of 10)
  CHECK(b.snapshot().windowTotal == 15);
  clock.advance(1ms);  // t = 10s: that bucket slides out
  CHECK(b.snapshot().windowTotal == 0);
  run(b, std::string(5, 'F'));
  CHECK(b.state() == State::Closed);  // only 5 in the window

  // Spread over the window they add up again.
  run(b, std::string(10, 'F'));
  clock.advance(5s);
  run(b, std::string(4, 'F'));
  CHECK(b.state() == State::Closed);  // 19
  run(b, "F");
  CHECK(b.state() == State::Open);  // 20 within 10s
}

TEST_CASE("resilience circuit breaker: open fails fast, then half-open after open_duration") {
  ManualClock clock;
  std::vector<std::pair<State, State>> transitions;
  CircuitBreaker b(contractDefaults(), clock.fn());
  b.setTransitionHook([&](State from, State to) { transitions.emplace_back(from, to); });
  openIt(b);

  for (int i = 0; i < 100; ++i) {
    auto p = b.tryAcquire();
    CHECK_FALSE(p.admitted());
  }
  clock.advance(4999ms);
  CHECK(b.state() == State::Open);
  CHECK_FALSE(b.tryAcquire());
  clock.advance(1ms);
  CHECK(b.state() == State::HalfOpen);  // visible to the gauge without traffic
  CHECK(b.stateValue() == 2);

  REQUIRE(transitions.size() == 2);
  CHECK(transitions[0] == std::make_pair(State::Closed, State::Open));
  CHECK(transitions[1] == std::make_pair(State::Open, State::HalfOpen));
}

TEST_CASE("resilience circuit breaker: half_open_requests probes all succeeding close it") {
  ManualClock clock;
  CircuitBreaker b(contractDefaults(), clock.fn());
  openIt(b);
  clock.advance(5s);

  auto p1 = b.tryAcquire();
  auto p2 = b.tryAcquire();
  auto p3 = b.tryAcquire();
  REQUIRE(p1);
  REQUIRE(p2);
  REQUIRE(p3);
  CHECK(p1.isProbe());
  CHECK_FALSE(b.tryAcquire());  // a 4th concurrent probe is refused
  CHECK(b.snapshot().probesInFlight == 3);

  p1.recordSuccess();
  p2.recordSuccess();
  CHECK(b.state() == State::HalfOpen);
  CHECK_FALSE(b.tryAcquire());  // successes keep their slot: 3 probes per half-open period
  p3.recordSuccess();
  CHECK(b.state() == State::Closed);

  auto s = b.snapshot();
  CHECK(s.windowTotal == 0);  // the window was reset
  CHECK(s.transitions == 3);  // closed->open->half-open->closed
  run(b, std::string(19, 'F'));
  CHECK(b.state() == State::Closed);  // the old failures do not count
}

TEST_CASE("resilience circuit breaker: a failing probe reopens for another open_duration") {
  ManualClock clock;
  CircuitBreaker b(contractDefaults(), clock.fn());
  openIt(b);
  clock.advance(5s);

  auto p1 = b.tryAcquire();
  auto p2 = b.tryAcquire();
  REQUIRE(p1);
  REQUIRE(p2);
  p1.recordSuccess();
  p2.recordFailure();
  CHECK(b.state() == State::Open);
  CHECK_FALSE(b.tryAcquire());
  clock.advance(4999ms);
  CHECK(b.state() == State::Open);
  clock.advance(1ms);
  CHECK(b.state() == State::HalfOpen);
  CHECK(run(b, "SSS") == 3);
  CHECK(b.state() == State::Closed);
}

TEST_CASE("resilience circuit breaker: a probe released without a verdict gives its slot back") {
  ManualClock clock;
  CircuitBreaker::Options o = contractDefaults();
  o.halfOpenRequests = 1;
  CircuitBreaker b(o, clock.fn());
  openIt(b);
  clock.advance(5s);
  {
    auto p = b.tryAcquire();
    REQUIRE(p);
    CHECK_FALSE(b.tryAcquire());
  }  // destroyed without recording: the client went away
  CHECK(b.state() == State::HalfOpen);
  auto p = b.tryAcquire();
  REQUIRE(p);
  p.release();
  CHECK(b.state() == State::HalfOpen);
  CHECK(run(b, "S") == 1);
  CHECK(b.state() == State::Closed);
}

TEST_CASE("resilience circuit breaker: outcomes of an earlier period are ignored") {
  ManualClock clock;
  CircuitBreaker b(contractDefaults(), clock.fn());
  auto slow1 = b.tryAcquire();  // admitted while closed, answers late
  auto slow2 = b.tryAcquire();
  REQUIRE(slow1);
  REQUIRE(slow2);
  openIt(b);

  slow1.recordFailure();  // counted neither as a probe nor as a new reason to stay open
  clock.advance(5s);
  CHECK(b.state() == State::HalfOpen);
  slow2.recordSuccess();  // a closed-period success must not count as a probe
  CHECK(b.snapshot().probeSuccesses == 0);
  CHECK(run(b, "SSS") == 3);
  CHECK(b.state() == State::Closed);
}

TEST_CASE("resilience circuit breaker: permits are move-only and record once") {
  ManualClock clock;
  CircuitBreaker::Options o = contractDefaults();
  o.minRequests = 10;
  CircuitBreaker b(o, clock.fn());
  auto p = b.tryAcquire();
  CircuitBreaker::Permit q = std::move(p);
  CHECK_FALSE(p.admitted());  // NOLINT(bugprone-use-after-move): moved-from is documented as refused
  CHECK(q.admitted());
  p.recordFailure();  // no-op
  q.recordFailure();
  q.recordFailure();  // no-op
  CHECK(b.snapshot().windowTotal == 1);
  CircuitBreaker::Permit r;
  CHECK_FALSE(r);
  r = b.tryAcquire();
  r = b.tryAcquire();  // the first is released (no verdict) by the assignment
  r.recordSuccess();
  auto s = b.snapshot();
  CHECK(s.windowTotal == 2);
  CHECK(s.windowFailures == 1);
}

TEST_CASE("resilience circuit breaker: the hook may read the breaker (called outside the lock)") {
  ManualClock clock;
  CircuitBreaker b(contractDefaults(), clock.fn());
  std::vector<int> seen;
  b.setTransitionHook([&](State, State) { seen.push_back(b.stateValue()); });
  openIt(b);
  clock.advance(5s);
  b.state();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == 1);
  CHECK(seen[1] == 2);
}

TEST_CASE("resilience circuit breaker: fromConfig maps circuit_breaker keys") {
  cfg::CircuitBreakerConfig c;
  c.failure_ratio = 0.25;
  c.min_requests = 7;
  c.window = 3s;
  c.open_duration = 2s;
  c.half_open_requests = 4;
  const auto o = CircuitBreaker::Options::fromConfig(c);
  CHECK(o.failureRatio == 0.25);
  CHECK(o.minRequests == 7);
  CHECK(o.window == 3s);
  CHECK(o.openDuration == 2s);
  CHECK(o.halfOpenRequests == 4);
  CHECK(o.buckets == 10);
}

TEST_CASE("resilience circuit breaker: shared by threads, counts stay exact and probes bounded") {
  ManualClock clock;
  CircuitBreaker::Options o = contractDefaults();
  o.minRequests = 1000000;  // never trips during the counting phase
  CircuitBreaker b(o, clock.fn());
  const int threads = 4;
  const int perThread = 20000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&b, t] {
      for (int i = 0; i < perThread; ++i) {
        auto p = b.tryAcquire();
        p.record((i + t) % 4 == 0);
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  auto s = b.snapshot();
  CHECK(s.windowTotal == threads * perThread);
  CHECK(s.windowFailures == threads * perThread / 4);

  // Half-open under contention: never more than half_open_requests probes out at once.
  CircuitBreaker::Options o2 = contractDefaults();
  o2.halfOpenRequests = 3;
  CircuitBreaker h(o2, clock.fn());
  openIt(h);
  clock.advance(5s);
  std::atomic<int> inFlight{0};
  std::atomic<int> maxInFlight{0};
  std::atomic<int> admitted{0};
  pool.clear();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        auto p = h.tryAcquire();
        if (!p) {
          continue;
        }
        ++admitted;
        const int now = ++inFlight;
        int prev = maxInFlight.load();
        while (now > prev && !maxInFlight.compare_exchange_weak(prev, now)) {
        }
        --inFlight;
        p.release();  // no verdict: the period never ends, slots keep cycling
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  CHECK(admitted.load() > 0);
  CHECK(maxInFlight.load() <= 3);
  CHECK(h.state() == State::HalfOpen);
}
