#pragma once
// XXH64 (the reference algorithm by Yann Collet, re-implemented here): the gateway's generated
// ETags hash bodies as they stream past, the app's ETags hash each article answer. A 64-bit
// non-cryptographic hash running at memory speed; see gateway/filters/cache/etag.h for why it
// suffices for entity tags.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace util {

// Streaming form: update() with pieces, digest() at any point.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(std::string_view data);
  // The hash of everything given to update() so far; the state stays usable.
  uint64_t digest() const;

 private:
  uint64_t seed_;
  uint64_t acc_[4];
  uint64_t totalLength_ = 0;
  unsigned char buffer_[32];
  size_t buffered_ = 0;
};

// One shot over a whole buffer (no staging copy: the app hashes every article it answers).
uint64_t xxh64(std::string_view data, uint64_t seed = 0);

}  // namespace util
