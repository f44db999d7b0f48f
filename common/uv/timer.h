#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>

#include "common/uv/handle.h"

namespace uvx {

// A restartable one-shot (or repeating) timer owned by one object. The callback runs on the
// loop thread; destroying the Timer cancels it.
class Timer {
 public:
  using Callback = std::function<void()>;

  Timer(uv_loop_t* loop, Callback cb);
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start(uint64_t timeoutMs, uint64_t repeatMs = 0);
  void stop();
  bool active() const;

 private:
  static void onTimer(uv_timer_t* t);
  OwnedHandle<uv_timer_t> timer_;
  Callback cb_;
};

}  // namespace uvx
