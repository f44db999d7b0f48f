#include "common/http/request_id.h"

#include <chrono>
#include <cstdint>
#include <random>
#include <thread>

namespace http {
namespace {

// xoshiro256** seeded once per thread from the OS entropy source.
struct Rng {
  uint64_t s[4];
  Rng() {
    std::random_device rd;
    for (auto& v : s) {
      v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    }
    s[0] ^= static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

}  // namespace

bool isValidRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) {
    return false;
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

void generateRequestId(std::string& out) {
  thread_local Rng rng;
  static constexpr char kHex[] = "0123456789abcdef";
  out.resize(32);
  char* p = out.data();
  for (int half = 0; half < 2; ++half) {
    uint64_t v = rng.next();
    for (int i = 0; i < 16; ++i, v >>= 4) {
      *p++ = kHex[v & 0xf];
    }
  }
}

}  // namespace http
