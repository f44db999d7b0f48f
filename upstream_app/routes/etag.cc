#include "upstream_app/routes/etag.h"

#include <cstdint>

#include "common/util/xxh64.h"
#include "upstream_app/routes/input.h"

namespace app::routes {

std::string strongEtag(std::string_view body) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t v = xxh64(body);
  std::string out(18, '"');
  for (int i = 16; i >= 1; --i) {
    out[static_cast<size_t>(i)] = kHex[v & 0xf];
    v >>= 4;
  }
  return out;
}

bool ifNoneMatchMatches(std::string_view v, std::string_view etag) {
  // Our own tags are always strong; compare opaque-tags (quotes included).
  std::string_view ours = etag;
  if (ours.substr(0, 2) == "W/") {
    ours.remove_prefix(2);
  }
  size_t i = 0;
  while (i < v.size()) {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
      ++i;
    }
    if (i >= v.size()) {
      break;
    }
    if (v[i] == '*') {
      return true;
    }
    if (v.compare(i, 2, "W/") == 0) {
      i += 2;
    }
    if (i < v.size() && v[i] == '"') {
      const size_t close = v.find('"', i + 1);
      if (close == std::string_view::npos) {
        return false;  // unterminated: nothing after it can be trusted
      }
      if (v.substr(i, close - i + 1) == ours) {
        return true;
      }
      i = close + 1;
      continue;
    }
    // Not an entity-tag (e.g. an unquoted token): skip to the next member.
    const size_t comma = v.find(',', i);
    i = comma == std::string_view::npos ? v.size() : comma + 1;
  }
  return false;
}

}  // namespace app::routes
