#include "upstream_app/routes/params.h"

#include <charconv>
#include <limits>

namespace app::routes {

std::pair<std::string_view, std::string_view> splitTarget(std::string_view target) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) {
    return {target, {}};
  }
  return {target.substr(0, q), target.substr(q + 1)};
}

std::optional<int64_t> parsePositiveId(std::string_view text) {
  if (text.empty() || text.size() > 32) {  // leading zeros are allowed, but not without bound
    return std::nullopt;
  }
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
  }
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value <= 0) {
    return std::nullopt;
  }
  return value;
}

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

std::optional<std::string> percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= text.size()) {
        return std::nullopt;  // "%" or "%A" at the end
      }
      const int hi = hexValue(text[i + 1]);
      const int lo = hexValue(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::vector<QueryParam>> parseQuery(std::string_view query) {
  std::vector<QueryParam> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) {
      continue;
    }
    const size_t eq = part.find('=');
    auto name = percentDecode(part.substr(0, eq));
    auto value = percentDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
    if (!name || !value) {
      return std::nullopt;
    }
    out.push_back(QueryParam{std::move(*name), std::move(*value)});
  }
  return out;
}

OrdersPageQueryResult parseOrdersPageQuery(std::string_view query) {
  OrdersPageQueryResult r;
  auto params = parseQuery(query);
  if (!params) {
    r.error = "malformed percent-encoding in the query string";
    r.field = "query";
    return r;
  }
  bool sawLimit = false;
  bool sawAfter = false;
  for (const QueryParam& p : *params) {
    if (p.name == "limit") {
      if (sawLimit) {
        r.error = "limit is given more than once";
        r.field = "limit";
        return r;
      }
      sawLimit = true;
      auto n = parsePositiveId(p.value);
      if (!n || *n > kOrdersMaxLimit) {
        r.error = "limit must be an integer from 1 to " + std::to_string(kOrdersMaxLimit);
        r.field = "limit";
        return r;
      }
      r.query.limit = static_cast<int>(*n);
    } else if (p.name == "after") {
      if (sawAfter) {
        r.error = "after is given more than once";
        r.field = "after";
        return r;
      }
      sawAfter = true;
      auto id = parsePositiveId(p.value);
      if (!id) {
        r.error = "after must be a positive integer (the id of the last order of the previous page)";
        r.field = "after";
        return r;
      }
      r.query.after = *id;
    }
  }
  return r;
}

}  // namespace app::routes
