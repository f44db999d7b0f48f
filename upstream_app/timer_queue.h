#pragma once
// app::TimerQueue: many short delays on one libuv timer (cache-fill waits, idempotency waits).
// Each request that must wait a few milliseconds gets an entry instead of its own uv_timer_t.
// Loop thread only.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "common/uv/handle.h"

namespace app {

class TimerQueue {
 public:
  explicit TimerQueue(uv_loop_t* loop);
  // Drops pending callbacks without calling them; closes the timer.
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Calls fn once, delayMs from now (never inside after()). Entries due at the same time run in
  // the order they were added. After close(), fn is dropped.
  void after(uint64_t delayMs, std::function<void()> fn);
  // Drops every pending callback and closes the timer (shutdown). Safe to call twice.
  void close();
  size_t pending() const { return entries_.size(); }

 private:
  void arm();
  void onTimer();

  uv_loop_t* loop_;
  uvx::OwnedHandle<uv_timer_t> timer_;
  std::multimap<uint64_t, std::function<void()>> entries_;
  bool closed_ = false;
  std::shared_ptr<bool> alive_;
};

}  // namespace app
