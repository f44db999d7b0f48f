// resilience::FailureSet / retryAllowed: which failed tries may be retried and which count against
// the breaker.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/resilience/failure.h"

using resilience::FailureKind;
using resilience::FailureSet;

TEST_CASE("resilience failure: retry_on parsing and matching") {
  auto set = FailureSet::parse({"connect_failure", "reset", "502", "503", "504"});
  REQUIRE(set);
  struct Row {
    FailureKind kind;
    int status;
    bool want;
  };
  const Row rows[] = {
      {FailureKind::ConnectFailure, 0, true}, {FailureKind::Reset, 0, true}, {FailureKind::Timeout, 0, false},
      {FailureKind::None, 502, true},         {FailureKind::None, 503, true}, {FailureKind::None, 504, true},
      {FailureKind::None, 500, false},        {FailureKind::None, 200, false}, {FailureKind::None, 404, false},
      {FailureKind::None, 600, false},        {FailureKind::None, 0, false},
  };
  for (const Row& r : rows) {
    CAPTURE(static_cast<int>(r.kind));
    CAPTURE(r.status);
    CHECK(set->matches(r.kind, r.status) == r.want);
  }

  std::string bad;
  CHECK_FALSE(FailureSet::parse({"reset", "404"}, &bad));
  CHECK(bad == "404");
  CHECK_FALSE(FailureSet::parse({"5xxx"}, &bad));
  CHECK_FALSE(FailureSet::parse({"6xx"}, &bad));

  auto all5xx = FailureSet::parse({"5xx", "timeout"});
  REQUIRE(all5xx);
  CHECK(all5xx->matches(FailureKind::None, 500));
  CHECK(all5xx->matches(FailureKind::None, 599));
  CHECK(all5xx->matches(FailureKind::Timeout, 0));
  CHECK_FALSE(all5xx->matches(FailureKind::Reset, 0));
}

TEST_CASE("resilience failure: breaker default counts connect errors, timeouts, resets and 5xx") {
  const FailureSet b = FailureSet::breakerDefault();
  CHECK(b.matches(FailureKind::ConnectFailure, 0));
  CHECK(b.matches(FailureKind::Reset, 0));
  CHECK(b.matches(FailureKind::Timeout, 0));
  CHECK(b.matches(FailureKind::None, 500));
  CHECK(b.matches(FailureKind::None, 503));
  CHECK_FALSE(b.matches(FailureKind::None, 429));
  CHECK_FALSE(b.matches(FailureKind::None, 200));
}

TEST_CASE("resilience failure: retryAllowed = idempotent, nothing sent downstream, replayable, listed") {
  auto set = FailureSet::parse({"connect_failure", "reset", "502", "503", "504"});
  REQUIRE(set);
  struct Row {
    const char* method;
    FailureKind kind;
    int status;
    bool downstreamStarted;
    bool replayable;
    bool want;
  };
  const Row rows[] = {
      {"GET", FailureKind::ConnectFailure, 0, false, true, true},
      {"HEAD", FailureKind::Reset, 0, false, true, true},
      {"OPTIONS", FailureKind::None, 503, false, true, true},
      {"PUT", FailureKind::None, 502, false, true, true},
      {"DELETE", FailureKind::None, 504, false, true, true},
      {"POST", FailureKind::ConnectFailure, 0, false, true, false},  // never retried
      {"PATCH", FailureKind::None, 503, false, true, false},
      {"get", FailureKind::ConnectFailure, 0, false, true, false},   // methods are case-sensitive
      {"GET", FailureKind::Reset, 0, true, true, false},             // a byte already went out
      {"PUT", FailureKind::ConnectFailure, 0, false, false, false},  // body not kept
      {"GET", FailureKind::Timeout, 0, false, true, false},          // not in retry_on
      {"GET", FailureKind::None, 500, false, true, false},
      {"GET", FailureKind::None, 200, false, true, false},
  };
  for (const Row& r : rows) {
    CAPTURE(r.method);
    CAPTURE(static_cast<int>(r.kind));
    CAPTURE(r.status);
    CHECK(resilience::retryAllowed(*set, r.method, r.kind, r.status, r.downstreamStarted, r.replayable) == r.want);
  }
}
