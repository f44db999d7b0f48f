// The stored form of Idempotency-Key records (cache/idempotency.h), without Redis.
#include <doctest/doctest.h>

#include "upstream_app/cache/idempotency.h"

using app::IdempotencyStore;

TEST_CASE("app idempotency: key syntax") {
  CHECK(IdempotencyStore::validKey("a"));
  CHECK(IdempotencyStore::validKey("8e0f6a1c-2b3d-4e5f-a6b7-c8d9e0f1a2b3"));
  CHECK(IdempotencyStore::validKey(std::string(255, 'k')));
  CHECK_FALSE(IdempotencyStore::validKey(""));
  CHECK_FALSE(IdempotencyStore::validKey(std::string(256, 'k')));
  CHECK_FALSE(IdempotencyStore::validKey("has space"));
  CHECK_FALSE(IdempotencyStore::validKey("tab\t"));
  CHECK_FALSE(IdempotencyStore::validKey("caf\xc3\xa9"));
  CHECK(IdempotencyStore::redisKey("k1") == "app:idem:orders:k1");
}

TEST_CASE("app idempotency: value round trip") {
  const std::string fp = "0123456789abcdef";
  auto p = IdempotencyStore::decode(IdempotencyStore::pendingValue(fp));
  CHECK(p.valid);
  CHECK_FALSE(p.done);
  CHECK(p.fingerprint == fp);

  auto d = IdempotencyStore::decode(IdempotencyStore::doneValue(fp, 201, R"({"id":5})"));
  CHECK(d.valid);
  CHECK(d.done);
  CHECK(d.status == 201);
  CHECK(d.fingerprint == fp);
  CHECK(d.body == R"({"id":5})");

  auto empty = IdempotencyStore::decode(IdempotencyStore::doneValue(fp, 503, ""));
  CHECK(empty.valid);
  CHECK(empty.status == 503);
  CHECK(empty.body.empty());

  CHECK_FALSE(IdempotencyStore::decode("").valid);
  CHECK_FALSE(IdempotencyStore::decode("X0123456789abcdef").valid);
  CHECK_FALSE(IdempotencyStore::decode("D0123456789abcdef2x1{}").valid);
  CHECK_FALSE(IdempotencyStore::decode("P0123").valid);
  CHECK_FALSE(IdempotencyStore::decode("P0123456789abcdefEXTRA").valid);
}
