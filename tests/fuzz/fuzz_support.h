#pragma once
// Helpers shared by the libFuzzer targets in tests/fuzz. Header-only: each target is one
// translation unit with LLVMFuzzerTestOneInput.
//
// A property violation is reported with FUZZ_CHECK, which prints what was expected and aborts:
// libFuzzer then saves the input as crash-<sha1>, exactly as for an ASan or UBSan finding, and
// scripts/fuzz.sh replays tests/fuzz/regressions/<target>/ so a fixed bug stays fixed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* expr, const std::string& detail) {
  std::fprintf(stderr, "\n%s:%d: property violated: %s\n%s\n", file, line, expr, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// Printable form of arbitrary bytes for failure messages (C escapes, truncated).
inline std::string quote(std::string_view s, size_t max = 400) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) {
    out += "...(" + std::to_string(s.size()) + " bytes)";
  }
  out.push_back('"');
  return out;
}

// True when FUZZ_IGNORE (a comma-separated list) names `bugId`. A reported bug that is not fixed
// yet would stop every fuzzing run at once; listing its id lets a run look past it while the
// regression file in tests/fuzz/regressions/ (replayed without FUZZ_IGNORE) keeps failing.
inline bool ignoring(std::string_view bugId) {
  const char* env = std::getenv("FUZZ_IGNORE");
  if (env == nullptr) {
    return false;
  }
  std::string_view list(env);
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (list.substr(0, comma) == bugId) {
      return true;
    }
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return false;
}

// FNV-1a: derives deterministic choices (split points, flags) from the input itself, so seed
// files stay plain HTTP / YAML text with no control bytes and every crash input replays alone.
inline uint64_t hashBytes(const uint8_t* data, size_t size, uint64_t seed = 0) {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

// The part of `rest` before the first `sep` (all of it when absent); `rest` moves past it. Lets
// one input carry several header values, one per line.
inline std::string_view nextField(std::string_view& rest, char sep) {
  const size_t pos = rest.find(sep);
  std::string_view field = rest.substr(0, pos);
  rest = pos == std::string_view::npos ? std::string_view() : rest.substr(pos + 1);
  return field;
}

}  // namespace fuzz

#define FUZZ_CHECK(cond, detail)                    \
  do {                                              \
    if (!(cond)) {                                  \
      ::fuzz::fail(__FILE__, __LINE__, #cond, (detail)); \
    }                                               \
  } while (0)
