#include "common/util/xxh64.h"

#include <bit>
#include <cstring>

namespace util {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// XXH64 is defined over little-endian reads; memcpy keeps them unaligned-safe.
uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  if constexpr (std::endian::native == std::endian::big) {
    v = __builtin_bswap64(v);
  }
  return v;
}

uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  if constexpr (std::endian::native == std::endian::big) {
    v = __builtin_bswap32(v);
  }
  return v;
}

uint64_t round(uint64_t acc, uint64_t input) {
  acc += input * kPrime2;
  acc = rotl(acc, 31);
  return acc * kPrime1;
}

uint64_t mergeRound(uint64_t acc, uint64_t value) {
  acc ^= round(0, value);
  return acc * kPrime1 + kPrime4;
}

// The last < 32 bytes and the avalanche, shared by the streaming and the one-shot forms.
uint64_t finish(uint64_t h, const unsigned char* p, size_t n) {
  while (n >= 8) {
    h ^= round(0, read64(p));
    h = rotl(h, 27) * kPrime1 + kPrime4;
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    h ^= static_cast<uint64_t>(read32(p)) * kPrime1;
    h = rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
    n -= 4;
  }
  while (n > 0) {
    h ^= static_cast<uint64_t>(*p) * kPrime5;
    h = rotl(h, 11) * kPrime1;
    ++p;
    --n;
  }
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

}  // namespace

Xxh64::Xxh64(uint64_t seed) : seed_(seed) {
  acc_[0] = seed + kPrime1 + kPrime2;
  acc_[1] = seed + kPrime2;
  acc_[2] = seed;
  acc_[3] = seed - kPrime1;
}

void Xxh64::update(std::string_view data) {
  if (data.empty()) {
    return;  // data() may be null, and memcpy from null is undefined even for 0 bytes
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  totalLength_ += n;
  if (buffered_ + n < 32) {
    std::memcpy(buffer_ + buffered_, p, n);
    buffered_ += n;
    return;
  }
  if (buffered_ > 0) {
    size_t fill = 32 - buffered_;
    std::memcpy(buffer_ + buffered_, p, fill);
    for (int lane = 0; lane < 4; ++lane) {
      acc_[lane] = round(acc_[lane], read64(buffer_ + 8 * lane));
    }
    p += fill;
    n -= fill;
    buffered_ = 0;
  }
  while (n >= 32) {
    for (int lane = 0; lane < 4; ++lane) {
      acc_[lane] = round(acc_[lane], read64(p + 8 * lane));
    }
    p += 32;
    n -= 32;
  }
  std::memcpy(buffer_, p, n);
  buffered_ = n;
}

uint64_t Xxh64::digest() const {
  uint64_t h;
  if (totalLength_ >= 32) {
    h = rotl(acc_[0], 1) + rotl(acc_[1], 7) + rotl(acc_[2], 12) + rotl(acc_[3], 18);
    for (int lane = 0; lane < 4; ++lane) {
      h = mergeRound(h, acc_[lane]);
    }
  } else {
    h = seed_ + kPrime5;
  }
  return finish(h + totalLength_, buffer_, buffered_);
}

uint64_t xxh64(std::string_view data, uint64_t seed) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  uint64_t h;
  if (n >= 32) {
    uint64_t a0 = seed + kPrime1 + kPrime2;
    uint64_t a1 = seed + kPrime2;
    uint64_t a2 = seed;
    uint64_t a3 = seed - kPrime1;
    do {
      a0 = round(a0, read64(p));
      a1 = round(a1, read64(p + 8));
      a2 = round(a2, read64(p + 16));
      a3 = round(a3, read64(p + 24));
      p += 32;
      n -= 32;
    } while (n >= 32);
    h = rotl(a0, 1) + rotl(a1, 7) + rotl(a2, 12) + rotl(a3, 18);
    h = mergeRound(h, a0);
    h = mergeRound(h, a1);
    h = mergeRound(h, a2);
    h = mergeRound(h, a3);
  } else {
    h = seed + kPrime5;
  }
  return finish(h + data.size(), p, n);
}

}  // namespace util
