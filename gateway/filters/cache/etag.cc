#include "gateway/filters/cache/etag.h"

#include <bit>
#include <cstring>

namespace gateway::cache {
namespace {

// Parses one entity-tag at the start of `s`; returns its length, 0 when there is none.
size_t entityTagLength(std::string_view s) {
  size_t i = 0;
  if (s.starts_with("W/")) {
    i = 2;
  }
  if (i >= s.size() || s[i] != '"') {
    return 0;
  }
  for (++i; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      return i + 1;
    }
    if (c < 0x21 || c == 0x7F) {
      return 0;
    }
  }
  return 0;
}

std::string_view opaqueTag(std::string_view etag) { return etag.starts_with("W/") ? etag.substr(2) : etag; }

bool isOws(char c) { return c == ' ' || c == '\t'; }

}  // namespace

std::string etagFromHash(uint64_t hash) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string tag(18, '"');
  for (int i = 0; i < 16; ++i) {
    tag[static_cast<size_t>(16 - i)] = kHex[hash & 0xF];
    hash >>= 4;
  }
  return tag;
}

std::string makeEtag(std::string_view body) { return etagFromHash(xxh64(body)); }

bool isValidEtag(std::string_view etag) { return !etag.empty() && entityTagLength(etag) == etag.size(); }

bool weakEtagMatch(std::string_view a, std::string_view b) {
  return isValidEtag(a) && isValidEtag(b) && opaqueTag(a) == opaqueTag(b);
}

bool ifNoneMatchMatches(std::string_view ifNoneMatch, std::string_view etag) {
  size_t i = 0;
  const size_t n = ifNoneMatch.size();
  while (i < n && isOws(ifNoneMatch[i])) {
    ++i;
  }
  size_t end = n;
  while (end > i && isOws(ifNoneMatch[end - 1])) {
    --end;
  }
  std::string_view value = ifNoneMatch.substr(i, end - i);
  if (value == "*") {
    return true;
  }
  // 1#entity-tag: parse the whole list first; a malformed one answers false (see header).
  bool matched = false;
  bool sawTag = false;
  size_t pos = 0;
  while (pos < value.size()) {
    char c = value[pos];
    if (c == ',' || isOws(c)) {
      ++pos;
      continue;
    }
    size_t length = entityTagLength(value.substr(pos));
    if (length == 0) {
      return false;
    }
    std::string_view tag = value.substr(pos, length);
    sawTag = true;
    matched = matched || (!etag.empty() && weakEtagMatch(tag, etag));
    pos += length;
    // Only OWS may separate the tag from the next comma.
    while (pos < value.size() && isOws(value[pos])) {
      ++pos;
    }
    if (pos < value.size() && value[pos] != ',') {
      return false;
    }
  }
  return sawTag && matched;
}

}  // namespace gateway::cache
