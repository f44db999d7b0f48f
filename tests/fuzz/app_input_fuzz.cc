// libFuzzer target: what upstream_app reads from a request (upstream_app/routes/input.h,
// params.h): the JSON bodies of POST /orders and PUT /articles/{id} (RapidJSON, strict), the
// query string of GET /orders, ids in paths, and the PostgreSQL array literals built from
// request data.
//
// The whole input is offered to every parser (a body, a query string, an id).
//
// Properties besides "no crash, no sanitizer report":
//  - an accepted order / article satisfies every documented bound (ids > 0, 1..100 items,
//    non-empty SKUs without NUL, quantity 1..2^31-1, price >= 0, title 1..1000 bytes); a refused
//    one names a field and a message;
//  - an accepted order written again with other whitespace and member order parses to the same
//    order and the same fingerprint (Idempotency-Key reuse checks depend on it);
//  - textArrayLiteral / intArrayLiteral read back through PostgreSQL's array input syntax give
//    exactly the values (the SKUs, and arbitrary strings from the input);
//  - percentDecode inverts percent-encoding; an accepted positive id prints back to its digits;
//    an accepted page query is within 1..100 and after > 0.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_support.h"
#include "upstream_app/routes/input.h"
#include "upstream_app/routes/params.h"

namespace ar = app::routes;

namespace {

// PostgreSQL's array_in for a one-dimensional array whose elements are all double-quoted (what the
// product writes): '{' ["elem" (',' "elem")*] '}', backslash escaping inside quotes.
std::optional<std::vector<std::string>> readArrayLiteral(std::string_view lit, bool quoted) {
  std::vector<std::string> out;
  size_t i = 0;
  if (lit.empty() || lit[i++] != '{') {
    return std::nullopt;
  }
  if (i < lit.size() && lit[i] == '}') {
    return i + 1 == lit.size() ? std::optional(out) : std::nullopt;
  }
  while (i < lit.size()) {
    std::string value;
    if (quoted) {
      if (lit[i++] != '"') {
        return std::nullopt;
      }
      while (i < lit.size() && lit[i] != '"') {
        if (lit[i] == '\\') {
          ++i;
          if (i == lit.size()) {
            return std::nullopt;
          }
        }
        value.push_back(lit[i++]);
      }
      if (i == lit.size()) {
        return std::nullopt;
      }
      ++i;  // closing quote
    } else {
      while (i < lit.size() && lit[i] != ',' && lit[i] != '}') {
        value.push_back(lit[i++]);
      }
    }
    out.push_back(std::move(value));
    if (i == lit.size()) {
      return std::nullopt;
    }
    if (lit[i] == '}') {
      return i + 1 == lit.size() ? std::optional(out) : std::nullopt;
    }
    if (lit[i++] != ',') {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

// The same order, members reversed and spaced out, as another client library might write it.
std::string rewriteOrder(const ar::NewOrder& o) {
  std::string out = "{ \"items\" :\n [";
  for (size_t i = 0; i < o.items.size(); ++i) {
    const ar::NewOrderItem& it = o.items[i];
    out += i > 0 ? " ,\t" : "";
    out += "{\"unit_price_cents\": " + std::to_string(it.unitPriceCents) + ", \"quantity\":" +
           std::to_string(it.quantity) + " , \"sku\" : " + jsonString(it.sku) + ", \"note\": [null, {}]}";
  }
  out += "],\r\n \"customer_id\": " + std::to_string(o.customerId) + " }";
  return out;
}

std::string describe(const ar::NewOrder& o) {
  std::string out = "customer " + std::to_string(o.customerId);
  for (const ar::NewOrderItem& it : o.items) {
    out += " [" + fuzz::quote(it.sku, 40) + " x" + std::to_string(it.quantity) + " @" +
           std::to_string(it.unitPriceCents) + "]";
  }
  return out;
}

void checkOrder(std::string_view body) {
  ar::NewOrder order;
  const ar::InputError err = ar::parseNewOrder(body, order);
  if (!err.ok()) {
    FUZZ_CHECK(!err.field.empty() && !err.message.empty(),
               "refused order without field and message: " + fuzz::quote(body));
    return;
  }
  const std::string what = describe(order) + " from " + fuzz::quote(body);
  FUZZ_CHECK(order.customerId > 0, "customer_id <= 0 accepted: " + what);
  FUZZ_CHECK(!order.items.empty() && order.items.size() <= ar::kMaxOrderItems, "item count out of range: " + what);
  std::vector<std::string_view> skus;
  for (const ar::NewOrderItem& it : order.items) {
    FUZZ_CHECK(!it.sku.empty() && it.sku.find('\0') == std::string::npos, "empty or NUL SKU accepted: " + what);
    FUZZ_CHECK(it.quantity >= 1 && it.quantity <= INT32_MAX, "quantity out of 1..2^31-1 accepted: " + what);
    FUZZ_CHECK(it.unitPriceCents >= 0, "negative price accepted: " + what);
    skus.push_back(it.sku);
  }
  ar::NewOrder again;
  const std::string rewritten = rewriteOrder(order);
  const ar::InputError err2 = ar::parseNewOrder(rewritten, again);
  FUZZ_CHECK(err2.ok(), "the same order rewritten is refused (" + err2.field + ": " + err2.message + "): " +
                            fuzz::quote(rewritten) + " (first " + what + ")");
  FUZZ_CHECK(ar::orderFingerprint(again) == ar::orderFingerprint(order),
             "fingerprint changes with formatting: " + what + " vs " + describe(again));

  const auto back = readArrayLiteral(ar::textArrayLiteral(skus), true);
  FUZZ_CHECK(back.has_value() && back->size() == skus.size(), "SKU array literal unreadable: " +
                                                                   fuzz::quote(ar::textArrayLiteral(skus)));
  for (size_t i = 0; i < skus.size(); ++i) {
    FUZZ_CHECK((*back)[i] == skus[i], "SKU array literal changes a value: " + fuzz::quote(skus[i]));
  }
  std::vector<int64_t> quantities;
  for (const ar::NewOrderItem& it : order.items) {
    quantities.push_back(it.quantity);
  }
  const auto ints = readArrayLiteral(ar::intArrayLiteral(quantities), false);
  FUZZ_CHECK(ints.has_value() && ints->size() == quantities.size(), "int array literal unreadable");
  for (size_t i = 0; i < quantities.size(); ++i) {
    FUZZ_CHECK((*ints)[i] == std::to_string(quantities[i]), "int array literal changes a value");
  }
}

void checkArticle(std::string_view body) {
  ar::ArticleUpdate update;
  const ar::InputError err = ar::parseArticleUpdate(body, update);
  if (!err.ok()) {
    FUZZ_CHECK(!err.field.empty() && !err.message.empty(), "refused article without field and message");
    return;
  }
  FUZZ_CHECK(!update.title.empty() && update.title.size() <= ar::kMaxTitleBytes,
             "title length out of 1..1000 accepted: " + fuzz::quote(body));
  FUZZ_CHECK(update.title.find('\0') == std::string::npos && update.body.find('\0') == std::string::npos,
             "NUL in article text accepted: " + fuzz::quote(body));
}

void checkTextArray(std::string_view input) {
  std::vector<std::string_view> values;
  std::string_view rest = input;
  while (!rest.empty() && values.size() < 16) {
    std::string_view v = fuzz::nextField(rest, '\n');
    if (v.find('\0') == std::string_view::npos) {  // PostgreSQL text cannot hold NUL
      values.push_back(v);
    }
  }
  const std::string lit = ar::textArrayLiteral(values);
  const auto back = readArrayLiteral(lit, true);
  FUZZ_CHECK(back.has_value() && back->size() == values.size(), "array literal unreadable: " + fuzz::quote(lit));
  for (size_t i = 0; i < values.size(); ++i) {
    FUZZ_CHECK((*back)[i] == values[i], "array literal changes " + fuzz::quote(values[i]) + " in " + fuzz::quote(lit));
  }
}

void checkParams(std::string_view input) {
  if (const std::optional<int64_t> id = ar::parsePositiveId(input)) {
    FUZZ_CHECK(*id > 0, "parsePositiveId accepted a non-positive id: " + fuzz::quote(input));
    const size_t first = input.find_first_not_of('0');
    FUZZ_CHECK(first != std::string_view::npos && input.substr(first) == std::to_string(*id),
               "parsePositiveId(" + fuzz::quote(input) + ") = " + std::to_string(*id));
  }
  static const char* kHex = "0123456789ABCDEF";
  std::string encoded;
  for (char c : input) {
    const unsigned char u = static_cast<unsigned char>(c);
    encoded += '%';
    encoded += kHex[u >> 4];
    encoded += kHex[u & 15];
  }
  const std::optional<std::string> decoded = ar::percentDecode(encoded);
  FUZZ_CHECK(decoded && *decoded == input, "percentDecode does not invert encoding of " + fuzz::quote(input));
  (void)ar::parseQuery(input);
  const ar::OrdersPageQueryResult page = ar::parseOrdersPageQuery(input);
  if (page.ok()) {
    FUZZ_CHECK(page.query.limit >= 1 && page.query.limit <= ar::kOrdersMaxLimit,
               "limit out of range accepted: " + fuzz::quote(input));
    FUZZ_CHECK(!page.query.after || *page.query.after > 0, "after <= 0 accepted: " + fuzz::quote(input));
  } else {
    FUZZ_CHECK(!page.field.empty(), "refused page query without the parameter's name: " + fuzz::quote(input));
  }
  const auto [path, query] = ar::splitTarget(input);
  FUZZ_CHECK(path.size() + (query.size() + (input.find('?') != std::string_view::npos ? 1 : 0)) == input.size(),
             "splitTarget loses bytes of " + fuzz::quote(input));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) {
    return 0;
  }
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  checkOrder(input);
  checkArticle(input);
  checkTextArray(input);
  checkParams(input);
  return 0;
}
