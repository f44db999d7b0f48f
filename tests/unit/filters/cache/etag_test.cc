// gateway::cache ETags: the XXH64 body hash, tag syntax and If-None-Match evaluation.
#include <doctest/doctest.h>

#include <random>
#include <string>

#include "gateway/filters/cache/etag.h"

using gateway::cache::ifNoneMatchMatches;
using gateway::cache::xxh64;

TEST_CASE("cache etag hash matches the XXH64 reference vectors") {
  // Values from the reference implementation (xxhsum -H1).
  CHECK(xxh64("") == 0xef46db3751d8e999ULL);
  CHECK(xxh64("abc") == 0x44bc2cf5ad770999ULL);
  CHECK(xxh64(std::string(1000, 'x')) == 0x4cb9a3b69cb700e1ULL);
  std::string mixed;
  for (int i = 0; i < 100; ++i) {
    mixed.push_back(static_cast<char>(32 + (i * 7) % 90));
  }
  CHECK(xxh64(mixed) == 0x43c362bb16f491d6ULL);
}

TEST_CASE("cache etag hash is the same fed in any chunking") {
  std::mt19937_64 rng(5);
  std::string body(100'003, '\0');
  for (char& c : body) {
    c = static_cast<char>(rng() & 0xFF);
  }
  const uint64_t whole = xxh64(body);
  for (size_t maxPiece : {size_t{1}, size_t{5}, size_t{31}, size_t{32}, size_t{33}, size_t{4096}}) {
    gateway::cache::Xxh64 hasher;
    size_t pos = 0;
    while (pos < body.size()) {
      size_t piece = std::min<size_t>(rng() % (maxPiece + 1), body.size() - pos);
      hasher.update(std::string_view(body).substr(pos, piece));
      pos += piece;
      if (pos == body.size() / 2) {
        (void)hasher.digest();  // digest() does not disturb the state
      }
    }
    CAPTURE(maxPiece);
    CHECK(hasher.digest() == whole);
  }
}

TEST_CASE("cache etag format and validity") {
  using gateway::cache::isValidEtag;
  using gateway::cache::makeEtag;
  CHECK(makeEtag("abc") == "\"44bc2cf5ad770999\"");
  CHECK(makeEtag("") == "\"ef46db3751d8e999\"");
  CHECK(gateway::cache::etagFromHash(0x0123456789abcdefULL) == "\"0123456789abcdef\"");
  CHECK(gateway::cache::etagFromHash(1) == "\"0000000000000001\"");
  CHECK(makeEtag("a") != makeEtag("b"));
  CHECK(isValidEtag(makeEtag("body")));
  CHECK(isValidEtag("\"\""));
  CHECK(isValidEtag("W/\"x\""));
  CHECK(isValidEtag("\"a,b\""));
  CHECK_FALSE(isValidEtag(""));
  CHECK_FALSE(isValidEtag("abc"));
  CHECK_FALSE(isValidEtag("\"abc"));
  CHECK_FALSE(isValidEtag("w/\"abc\""));  // W is case-sensitive
  CHECK_FALSE(isValidEtag("\"a b\""));
  CHECK_FALSE(isValidEtag("\"abc\"x"));
}

TEST_CASE("cache if-none-match uses weak comparison over lists and *") {
  struct Case {
    const char* ifNoneMatch;
    const char* etag;
    bool matches;
  };
  const Case cases[] = {
      {"\"abc\"", "\"abc\"", true},
      {"W/\"abc\"", "\"abc\"", true},
      {"\"abc\"", "W/\"abc\"", true},
      {"W/\"abc\"", "W/\"abc\"", true},
      {"\"x\", \"abc\"", "\"abc\"", true},
      {"\"x\",W/\"abc\" ,\"y\"", "\"abc\"", true},
      {" \"abc\" ", "\"abc\"", true},
      {"\"x\", \"y\"", "\"abc\"", false},
      {"\"ABC\"", "\"abc\"", false},  // opaque tags compare exactly
      {"*", "\"abc\"", true},
      {" * ", "\"abc\"", true},
      {"*", "", true},
      {"\"abc\"", "", false},
      {"", "\"abc\"", false},
      {"\"abc", "\"abc\"", false},
      {"abc", "\"abc\"", false},
      {"\"abc\" junk", "\"abc\"", false},  // malformed list: the condition does not apply
      {"\"abc\", *", "\"abc\"", false},
      {"\"a,b\"", "\"a,b\"", true},
      {"\"a\", \"b\"", "\"a,b\"", false},
      {",\"abc\",", "\"abc\"", true},
  };
  for (const Case& c : cases) {
    CAPTURE(c.ifNoneMatch);
    CAPTURE(c.etag);
    CHECK(ifNoneMatchMatches(c.ifNoneMatch, c.etag) == c.matches);
  }
  CHECK(gateway::cache::weakEtagMatch("W/\"1\"", "\"1\""));
  CHECK_FALSE(gateway::cache::weakEtagMatch("1", "1"));
}
