#include <doctest/doctest.h>
#include <uv.h>

#include <memory>
#include <vector>

#include "common/uv/deadline_timer.h"
#include "common/uv/tcp_stream.h"
#include "common/uv/timer.h"

namespace {

struct Loop {
  uv_loop_t loop{};
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uvx::releaseLoopState(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks of the queues' timers
    uv_loop_close(&loop);
  }
};

}  // namespace

TEST_CASE("DeadlineTimer fires once after its timeout, in start order within one duration") {
  Loop l;
  std::vector<int> fired;
  uvx::DeadlineTimer a(&l.loop, [&] { fired.push_back(1); });
  uvx::DeadlineTimer b(&l.loop, [&] { fired.push_back(2); });
  uvx::DeadlineTimer c(&l.loop, [&] { fired.push_back(3); });
  const uint64_t start = uv_now(&l.loop);
  a.start(20);
  b.start(20);
  c.start(5);
  CHECK(a.active());
  uv_run(&l.loop, UV_RUN_DEFAULT);  // returns once nothing is pending: pending timeouts keep it alive
  uv_update_time(&l.loop);
  CHECK(uv_now(&l.loop) - start >= 20);
  CHECK(fired == std::vector<int>{3, 1, 2});
  CHECK_FALSE(a.active());
}

TEST_CASE("DeadlineTimer: restart pushes the deadline back, stop and destruction cancel") {
  Loop l;
  int fired = 0;
  uvx::DeadlineTimer a(&l.loop, [&] { ++fired; });
  auto b = std::make_unique<uvx::DeadlineTimer>(&l.loop, [&] { fired += 100; });
  uvx::DeadlineTimer stopped(&l.loop, [&] { fired += 10; });
  uvx::DeadlineTimer kick(&l.loop, [&] { a.start(30); });  // restarts `a` while it is pending
  const uint64_t start = uv_now(&l.loop);
  a.start(30);
  b->start(30);
  stopped.start(30);
  stopped.stop();
  b.reset();  // destroyed while linked in the middle of the queue
  kick.start(15);
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(fired == 1);
  uv_update_time(&l.loop);
  CHECK(uv_now(&l.loop) - start >= 45);  // 15 ms + a fresh 30 ms
}

TEST_CASE("DeadlineTimer: a callback may restart its own timer and stop others of its queue") {
  Loop l;
  int aFired = 0;
  int bFired = 0;
  uvx::DeadlineTimer* bp = nullptr;
  uvx::DeadlineTimer a(&l.loop, [&] {
    if (++aFired < 3) {
      a.start(5);
    }
    bp->stop();
  });
  uvx::DeadlineTimer b(&l.loop, [&] { ++bFired; });
  bp = &b;
  a.start(5);
  b.start(5);  // same deadline as `a` or later: stopped by a's callback before it can fire
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(aFired == 3);
  CHECK(bFired == 0);
}

TEST_CASE("DeadlineTimer: the loop is not kept alive once every timer is stopped") {
  Loop l;
  uvx::DeadlineTimer a(&l.loop, [] { FAIL("stopped timer fired"); });
  a.start(10000);
  a.stop();
  const uint64_t start = uv_now(&l.loop);
  uv_run(&l.loop, UV_RUN_DEFAULT);
  uv_update_time(&l.loop);
  CHECK(uv_now(&l.loop) - start < 1000);
}

TEST_CASE("DeadlineTimer: a start from inside an expiry does not delay an older pending timer") {
  Loop l;
  // `first` expires and restarts `other` (which moves to the tail with a full timeout) while
  // `waiting`, started later than `first`, is still pending: `waiting` must fire on time, not a
  // whole timeout later.
  uint64_t waitingFiredAt = 0;
  uvx::DeadlineTimer other(&l.loop, [] {});
  uvx::DeadlineTimer waiting(&l.loop, [&] {
    uv_update_time(&l.loop);
    waitingFiredAt = uv_now(&l.loop);
  });
  uvx::DeadlineTimer first(&l.loop, [&] { other.start(200); });
  uvx::Timer later(&l.loop, [&] { waiting.start(200); });
  const uint64_t start = uv_now(&l.loop);
  first.start(200);
  later.start(50);
  uv_run(&l.loop, UV_RUN_DEFAULT);
  REQUIRE(waitingFiredAt != 0);
  CHECK(waitingFiredAt - start >= 250);
  CHECK(waitingFiredAt - start < 350);
}

TEST_CASE("DeadlineTimer: a timer may outlive its loop state (shutdown order)") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto pending = std::make_unique<uvx::DeadlineTimer>(&loop, [] { FAIL("fired after release"); });
  pending->start(10000);
  uvx::releaseLoopState(&loop);  // frees the queues while `pending` is linked in one
  CHECK_FALSE(pending->active());
  pending->stop();
  pending.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
