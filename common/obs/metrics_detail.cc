#include "common/obs/metrics_detail.h"

#include <algorithm>
#include <bit>

namespace obs::metrics_detail {

constinit thread_local unsigned tlsShard = 0;

ShardedCells::ShardedCells(unsigned shardCount, size_t cellsPerShard)
    : stride_((std::max<size_t>(cellsPerShard, 1) + 7) & ~size_t{7}), shardMask_(shardCount - 1) {
  // make_unique<T[]> value-initializes: every cell starts at 0 (0.0 for double cells).
  lines_ = std::make_unique<CellLine[]>(shardCount * stride_ / 8);
}

uint64_t ShardedCells::sumU64(size_t cell) const noexcept {
  uint64_t total = 0;
  for (unsigned s = 0; s <= shardMask_; ++s) {
    total += at(s, cell).load(std::memory_order_relaxed);
  }
  return total;
}

double ShardedCells::sumF64(size_t cell) const noexcept {
  double total = 0;
  for (unsigned s = 0; s <= shardMask_; ++s) {
    total += loadF64(at(s, cell));
  }
  return total;
}

SeriesTable::SeriesTable(size_t labelCount, uint32_t maxSeries)
    : labelCount_(labelCount),
      maxSeries_(maxSeries),
      // At most maxSeries + 1 entries (the extra one: a caller passing the overflow tuple itself)
      // in at least twice as many slots: a miss ends at an empty slot after ~2.5 probes.
      mask_(std::bit_ceil(std::max<size_t>(8, 2 * (size_t{maxSeries} + 1))) - 1),
      slots_(std::make_unique<Slot[]>(mask_ + 1)),
      overflowValues_(labelCount, std::string(kOverflowValue)) {}

uint64_t SeriesTable::hashValues(std::span<const std::string_view> values) noexcept {
  // FNV-1a: label values are short, and a collision only costs a string compare.
  uint64_t h = 14695981039346656037ull;
  for (std::string_view v : values) {
    for (char c : v) {
      h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    }
    h = (h ^ 0xFFu) * 1099511628211ull;
  }
  return h;
}

bool SeriesTable::sameValues(const Slot& slot, std::span<const std::string_view> values) noexcept {
  for (size_t i = 0; i < values.size(); ++i) {
    if (slot.values[i] != values[i]) {
      return false;
    }
  }
  return true;
}

size_t SeriesTable::probe(uint64_t hash, std::span<const std::string_view> values, bool& found) const noexcept {
  size_t i = hash & mask_;
  for (;;) {
    const Slot& slot = slots_[i];
    if (!slot.ready.load(std::memory_order_acquire)) {
      found = false;
      return i;
    }
    if (slot.hash == hash && sameValues(slot, values)) {
      found = true;
      return i;
    }
    i = (i + 1) & mask_;
  }
}

uint32_t SeriesTable::useOverflow() noexcept {
  // Test before writing: once set, the flag's cache line stays shared and cheap to read.
  if (!overflowUsed_.load(std::memory_order_relaxed)) {
    overflowUsed_.store(true, std::memory_order_relaxed);
  }
  return maxSeries_;
}

uint32_t SeriesTable::resolve(std::span<const std::string_view> values) {
  if (values.size() != labelCount_) {
    return useOverflow();
  }
  const uint64_t hash = hashValues(values);
  bool found = false;
  size_t i = probe(hash, values, found);
  if (found) {
    return slots_[i].series;
  }
  if (full_.load(std::memory_order_relaxed)) {
    return useOverflow();
  }

  // First sighting of this tuple (or a race with another thread inserting it): entries are only
  // written under the mutex, so probing again under it is authoritative.
  std::lock_guard<std::mutex> lock(insertMutex_);
  i = probe(hash, values, found);
  if (found) {
    return slots_[i].series;
  }
  const bool isOverflowTuple = std::equal(values.begin(), values.end(), overflowValues_.begin());
  if (!isOverflowTuple && assigned_ == maxSeries_) {
    full_.store(true, std::memory_order_relaxed);
    return useOverflow();
  }
  Slot& slot = slots_[i];
  slot.hash = hash;
  slot.values.assign(values.begin(), values.end());
  // A caller that already collapsed its labels to "other" shares the overflow series, so the
  // exposition never holds two series with the same labels.
  slot.series = isOverflowTuple ? maxSeries_ : assigned_++;
  slot.ready.store(true, std::memory_order_release);
  if (isOverflowTuple) {
    useOverflow();
  }
  return slot.series;
}

uint32_t SeriesTable::assignedSeries() const {
  std::lock_guard<std::mutex> lock(insertMutex_);
  return assigned_;
}

std::vector<SeriesTable::SeriesRef> SeriesTable::snapshot() const {
  std::vector<SeriesRef> refs;
  for (size_t i = 0; i <= mask_; ++i) {
    const Slot& slot = slots_[i];
    if (slot.ready.load(std::memory_order_acquire) && slot.series != maxSeries_) {
      refs.push_back(SeriesRef{&slot.values, slot.series});
    }
  }
  if (overflowUsed()) {
    refs.push_back(SeriesRef{&overflowValues_, maxSeries_});
  }
  return refs;
}

}  // namespace obs::metrics_detail
