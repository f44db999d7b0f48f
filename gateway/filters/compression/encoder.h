#pragma once
// Streaming content-coding encoders for the compression filter: gzip (zlib), br (libbrotlienc)
// and zstd (libzstd). One Encoder compresses one response body; the proxy feeds it body pieces
// as they arrive from the upstream and sends on whatever comes out, so a body is never held
// whole. Memory per encoder is bounded by the codec's window, not by the body:
//   gzip: ~256 KiB (windowBits 15, memLevel 8);
//   br:   the ring buffer grows with the input up to 4 MiB (lgwin 22), plus small hash tables at
//         quality <= 4; a size hint lets brotli pick smaller structures;
//   zstd: level 3; its window (2 MiB) is shrunk to the body size when a size hint is given.
//
// Flushing: write() lets the codec hold input back until it has a block worth emitting, which
// gives the best ratio; output lags the input by at most about a block: gzip ~16K symbols, zstd
// its 128 KiB block, brotli 128 KiB (brotli would otherwise merge up to 8 MiB of input into one
// meta-block, so its encoder ends one every 128 KiB of input by itself). flush() forces everything written so far out as decodable bytes (zlib
// Z_SYNC_FLUSH, BROTLI_OPERATION_FLUSH, ZSTD_e_flush) at the cost of a few bytes and some ratio
// per call. The proxy should call flush() when latency matters more than ratio, e.g. when the
// upstream has gone quiet with bytes still held, or for text/event-stream; it must call
// finish() exactly once at the end of the body.
//
// zstd is compiled in only when GATEWAY_HAVE_ZSTD is defined and <zstd.h> exists (the build
// then links pkg-config `libzstd`); otherwise makeEncoder(Encoding::Zstd, ...) returns nullptr
// and encodingAvailable(Encoding::Zstd) is false.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/config/app_config.h"
#include "gateway/filters/compression/negotiate.h"

namespace gateway::compression {

// zstd level: the config has no key for it; 3 is zstd's own default, fast and close to gzip -9
// in ratio.
inline constexpr int kZstdLevel = 3;

class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual Encoding encoding() const = 0;

  // Compresses `in` and appends the output the codec releases to `out` (possibly none). Returns
  // false on a codec error or after finish(); the encoder is then unusable and the response
  // must be aborted (its head is already out).
  virtual bool write(std::string_view in, std::string& out) = 0;
  // Appends everything written so far as bytes a decoder can decode now, without ending the
  // stream. Returns false as write() does.
  virtual bool flush(std::string& out) = 0;
  // Ends the stream: appends the remaining output and the trailer. Call once; returns false on
  // a codec error or when called twice.
  virtual bool finish(std::string& out) = 0;
};

// A new encoder for `encoding` configured from `config` (gzip_level, brotli_quality), or nullptr
// for Identity, for zstd in a build without it, or when the codec cannot allocate its state.
// `sizeHint` is the body size when known (Content-Length); it only tunes memory, the output is
// correct for any actual size.
std::unique_ptr<Encoder> makeEncoder(Encoding encoding, const cfg::CompressionConfig& config,
                                     std::optional<uint64_t> sizeHint = std::nullopt);
// The same, by Content-Encoding token ("gzip", "br", "zstd").
std::unique_ptr<Encoder> makeEncoder(std::string_view name, const cfg::CompressionConfig& config,
                                     std::optional<uint64_t> sizeHint = std::nullopt);

}  // namespace gateway::compression
