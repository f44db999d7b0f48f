#include "common/uv/deadline_timer.h"

#include "common/uv/loop_state.h"

namespace uvx {

DeadlineQueue::DeadlineQueue(uv_loop_t* loop, uint64_t timeoutMs) : loop_(loop), timeoutMs_(timeoutMs) {
  uv_timer_init(loop, timer_.get());
  timer_.markInitialized();
  timer_.get()->data = this;
}

DeadlineQueue::~DeadlineQueue() {
  for (DeadlineTimer* t = head_; t != nullptr;) {
    DeadlineTimer* next = t->next_;
    t->prev_ = t->next_ = nullptr;
    t->queue_ = nullptr;
    t = next;
  }
}

void DeadlineQueue::append(DeadlineTimer* t) {
  t->queue_ = this;
  t->deadlineMs_ = uv_now(loop_) + timeoutMs_;
  t->next_ = nullptr;
  t->prev_ = tail_;
  if (tail_ != nullptr) {
    tail_->next_ = t;
  } else {
    head_ = t;
    uv_ref(timer_.base());
  }
  tail_ = t;
  // While expiring, the libuv timer is re-armed at the end for whatever is then the head (an
  // older timer than this one may still be waiting).
  if (!expiring_ && uv_is_active(timer_.base()) == 0) {
    uv_timer_start(timer_.get(), &DeadlineQueue::onTimer, timeoutMs_, 0);
  }
}

void DeadlineQueue::remove(DeadlineTimer* t) {
  (t->prev_ != nullptr ? t->prev_->next_ : head_) = t->next_;
  (t->next_ != nullptr ? t->next_->prev_ : tail_) = t->prev_;
  t->prev_ = t->next_ = nullptr;
  t->queue_ = nullptr;
  if (head_ == nullptr) {
    // Nothing left to time. The libuv timer stays armed (stopping and restarting it costs a heap
    // operation each time a connection goes quiet) but must not keep the loop alive.
    uv_unref(timer_.base());
  }
}

void DeadlineQueue::onTimer(uv_timer_t* t) {
  if (auto* self = static_cast<DeadlineQueue*>(t->data); self != nullptr) {
    self->expire();
  }
}

void DeadlineQueue::expire() {
  const uint64_t now = uv_now(loop_);
  // A callback may start or stop any timer, this one's queue included; restarted timers go to the
  // tail with a later deadline, so the loop ends.
  expiring_ = true;
  while (head_ != nullptr && head_->deadlineMs_ <= now) {
    DeadlineTimer* t = head_;
    remove(t);
    t->cb_();
  }
  expiring_ = false;
  if (head_ != nullptr) {
    uv_timer_start(timer_.get(), &DeadlineQueue::onTimer, head_->deadlineMs_ - now, 0);
  }
}

LoopState::~LoopState() = default;

void DeadlineTimer::start(uint64_t timeoutMs) {
  stop();
  // A handful of queues per loop: a scan is cheaper than a map, and nothing is cached in the
  // timer, so a timer outliving the loop state (shutdown) never sees a freed queue.
  auto& queues = loopState(loop_).deadlineQueues;
  DeadlineQueue* queue = nullptr;
  for (auto& [ms, q] : queues) {
    if (ms == timeoutMs) {
      queue = q.get();
      break;
    }
  }
  if (queue == nullptr) {
    queues.emplace_back(timeoutMs, std::make_unique<DeadlineQueue>(loop_, timeoutMs));
    queue = queues.back().second.get();
  }
  queue->append(this);
}

}  // namespace uvx
