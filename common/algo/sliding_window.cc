#include "common/algo/sliding_window.h"

#include <algorithm>

namespace algo {

namespace {

// floor(a / b) for b > 0 and any a (the steady clock's epoch is arbitrary).
int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && (a < 0)) {
    --q;
  }
  return q;
}

}  // namespace

RateLimitDecision SlidingWindow::decide(State& state, const RateLimitRule& ruleIn, int64_t nowMs) {
  const RateLimitRule rule = ruleIn.normalized();
  const int64_t w = rule.windowMs;
  const int64_t limit = rule.limit;
  int64_t index = floorDiv(nowMs, w);
  if (!state.initialized) {
    state = State{true, index, 0, 0};
  }
  if (index == state.windowIndex + 1) {
    state.prev = state.curr;
    state.curr = 0;
    state.windowIndex = index;
  } else if (index > state.windowIndex + 1) {
    state.prev = 0;
    state.curr = 0;
    state.windowIndex = index;
  } else if (index < state.windowIndex) {
    index = state.windowIndex;
    nowMs = index * w;  // the start of the newest window seen: its most conservative instant
  }
  const int64_t elapsed = nowMs - index * w;  // e in [0, W)
  const int64_t left = w - elapsed;            // W - e, in (0, W]
  const int64_t prevWeight = state.prev * left;

  RateLimitDecision d;
  d.limit = limit;
  d.allowed = prevWeight + (state.curr + 1) * w <= limit * w;
  if (d.allowed) {
    ++state.curr;
  } else if (state.curr + 1 <= limit) {
    // Allowed later in this window, once enough of `prev` slid out:
    // prev*(W-e-t) + (curr+1)*W <= limit*W  <=>  t >= ((W-e)*prev - (limit-curr-1)*W) / prev.
    // Denied here implies prev > 0 and t <= W-e.
    d.retryAfterMs = ceilDiv(prevWeight - (limit - state.curr - 1) * w, state.prev);
  } else {
    // The current window is full: in the next one, curr becomes prev and the request fits once
    // curr*(W-e') + W <= limit*W  <=>  e' >= W - (limit-1)*W/curr.
    d.retryAfterMs = left + ceilDiv(state.curr * w - (limit - 1) * w, state.curr);
  }
  const int64_t used = prevWeight + state.curr * w;
  d.remaining = std::max<int64_t>(0, (limit * w - used) / w);
  // Full quota again once nothing counted weighs any more: `curr` weighs until the end of the next
  // window, `prev` until the end of this one.
  if (state.curr > 0) {
    d.resetAfterMs = left + w;
  } else if (state.prev > 0) {
    d.resetAfterMs = left;
  } else {
    d.resetAfterMs = 0;
  }
  return d;
}

bool SlidingWindow::idle(const State& state, const RateLimitRule& ruleIn, int64_t nowMs) {
  if (!state.initialized) {
    return true;
  }
  const RateLimitRule rule = ruleIn.normalized();
  const int64_t index = floorDiv(nowMs, rule.windowMs);
  if (index >= state.windowIndex + 2) {
    return true;
  }
  if (index == state.windowIndex + 1) {
    return state.curr == 0;
  }
  return state.curr == 0 && state.prev == 0;
}

}  // namespace algo
