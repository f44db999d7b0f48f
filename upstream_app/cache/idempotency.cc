#include "upstream_app/cache/idempotency.h"

#include "common/obs/log.h"
#include "common/obs/trace/log_context.h"

namespace app {

namespace {

constexpr size_t kFingerprintLen = 16;
constexpr size_t kMaxKeyLen = 255;
// A key can vanish between a refused SET NX and the GET (abandoned or expired): try again, a few times.
constexpr int kMaxSetAttempts = 3;
constexpr const char* kAbandonScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

}  // namespace

struct IdempotencyStore::Attempt {
  std::string key;  // the Redis key
  std::string fingerprint;
  std::function<void(Begin)> cb;
  int sets = 0;
  uint64_t waitedMs = 0;
  // The request span current at begin(): the poll timer's GETs run outside any scope.
  obs::trace::SpanParent parent;

  void answer(Begin b) {
    auto c = std::move(cb);
    cb = nullptr;
    if (c) {
      c(std::move(b));
    }
  }
};

IdempotencyStore::IdempotencyStore(redisx::RedisClient& redis, TimerQueue& timers, IdempotencySettings settings)
    : redis_(redis), timers_(timers), settings_(settings), alive_(std::make_shared<bool>(true)) {}

IdempotencyStore::~IdempotencyStore() { *alive_ = false; }

bool IdempotencyStore::validKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyLen) {
    return false;
  }
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

std::string IdempotencyStore::redisKey(std::string_view key) {
  std::string out = "app:idem:orders:";
  out.append(key);
  return out;
}

std::string IdempotencyStore::pendingValue(std::string_view fingerprint) {
  std::string out = "P";
  out.append(fingerprint);
  return out;
}

std::string IdempotencyStore::doneValue(std::string_view fingerprint, int status, std::string_view body) {
  std::string out;
  out.reserve(1 + fingerprint.size() + 3 + body.size());
  out.push_back('D');
  out.append(fingerprint);
  const int s = status < 100 || status > 999 ? 500 : status;
  out += std::to_string(s);
  out.append(body);
  return out;
}

IdempotencyStore::StoredValue IdempotencyStore::decode(std::string_view v) {
  StoredValue out;
  if (v.size() < 1 + kFingerprintLen) {
    return out;
  }
  out.fingerprint = std::string(v.substr(1, kFingerprintLen));
  if (v[0] == 'P') {
    out.valid = v.size() == 1 + kFingerprintLen;
    return out;
  }
  if (v[0] != 'D' || v.size() < 1 + kFingerprintLen + 3) {
    return out;
  }
  int status = 0;
  for (size_t i = 1 + kFingerprintLen; i < 1 + kFingerprintLen + 3; ++i) {
    if (v[i] < '0' || v[i] > '9') {
      return out;
    }
    status = status * 10 + (v[i] - '0');
  }
  out.valid = true;
  out.done = true;
  out.status = status;
  out.body = std::string(v.substr(1 + kFingerprintLen + 3));
  return out;
}

void IdempotencyStore::begin(const std::string& key, const std::string& fingerprint, std::function<void(Begin)> cb) {
  auto a = std::make_shared<Attempt>();
  a->key = redisKey(key);
  a->fingerprint = fingerprint;
  a->cb = std::move(cb);
  a->parent = obs::trace::SpanParent::current();
  trySet(a);
}

void IdempotencyStore::trySet(const std::shared_ptr<Attempt>& a) {
  ++a->sets;
  auto alive = alive_;
  redis_.command(
      {"SET", a->key, pendingValue(a->fingerprint), "NX", "PX", std::to_string(settings_.pendingTtl.count())},
      [this, alive, a](redisx::RedisResult r) {
        if (!*alive) {
          return;
        }
        if (!r.ok()) {
          Begin b;
          b.outcome = Outcome::Unavailable;
          b.error = std::string(redisx::errorKindName(r.error)) + ": " + r.errorMessage;
          a->answer(std::move(b));
          return;
        }
        if (r.reply.type == redisx::ReplyType::Status) {
          Begin b;
          b.outcome = Outcome::Proceed;
          a->answer(std::move(b));
          return;
        }
        readExisting(a);
      });
}

void IdempotencyStore::readExisting(const std::shared_ptr<Attempt>& a) {
  auto alive = alive_;
  redis_.command({"GET", a->key}, [this, alive, a](redisx::RedisResult r) {
    if (!*alive) {
      return;
    }
    if (!r.ok()) {
      Begin b;
      b.outcome = Outcome::Unavailable;
      b.error = std::string(redisx::errorKindName(r.error)) + ": " + r.errorMessage;
      a->answer(std::move(b));
      return;
    }
    if (r.reply.type != redisx::ReplyType::String) {
      // Gone since our SET NX (abandoned or expired): compete again.
      if (a->sets < kMaxSetAttempts) {
        trySet(a);
        return;
      }
      Begin b;
      b.outcome = Outcome::InProgress;
      a->answer(std::move(b));
      return;
    }
    StoredValue v = decode(r.reply.str);
    if (v.valid && v.fingerprint != a->fingerprint) {
      Begin b;
      b.outcome = Outcome::Mismatch;
      a->answer(std::move(b));
      return;
    }
    if (v.valid && v.done) {
      Begin b;
      b.outcome = Outcome::Replay;
      b.status = v.status;
      b.body = std::move(v.body);
      a->answer(std::move(b));
      return;
    }
    if (!v.valid) {
      Begin b;
      b.outcome = Outcome::Unavailable;
      b.error = "unreadable idempotency record";
      a->answer(std::move(b));
      return;
    }
    // Pending: the first request is still creating the order.
    if (a->waitedMs >= static_cast<uint64_t>(settings_.waitBound.count())) {
      Begin b;
      b.outcome = Outcome::InProgress;
      a->answer(std::move(b));
      return;
    }
    const uint64_t delay = static_cast<uint64_t>(settings_.pollDelay.count());
    a->waitedMs += delay;
    timers_.after(delay, [this, alive, a] {
      if (*alive) {
        obs::trace::CurrentSpanScope scope(a->parent);
        readExisting(a);
      }
    });
  });
}

void IdempotencyStore::complete(const std::string& key, const std::string& fingerprint, int status,
                                std::string_view body, std::function<void(bool stored)> cb) {
  redis_.command(
      {"SET", redisKey(key), doneValue(fingerprint, status, body), "PX", std::to_string(settings_.ttl.count())},
      [cb = std::move(cb)](redisx::RedisResult r) {
        if (!r.ok()) {
          obs::warn("idempotency result not stored; a retry of this request may create a second order",
                    obs::LogFields().str("error", r.errorMessage));
        }
        cb(r.ok());
      });
}

void IdempotencyStore::abandon(const std::string& key, const std::string& fingerprint) {
  redis_.command({"EVAL", kAbandonScript, "1", redisKey(key), pendingValue(fingerprint)}, [](redisx::RedisResult) {});
}

}  // namespace app
