// app::ArticleCache against the real Redis of scripts/stack.sh, with an injected loader standing in
// for PostgreSQL so the tests can count and pace database reads.
#include "upstream_app/cache/article_cache.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/db/test_support.h"
#include "upstream_app/timer_queue.h"

using namespace std::chrono_literals;
using app::ArticleCache;
using app::ArticleCacheSettings;
using app::TimerQueue;
using testsupport::TestLoop;

namespace {

constexpr int kRedisDb = 9;

// A loader that answers after `delayMs` and counts its calls.
struct FakeDb {
  TimerQueue& timers;
  uint64_t delayMs = 20;
  int calls = 0;
  bool exists = true;
  std::string body = R"({"id":1,"title":"t"})";

  ArticleCache::Loader loader() {
    return [this](int64_t, ArticleCache::LoadCallback cb) {
      ++calls;
      timers.after(delayMs, [this, cb = std::move(cb)] {
        ArticleCache::Loaded l;
        l.status = exists ? ArticleCache::Loaded::Status::Found : ArticleCache::Loaded::Status::NotFound;
        l.body = body;
        cb(std::move(l));
      });
    };
  }
};

redisx::RedisResult redisAndWait(TestLoop& loop, redisx::RedisClient& redis, std::vector<std::string> args) {
  std::optional<redisx::RedisResult> out;
  redis.command(std::move(args), 1000ms, [&](redisx::RedisResult r) { out = std::move(r); });
  loop.runUntil([&] { return out.has_value(); }, 3000);
  REQUIRE(out.has_value());
  return std::move(*out);
}

std::unique_ptr<redisx::RedisClient> connectedRedis(TestLoop& loop, const std::string& url) {
  redisx::RedisOptions o;
  o.url = url;
  o.commandTimeout = 500ms;
  auto r = std::make_unique<redisx::RedisClient>(loop.get(), o);
  REQUIRE(r->start());
  loop.runUntil([&] { return r->state() == redisx::RedisClient::State::Ready; }, 3000);
  REQUIRE(r->state() == redisx::RedisClient::State::Ready);
  return r;
}

}  // namespace

TEST_SUITE("real-servers") {
  TEST_CASE("article cache (real Redis): concurrent misses on one key make one database read") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      auto redis = connectedRedis(loop, stack->redisUrl(kRedisDb));
      redisAndWait(loop, *redis, {"FLUSHDB"});
      TimerQueue timers(loop.get());
      FakeDb db{timers};
      db.delayMs = 30;
      ArticleCacheSettings s;
      s.ttl = 60000ms;
      ArticleCache cache(*redis, timers, s, db.loader());
      int answered = 0;
      std::vector<ArticleCache::Source> sources;
      for (int i = 0; i < 20; ++i) {
        cache.get(1, [&](ArticleCache::Lookup l) {
          CHECK(l.loaded.status == ArticleCache::Loaded::Status::Found);
          CHECK(l.loaded.body == db.body);
          sources.push_back(l.source);
          ++answered;
        });
      }
      loop.runUntil([&] { return answered == 20; }, 5000);
      CHECK(answered == 20);
      CHECK(db.calls == 1);
      CHECK(std::count(sources.begin(), sources.end(), ArticleCache::Source::Filled) == 1);
      CHECK(std::count(sources.begin(), sources.end(), ArticleCache::Source::WaitedHit) == 19);
      CHECK(cache.stats().lockWaits <= 19);  // a late one may find the entry in its lock attempt
      loop.runUntil([&] { return cache.stats().fills == 1; }, 1000);
      CHECK(cache.stats().fills == 1);
      // Stored with the TTL; the lock is gone.
      auto ttl = redisAndWait(loop, *redis, {"PTTL", ArticleCache::key(1)});
      CHECK(ttl.reply.integer > 59000);
      CHECK(ttl.reply.integer <= 60000);
      CHECK(redisAndWait(loop, *redis, {"EXISTS", ArticleCache::lockKey(1)}).reply.integer == 0);
      // Then hits.
      std::optional<ArticleCache::Lookup> hit;
      cache.get(1, [&](ArticleCache::Lookup l) { hit = std::move(l); });
      loop.runUntil([&] { return hit.has_value(); }, 2000);
      REQUIRE(hit.has_value());
      CHECK(hit->source == ArticleCache::Source::Hit);
      CHECK(db.calls == 1);
      timers.close();
      redis->close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("article cache (real Redis): invalidation during a fill keeps the old body out") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      auto redis = connectedRedis(loop, stack->redisUrl(kRedisDb));
      redisAndWait(loop, *redis, {"FLUSHDB"});
      TimerQueue timers(loop.get());
      FakeDb db{timers};
      db.delayMs = 80;
      ArticleCache cache(*redis, timers, ArticleCacheSettings{}, db.loader());
      std::optional<ArticleCache::Lookup> first;
      cache.get(2, [&](ArticleCache::Lookup l) { first = std::move(l); });
      std::optional<bool> invalidated;
      timers.after(30, [&] { cache.invalidate(2, [&](bool ok) { invalidated = ok; }); });
      loop.runUntil([&] { return first.has_value() && invalidated.has_value(); }, 3000);
      REQUIRE(first.has_value());
      CHECK(first->source == ArticleCache::Source::Filled);
      CHECK(invalidated.value_or(false));
      loop.runUntil([&] { return cache.stats().fillsDropped == 1; }, 1000);
      CHECK(cache.stats().fillsDropped == 1);
      CHECK(cache.stats().fills == 0);
      CHECK(redisAndWait(loop, *redis, {"EXISTS", ArticleCache::key(2)}).reply.integer == 0);
      timers.close();
      redis->close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("article cache (real Redis): not found is not cached and frees the lock") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      auto redis = connectedRedis(loop, stack->redisUrl(kRedisDb));
      redisAndWait(loop, *redis, {"FLUSHDB"});
      TimerQueue timers(loop.get());
      FakeDb db{timers};
      db.exists = false;
      ArticleCache cache(*redis, timers, ArticleCacheSettings{}, db.loader());
      std::optional<ArticleCache::Lookup> got;
      cache.get(3, [&](ArticleCache::Lookup l) { got = std::move(l); });
      loop.runUntil([&] { return got.has_value(); }, 3000);
      REQUIRE(got.has_value());
      CHECK(got->loaded.status == ArticleCache::Loaded::Status::NotFound);
      loop.runFor(50);
      CHECK(redisAndWait(loop, *redis, {"EXISTS", ArticleCache::key(3), ArticleCache::lockKey(3)}).reply.integer == 0);
      timers.close();
      redis->close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("article cache (real Redis): a stuck filler makes waiters read through after the bound") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      auto redis = connectedRedis(loop, stack->redisUrl(kRedisDb));
      redisAndWait(loop, *redis, {"FLUSHDB"});
      redisAndWait(loop, *redis, {"SET", ArticleCache::lockKey(4), "someone-else", "PX", "10000"});
      TimerQueue timers(loop.get());
      FakeDb db{timers};
      db.delayMs = 1;
      ArticleCacheSettings s;
      s.waitBound = 100ms;
      ArticleCache cache(*redis, timers, s, db.loader());
      const uint64_t t0 = loop.nowMs();
      std::optional<ArticleCache::Lookup> got;
      cache.get(4, [&](ArticleCache::Lookup l) { got = std::move(l); });
      loop.runUntil([&] { return got.has_value(); }, 3000);
      REQUIRE(got.has_value());
      const uint64_t took = loop.nowMs() - t0;
      CHECK(got->source == ArticleCache::Source::ReadThrough);
      CHECK(got->loaded.status == ArticleCache::Loaded::Status::Found);
      CHECK(took >= 100);
      CHECK(took < 1000);
      CHECK(db.calls == 1);
      CHECK(cache.stats().readThroughs == 1);
      // A read-through does not fill (it does not own the lock).
      CHECK(redisAndWait(loop, *redis, {"EXISTS", ArticleCache::key(4)}).reply.integer == 0);
      timers.close();
      redis->close();
    }
    CHECK(loop.finish() == 0);
  }
}

TEST_CASE("article cache: Redis unreachable -> every read comes from the database") {
  TestLoop loop;
  {
    redisx::RedisOptions o;
    o.url = "redis://127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/0";
    redisx::RedisClient redis(loop.get(), o);
    REQUIRE(redis.start());
    TimerQueue timers(loop.get());
    FakeDb db{timers};
    ArticleCache cache(redis, timers, ArticleCacheSettings{}, db.loader());
    int answered = 0;
    for (int i = 0; i < 3; ++i) {
      cache.get(5, [&](ArticleCache::Lookup l) {
        CHECK(l.source == ArticleCache::Source::CacheDown);
        CHECK(l.loaded.status == ArticleCache::Loaded::Status::Found);
        ++answered;
      });
    }
    loop.runUntil([&] { return answered == 3; }, 3000);
    CHECK(answered == 3);
    CHECK(db.calls == 3);
    CHECK(cache.stats().errors == 3);
    CHECK(cache.stats().misses == 3);
    timers.close();
    redis.close();
  }
  CHECK(loop.finish() == 0);
}
