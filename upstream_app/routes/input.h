#pragma once
// Request bodies of upstream_app: strict JSON parsing (RapidJSON, see json/json.h) and validation
// that names the offending field, for the 422 answers of CONTRACT §5. Pure functions, no I/O,
// unit-tested in tests/unit/app/input_test.cc.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace app::routes {

// A rejected body: `field` names the input at fault ("items[2].quantity", or "body" when the
// document itself is not acceptable) and `message` says what is wrong, for humans.
struct InputError {
  std::string field;
  std::string message;
  bool ok() const { return field.empty() && message.empty(); }
};

struct NewOrderItem {
  std::string sku;
  int64_t quantity = 0;        // 1..2^31-1 (order_items.quantity is an int)
  int64_t unitPriceCents = 0;  // >= 0
};

struct NewOrder {
  int64_t customerId = 0;           // > 0
  std::vector<NewOrderItem> items;  // 1..kMaxOrderItems
};

constexpr size_t kMaxOrderItems = 100;
constexpr size_t kMaxSkuBytes = 64;
constexpr size_t kMaxTitleBytes = 1000;

// POST /orders: {"customer_id": int > 0, "items": [{"sku": non-empty string, "quantity": int > 0,
// "unit_price_cents": int >= 0}, ...]} (1..100 items). Unknown members are ignored. Integers must
// be JSON integers (1.0 and "1" are rejected); strings must not contain NUL (PostgreSQL text
// cannot hold it).
InputError parseNewOrder(std::string_view body, NewOrder& out);

struct ArticleUpdate {
  std::string title;  // non-empty, at most kMaxTitleBytes
  std::string body;
};

// PUT /articles/{id}: {"title": non-empty string, "body": string}; both required.
InputError parseArticleUpdate(std::string_view body, ArticleUpdate& out);

// A stable identity of an order request, for Idempotency-Key reuse checks: the same order written
// with other whitespace or member order has the same fingerprint. 16 hex digits.
std::string orderFingerprint(const NewOrder& order);

// PostgreSQL array literals for unnest($n::text[]) / ($n::bigint[]) parameters.
std::string textArrayLiteral(const std::vector<std::string_view>& values);
std::string intArrayLiteral(const std::vector<int64_t>& values);

// 64-bit FNV-1a; ETags and fingerprints (not a security boundary).
uint64_t fnv1a64(std::string_view data, uint64_t seed = 0xcbf29ce484222325ULL);
std::string hex16(uint64_t v);

}  // namespace app::routes
