#pragma once
// DeadlineTimer: a connection timeout that costs O(1) to (re)start and stop.
//
// Every connection re-arms its timeout several times per request (header, read, idle), and a
// libuv timer does that with a heap operation each time (~5% of a proxied request's instructions
// with 64 connections). The timeouts come from a handful of configured durations, and for one
// duration the deadlines of successive starts only grow; so each duration gets a FIFO list of
// timers (an intrusive list: O(1) insert at the tail and O(1) removal anywhere) and one libuv timer
// armed for the list's head (libev's "same timeout" technique). Removing the head leaves that libuv
// timer armed: it fires early, finds nothing expired and re-arms for the new head. Like a libuv
// timer, a pending timeout keeps the loop alive; an empty queue's armed timer does not.
#include <uv.h>

#include <cstdint>
#include <functional>

#include "common/uv/handle.h"

namespace uvx {

class DeadlineTimer;

// One list of timers sharing one timeout duration on one loop (internal; owned by the loop state).
class DeadlineQueue {
 public:
  DeadlineQueue(uv_loop_t* loop, uint64_t timeoutMs);
  // Detaches the timers still linked (their owners may outlive the loop state during shutdown:
  // stopping or destroying them later is then a no-op).
  ~DeadlineQueue();
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;

  void append(DeadlineTimer* t);
  void remove(DeadlineTimer* t);

 private:
  static void onTimer(uv_timer_t* t);
  void expire();

  uv_loop_t* loop_;
  uint64_t timeoutMs_;
  DeadlineTimer* head_ = nullptr;
  DeadlineTimer* tail_ = nullptr;
  bool expiring_ = false;
  OwnedHandle<uv_timer_t> timer_;
};

// A one-shot timeout owned by one object; the callback runs on the loop thread. Destroying the
// timer stops it. Meant for a few distinct durations per loop (each gets a queue that lives as
// long as the loop state); use uvx::Timer for arbitrary or computed delays.
class DeadlineTimer {
 public:
  using Callback = std::function<void()>;

  DeadlineTimer(uv_loop_t* loop, Callback cb) : loop_(loop), cb_(std::move(cb)) {}
  ~DeadlineTimer() { stop(); }
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // Fires `timeoutMs` after the loop's current time, replacing any pending deadline.
  void start(uint64_t timeoutMs);
  void stop() {
    if (queue_ != nullptr) {
      queue_->remove(this);
    }
  }
  bool active() const { return queue_ != nullptr; }

 private:
  friend class DeadlineQueue;
  uv_loop_t* loop_;
  Callback cb_;
  DeadlineQueue* queue_ = nullptr;  // the queue this timer is linked in, or null
  uint64_t deadlineMs_ = 0;
  DeadlineTimer* prev_ = nullptr;
  DeadlineTimer* next_ = nullptr;
};

}  // namespace uvx
