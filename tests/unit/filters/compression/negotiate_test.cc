// gateway::compression negotiation and policy, table-driven, no I/O.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/config/app_config.h"
#include "gateway/filters/cache/cache_control.h"
#include "gateway/filters/compression/negotiate.h"

using gateway::compression::CompressionPolicy;
using gateway::compression::Decision;
using gateway::compression::Encoding;
using gateway::compression::EncodingChoice;
using gateway::compression::ResponseFacts;

TEST_CASE("compression negotiation table") {
  const std::vector<Encoding> brGzip = {Encoding::Brotli, Encoding::Gzip};
  const std::vector<Encoding> gzipBr = {Encoding::Gzip, Encoding::Brotli};
  const std::vector<Encoding> all = {Encoding::Zstd, Encoding::Brotli, Encoding::Gzip};
  const std::vector<Encoding> none = {};
  struct Case {
    const char* acceptEncoding;
    const std::vector<Encoding>* offered;
    Encoding expected;
    bool identityAcceptable;
  };
  const Case cases[] = {
      {"", &brGzip, Encoding::Identity, true},  // empty (or absent): identity only
      {"gzip", &brGzip, Encoding::Gzip, true},
      {"br", &brGzip, Encoding::Brotli, true},
      {"gzip, br", &brGzip, Encoding::Brotli, true},  // tie: server order
      {"gzip, br", &gzipBr, Encoding::Gzip, true},
      {"gzip, deflate, br, zstd", &all, Encoding::Zstd, true},
      {"br;q=0, gzip", &brGzip, Encoding::Gzip, true},
      {"br;q=0", &brGzip, Encoding::Identity, true},
      {"*", &brGzip, Encoding::Brotli, true},
      {"*;q=0.5, gzip;q=0", &brGzip, Encoding::Brotli, true},
      {"*;q=0.5, br;q=0", &brGzip, Encoding::Gzip, true},
      {"*;q=0", &brGzip, Encoding::Identity, false},
      {"*;q=0, identity", &brGzip, Encoding::Identity, true},
      {"identity;q=0", &brGzip, Encoding::Identity, false},
      {"identity;q=0, gzip", &brGzip, Encoding::Gzip, false},
      {"GZIP", &brGzip, Encoding::Gzip, true},
      {"Br", &brGzip, Encoding::Brotli, true},
      {"x-gzip", &brGzip, Encoding::Gzip, true},
      {"  gzip ;  q=0.8 ,  br ; q=0.9 ", &brGzip, Encoding::Brotli, true},
      {"gzip;q=0.9, br;q=0.8", &brGzip, Encoding::Gzip, true},
      {"gzip;q=abc", &brGzip, Encoding::Identity, true},  // malformed q refuses the coding
      {"gzip;q=2, br;q=0.1", &brGzip, Encoding::Brotli, true},
      {"gzip;q=1.5", &brGzip, Encoding::Identity, true},
      {"gzip;q=0.1234", &brGzip, Encoding::Identity, true},
      {"gzip;q=", &brGzip, Encoding::Identity, true},
      {"gzip;q=-1", &brGzip, Encoding::Identity, true},
      {"gzip;q=1.", &brGzip, Encoding::Gzip, true},
      {"gzip;q=1.000", &brGzip, Encoding::Gzip, true},
      {"gzip;q=0.000", &brGzip, Encoding::Identity, true},
      {"gzip;q=0.001", &brGzip, Encoding::Gzip, true},
      {"gzip;Q=0", &brGzip, Encoding::Identity, true},
      {"gzip;level=9", &brGzip, Encoding::Gzip, true},  // unknown parameter ignored
      {"gzip, gzip;q=0", &brGzip, Encoding::Gzip, true},  // first entry counts
      {"gzip;q=0.5, identity", &brGzip, Encoding::Identity, true},  // client prefers identity
      {"gzip;q=0.5, identity;q=0.5", &brGzip, Encoding::Gzip, true},  // tie goes to the coding
      {"*;q=0.1, identity;q=0.2", &brGzip, Encoding::Identity, true},
      {"deflate, compress", &brGzip, Encoding::Identity, true},
      {"zstd", &brGzip, Encoding::Identity, true},  // not offered
      {",, gzip ,,", &brGzip, Encoding::Gzip, true},
      {"br;q=0.9;foo=bar, gzip;q=0.8", &brGzip, Encoding::Brotli, true},
      {"gzip, br", &none, Encoding::Identity, true},
  };
  for (const Case& c : cases) {
    CAPTURE(c.acceptEncoding);
    EncodingChoice choice = gateway::compression::negotiateEncoding(c.acceptEncoding, *c.offered);
    CHECK(gateway::compression::encodingName(choice.encoding) == gateway::compression::encodingName(c.expected));
    CHECK(choice.identityAcceptable == c.identityAcceptable);
  }
}

TEST_CASE("compression encoding names") {
  using gateway::compression::encodingFromName;
  using gateway::compression::encodingName;
  CHECK(encodingName(Encoding::Brotli) == "br");
  CHECK(encodingName(Encoding::Gzip) == "gzip");
  CHECK(encodingName(Encoding::Zstd) == "zstd");
  CHECK(encodingName(Encoding::Identity) == "identity");
  CHECK(encodingFromName("BR") == Encoding::Brotli);
  CHECK(encodingFromName("x-gzip") == Encoding::Gzip);
  CHECK_FALSE(encodingFromName("deflate").has_value());
}

TEST_CASE("compression content type patterns") {
  const std::vector<std::string> patterns = cfg::CompressionConfig{}.content_types;
  using gateway::compression::compressibleType;
  CHECK(compressibleType("application/json", patterns));
  CHECK(compressibleType("application/json; charset=utf-8", patterns));
  CHECK(compressibleType("Application/JSON;charset=utf-8", patterns));
  CHECK(compressibleType(" application/json ", patterns));
  CHECK(compressibleType("text/html", patterns));
  CHECK(compressibleType("TEXT/css", patterns));
  CHECK(compressibleType("text/plain;charset=\"utf-8\"", patterns));
  CHECK(compressibleType("application/javascript", patterns));
  CHECK(compressibleType("image/svg+xml", patterns));
  CHECK_FALSE(compressibleType("image/png", patterns));
  CHECK_FALSE(compressibleType("application/jsonp", patterns));
  CHECK_FALSE(compressibleType("application/octet-stream", patterns));
  CHECK_FALSE(compressibleType("text", patterns));
  CHECK_FALSE(compressibleType("text/", patterns));
  CHECK_FALSE(compressibleType("texts/html", patterns));
  CHECK_FALSE(compressibleType("", patterns));
  const std::vector<std::string> everything = {"*/*"};
  CHECK(compressibleType("image/png", everything));
  CHECK_FALSE(compressibleType("nonsense", everything));
}

TEST_CASE("compression shouldCompress follows the contract rules") {
  CompressionPolicy policy(cfg::CompressionConfig{});
  const EncodingChoice br{Encoding::Brotli, true};
  auto base = [] {
    ResponseFacts facts;
    facts.requestMethod = "GET";
    facts.status = 200;
    facts.contentLength = 4096;
    facts.contentType = "application/json";
    return facts;
  };
  CHECK(policy.shouldCompress(base(), br) == Decision::Compress);

  ResponseFacts chunked = base();
  chunked.contentLength.reset();
  CHECK(policy.shouldCompress(chunked, br) == Decision::Compress);

  ResponseFacts head = base();
  head.requestMethod = "HEAD";
  CHECK(policy.shouldCompress(head, br) == Decision::Method);

  for (int status : {101, 204, 206, 304}) {
    ResponseFacts facts = base();
    facts.status = status;
    CAPTURE(status);
    CHECK(policy.shouldCompress(facts, br) == Decision::Status);
  }
  for (int status : {201, 404, 500}) {
    ResponseFacts facts = base();
    facts.status = status;
    CHECK(policy.shouldCompress(facts, br) == Decision::Compress);
  }

  ResponseFacts range = base();
  range.hasContentRange = true;
  CHECK(policy.shouldCompress(range, br) == Decision::Range);

  ResponseFacts encoded = base();
  encoded.contentEncoding = "gzip";
  CHECK(policy.shouldCompress(encoded, br) == Decision::AlreadyEncoded);
  encoded.contentEncoding = "identity";
  CHECK(policy.shouldCompress(encoded, br) == Decision::Compress);

  ResponseFacts noTransform = base();
  noTransform.cacheControl = "public, No-Transform, max-age=60";
  CHECK(policy.shouldCompress(noTransform, br) == Decision::NoTransform);
  noTransform.cacheControl = "no-cache=\"x, no-transform\", max-age=60";  // inside quotes: not it
  CHECK(policy.shouldCompress(noTransform, br) == Decision::Compress);
  // A '"' opens a quoted string only as an argument: a stray one in a directive name hides
  // nothing after the next comma. The compression filter read it as an open quote and
  // compressed while the cache read no-transform (found by the accept_encoding fuzzer,
  // tests/fuzz/regressions/accept_encoding/no_transform_after_stray_quote).
  for (const char* cc : {"no-cache\"x, no-transform", "x\", no-transform", "a=b\"c, no-transform"}) {
    CAPTURE(cc);
    noTransform.cacheControl = cc;
    CHECK(gateway::cache::parseCacheControl(cc).noTransform);
    CHECK(policy.shouldCompress(noTransform, br) == Decision::NoTransform);
  }

  ResponseFacts small = base();
  small.contentLength = 1023;
  CHECK(policy.shouldCompress(small, br) == Decision::TooSmall);
  small.contentLength = 1024;
  CHECK(policy.shouldCompress(small, br) == Decision::Compress);

  ResponseFacts png = base();
  png.contentType = "image/png";
  CHECK(policy.shouldCompress(png, br) == Decision::Type);
  png.contentType = "";
  CHECK(policy.shouldCompress(png, br) == Decision::Type);

  CHECK(policy.shouldCompress(base(), EncodingChoice{}) == Decision::NotAccepted);

  cfg::CompressionConfig off;
  off.algorithms = {};
  CHECK(CompressionPolicy(off).shouldCompress(base(), br) == Decision::Disabled);

  cfg::CompressionConfig zeroMin;
  zeroMin.min_size = 0;
  ResponseFacts empty = base();
  empty.contentLength = 0;
  CHECK(CompressionPolicy(zeroMin).shouldCompress(empty, br) == Decision::TooSmall);
  CHECK(gateway::compression::decisionName(Decision::NoTransform) == "no_transform");
}

TEST_CASE("compression policy offers configured algorithms in order") {
  cfg::CompressionConfig config;
  config.algorithms = {"gzip", "br"};
  CompressionPolicy policy(config);
  REQUIRE(policy.offered().size() == 2);
  CHECK(policy.offered()[0] == Encoding::Gzip);
  CHECK(policy.negotiate("br, gzip").encoding == Encoding::Gzip);
  CHECK(policy.negotiate("br").encoding == Encoding::Brotli);

  config.algorithms = {"zstd", "br"};
  CompressionPolicy withZstd(config);
  bool zstd = gateway::compression::encodingAvailable(Encoding::Zstd);
  CHECK(withZstd.offered().size() == (zstd ? 2u : 1u));
  CHECK(withZstd.negotiate("zstd, br").encoding == (zstd ? Encoding::Zstd : Encoding::Brotli));
}

TEST_CASE("compression header edits: Vary merge and weak ETag") {
  using gateway::compression::mergeVary;
  using gateway::compression::weakenEtag;
  std::string vary;
  mergeVary(vary, "Accept-Encoding");
  CHECK(vary == "Accept-Encoding");
  mergeVary(vary, "Accept-Encoding");
  CHECK(vary == "Accept-Encoding");
  vary = "Origin";
  mergeVary(vary, "Accept-Encoding");
  CHECK(vary == "Origin, Accept-Encoding");
  vary = "origin, accept-encoding";
  mergeVary(vary, "Accept-Encoding");
  CHECK(vary == "origin, accept-encoding");
  vary = "*";
  mergeVary(vary, "Accept-Encoding");
  CHECK(vary == "*");

  std::string etag = "\"abc\"";
  CHECK(weakenEtag(etag));
  CHECK(etag == "W/\"abc\"");
  CHECK_FALSE(weakenEtag(etag));
  CHECK(etag == "W/\"abc\"");
  std::string empty;
  CHECK_FALSE(weakenEtag(empty));
  std::string bogus = "abc";
  CHECK_FALSE(weakenEtag(bogus));
  CHECK(bogus == "abc");
}
