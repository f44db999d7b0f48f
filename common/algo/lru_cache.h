#pragma once
// Byte-bounded LRU with per-entry expiry: the gateway's response cache (CONTRACT §4, "one LRU
// shared by all workers, bounded by max_bytes"). I/O-free; time comes from an injected NowFn.
//
// Accounting: an entry is charged entryCharge(key, value) = key bytes + value bytes (as told by
// the caller, e.g. head + body) + kEntryOverhead (list node, map node, control block, rounded
// up), and the sum of charges never exceeds maxBytes after put() returns. A value larger than
// maxObjectBytes, or whose charge alone exceeds maxBytes, is refused (TooLarge) without evicting
// other entries (an older value under the same key is dropped: it has been superseded).
//
// Values are shared immutable blobs (std::shared_ptr<const V>): a hit hands out a reference, so a
// reader streaming a cached body keeps it alive even if the entry is evicted or replaced
// meanwhile; the memory is then held past the bound until that reader finishes (at most one
// extra copy per in-flight reader).
//
// Expiry is lazy: an expired entry is dropped when looked up, when it reaches the cold end during
// eviction, or by purgeExpired() (O(n); e.g. from a periodic timer). Until then it counts against
// maxBytes like any entry and goes out in LRU order.
//
// Threads: one std::mutex; get() also takes it because a hit moves the entry to the front. The
// critical sections are a hash lookup and a few pointer moves; values displaced or evicted are
// released after the lock is dropped so freeing a large body never happens inside it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/algo/clock.h"

namespace algo {

template <class V>
class LruCache {
 public:
  // Per-entry bookkeeping charged on top of key and value bytes.
  static constexpr size_t kEntryOverhead = 128;

  struct Options {
    size_t maxBytes = 64u * 1024 * 1024;
    size_t maxObjectBytes = 1024 * 1024;
  };

  enum class PutResult {
    Stored,    // new entry
    Replaced,  // an entry with this key was replaced
    // Both below: not stored, and an existing entry for the key is removed (it is superseded).
    TooLarge,  // value > maxObjectBytes or charge > maxBytes; no other entry is evicted
    Expired,   // expiresAt <= now
  };

  struct Hit {
    std::shared_ptr<const V> value;  // null on a miss
    TimePoint storedAt{};            // for the Age header
    TimePoint expiresAt{};
    explicit operator bool() const { return value != nullptr; }
  };

  struct Stats {
    size_t entries = 0;
    size_t bytes = 0;  // sum of charges
    uint64_t hits = 0;
    uint64_t misses = 0;      // includes lookups that found an expired entry
    uint64_t evictions = 0;   // live entries pushed out to make room
    uint64_t expirations = 0; // expired entries dropped (lookup, eviction or purge)
    uint64_t rejections = 0;  // TooLarge puts
  };

  static size_t entryCharge(size_t keyBytes, size_t valueBytes) { return keyBytes + valueBytes + kEntryOverhead; }

  explicit LruCache(Options options, NowFn now = steadyNow())
      : options_(options), now_(now ? std::move(now) : steadyNow()) {}
  LruCache(const LruCache&) = delete;
  LruCache& operator=(const LruCache&) = delete;

  // A live entry (moved to the most-recent end) or an empty Hit. An expired entry is removed.
  Hit find(std::string_view key) {
    const TimePoint now = now_();
    std::shared_ptr<const V> doomed;  // released after the lock
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return {};
    }
    auto entry = it->second;
    if (entry->expiresAt <= now) {
      ++stats_.misses;
      ++stats_.expirations;
      doomed = std::move(entry->value);
      removeLocked(entry);
      return {};
    }
    ++stats_.hits;
    lru_.splice(lru_.begin(), lru_, entry);
    return Hit{entry->value, entry->storedAt, entry->expiresAt};
  }

  std::shared_ptr<const V> get(std::string_view key) { return find(key).value; }

  // Stores `value` under `key` until `expiresAt`, evicting least recently used entries as needed.
  // valueBytes is the caller's measure of the value (what maxObjectBytes limits).
  PutResult put(std::string key, std::shared_ptr<const V> value, size_t valueBytes, TimePoint expiresAt) {
    const TimePoint now = now_();
    const size_t charge = entryCharge(key.size(), valueBytes);
    std::vector<std::shared_ptr<const V>> doomed;  // released after the lock
    std::lock_guard<std::mutex> lock(mu_);
    bool replaced = false;
    if (auto it = index_.find(key); it != index_.end()) {
      // Superseded whatever happens next: a newer value we cannot keep must not leave the older
      // one to be served.
      doomed.push_back(std::move(it->second->value));
      removeLocked(it->second);
      replaced = true;
    }
    if (valueBytes > options_.maxObjectBytes || charge > options_.maxBytes) {
      ++stats_.rejections;
      return PutResult::TooLarge;
    }
    if (expiresAt <= now) {
      return PutResult::Expired;
    }
    while (bytes_ + charge > options_.maxBytes && !lru_.empty()) {
      auto last = std::prev(lru_.end());
      if (last->expiresAt <= now) {
        ++stats_.expirations;
      } else {
        ++stats_.evictions;
      }
      doomed.push_back(std::move(last->value));
      removeLocked(last);
    }
    lru_.push_front(Entry{std::move(key), std::move(value), charge, now, expiresAt});
    index_.emplace(std::string_view(lru_.front().key), lru_.begin());
    bytes_ += charge;
    return replaced ? PutResult::Replaced : PutResult::Stored;
  }

  PutResult putFor(std::string key, std::shared_ptr<const V> value, size_t valueBytes, Millis ttl) {
    return put(std::move(key), std::move(value), valueBytes, now_() + ttl);
  }

  bool erase(std::string_view key) {
    std::shared_ptr<const V> doomed;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      return false;
    }
    doomed = std::move(it->second->value);
    removeLocked(it->second);
    return true;
  }

  // Drops every expired entry; returns how many. O(entries).
  size_t purgeExpired() {
    const TimePoint now = now_();
    std::vector<std::shared_ptr<const V>> doomed;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = lru_.begin(); it != lru_.end();) {
      auto next = std::next(it);
      if (it->expiresAt <= now) {
        doomed.push_back(std::move(it->value));
        removeLocked(it);
        ++stats_.expirations;
      }
      it = next;
    }
    return doomed.size();
  }

  void clear() {
    List old;
    std::lock_guard<std::mutex> lock(mu_);
    index_.clear();
    old.swap(lru_);
    bytes_ = 0;
  }

  Stats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    Stats s = stats_;
    s.entries = index_.size();
    s.bytes = bytes_;
    return s;
  }

  const Options& options() const { return options_; }

 private:
  struct Entry {
    std::string key;  // index_ keys are views of this string; list nodes never move
    std::shared_ptr<const V> value;
    size_t charge = 0;
    TimePoint storedAt{};
    TimePoint expiresAt{};
  };
  using List = std::list<Entry>;

  void removeLocked(typename List::iterator entry) {
    bytes_ -= entry->charge;
    index_.erase(std::string_view(entry->key));
    lru_.erase(entry);
  }

  const Options options_;
  const NowFn now_;
  mutable std::mutex mu_;
  List lru_;  // front = most recently used
  std::unordered_map<std::string_view, typename List::iterator> index_;
  size_t bytes_ = 0;
  Stats stats_;
};

}  // namespace algo
