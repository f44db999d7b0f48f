#pragma once
// The I/O-free decisions of the compression filter (CONTRACT §4 "Compression"): which content
// coding a client gets, whether a response is compressed at all, and the header edits that go
// with it. No allocation except where a header value has to be rebuilt.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/app_config.h"

namespace gateway::compression {

enum class Encoding : uint8_t { Identity, Gzip, Brotli, Zstd };

// The Content-Encoding token: "identity", "gzip", "br", "zstd".
std::string_view encodingName(Encoding encoding);
// Inverse of encodingName (case-insensitive; "x-gzip" is gzip per RFC 9110 §8.4.1.3).
std::optional<Encoding> encodingFromName(std::string_view name);
// True when this build can produce the coding (zstd needs libzstd, see encoder.h).
bool encodingAvailable(Encoding encoding);

struct EncodingChoice {
  // The coding to apply; Identity means "send as is".
  Encoding encoding = Encoding::Identity;
  // False when the client refused identity ("identity;q=0", or "*;q=0" without an identity
  // entry). Matters only when `encoding` is Identity, i.e. nothing offered was acceptable
  // either: RFC 9110 §12.5.3 then lets the server answer 406 or disregard the header. The
  // gateway is a proxy, not the origin of the representation, so the recommended handling is to
  // send identity (as nginx and Envoy do) rather than fail a request the upstream answered.
  bool identityAcceptable = true;
};

// Picks a coding from an Accept-Encoding value (RFC 9110 §12.5.3) among `offered`, which is the
// server preference order used to break q-value ties:
//  - codings compare case-insensitively; parameters other than q are ignored;
//  - q is a qvalue ("0", "0.5", "1.000"); q=0 forbids; a malformed q (q=2, q=abc, q=0.1234)
//    makes that element refuse its coding, which is the conservative reading of a value the
//    grammar does not allow (nginx does the same);
//  - "*" gives its q to every coding not listed explicitly, identity included;
//  - a coding wins over identity when q ties; identity that is not listed and not covered by
//    "*" is acceptable at the lowest preference;
//  - an empty or absent header means identity only (clients that want compression say so).
// When a coding is listed twice, the first entry counts.
EncodingChoice negotiateEncoding(std::string_view acceptEncoding, std::span<const Encoding> offered);

// True when the media type of `contentType` (parameters after ';' ignored, case-insensitive)
// matches one of `patterns`: "type/subtype", "type/*" or "*/*".
bool compressibleType(std::string_view contentType, std::span<const std::string> patterns);

// Why a response is (not) compressed; reported in metrics and debug logs.
enum class Decision : uint8_t {
  Compress,
  NotAccepted,     // the client accepts no offered coding
  Method,          // HEAD
  Status,          // 1xx, 204, 206, 304
  Range,           // a Content-Range response
  AlreadyEncoded,  // Content-Encoding present and not identity
  NoTransform,     // Cache-Control: no-transform
  TooSmall,        // Content-Length known and below min_size
  Type,            // Content-Type missing or not listed
  Disabled,        // algorithms is empty
};
std::string_view decisionName(Decision decision);

// What shouldCompress() needs to know about the exchange; header values are empty when absent.
struct ResponseFacts {
  std::string_view requestMethod;
  int status = 200;
  std::optional<uint64_t> contentLength;  // nullopt for chunked / read-until-close bodies
  std::string_view contentType;
  std::string_view contentEncoding;
  std::string_view cacheControl;  // all Cache-Control lines joined with ", "
  bool hasContentRange = false;
};

// The compression policy, built once from config.
class CompressionPolicy {
 public:
  explicit CompressionPolicy(const cfg::CompressionConfig& config);

  // Negotiation against the configured algorithms (in their order), leaving out any this build
  // cannot produce.
  EncodingChoice negotiate(std::string_view acceptEncoding) const {
    return negotiateEncoding(acceptEncoding, offered_);
  }

  // The CONTRACT rules, checked cheapest first. `choice` is the negotiation result for the
  // request. Returns Decision::Compress when the body should go through an Encoder for
  // choice.encoding. A body of unknown length is compressed (streamed); one whose
  // Content-Length is below min_size is not.
  Decision shouldCompress(const ResponseFacts& facts, const EncodingChoice& choice) const;

  std::span<const Encoding> offered() const { return offered_; }
  const cfg::CompressionConfig& config() const { return config_; }

 private:
  cfg::CompressionConfig config_;
  std::vector<Encoding> offered_;
};

// Header edits that go with compressing a response.

// Adds `token` to a Vary value unless it (case-insensitively) or "*" is already there:
// "" -> "Accept-Encoding"; "Origin" -> "Origin, Accept-Encoding".
void mergeVary(std::string& vary, std::string_view token);

// A strong ETag becomes weak ('"abc"' -> 'W/"abc"'), because the compressed bytes are not the
// upstream's bytes (RFC 9110 §8.8.1). A weak or empty value is left as is. Returns true when it
// changed the value.
bool weakenEtag(std::string& etag);

}  // namespace gateway::compression
