// libFuzzer target: the compression filter's I/O-free decisions
// (gateway/filters/compression/negotiate.h) on header values a client or upstream controls.
//
// Input: up to six '\n'-separated fields: Accept-Encoding, Content-Type, Cache-Control,
// Content-Encoding, ETag, Vary. The server preference order, status, method and length are
// taken from the input's hash.
//
// Properties:
//  - the chosen coding is one the server offered (or identity), and the client named it or "*";
//  - an empty Accept-Encoding gives identity;
//  - ASCII case of the whole Accept-Encoding / Content-Type does not matter (codings, media
//    types and the "q" parameter are case-insensitive);
//  - shouldCompress never says Compress for HEAD, 1xx/204/304, an encoded body, no coding, or a
//    Cache-Control that the cache module reads as no-transform, and says NoTransform only when
//    the cache module reads it too (the two filters agree);
//  - mergeVary and weakenEtag are idempotent and do what their contracts say.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/http/headers.h"
#include "gateway/filters/cache/cache_control.h"
#include "gateway/filters/cache/etag.h"
#include "gateway/filters/compression/negotiate.h"
#include "tests/fuzz/fuzz_support.h"

namespace gc = gateway::compression;

namespace {

std::string toCase(std::string_view s, bool upper) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool containsIgnoringCase(std::string_view haystack, std::string_view needle) {
  return toCase(haystack, false).find(toCase(needle, false)) != std::string::npos;
}

std::string choiceText(const gc::EncodingChoice& c) {
  return std::string(gc::encodingName(c.encoding)) + (c.identityAcceptable ? "" : " (identity refused)");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8 * 1024) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const uint64_t h = fuzz::hashBytes(data, size);
  const std::string_view acceptEncoding = fuzz::nextField(rest, '\n');
  const std::string_view contentType = fuzz::nextField(rest, '\n');
  const std::string_view cacheControl = fuzz::nextField(rest, '\n');
  const std::string_view contentEncoding = fuzz::nextField(rest, '\n');
  const std::string_view etag = fuzz::nextField(rest, '\n');
  const std::string_view vary = fuzz::nextField(rest, '\n');

  // Server preference: a rotation of the three codings, maybe shortened.
  const std::array<gc::Encoding, 3> all = {gc::Encoding::Brotli, gc::Encoding::Gzip, gc::Encoding::Zstd};
  std::vector<gc::Encoding> offered;
  const size_t count = 1 + (h % 3);
  for (size_t i = 0; i < count; ++i) {
    const gc::Encoding e = all[((h >> 2) + i) % 3];
    if (gc::encodingAvailable(e)) {
      offered.push_back(e);
    }
  }

  const gc::EncodingChoice choice = gc::negotiateEncoding(acceptEncoding, offered);
  const std::string what = "Accept-Encoding " + fuzz::quote(acceptEncoding) + " -> " + choiceText(choice);
  if (choice.encoding != gc::Encoding::Identity) {
    FUZZ_CHECK(std::find(offered.begin(), offered.end(), choice.encoding) != offered.end(),
               "chose a coding the server did not offer: " + what);
    const std::string_view name = gc::encodingName(choice.encoding);
    FUZZ_CHECK(containsIgnoringCase(acceptEncoding, name) || acceptEncoding.find('*') != std::string_view::npos ||
                   (choice.encoding == gc::Encoding::Gzip && containsIgnoringCase(acceptEncoding, "x-gzip")),
               "chose a coding the client never named: " + what);
  }
  if (http::trim(acceptEncoding).empty()) {
    FUZZ_CHECK(choice.encoding == gc::Encoding::Identity && choice.identityAcceptable,
               "empty Accept-Encoding is not identity-only: " + what);
  }
  for (bool upper : {false, true}) {
    const gc::EncodingChoice other = gc::negotiateEncoding(toCase(acceptEncoding, upper), offered);
    FUZZ_CHECK(other.encoding == choice.encoding && other.identityAcceptable == choice.identityAcceptable,
               "letter case changes the negotiation: " + what + " but " + std::string(upper ? "upper" : "lower") +
                   " case gives " + choiceText(other));
  }

  cfg::CompressionConfig config;
  config.algorithms.clear();
  for (gc::Encoding e : offered) {
    config.algorithms.emplace_back(gc::encodingName(e));
  }
  config.min_size = (h >> 8) % 2048;
  const gc::CompressionPolicy policy(config);
  const bool typeOk = gc::compressibleType(contentType, config.content_types);
  FUZZ_CHECK(gc::compressibleType(toCase(contentType, true), config.content_types) == typeOk,
             "letter case changes compressibleType for " + fuzz::quote(contentType));
  if (contentType.find(';') == std::string_view::npos) {
    FUZZ_CHECK(gc::compressibleType(std::string(contentType) + "; charset=utf-8", config.content_types) == typeOk,
               "a parameter changes compressibleType for " + fuzz::quote(contentType));
  }

  static constexpr std::array<std::string_view, 4> kMethods = {"GET", "HEAD", "POST", "OPTIONS"};
  static constexpr std::array<int, 10> kStatuses = {200, 201, 204, 206, 301, 304, 404, 500, 100, 299};
  gc::ResponseFacts facts;
  facts.requestMethod = kMethods[(h >> 20) % kMethods.size()];
  facts.status = kStatuses[(h >> 24) % kStatuses.size()];
  if (((h >> 30) & 1) != 0) {
    facts.contentLength = (h >> 32) % 4096;
  }
  facts.contentType = contentType;
  facts.contentEncoding = contentEncoding;
  facts.cacheControl = cacheControl;
  facts.hasContentRange = ((h >> 31) & 1) != 0 && ((h >> 29) & 1) != 0;
  const gc::Decision decision = policy.shouldCompress(facts, choice);
  const std::string factsText = what + ", method " + std::string(facts.requestMethod) + ", status " +
                                std::to_string(facts.status) + ", Content-Encoding " + fuzz::quote(contentEncoding) +
                                ", Cache-Control " + fuzz::quote(cacheControl) + " -> " +
                                std::string(gc::decisionName(decision));
  if (decision == gc::Decision::Compress) {
    FUZZ_CHECK(choice.encoding != gc::Encoding::Identity, "Compress without a coding: " + factsText);
    FUZZ_CHECK(facts.requestMethod != "HEAD", "Compress for HEAD: " + factsText);
    FUZZ_CHECK(facts.status >= 200 && facts.status != 204 && facts.status != 304 && facts.status != 206,
               "Compress for a bodiless/partial status: " + factsText);
    FUZZ_CHECK(!facts.hasContentRange, "Compress for a Content-Range response: " + factsText);
    const std::string_view ce = http::trim(contentEncoding);
    FUZZ_CHECK(ce.empty() || http::iequals(ce, "identity"), "Compress for an encoded body: " + factsText);
    FUZZ_CHECK(typeOk, "Compress for a type not listed: " + factsText);
    FUZZ_CHECK(!facts.contentLength || *facts.contentLength >= std::max<uint64_t>(config.min_size, 1),
               "Compress below min_size: " + factsText);
  }
  // The cache and the compression filter must agree on no-transform, or a response could be
  // cached as "may transform" and compressed anyway. Found earlier: the compression filter had a
  // reader of its own, which a '"' outside a directive argument made skip the rest of the value
  // (regressions/accept_encoding/no_transform_after_stray_quote); both now use the cache's.
  const bool cacheSaysNoTransform = gateway::cache::parseCacheControl(cacheControl).noTransform;
  FUZZ_CHECK(!(cacheSaysNoTransform && decision == gc::Decision::Compress),
             "cache module reads no-transform, compression compresses anyway: " + factsText);
  FUZZ_CHECK(decision != gc::Decision::NoTransform || cacheSaysNoTransform,
             "compression reads no-transform, the cache module does not: " + factsText);

  std::string varyOnce(vary);
  gc::mergeVary(varyOnce, "Accept-Encoding");
  FUZZ_CHECK(http::headerListContains(varyOnce, "Accept-Encoding") || http::headerListContains(varyOnce, "*"),
             "mergeVary result lacks Accept-Encoding: " + fuzz::quote(vary) + " -> " + fuzz::quote(varyOnce));
  std::string varyTwice = varyOnce;
  gc::mergeVary(varyTwice, "Accept-Encoding");
  FUZZ_CHECK(varyTwice == varyOnce, "mergeVary not idempotent: " + fuzz::quote(varyOnce) + " -> " + fuzz::quote(varyTwice));

  std::string tag(etag);
  const bool changed = gc::weakenEtag(tag);
  if (changed) {
    FUZZ_CHECK(tag.rfind("W/\"", 0) == 0, "weakened ETag is not W/\"...\": " + fuzz::quote(tag));
    if (gateway::cache::isValidEtag(http::trim(etag))) {
      FUZZ_CHECK(gateway::cache::isValidEtag(tag), "weakening a valid ETag made it invalid: " + fuzz::quote(tag));
      FUZZ_CHECK(gateway::cache::weakEtagMatch(tag, http::trim(etag)),
                 "weakened ETag no longer weakly matches the original: " + fuzz::quote(tag));
    }
  }
  std::string again = tag;
  FUZZ_CHECK(!gc::weakenEtag(again) || !changed, "weakenEtag weakened twice: " + fuzz::quote(etag));
  return 0;
}
