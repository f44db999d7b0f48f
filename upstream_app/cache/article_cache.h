#pragma once
// app::ArticleCache: Redis cache-aside for GET /articles/{id} (CONTRACT §5), with one filler per
// key and a PostgreSQL fallback when Redis is unavailable.
//
//   get(id):
//     GET app:article:<id>            hit  -> the cached JSON body
//                                     miss -> one Lua script: the entry if it appeared meanwhile,
//                                             else SET app:article:<id>:fill <token> NX PX lockTtl
//       lock won   -> load from PostgreSQL, answer, then (one round trip, a Lua script) store the
//                     body with PX ttl and delete the lock -- only if the lock still holds our
//                     token. PUT deletes the lock along with the entry, so a filler that read the
//                     row before an update cannot write the old body back afterwards.
//       lock held  -> another request is filling: poll GET (2, 4, 8, 16, then every 25 ms) for up
//                     to waitBound (150 ms); on a hit answer it, else read through from
//                     PostgreSQL without filling (the filler may be stuck or gone).
//     Redis error (down, timeout: redis.command_timeout bounds each command) at any step ->
//     read from PostgreSQL; counted as an error and a miss. Nothing is cached then.
//   invalidate(id): DEL app:article:<id> app:article:<id>:fill, after the update committed.
//
// Not-found articles are not cached (a 404 costs one indexed read).
//
// The loader (PostgreSQL access) is injected, so tests can count and pace loads. One cache per
// event loop; loop thread only.
//
// Tracing: every Redis command is a client span of the request that called get()/invalidate()
// (TracedRedis); the loader and the callback run inside that request's span scope, so the
// loader's transaction is traced under it too, including after the poll timer's waits.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/redis/redis_client.h"
#include "upstream_app/cache/traced_redis.h"
#include "upstream_app/db/pool.h"
#include "upstream_app/timer_queue.h"

namespace app {

struct ArticleCacheSettings {
  std::chrono::milliseconds ttl{60000};      // upstream_app.cache_ttl
  std::chrono::milliseconds lockTtl{5000};   // a filler that dies holds the key this long at most
  std::chrono::milliseconds waitBound{150};  // how long a non-filler waits for the filler
  std::chrono::milliseconds maxPollDelay{25};
};

struct CacheStats {
  uint64_t hits = 0;          // answered from Redis (first GET or while waiting for a filler)
  uint64_t misses = 0;        // answered from PostgreSQL (fills, read-throughs and Redis errors)
  uint64_t errors = 0;        // Redis failed: down or timed out
  uint64_t fills = 0;         // entries written by a filler
  uint64_t fillsDropped = 0;  // a filler lost its lock (invalidated or expired) and wrote nothing
  uint64_t lockWaits = 0;     // requests that found the fill lock taken and waited
  uint64_t readThroughs = 0;  // waiters that gave up waiting and read PostgreSQL themselves
  uint64_t dbLoads = 0;       // loader calls
};

class ArticleCache {
 public:
  enum class Source { Hit, Filled, WaitedHit, ReadThrough, CacheDown };
  struct Loaded {
    enum class Status { Found, NotFound, Failed } status = Status::Failed;
    std::string body;   // the article's JSON when Found
    db::DbError error;  // when Failed
  };
  struct Lookup {
    Loaded loaded;
    Source source = Source::Hit;
  };
  using LoadCallback = std::function<void(Loaded)>;
  using Loader = std::function<void(int64_t id, LoadCallback)>;
  using Callback = std::function<void(Lookup)>;

  ArticleCache(redisx::RedisClient& redis, TimerQueue& timers, ArticleCacheSettings settings, Loader loader);
  ~ArticleCache();
  ArticleCache(const ArticleCache&) = delete;
  ArticleCache& operator=(const ArticleCache&) = delete;

  // cb runs once, never inside get().
  void get(int64_t id, Callback cb);
  // cb(true) once both keys are gone (or were absent); cb(false) if Redis failed.
  void invalidate(int64_t id, std::function<void(bool ok)> cb);

  const CacheStats& stats() const { return stats_; }
  static std::string key(int64_t id);
  static std::string lockKey(int64_t id);
  static const char* sourceName(Source s);

 private:
  struct Request;
  void onFirstGet(const std::shared_ptr<Request>& req, redisx::RedisResult r);
  void onLock(const std::shared_ptr<Request>& req, redisx::RedisResult r);
  void fill(const std::shared_ptr<Request>& req);
  void poll(const std::shared_ptr<Request>& req);
  // Loads from PostgreSQL and answers with `source`; no cache write.
  void loadAndAnswer(const std::shared_ptr<Request>& req, Source source);
  std::string nextToken();

  TracedRedis redis_;  // each command a span of the request being served (traced_redis.h)
  TimerQueue& timers_;
  ArticleCacheSettings settings_;
  Loader loader_;
  CacheStats stats_;
  uint64_t tokenCounter_ = 0;
  std::string tokenPrefix_;
  std::shared_ptr<bool> alive_;
};

}  // namespace app
