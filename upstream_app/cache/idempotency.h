#pragma once
// app::IdempotencyStore: `Idempotency-Key` for POST /orders (CONTRACT §5), kept in Redis.
//
//   begin(key, fingerprint):
//     SET app:idem:orders:<key> "P<fingerprint>" NX PX pendingTtl
//       set           -> Proceed: this request creates the order, then complete() or abandon().
//       exists "D..." -> the first request finished: Replay its status and body, or Mismatch when
//                        the same key came with a different order (the fingerprint differs).
//       exists "P..." -> the first request is still running: poll (every pollDelay, up to
//                        waitBound) until it finishes, then Replay; past the bound InProgress.
//     Redis failing -> Unavailable (the route answers 503: without the store, a retried POST
//     could create a second order, which is what the client asked us to prevent).
//   complete(): SET the key to "D<fingerprint><status:3><body>" PX ttl (24h).
//   abandon():  deletes the key if it still holds our pending marker (the order was not created,
//               e.g. database busy), so the client's retry can proceed.
//
// Concurrent duplicates: SET NX lets exactly one request proceed; the others wait for its result.
// pendingTtl must exceed the longest the order transaction can take (pool wait + tries x
// statement_timeout), so a pending marker never expires under a running request.
// Limit: if the process dies between COMMIT and complete(), the marker expires after pendingTtl and
// a later retry creates a second order (a row in PostgreSQL written in the same transaction would
// close that gap; the contract keeps idempotency in Redis).
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/redis/redis_client.h"
#include "upstream_app/cache/traced_redis.h"
#include "upstream_app/timer_queue.h"

namespace app {

struct IdempotencySettings {
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
  std::chrono::milliseconds pendingTtl{30000};
  std::chrono::milliseconds waitBound{2000};
  std::chrono::milliseconds pollDelay{20};
};

class IdempotencyStore {
 public:
  enum class Outcome { Proceed, Replay, InProgress, Mismatch, Unavailable };
  struct Begin {
    Outcome outcome = Outcome::Unavailable;
    int status = 0;     // Replay
    std::string body;   // Replay
    std::string error;  // Unavailable: why (for logs)
  };
  // A stored value, decoded.
  struct StoredValue {
    bool valid = false;
    bool done = false;
    std::string fingerprint;
    int status = 0;
    std::string body;
  };

  IdempotencyStore(redisx::RedisClient& redis, TimerQueue& timers, IdempotencySettings settings);
  ~IdempotencyStore();
  IdempotencyStore(const IdempotencyStore&) = delete;
  IdempotencyStore& operator=(const IdempotencyStore&) = delete;

  // cb runs once, never inside begin().
  void begin(const std::string& key, const std::string& fingerprint, std::function<void(Begin)> cb);
  // cb(stored) once Redis answered (false: the result is not stored; logged).
  void complete(const std::string& key, const std::string& fingerprint, int status, std::string_view body,
                std::function<void(bool stored)> cb);
  void abandon(const std::string& key, const std::string& fingerprint);

  // A usable header value: 1..255 visible ASCII characters (0x21-0x7e).
  static bool validKey(std::string_view key);
  static std::string redisKey(std::string_view key);
  static std::string pendingValue(std::string_view fingerprint);
  static std::string doneValue(std::string_view fingerprint, int status, std::string_view body);
  static StoredValue decode(std::string_view value);

 private:
  struct Attempt;
  void trySet(const std::shared_ptr<Attempt>& a);
  void readExisting(const std::shared_ptr<Attempt>& a);

  TracedRedis redis_;  // each command a span of the request being served (traced_redis.h)
  TimerQueue& timers_;
  IdempotencySettings settings_;
  std::shared_ptr<bool> alive_;
};

}  // namespace app
