#include "common/uv/timer.h"

namespace uvx {

Timer::Timer(uv_loop_t* loop, Callback cb) : cb_(std::move(cb)) {
  uv_timer_init(loop, timer_.get());
  timer_.markInitialized();
  timer_.get()->data = this;
}

void Timer::start(uint64_t timeoutMs, uint64_t repeatMs) {
  uv_timer_start(timer_.get(), &Timer::onTimer, timeoutMs, repeatMs);
}

void Timer::stop() { uv_timer_stop(timer_.get()); }

bool Timer::active() const { return uv_is_active(timer_.base()) != 0; }

void Timer::onTimer(uv_timer_t* t) {
  auto* self = static_cast<Timer*>(t->data);
  if (self != nullptr && self->cb_) {
    self->cb_();
  }
}

}  // namespace uvx
