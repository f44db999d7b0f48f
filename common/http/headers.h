#pragma once
// Header storage and helpers shared by both sides of the proxy.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace http {

namespace detail {
// ASCII lower-casing without the C locale: header names are ASCII tokens, and std::tolower is an
// out-of-line call per byte (it showed up as 5% of a proxied request's instructions).
constexpr std::array<uint8_t, 256> kAsciiLower = [] {
  std::array<uint8_t, 256> t{};
  for (int i = 0; i < 256; ++i) {
    t[static_cast<size_t>(i)] = static_cast<uint8_t>(i >= 'A' && i <= 'Z' ? i + ('a' - 'A') : i);
  }
  return t;
}();
}  // namespace detail

inline char asciiLower(char c) { return static_cast<char>(detail::kAsciiLower[static_cast<uint8_t>(c)]); }

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i] && asciiLower(a[i]) != asciiLower(b[i])) {
      return false;
    }
  }
  return true;
}
std::string_view trim(std::string_view s);
// True if `list` (a comma-separated header value) contains `token`, compared case-insensitively.
bool headerListContains(std::string_view list, std::string_view token);

struct Header {
  std::string name;
  std::string value;
};

// Ordered header list as received. Lookups are linear: heads are small, and a vector of
// reused strings costs no allocation per request once warmed up.
class HeaderList {
 public:
  void clear() { size_ = 0; }
  size_t size() const { return size_; }
  const Header& operator[](size_t i) const { return items_[i]; }
  Header& operator[](size_t i) { return items_[i]; }
  const Header* begin() const { return items_.data(); }
  const Header* end() const { return items_.data() + size_; }

  // Appends an empty header and returns it for the parser to fill incrementally.
  Header& appendEmpty();
  void add(std::string_view name, std::string_view value);
  // Replaces every `name` header with one of the given value (or adds it).
  void set(std::string_view name, std::string_view value);
  // Removes every `name` header, keeping the order of the others.
  void remove(std::string_view name);
  // First value of `name`, or nullptr.
  const std::string* find(std::string_view name) const;
  size_t count(std::string_view name) const;

 private:
  std::vector<Header> items_;
  size_t size_ = 0;
};

// Serialized header block ("Name: value\r\n"...), built once and written as is.
class HeaderBlock {
 public:
  void add(std::string_view name, std::string_view value) {
    text_.append(name);
    text_.append(": ");
    text_.append(value);
    text_.append("\r\n");
  }
  void clear() { text_.clear(); }
  const std::string& text() const { return text_; }
  std::string& text() { return text_; }

 private:
  std::string text_;
};

// Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy never forwards, plus the ones the proxy
// rewrites itself (framing). `connectionValue` is the Connection header, whose tokens name more.
bool isHopByHop(std::string_view name, std::string_view connectionValue);

}  // namespace http
