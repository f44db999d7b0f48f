#include "upstream_app/cache/article_cache.h"

#include <unistd.h>

#include <algorithm>

#include "common/obs/log.h"
#include "common/obs/trace/log_context.h"

namespace app {

namespace {

// KEYS[1] entry, KEYS[2] fill lock; ARGV[1] our token, ARGV[2] body, ARGV[3] ttl ms.
// Writes the entry and frees the lock only while the lock is still ours.
constexpr const char* kFillScript =
    "if redis.call('GET', KEYS[2]) == ARGV[1] then "
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
    "redis.call('DEL', KEYS[2]) "
    "return 1 end "
    "return 0";
// KEYS[1] entry, KEYS[2] fill lock; ARGV[1] our token, ARGV[2] lock ttl ms. After a GET miss:
// {1, body} when the entry appeared meanwhile, {2} when we took the lock, {3} when another request
// holds it. Atomic, so a request whose GET missed just before a fill finished (and freed the lock)
// cannot become a second filler and read the database again.
constexpr const char* kLockOrGetScript =
    "local v = redis.call('GET', KEYS[1]) "
    "if v then return {1, v} end "
    "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end "
    "return {3}";
// KEYS[1] fill lock; ARGV[1] our token: frees the lock if it is still ours.
constexpr const char* kUnlockScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

}  // namespace

struct ArticleCache::Request {
  int64_t id = 0;
  std::string key;
  std::string lockKey;
  std::string token;
  Callback cb;
  uint64_t waitStartedMs = 0;
  uint64_t waitedMs = 0;
  int polls = 0;
  // The request span current at get(): the poll timer's callbacks run outside any scope.
  obs::trace::SpanParent parent;

  void answer(Lookup lookup) {
    Callback c = std::move(cb);
    cb = nullptr;
    if (c) {
      c(std::move(lookup));
    }
  }
};

ArticleCache::ArticleCache(redisx::RedisClient& redis, TimerQueue& timers, ArticleCacheSettings settings, Loader loader)
    : redis_(redis),
      timers_(timers),
      settings_(settings),
      loader_(std::move(loader)),
      tokenPrefix_(std::to_string(getpid()) + "-" + std::to_string(reinterpret_cast<uintptr_t>(this)) + "-"),
      alive_(std::make_shared<bool>(true)) {}

ArticleCache::~ArticleCache() { *alive_ = false; }

std::string ArticleCache::key(int64_t id) { return "app:article:" + std::to_string(id); }
std::string ArticleCache::lockKey(int64_t id) { return "app:article:" + std::to_string(id) + ":fill"; }

const char* ArticleCache::sourceName(Source s) {
  switch (s) {
    case Source::Hit:
      return "hit";
    case Source::Filled:
      return "filled";
    case Source::WaitedHit:
      return "waited_hit";
    case Source::ReadThrough:
      return "read_through";
    case Source::CacheDown:
      return "cache_down";
  }
  return "unknown";
}

std::string ArticleCache::nextToken() { return tokenPrefix_ + std::to_string(++tokenCounter_); }

void ArticleCache::get(int64_t id, Callback cb) {
  auto req = std::make_shared<Request>();
  req->id = id;
  req->key = key(id);
  req->cb = std::move(cb);
  req->parent = obs::trace::SpanParent::current();
  auto alive = alive_;
  redis_.command({"GET", req->key}, [this, alive, req](redisx::RedisResult r) {
    if (*alive) {
      onFirstGet(req, std::move(r));
    }
  });
}

void ArticleCache::onFirstGet(const std::shared_ptr<Request>& req, redisx::RedisResult r) {
  if (!r.ok()) {
    ++stats_.errors;
    loadAndAnswer(req, Source::CacheDown);
    return;
  }
  if (r.reply.type == redisx::ReplyType::String) {
    ++stats_.hits;
    Lookup out;
    out.loaded.status = Loaded::Status::Found;
    out.loaded.body = std::move(r.reply.str);
    out.source = Source::Hit;
    req->answer(std::move(out));
    return;
  }
  // Miss: try to become this key's filler.
  req->lockKey = lockKey(req->id);
  req->token = nextToken();
  auto alive = alive_;
  redis_.command(
      {"EVAL", kLockOrGetScript, "2", req->key, req->lockKey, req->token, std::to_string(settings_.lockTtl.count())},
      [this, alive, req](redisx::RedisResult lr) {
        if (*alive) {
          onLock(req, std::move(lr));
        }
      });
}

void ArticleCache::onLock(const std::shared_ptr<Request>& req, redisx::RedisResult r) {
  if (!r.ok()) {
    ++stats_.errors;
    loadAndAnswer(req, Source::CacheDown);
    return;
  }
  const auto& e = r.reply.elements;
  if (r.reply.type != redisx::ReplyType::Array || e.empty() || e[0].type != redisx::ReplyType::Integer) {
    ++stats_.errors;
    loadAndAnswer(req, Source::CacheDown);
    return;
  }
  if (e[0].integer == 1 && e.size() == 2 && e[1].type == redisx::ReplyType::String) {
    // Filled between our GET and the lock attempt.
    ++stats_.hits;
    Lookup out;
    out.loaded.status = Loaded::Status::Found;
    out.loaded.body = std::move(r.reply.elements[1].str);
    out.source = Source::WaitedHit;
    req->answer(std::move(out));
    return;
  }
  if (e[0].integer == 2) {
    fill(req);
    return;
  }
  // Someone else fills: wait for the entry.
  ++stats_.lockWaits;
  req->waitStartedMs = 0;
  poll(req);
}

void ArticleCache::fill(const std::shared_ptr<Request>& req) {
  ++stats_.dbLoads;
  auto alive = alive_;
  loader_(req->id, [this, alive, req](Loaded loaded) {
    if (!*alive) {
      return;
    }
    ++stats_.misses;
    if (loaded.status == Loaded::Status::Found) {
      // Answer first; the cache write does not delay the response.
      std::vector<std::string> args{"EVAL",       kFillScript, "2",         req->key,
                                    req->lockKey, req->token,  loaded.body, std::to_string(settings_.ttl.count())};
      Lookup out;
      out.loaded = std::move(loaded);
      out.source = Source::Filled;
      req->answer(std::move(out));
      if (!*alive) {
        return;
      }
      redis_.command(std::move(args), [this, alive](redisx::RedisResult r) {
        if (!*alive) {
          return;
        }
        if (r.ok() && r.reply.type == redisx::ReplyType::Integer && r.reply.integer == 1) {
          ++stats_.fills;
        } else if (r.ok()) {
          ++stats_.fillsDropped;
        } else {
          ++stats_.errors;
        }
      });
      return;
    }
    // Not found or failed: nothing to cache; free the lock so the next request need not wait.
    redis_.command({"EVAL", kUnlockScript, "1", req->lockKey, req->token}, [](redisx::RedisResult) {});
    Lookup out;
    out.loaded = std::move(loaded);
    out.source = Source::Filled;
    req->answer(std::move(out));
  });
}

void ArticleCache::poll(const std::shared_ptr<Request>& req) {
  const uint64_t delay = std::min<uint64_t>(uint64_t{2} << std::min(req->polls, 10),
                                            static_cast<uint64_t>(settings_.maxPollDelay.count()));
  ++req->polls;
  req->waitedMs += delay;
  auto alive = alive_;
  timers_.after(delay, [this, alive, req] {
    if (!*alive) {
      return;
    }
    obs::trace::CurrentSpanScope scope(req->parent);
    redis_.command({"GET", req->key}, [this, alive, req](redisx::RedisResult r) {
      if (!*alive) {
        return;
      }
      if (!r.ok()) {
        ++stats_.errors;
        loadAndAnswer(req, Source::CacheDown);
        return;
      }
      if (r.reply.type == redisx::ReplyType::String) {
        ++stats_.hits;
        Lookup out;
        out.loaded.status = Loaded::Status::Found;
        out.loaded.body = std::move(r.reply.str);
        out.source = Source::WaitedHit;
        req->answer(std::move(out));
        return;
      }
      if (req->waitedMs >= static_cast<uint64_t>(settings_.waitBound.count())) {
        ++stats_.readThroughs;
        loadAndAnswer(req, Source::ReadThrough);
        return;
      }
      poll(req);
    });
  });
}

void ArticleCache::loadAndAnswer(const std::shared_ptr<Request>& req, Source source) {
  ++stats_.dbLoads;
  auto alive = alive_;
  loader_(req->id, [this, alive, req, source](Loaded loaded) {
    if (*alive) {
      ++stats_.misses;
    }
    Lookup out;
    out.loaded = std::move(loaded);
    out.source = source;
    req->answer(std::move(out));
  });
}

void ArticleCache::invalidate(int64_t id, std::function<void(bool ok)> cb) {
  redis_.command({"DEL", key(id), lockKey(id)}, [id, cb = std::move(cb)](redisx::RedisResult r) {
    if (!r.ok()) {
      obs::warn("article cache invalidation failed; the entry may be stale until its TTL",
                obs::LogFields().num("article_id", id).str("error", r.errorMessage));
    }
    cb(r.ok());
  });
}

}  // namespace app
