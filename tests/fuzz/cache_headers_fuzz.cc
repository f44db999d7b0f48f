// libFuzzer target: the response cache's header parsing (gateway/filters/cache/cache_control.h,
// etag.h): Cache-Control, HTTP-dates, ETags and If-None-Match, the storage decision, the key.
//
// Input: up to nine '\n'-separated fields: Cache-Control, Date, Expires, Age, Vary,
// If-None-Match, ETag, host, path?query. The rest of the input is a body for the ETag hash.
//
// Properties:
//  - Cache-Control: directive names are case-insensitive; two lines parsed into one result equal
//    the lines joined with ", " (when no quoted string spans them); delta-seconds in [0, 2^31];
//  - HTTP-date: a parsed date formats to an IMF-fixdate that parses back to the same second;
//  - ETag: weak comparison is symmetric and reflexive on valid tags; If-None-Match "*" and a list
//    holding the tag itself match; a match implies a valid tag; the streaming XXH64 equals the
//    one-shot hash whatever the piece sizes, and makeEtag yields a valid strong tag;
//  - storage: no-store / private / no-cache / Set-Cookie / non-200 are never stored; a stored
//    entry has a positive ttl;
//  - the key: HEAD and GET share it, other methods have none, the host is case-insensitive.
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/http/headers.h"
#include "gateway/filters/cache/cache_control.h"
#include "gateway/filters/cache/etag.h"
#include "tests/fuzz/fuzz_support.h"

namespace gcache = gateway::cache;

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string describe(const gcache::CacheControl& c) {
  auto opt = [](const std::optional<int64_t>& v) { return v ? std::to_string(*v) : std::string("-"); };
  return "noStore=" + std::to_string(c.noStore) + " noCache=" + std::to_string(c.noCache) +
         " private=" + std::to_string(c.isPrivate) + " public=" + std::to_string(c.isPublic) +
         " noTransform=" + std::to_string(c.noTransform) + " mustRevalidate=" + std::to_string(c.mustRevalidate) +
         " maxAge=" + opt(c.maxAge) + " sMaxAge=" + opt(c.sMaxAge) + " staleIfError=" + opt(c.staleIfError);
}

void checkDelta(const std::optional<int64_t>& v, const std::string& what) {
  if (v) {
    FUZZ_CHECK(*v >= 0 && *v <= (int64_t{1} << 31), "delta-seconds out of [0, 2^31]: " + what);
  }
}

void checkCacheControl(std::string_view value) {
  const gcache::CacheControl cc = gcache::parseCacheControl(value);
  const std::string what = fuzz::quote(value) + " -> " + describe(cc);
  checkDelta(cc.maxAge, what);
  checkDelta(cc.sMaxAge, what);
  checkDelta(cc.staleIfError, what);
  // Arguments of quoted strings may legitimately differ in case, but no directive the cache acts
  // on takes one that the parser keeps, so the whole result must be equal.
  const gcache::CacheControl up = gcache::parseCacheControl(upper(value));
  FUZZ_CHECK(describe(up) == describe(cc), "letter case changes Cache-Control: " + what + " but upper case gives " +
                                               describe(up));
  if (value.find('"') == std::string_view::npos) {
    const size_t cut = value.size() / 2;
    gcache::CacheControl combined;
    gcache::parseCacheControl(value.substr(0, cut), combined);
    gcache::parseCacheControl(value.substr(cut), combined);
    const gcache::CacheControl joined =
        gcache::parseCacheControl(std::string(value.substr(0, cut)) + ", " + std::string(value.substr(cut)));
    FUZZ_CHECK(describe(combined) == describe(joined),
               "two lines differ from the joined value: " + fuzz::quote(value) + " cut at " + std::to_string(cut) +
                   ": " + describe(combined) + " vs " + describe(joined));
  }
}

void checkDate(std::string_view value) {
  const std::optional<int64_t> t = gcache::parseHttpDate(value);
  if (!t) {
    return;
  }
  // Four-digit years: 0000-01-01 .. 9999-12-31.
  FUZZ_CHECK(*t >= -62167219200 && *t <= 253402300799, "date out of range: " + fuzz::quote(value));
  const std::string formatted = gcache::formatHttpDate(*t);
  FUZZ_CHECK(formatted.size() == 29, "IMF-fixdate is not 29 chars: " + fuzz::quote(formatted));
  const std::optional<int64_t> back = gcache::parseHttpDate(formatted);
  FUZZ_CHECK(back && *back == *t, "date does not round-trip: " + fuzz::quote(value) + " -> " + std::to_string(*t) +
                                      " -> " + fuzz::quote(formatted));
}

void checkEtags(std::string_view ifNoneMatch, std::string_view etagField) {
  const std::string_view etag = http::trim(etagField);
  const bool valid = gcache::isValidEtag(etag);
  if (valid) {
    FUZZ_CHECK(gcache::weakEtagMatch(etag, etag), "valid tag does not match itself: " + fuzz::quote(etag));
    FUZZ_CHECK(gcache::ifNoneMatchMatches(etag, etag), "If-None-Match of the tag itself fails: " + fuzz::quote(etag));
    FUZZ_CHECK(gcache::ifNoneMatchMatches(std::string("\"zz\", ") + std::string(etag) + " ", etag),
               "tag in a list fails: " + fuzz::quote(etag));
  }
  FUZZ_CHECK(gcache::ifNoneMatchMatches(" * ", etag), "If-None-Match * does not match " + fuzz::quote(etag));
  const bool matches = gcache::ifNoneMatchMatches(ifNoneMatch, etag);
  if (matches && http::trim(ifNoneMatch) != "*") {
    FUZZ_CHECK(valid, "If-None-Match " + fuzz::quote(ifNoneMatch) + " matched an invalid tag " + fuzz::quote(etag));
  }
  const std::string_view other = http::trim(ifNoneMatch);
  FUZZ_CHECK(gcache::weakEtagMatch(etag, other) == gcache::weakEtagMatch(other, etag),
             "weak comparison not symmetric: " + fuzz::quote(etag) + " vs " + fuzz::quote(other));
}

void checkHash(std::string_view body, uint64_t h) {
  const uint64_t oneShot = gcache::xxh64(body);
  gcache::Xxh64 streaming;
  size_t pos = 0;
  uint64_t step = h | 1;
  while (pos < body.size()) {
    const size_t n = std::min<size_t>(body.size() - pos, 1 + (step % 67));
    streaming.update(body.substr(pos, n));
    pos += n;
    step = step * 6364136223846793005ull + 1442695040888963407ull;
  }
  FUZZ_CHECK(streaming.digest() == oneShot, "streaming XXH64 differs from one-shot for " + fuzz::quote(body, 80));
  const std::string tag = gcache::makeEtag(body);
  FUZZ_CHECK(tag.size() == 18 && gcache::isValidEtag(tag) && tag.front() == '"',
             "makeEtag gave " + fuzz::quote(tag));
}

void checkStorage(const gcache::ResponseFacts& base, uint64_t h) {
  gcache::ResponseFacts facts = base;
  facts.status = (h & 7) == 0 ? 404 : 200;
  facts.hasSetCookie = ((h >> 3) & 7) == 0;
  facts.requestHasAuthorization = ((h >> 6) & 7) == 0;
  const int64_t now = 1'700'000'000 + static_cast<int64_t>((h >> 10) % 100000);
  const auto ttl = std::chrono::milliseconds((h >> 30) % 120000);
  const gcache::Freshness f = gcache::evaluateStorage(facts, ttl, now);
  const gcache::CacheControl cc = gcache::parseCacheControl(facts.cacheControl);
  const std::string what = "Cache-Control " + fuzz::quote(facts.cacheControl) + " status " +
                           std::to_string(facts.status) + " -> " + std::string(gcache::storeDecisionName(f.decision));
  FUZZ_CHECK(f.storable == (f.decision == gcache::StoreDecision::Store), "storable disagrees with decision: " + what);
  if (f.storable) {
    FUZZ_CHECK(f.ttl.count() > 0, "stored with ttl <= 0: " + what);
    FUZZ_CHECK(f.staleIfError.count() >= 0, "negative stale-if-error: " + what);
    FUZZ_CHECK(facts.status == 200 && !facts.hasSetCookie && !cc.noStore && !cc.isPrivate && !cc.noCache,
               "stored what must not be: " + what);
  }
}

void checkKey(std::string_view host, std::string_view target) {
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  const std::string get = gcache::buildCacheKey("GET", host, path, query, "br");
  FUZZ_CHECK(get == gcache::buildCacheKey("HEAD", host, path, query, "br"), "HEAD and GET keys differ");
  FUZZ_CHECK(gcache::buildCacheKey("POST", host, path, query, "br").empty(), "POST has a cache key");
  FUZZ_CHECK(get == gcache::buildCacheKey("GET", upper(host), path, query, "br"), "host case changes the key");
  FUZZ_CHECK(get != gcache::buildCacheKey("GET", host, path, query, "gzip"), "encoding not in the key");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8 * 1024) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const uint64_t h = fuzz::hashBytes(data, size);
  gcache::ResponseFacts facts;
  facts.cacheControl = fuzz::nextField(rest, '\n');
  facts.date = fuzz::nextField(rest, '\n');
  facts.expires = fuzz::nextField(rest, '\n');
  facts.age = fuzz::nextField(rest, '\n');
  facts.vary = fuzz::nextField(rest, '\n');
  const std::string_view ifNoneMatch = fuzz::nextField(rest, '\n');
  const std::string_view etag = fuzz::nextField(rest, '\n');
  const std::string_view host = fuzz::nextField(rest, '\n');
  const std::string_view target = fuzz::nextField(rest, '\n');
  // An input with fewer than nine fields has no body: a null string_view, as a caller with
  // nothing to hash would pass. Found earlier: Xxh64::update memcpy()d from it, which UBSan flags
  // (regressions/cache_headers/xxh64_update_null_view).
  const std::string_view body = rest;

  checkCacheControl(facts.cacheControl);
  checkDate(facts.date);
  checkDate(facts.expires);
  checkEtags(ifNoneMatch, etag);
  checkHash(body, h);
  checkStorage(facts, h);
  checkKey(host, target);
  return 0;
}
