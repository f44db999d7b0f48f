#pragma once
// Request-target parsing for upstream_app's routes: pure functions, no I/O, unit-tested in
// tests/unit/app/params_test.cc.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace app::routes {

// "/path?query" -> ("/path", "query"); no '?' -> (target, "").
std::pair<std::string_view, std::string_view> splitTarget(std::string_view target);

// A positive decimal integer that fits int64 ("42", "007"); nullopt for anything else: empty, sign,
// spaces, 0, letters, overflow.
std::optional<int64_t> parsePositiveId(std::string_view text);

// Decodes %XX and '+' (form encoding) of one query component; nullopt on a malformed escape.
std::optional<std::string> percentDecode(std::string_view text);

struct QueryParam {
  std::string name;
  std::string value;
};
// "a=1&b=&c" -> [(a,1),(b,""),(c,"")], decoded; nullopt when an escape is malformed. Empty
// segments ("a=1&&b=2") are skipped.
std::optional<std::vector<QueryParam>> parseQuery(std::string_view query);

// GET /orders?limit=N&after=ID
struct OrdersPageQuery {
  int limit = 20;                // 1..100
  std::optional<int64_t> after;  // only orders with a smaller id (the previous page's last id)
};
constexpr int kOrdersDefaultLimit = 20;
constexpr int kOrdersMaxLimit = 100;

struct OrdersPageQueryResult {
  OrdersPageQuery query;
  std::string error;  // non-empty: a 400 message naming the parameter
  std::string field;  // the parameter at fault
  bool ok() const { return error.empty(); }
};
// Unknown parameters are ignored (like most APIs); a known one given twice is an error.
OrdersPageQueryResult parseOrdersPageQuery(std::string_view query);

}  // namespace app::routes
