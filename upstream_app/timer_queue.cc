#include "upstream_app/timer_queue.h"

#include <vector>

namespace app {

TimerQueue::TimerQueue(uv_loop_t* loop) : loop_(loop), alive_(std::make_shared<bool>(true)) {
  uv_timer_init(loop_, timer_.get());
  timer_.markInitialized();
  timer_.get()->data = this;
}

TimerQueue::~TimerQueue() {
  *alive_ = false;
  entries_.clear();
}

void TimerQueue::after(uint64_t delayMs, std::function<void()> fn) {
  if (closed_) {
    return;
  }
  entries_.emplace(uv_now(loop_) + delayMs, std::move(fn));
  arm();
}

void TimerQueue::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  entries_.clear();
  timer_.close();
}

void TimerQueue::arm() {
  if (!timer_.isOpen()) {
    return;
  }
  if (entries_.empty()) {
    uv_timer_stop(timer_.get());
    return;
  }
  const uint64_t due = entries_.begin()->first;
  const uint64_t now = uv_now(loop_);
  uv_timer_start(
      timer_.get(), [](uv_timer_t* t) { static_cast<TimerQueue*>(t->data)->onTimer(); }, due > now ? due - now : 0, 0);
}

void TimerQueue::onTimer() {
  const uint64_t now = uv_now(loop_);
  std::vector<std::function<void()>> due;
  while (!entries_.empty() && entries_.begin()->first <= now) {
    due.push_back(std::move(entries_.begin()->second));
    entries_.erase(entries_.begin());
  }
  auto alive = alive_;
  for (auto& fn : due) {
    if (!*alive || closed_) {
      return;
    }
    fn();
  }
  if (*alive) {
    arm();
  }
}

}  // namespace app
