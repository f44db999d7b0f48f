#include "common/obs/trace/ids.h"

#include <sys/random.h>

#if defined(__SSE2__) && defined(__x86_64__)
#include <emmintrin.h>
#endif

#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <thread>

namespace obs::trace {
namespace {

// -1 for anything but 0-9 a-f.
int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

// 64 bits -> 16 lowercase hex digits without a loop: every request formats a traceparent (and
// its log ids), so this is on the hot path even when nothing is sampled. Each nibble gets a byte
// of its own, becomes '0' + n, plus 39 for n >= 10 to land on 'a'.
#if defined(__SSE2__) && defined(__x86_64__)
void writeHex64(uint64_t v, char* out) {
  const __m128i bytes = _mm_cvtsi64_si128(static_cast<long long>(__builtin_bswap64(v)));  // MSB first
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
  const __m128i lo = _mm_and_si128(bytes, low4);
  const __m128i nibbles = _mm_unpacklo_epi8(hi, lo);  // hi0 lo0 hi1 lo1 ...
  const __m128i letters = _mm_and_si128(_mm_cmpgt_epi8(nibbles, _mm_set1_epi8(9)), _mm_set1_epi8(39));
  const __m128i ascii = _mm_add_epi8(_mm_add_epi8(nibbles, _mm_set1_epi8('0')), letters);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), ascii);
}
#else
// SWAR: the least significant nibble is spread into the lowest byte, and the bytes are reversed
// at the end so the most significant digit comes first.
void writeHex32(uint64_t x, char* out) {
  x = ((x & 0xFFFF0000ULL) << 16) | (x & 0x0000FFFFULL);
  x = ((x & 0x0000FF000000FF00ULL) << 8) | (x & 0x000000FF000000FFULL);
  x = ((x & 0x00F000F000F000F0ULL) << 4) | (x & 0x000F000F000F000FULL);
  const uint64_t letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
  x += 0x3030303030303030ULL + letters * 39;
  x = __builtin_bswap64(x);
  std::memcpy(out, &x, 8);
}

void writeHex64(uint64_t v, char* out) {
  writeHex32(v >> 32, out);
  writeHex32(v & 0xFFFFFFFFULL, out + 8);
}
#endif

bool parseHex64(const char* text, uint64_t& out) {
  uint64_t v = 0;
  for (int i = 0; i < 16; ++i) {
    const int d = hexValue(text[i]);
    if (d < 0) {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  out = v;
  return true;
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// xoshiro256** (Blackman & Vigna): fast, 256-bit state, good enough statistically for IDs that
// must be unique and uniformly distributed (the sampler reads their bits), not secret.
class Rng {
 public:
  Rng() {
    // One getrandom() per thread. If the OS pool is unavailable (very early boot, seccomp),
    // fall back to clock, thread and address entropy rather than failing a request.
    if (::getrandom(s_, sizeof s_, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof s_)) {
      uint64_t seed = static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count()) ^
                      (static_cast<uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())) << 1) ^
                      reinterpret_cast<uintptr_t>(this);
      for (uint64_t& word : s_) {
        word = splitmix64(seed);
      }
    }
    if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) {
      s_[0] = 1;  // the one state xoshiro cannot leave
    }
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  uint64_t s_[4];
};

Rng& threadRng() {
  thread_local Rng rng;
  return rng;
}

}  // namespace

void writeHex(TraceId id, char* out) {
  writeHex64(id.hi, out);
  writeHex64(id.lo, out + 16);
}

void writeHex(SpanId id, char* out) { writeHex64(id.value, out); }

TraceIdHex toHex(TraceId id) {
  TraceIdHex h;
  writeHex(id, h.text);
  h.text[32] = '\0';
  return h;
}

SpanIdHex toHex(SpanId id) {
  SpanIdHex h;
  writeHex(id, h.text);
  h.text[16] = '\0';
  return h;
}

bool parseHex(std::string_view text, TraceId& out) {
  TraceId id;
  if (text.size() != 32 || !parseHex64(text.data(), id.hi) || !parseHex64(text.data() + 16, id.lo)) {
    return false;
  }
  out = id;
  return true;
}

bool parseHex(std::string_view text, SpanId& out) {
  SpanId id;
  if (text.size() != 16 || !parseHex64(text.data(), id.value)) {
    return false;
  }
  out = id;
  return true;
}

TraceId newTraceId() {
  Rng& rng = threadRng();
  TraceId id;
  do {
    id.hi = rng.next();
    id.lo = rng.next();
  } while (!id.valid());
  return id;
}

SpanId newSpanId() {
  Rng& rng = threadRng();
  SpanId id;
  do {
    id.value = rng.next();
  } while (!id.valid());
  return id;
}

uint64_t nowUnixNanos() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace obs::trace
