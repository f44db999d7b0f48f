// algo::LruCache: byte accounting, LRU order, size limits, TTL with a ManualClock, values kept
// alive by readers, and concurrent use.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/algo/clock.h"
#include "common/algo/lru_cache.h"

using namespace std::chrono_literals;
using algo::ManualClock;
using Cache = algo::LruCache<std::string>;

namespace {

std::shared_ptr<const std::string> blob(size_t n, char c = 'x') {
  return std::make_shared<const std::string>(n, c);
}

// Room for exactly `entries` entries of a 1-byte key and a `valueBytes` value.
size_t roomFor(size_t entries, size_t valueBytes) {
  return entries * Cache::entryCharge(1, valueBytes);
}

}  // namespace

TEST_CASE("algo lru cache: put/get/erase and byte accounting") {
  ManualClock clock;
  Cache cache({roomFor(4, 100), 1000}, clock.fn());
  CHECK(cache.put("a", blob(100), 100, clock.now() + 60s) == Cache::PutResult::Stored);
  auto hit = cache.find("a");
  REQUIRE(hit);
  CHECK(*hit.value == std::string(100, 'x'));
  CHECK(hit.storedAt == clock.now());
  CHECK(hit.expiresAt == clock.now() + 60s);
  CHECK(cache.stats().bytes == Cache::entryCharge(1, 100));
  CHECK(cache.stats().bytes == 1 + 100 + Cache::kEntryOverhead);

  CHECK(cache.put("a", blob(50, 'y'), 50, clock.now() + 60s) == Cache::PutResult::Replaced);
  CHECK(*cache.get("a") == std::string(50, 'y'));
  CHECK(cache.stats().bytes == Cache::entryCharge(1, 50));
  CHECK(cache.stats().entries == 1);

  CHECK(cache.erase("a"));
  CHECK_FALSE(cache.erase("a"));
  CHECK(cache.get("a") == nullptr);
  auto s = cache.stats();
  CHECK(s.bytes == 0);
  CHECK(s.entries == 0);
  CHECK(s.hits == 2);
  CHECK(s.misses == 1);
}

TEST_CASE("algo lru cache: evicts least recently used, a get refreshes") {
  ManualClock clock;
  Cache cache({roomFor(3, 100), 1000}, clock.fn());
  const auto exp = clock.now() + 60s;
  cache.put("a", blob(100), 100, exp);
  cache.put("b", blob(100), 100, exp);
  cache.put("c", blob(100), 100, exp);
  CHECK(cache.get("a"));  // a is now the most recent; b the least
  cache.put("d", blob(100), 100, exp);
  CHECK(cache.get("b") == nullptr);
  CHECK(cache.get("a"));
  CHECK(cache.get("c"));
  CHECK(cache.get("d"));
  // A large value pushes out as many as needed.
  cache.put("e", blob(250), 250, exp);
  auto s = cache.stats();
  CHECK(s.bytes <= cache.options().maxBytes);
  CHECK(cache.get("e"));
  CHECK(s.evictions >= 2);
}

TEST_CASE("algo lru cache: max_object_bytes and max_bytes rejections evict nothing") {
  ManualClock clock;
  struct Row {
    size_t maxBytes;
    size_t maxObject;
    size_t valueBytes;
    Cache::PutResult want;
  };
  const Row rows[] = {
      {10000, 1000, 1000, Cache::PutResult::Stored},
      {10000, 1000, 1001, Cache::PutResult::TooLarge},   // over max_object_bytes
      {1000, 1000, 1000, Cache::PutResult::TooLarge},    // the charge alone exceeds max_bytes
      {Cache::entryCharge(1, 1000), 1000, 1000, Cache::PutResult::Stored},  // exactly fits
  };
  for (const Row& r : rows) {
    CAPTURE(r.maxBytes);
    CAPTURE(r.valueBytes);
    Cache cache({r.maxBytes, r.maxObject}, clock.fn());
    cache.put("z", blob(1), 1, clock.now() + 1s);
    const bool zFits = cache.stats().entries == 1;
    CHECK(cache.put("k", blob(r.valueBytes), r.valueBytes, clock.now() + 1s) == r.want);
    if (r.want == Cache::PutResult::TooLarge) {
      CHECK(cache.stats().rejections == 1);
      CHECK((cache.get("z") != nullptr) == zFits);  // nothing was evicted for it
    }
  }

  // A newer value that cannot be kept removes the older one for its key.
  Cache cache({10000, 1000}, clock.fn());
  cache.put("k", blob(10), 10, clock.now() + 1s);
  cache.put("other", blob(10), 10, clock.now() + 1s);
  CHECK(cache.put("k", blob(2000), 2000, clock.now() + 1s) == Cache::PutResult::TooLarge);
  CHECK(cache.get("k") == nullptr);
  CHECK(cache.get("other"));
  CHECK(cache.stats().bytes == Cache::entryCharge(5, 10));
}

TEST_CASE("algo lru cache: entries expire at expires_at on the injected clock") {
  ManualClock clock;
  Cache cache({roomFor(10, 10), 1000}, clock.fn());
  cache.putFor("a", blob(10), 10, 60s);
  cache.putFor("b", blob(10), 10, 30s);
  CHECK(cache.put("c", blob(10), 10, clock.now()) == Cache::PutResult::Expired);  // already stale
  CHECK(cache.get("c") == nullptr);

  clock.advance(30s - 1ms);
  CHECK(cache.get("b"));
  clock.advance(1ms);
  CHECK(cache.get("b") == nullptr);  // expired exactly at expires_at
  CHECK(cache.stats().expirations == 1);
  CHECK(cache.get("a"));

  cache.putFor("d", blob(10), 10, 1s);
  cache.putFor("e", blob(10), 10, 1s);
  clock.advance(2s);
  CHECK(cache.purgeExpired() == 2);
  auto s = cache.stats();
  CHECK(s.entries == 1);
  CHECK(s.bytes == Cache::entryCharge(1, 10));

  // An existing entry replaced by an already-expired put is gone.
  CHECK(cache.put("a", blob(10), 10, clock.now() - 1s) == Cache::PutResult::Expired);
  CHECK(cache.get("a") == nullptr);
  CHECK(cache.stats().bytes == 0);
}

TEST_CASE("algo lru cache: a reader keeps its hit alive after eviction") {
  ManualClock clock;
  Cache cache({roomFor(1, 1000), 1000}, clock.fn());
  cache.putFor("a", blob(1000, 'a'), 1000, 60s);
  auto reading = cache.get("a");
  std::weak_ptr<const std::string> watch = reading;
  cache.putFor("b", blob(1000, 'b'), 1000, 60s);  // evicts a
  CHECK(cache.get("a") == nullptr);
  REQUIRE(reading);
  CHECK(reading->front() == 'a');
  CHECK_FALSE(watch.expired());
  reading.reset();
  CHECK(watch.expired());  // the cache held no other reference
}

TEST_CASE("algo lru cache: shared by threads, the byte bound holds") {
  ManualClock clock;
  const size_t maxBytes = roomFor(50, 64);
  Cache cache({maxBytes, 1000}, clock.fn());
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) {
        const std::string key = std::to_string((i * 7 + t) % 200);
        if (auto v = cache.get(key)) {
          REQUIRE(v->size() == 64);
        } else {
          cache.putFor(key, blob(64), 64 + 1 - key.size(), 60s);
        }
        if (i % 97 == 0) {
          cache.erase(key);
        }
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  auto s = cache.stats();
  CHECK(s.bytes <= maxBytes);
  CHECK(s.entries <= 50);
  CHECK(s.hits + s.misses == 4 * 5000);
}
