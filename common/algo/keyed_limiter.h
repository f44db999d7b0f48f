#pragma once
// In-process rate limiters keyed by client (IP or header value): the `fail_open: true` fallback
// that takes over while Redis is down or slow (CONTRACT §4). Same rule, same arithmetic as the
// Redis scripts (token_bucket.h, sliding_window.h); the counts are local to this process, so with
// N gateway replicas the effective limit during an outage is up to N x limit.
//
// Memory bound: at most `maxKeys` keys per limiter, least recently used evicted first. Each key
// costs about 160 bytes plus the key's length beyond 15 bytes (std::list node with the key and
// state, unordered_map node, bucket slot), so the default 65536 keys stay under ~12 MiB per rule
// for IPv6-length keys. Evicting a key whose state is still active forgets its count (that client
// starts afresh: lenient, never wrongly strict); it only happens when more than maxKeys distinct
// clients are active within one window. Keys whose state has fully recovered carry no information
// and are dropped from the cold end as traffic passes, so the map also shrinks when load falls.
//
// Threads: one limiter per rule shared by all workers; a std::mutex guards the map. Only used on
// the fallback path (Redis down), where it replaces a network round trip, so the lock is cheap by
// comparison.
#include <cstddef>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/algo/clock.h"
#include "common/algo/rate_limit.h"
#include "common/algo/sliding_window.h"
#include "common/algo/token_bucket.h"

namespace algo {

class LocalRateLimiter {
 public:
  static constexpr size_t kDefaultMaxKeys = 65536;

  virtual ~LocalRateLimiter() = default;
  // Counts one request for `key` now and says whether it may proceed. Thread-safe.
  virtual RateLimitDecision check(std::string_view key) = 0;
  // Keys currently tracked (<= maxKeys).
  virtual size_t size() const = 0;
  virtual const RateLimitRule& rule() const = 0;
};

// Algo: TokenBucket or SlidingWindow (State, decide(), idle()).
template <class Algo>
class KeyedLimiter final : public LocalRateLimiter {
 public:
  KeyedLimiter(RateLimitRule rule, size_t maxKeys = kDefaultMaxKeys, NowFn now = steadyNow())
      : rule_(rule.normalized()), maxKeys_(maxKeys == 0 ? 1 : maxKeys), now_(now ? std::move(now) : steadyNow()) {}

  RateLimitDecision check(std::string_view key) override {
    const int64_t nowMs = toEpochMs(now_());
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    typename List::iterator entry;
    if (it != index_.end()) {
      entry = it->second;
      lru_.splice(lru_.begin(), lru_, entry);  // most recent at the front
    } else {
      if (index_.size() >= maxKeys_) {
        evictLocked();
      }
      lru_.emplace_front(Entry{std::string(key), typename Algo::State{}});
      entry = lru_.begin();
      index_.emplace(std::string_view(entry->key), entry);
    }
    RateLimitDecision d = Algo::decide(entry->state, rule_, nowMs);
    dropIdleTailLocked(nowMs, entry);
    return d;
  }

  size_t size() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return index_.size();
  }

  const RateLimitRule& rule() const override { return rule_; }

 private:
  struct Entry {
    std::string key;  // index_ keys are views of this string; list nodes never move
    typename Algo::State state;
  };
  using List = std::list<Entry>;

  void evictLocked() {
    index_.erase(std::string_view(lru_.back().key));
    lru_.pop_back();
  }

  // Up to two idle keys per call from the cold end: amortised O(1), yet it drains a map of
  // forgotten clients as fast as traffic arrives.
  void dropIdleTailLocked(int64_t nowMs, typename List::iterator keep) {
    for (int i = 0; i < 2 && !lru_.empty(); ++i) {
      auto last = std::prev(lru_.end());
      if (last == keep || !Algo::idle(last->state, rule_, nowMs)) {
        return;
      }
      evictLocked();
    }
  }

  const RateLimitRule rule_;
  const size_t maxKeys_;
  const NowFn now_;
  mutable std::mutex mu_;
  List lru_;
  std::unordered_map<std::string_view, typename List::iterator> index_;
};

using TokenBucketLimiter = KeyedLimiter<TokenBucket>;
using SlidingWindowLimiter = KeyedLimiter<SlidingWindow>;

// "token_bucket" | "sliding_window" (RateLimitRule.algorithm in the config); nullptr otherwise.
std::unique_ptr<LocalRateLimiter> makeLocalRateLimiter(std::string_view algorithm, RateLimitRule rule,
                                                       size_t maxKeys = LocalRateLimiter::kDefaultMaxKeys,
                                                       NowFn now = steadyNow());

}  // namespace algo
