#pragma once
// The bounded queue between the threads that end spans and the exporter thread: Dmitry Vyukov's
// bounded MPMC array queue. Lock-free, one CAS per push or pop, no allocation after construction,
// and a full queue refuses instead of waiting, so a slow or dead collector never blocks a worker.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace obs::trace {

template <typename T>
class BoundedQueue {
 public:
  // Capacity is rounded up to a power of two (at least 2).
  explicit BoundedQueue(size_t capacity) {
    size_t cap = 2;
    while (cap < capacity) {
      cap <<= 1;
    }
    mask_ = cap - 1;
    cells_ = std::make_unique<Cell[]>(cap);
    for (size_t i = 0; i < cap; ++i) {
      cells_[i].sequence.store(i, std::memory_order_relaxed);
    }
  }
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Any thread. False when the queue is full (the caller keeps `value`).
  bool tryPush(T value) {
    size_t pos = enqueuePos_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & mask_];
      const size_t seq = cell.sequence.load(std::memory_order_acquire);
      const auto diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (diff == 0) {
        if (enqueuePos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.value = std::move(value);
          cell.sequence.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // the cell still holds an element from one lap ago: full
      } else {
        pos = enqueuePos_.load(std::memory_order_relaxed);
      }
    }
  }

  // Any thread. False when empty.
  bool tryPop(T& out) {
    size_t pos = dequeuePos_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & mask_];
      const size_t seq = cell.sequence.load(std::memory_order_acquire);
      const auto diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos + 1);
      if (diff == 0) {
        if (dequeuePos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          out = std::move(cell.value);
          cell.sequence.store(pos + mask_ + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;
      } else {
        pos = dequeuePos_.load(std::memory_order_relaxed);
      }
    }
  }

  // Elements queued, approximately (exact when no push or pop is running).
  size_t sizeApprox() const {
    const size_t enq = enqueuePos_.load(std::memory_order_relaxed);
    const size_t deq = dequeuePos_.load(std::memory_order_relaxed);
    return enq > deq ? enq - deq : 0;
  }
  size_t capacity() const { return mask_ + 1; }

 private:
  struct Cell {
    std::atomic<size_t> sequence{0};
    T value{};
  };

  std::unique_ptr<Cell[]> cells_;
  size_t mask_ = 0;
  alignas(64) std::atomic<size_t> enqueuePos_{0};
  alignas(64) std::atomic<size_t> dequeuePos_{0};
};

}  // namespace obs::trace
