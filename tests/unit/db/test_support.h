#pragma once
// Helpers for the unit tests that talk to real servers (tests/unit/db and tests/unit/redis):
// a libuv loop that is run until a condition holds and must end with every handle closed, the
// real PostgreSQL + PgBouncer + Redis stack (scripts/stack.sh, started once per test process on
// free ports and stopped at exit), and small socket helpers for "nothing listens" / "accepts but
// never answers" peers.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

namespace testsupport {

class TestLoop {
 public:
  TestLoop();
  ~TestLoop();
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }
  // Runs the loop until done() is true or timeoutMs passed; returns done().
  bool runUntil(const std::function<bool()>& done, uint64_t timeoutMs);
  // Runs the loop for about ms milliseconds.
  void runFor(uint64_t ms);
  // Milliseconds since the loop started (refreshed).
  uint64_t nowMs();
  // Runs until nothing is left (every owner must be destroyed first) and closes the loop. Returns
  // uv_loop_close()'s result (0 = every handle was closed); lists leftover handles on stderr.
  int finish();

 private:
  uv_loop_t loop_;
  bool finished_ = false;
};

struct RealStack {
  std::string dir;
  int pgPort = 0;
  int pgbouncerPort = 0;
  int redisPort = 0;

  // What the app uses: PgBouncer in transaction mode.
  std::string dbUrl() const;
  // Straight to PostgreSQL (session features such as pg_backend_pid()).
  std::string directDbUrl() const;
  std::string redisUrl(int db = 0) const;
  // Stops Redis only (SIGTERM to its pid); true when it is gone.
  bool stopRedis() const;
  // `scripts/stack.sh start` again: starts whatever is not running.
  bool restart() const;
};

// The stack for this test process, started on first use; nullptr (with the reason) when it
// cannot run here (no scripts/stack.sh, no PostgreSQL 15/PgBouncer/Redis binaries, or a start
// failure). Tests then skip with a MESSAGE naming the reason.
const RealStack* realStack(std::string* whyNot);

// A TCP port on 127.0.0.1 with nothing listening (connect is refused).
int closedPort();

// A listening socket that never accepts: connects complete in the kernel, nothing is ever
// answered. Closed by the destructor.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace testsupport

// Skips the rest of a test case (with the reason) when the real stack is unavailable.
#define REQUIRE_REAL_STACK(var)                                                       \
  std::string var##WhyNot;                                                            \
  const testsupport::RealStack* var = testsupport::realStack(&var##WhyNot);           \
  if (var == nullptr) {                                                               \
    MESSAGE("skipped: real PostgreSQL/PgBouncer/Redis unavailable: " << var##WhyNot); \
    return;                                                                           \
  }
