#pragma once
// Internals of the metrics registry (common/obs/metrics.h): per-shard cell storage and the
// bounded label-tuple table. Not meant to be used directly.
#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace obs::metrics_detail {

// Label value of every label of a family's overflow series (obs::kOverflowLabelValue).
inline constexpr std::string_view kOverflowValue = "other";

// The shard of the calling thread (see obs::setMetricsShard). constinit lets the compiler read
// it with one TLS load instead of a call through a TLS init wrapper.
extern constinit thread_local unsigned tlsShard;

struct alignas(64) CellLine {
  std::atomic<uint64_t> cells[8];
};

// The cells of one metric family, one run per shard. Runs are shard-major and padded to whole
// cache lines, so the cells a worker writes share no line with another shard's cells: updates
// stay in the writing core's cache and the scrape pays for gathering them.
//
// Every cell is updated with a relaxed atomic read-modify-write, so two threads mapped to the
// same shard (more threads than shards, or a thread that never called setMetricsShard) are still
// counted correctly; they merely share cache lines.
class ShardedCells {
 public:
  // `shardCount` must be a power of two.
  ShardedCells(unsigned shardCount, size_t cellsPerShard);

  std::atomic<uint64_t>& local(size_t cell) const noexcept {
    const size_t i = (tlsShard & shardMask_) * stride_ + cell;
    return lines_[i >> 3].cells[i & 7];
  }
  std::atomic<uint64_t>& at(unsigned shard, size_t cell) const noexcept {
    const size_t i = shard * stride_ + cell;
    return lines_[i >> 3].cells[i & 7];
  }
  // Scrape-time sums over all shards; cells holding doubles store their bit pattern.
  uint64_t sumU64(size_t cell) const noexcept;
  double sumF64(size_t cell) const noexcept;
  unsigned shardCount() const noexcept { return shardMask_ + 1; }

 private:
  std::unique_ptr<CellLine[]> lines_;
  size_t stride_;  // cells per shard, a multiple of 8
  unsigned shardMask_;
};

inline double loadF64(const std::atomic<uint64_t>& cell) noexcept {
  return std::bit_cast<double>(cell.load(std::memory_order_relaxed));
}

inline void storeF64(std::atomic<uint64_t>& cell, double value) noexcept {
  cell.store(std::bit_cast<uint64_t>(value), std::memory_order_relaxed);
}

// Adds to a cell holding a double. The CAS almost never retries: the cell is normally written
// by one thread only.
inline void addF64(std::atomic<uint64_t>& cell, double delta) noexcept {
  uint64_t old = cell.load(std::memory_order_relaxed);
  while (!cell.compare_exchange_weak(old, std::bit_cast<uint64_t>(std::bit_cast<double>(old) + delta),
                                     std::memory_order_relaxed)) {
  }
}

// Maps label-value tuples to series indexes [0, maxSeries), and every tuple beyond the first
// `maxSeries` distinct ones to the overflow series `maxSeries`, whose label values are all
// "other". This is what bounds the cardinality of a family to maxSeries + 1 series.
//
// Lookups are lock-free and allocation-free: open addressing with linear probing over a table
// at most half full, entries published with a release store and never changed or removed. Only
// the first sighting of a new tuple (at most maxSeries + 1 times in the life of the process)
// takes a mutex and allocates its strings.
class SeriesTable {
 public:
  SeriesTable(size_t labelCount, uint32_t maxSeries);

  // `values.size()` must equal the label count; a wrong count maps to the overflow series.
  uint32_t resolve(std::span<const std::string_view> values);

  uint32_t overflowSeries() const noexcept { return maxSeries_; }
  bool overflowUsed() const noexcept { return overflowUsed_.load(std::memory_order_relaxed); }
  // Distinct tuples that got their own series (the overflow series excluded).
  uint32_t assignedSeries() const;

  struct SeriesRef {
    const std::vector<std::string>* values;
    uint32_t series;
  };
  // Every series that can hold a value (resolved tuples, plus the overflow series if it was
  // handed out), in no particular order.
  std::vector<SeriesRef> snapshot() const;

 private:
  struct Slot {
    std::atomic<bool> ready{false};
    uint32_t series = 0;
    uint64_t hash = 0;
    std::vector<std::string> values;
  };

  static uint64_t hashValues(std::span<const std::string_view> values) noexcept;
  static bool sameValues(const Slot& slot, std::span<const std::string_view> values) noexcept;
  // Probes for `values`; returns the slot index holding it, or the empty slot ending the probe.
  size_t probe(uint64_t hash, std::span<const std::string_view> values, bool& found) const noexcept;
  uint32_t useOverflow() noexcept;

  size_t labelCount_;
  uint32_t maxSeries_;
  size_t mask_;
  std::unique_ptr<Slot[]> slots_;
  std::vector<std::string> overflowValues_;
  mutable std::mutex insertMutex_;
  uint32_t assigned_ = 0;  // guarded by insertMutex_
  std::atomic<bool> full_{false};
  std::atomic<bool> overflowUsed_{false};
};

}  // namespace obs::metrics_detail
