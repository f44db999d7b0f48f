// gateway::cache policy without I/O: Cache-Control, HTTP dates, storage decisions, rules, keys.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/app_config.h"
#include "common/http/headers.h"
#include "gateway/filters/cache/cache_control.h"

using gateway::cache::CacheControl;
using gateway::cache::evaluateStorage;
using gateway::cache::Freshness;
using gateway::cache::parseCacheControl;
using gateway::cache::parseHttpDate;
using gateway::cache::ResponseFacts;
using gateway::cache::StoreDecision;
using std::chrono::milliseconds;

TEST_CASE("cache-control directives parse case-insensitively with quoted arguments") {
  CacheControl cc = parseCacheControl("Public, MAX-AGE=60, s-maxage=\"30\", no-transform, stale-if-error=300");
  CHECK(cc.isPublic);
  CHECK(cc.noTransform);
  CHECK(cc.maxAge == 60);
  CHECK(cc.sMaxAge == 30);
  CHECK(cc.staleIfError == 300);
  CHECK_FALSE(cc.noStore);
  CHECK_FALSE(cc.noCache);
  CHECK_FALSE(cc.isPrivate);

  cc = parseCacheControl("no-store");
  CHECK(cc.noStore);
  cc = parseCacheControl("private=\"Set-Cookie, X-User\", max-age=5");
  CHECK(cc.isPrivate);
  CHECK(cc.maxAge == 5);
  // A comma inside quotes does not start a directive.
  cc = parseCacheControl("no-cache=\"a, no-store, b\", max-age=10");
  CHECK(cc.noCache);
  CHECK_FALSE(cc.noStore);
  CHECK(cc.maxAge == 10);
  cc = parseCacheControl("  ,max-age = 7 ,, proxy-revalidate,");
  CHECK(cc.maxAge == 7);
  CHECK(cc.mustRevalidate);
  cc = parseCacheControl("x-ext=\"unterminated, max-age=3");  // swallowed by the open quote
  CHECK_FALSE(cc.maxAge.has_value());
  cc = parseCacheControl("");
  CHECK_FALSE(cc.maxAge.has_value());
}

TEST_CASE("cache-control duplicates keep the first value; bad numbers mean stale") {
  CHECK(parseCacheControl("max-age=10, max-age=20").maxAge == 10);
  CHECK(parseCacheControl("max-age=abc").maxAge == 0);
  CHECK(parseCacheControl("max-age=").maxAge == 0);
  CHECK(parseCacheControl("max-age").maxAge == 0);
  CHECK(parseCacheControl("max-age=-5").maxAge == 0);
  CHECK(parseCacheControl("max-age=99999999999999999999999").maxAge == (int64_t{1} << 31));
  // Several header lines accumulate into one result.
  CacheControl cc;
  parseCacheControl("public", cc);
  parseCacheControl("max-age=30", cc);
  parseCacheControl("max-age=90", cc);
  CHECK(cc.isPublic);
  CHECK(cc.maxAge == 30);
}

TEST_CASE("cache-control: several header lines count, as if joined") {
  http::HeaderList headers;
  std::string scratch;
  CHECK(gateway::cache::joinedField(headers, "cache-control", scratch).empty());
  headers.add("Cache-Control", "public, max-age=60");
  headers.add("Vary", "Accept-Encoding");
  CHECK(gateway::cache::joinedField(headers, "cache-control", scratch) == "public, max-age=60");
  CHECK(scratch.empty());  // one line: a view of it, no copy
  headers.add("cache-control", "private");
  headers.add("VARY", "Cookie");
  const std::string_view cc = gateway::cache::joinedField(headers, "cache-control", scratch);
  CHECK(cc == "public, max-age=60, private");
  CHECK(parseCacheControl(cc).isPrivate);
  std::string varyScratch;
  CHECK(gateway::cache::joinedField(headers, "vary", varyScratch) == "Accept-Encoding, Cookie");

  // What the cache filter and the compression filter now read: private / no-transform on the
  // second line is not lost.
  ResponseFacts facts;
  facts.cacheControl = cc;
  CHECK(evaluateStorage(facts, milliseconds(60000), 1000).decision == StoreDecision::Private);
  facts.cacheControl = "max-age=60";
  facts.vary = "Accept-Encoding, Cookie";
  CHECK(evaluateStorage(facts, milliseconds(60000), 1000).decision == StoreDecision::Vary);
}

TEST_CASE("cache-control: a stray quote inside a directive name hides nothing after the comma") {
  CHECK(parseCacheControl("no-cache\"x, no-transform").noTransform);
  CHECK(parseCacheControl("x\", no-store").noStore);
  CHECK(parseCacheControl("a=b\"c, private").isPrivate);
  // A quote that starts an argument does hold commas (RFC 9110 §5.6.4).
  CHECK_FALSE(parseCacheControl("x=\"a, no-transform\"").noTransform);
}

TEST_CASE("cache http dates: the three forms, and what is not a date") {
  const int64_t expected = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT") == expected);
  CHECK(parseHttpDate("  Sun, 06 Nov 1994 08:49:37 GMT ") == expected);
  CHECK(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT") == expected);
  CHECK(parseHttpDate("Sun Nov  6 08:49:37 1994") == expected);
  CHECK(parseHttpDate("Thu, 01 Jan 1970 00:00:00 GMT") == 0);
  CHECK(parseHttpDate("Tue, 29 Feb 2000 12:00:00 GMT") == 951825600);
  CHECK(parseHttpDate("Fri, 31 Dec 2100 23:59:59 GMT") == 4133980799);
  for (const char* bad : {"", "0", "-1", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT",
                          "Sun, 31 Feb 2020 00:00:00 GMT", "Mon, 29 Feb 2100 00:00:00 GMT",
                          "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1994 08:49:37 GMT trailing", "Sun Nov 6 08:49:37 1994"}) {
    CAPTURE(bad);
    CHECK_FALSE(parseHttpDate(bad).has_value());
  }
}

TEST_CASE("cache http dates format as IMF-fixdate and parse back") {
  using gateway::cache::formatHttpDate;
  CHECK(formatHttpDate(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(formatHttpDate(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(formatHttpDate(951825600) == "Tue, 29 Feb 2000 12:00:00 GMT");
  for (int64_t t = 0; t < 5'000'000'000; t += 86'399'999) {
    CAPTURE(t);
    CHECK(parseHttpDate(formatHttpDate(t)) == t);
  }
}

TEST_CASE("cache storage decisions and freshness lifetimes") {
  const milliseconds ruleTtl{60000};
  const int64_t now = 1'700'000'000;
  const std::string date = gateway::cache::formatHttpDate(now);
  const std::string in120 = gateway::cache::formatHttpDate(now + 120);
  const std::string past = gateway::cache::formatHttpDate(now - 10);

  struct Case {
    const char* name;
    ResponseFacts facts;
    StoreDecision decision;
    int64_t ttlMs;
  };
  auto facts = [](auto&& edit) {
    ResponseFacts f;
    edit(f);
    return f;
  };
  const std::vector<Case> cases = {
      {"no headers: rule ttl", facts([](ResponseFacts&) {}), StoreDecision::Store, 60000},
      {"max-age", facts([](ResponseFacts& f) { f.cacheControl = "max-age=30"; }), StoreDecision::Store, 30000},
      {"s-maxage beats max-age", facts([](ResponseFacts& f) { f.cacheControl = "max-age=30, s-maxage=10"; }),
       StoreDecision::Store, 10000},
      {"public alone: rule ttl", facts([](ResponseFacts& f) { f.cacheControl = "public"; }), StoreDecision::Store,
       60000},
      {"Expires - Date", facts([&](ResponseFacts& f) {
         f.expires = in120;
         f.date = date;
       }),
       StoreDecision::Store, 120000},
      {"Expires without Date uses now", facts([&](ResponseFacts& f) { f.expires = in120; }), StoreDecision::Store,
       120000},
      {"max-age beats Expires", facts([&](ResponseFacts& f) {
         f.cacheControl = "max-age=5";
         f.expires = past;
       }),
       StoreDecision::Store, 5000},
      {"Expires in the past", facts([&](ResponseFacts& f) {
         f.expires = past;
         f.date = date;
       }),
       StoreDecision::Expired, 0},
      {"invalid Expires means expired", facts([](ResponseFacts& f) { f.expires = "0"; }), StoreDecision::Expired, 0},
      {"max-age=0", facts([](ResponseFacts& f) { f.cacheControl = "max-age=0"; }), StoreDecision::Expired, 0},
      {"Age is subtracted", facts([](ResponseFacts& f) {
         f.cacheControl = "max-age=30";
         f.age = "20";
       }),
       StoreDecision::Store, 10000},
      {"Age past the lifetime", facts([](ResponseFacts& f) {
         f.cacheControl = "max-age=30";
         f.age = "30";
       }),
       StoreDecision::Expired, 0},
      {"no-store", facts([](ResponseFacts& f) { f.cacheControl = "public, No-Store"; }), StoreDecision::NoStore, 0},
      {"request no-store", facts([](ResponseFacts& f) { f.requestCacheControl = "no-store"; }),
       StoreDecision::NoStore, 0},
      {"private", facts([](ResponseFacts& f) { f.cacheControl = "private, max-age=60"; }), StoreDecision::Private, 0},
      {"no-cache", facts([](ResponseFacts& f) { f.cacheControl = "no-cache"; }), StoreDecision::NoCache, 0},
      {"Set-Cookie", facts([](ResponseFacts& f) { f.hasSetCookie = true; }), StoreDecision::SetCookie, 0},
      {"Set-Cookie even when public", facts([](ResponseFacts& f) {
         f.hasSetCookie = true;
         f.cacheControl = "public";
       }),
       StoreDecision::SetCookie, 0},
      {"Authorization", facts([](ResponseFacts& f) { f.requestHasAuthorization = true; }),
       StoreDecision::Authorization, 0},
      {"Authorization with public", facts([](ResponseFacts& f) {
         f.requestHasAuthorization = true;
         f.cacheControl = "public, max-age=20";
       }),
       StoreDecision::Store, 20000},
      {"Authorization with s-maxage", facts([](ResponseFacts& f) {
         f.requestHasAuthorization = true;
         f.cacheControl = "s-maxage=15";
       }),
       StoreDecision::Store, 15000},
      {"status 404", facts([](ResponseFacts& f) { f.status = 404; }), StoreDecision::Status, 0},
      {"status 206", facts([](ResponseFacts& f) { f.status = 206; }), StoreDecision::Status, 0},
      {"Vary: Accept-Encoding", facts([](ResponseFacts& f) { f.vary = "accept-encoding"; }), StoreDecision::Store,
       60000},
      {"Vary: Cookie", facts([](ResponseFacts& f) { f.vary = "Accept-Encoding, Cookie"; }), StoreDecision::Vary, 0},
      {"Vary: *", facts([](ResponseFacts& f) { f.vary = "*"; }), StoreDecision::Vary, 0},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    Freshness result = evaluateStorage(c.facts, ruleTtl, now);
    CHECK(gateway::cache::storeDecisionName(result.decision) == gateway::cache::storeDecisionName(c.decision));
    CHECK(result.storable == (c.decision == StoreDecision::Store));
    CHECK(result.ttl.count() == c.ttlMs);
  }
}

TEST_CASE("cache stale-if-error window, cancelled by must-revalidate") {
  ResponseFacts facts;
  facts.cacheControl = "max-age=60, stale-if-error=300";
  Freshness result = evaluateStorage(facts, milliseconds{1000}, 0);
  CHECK(result.storable);
  CHECK(result.staleIfError.count() == 300000);
  facts.cacheControl = "max-age=60, stale-if-error=300, must-revalidate";
  CHECK(evaluateStorage(facts, milliseconds{1000}, 0).staleIfError.count() == 0);
  facts.cacheControl = "max-age=60";
  CHECK(evaluateStorage(facts, milliseconds{1000}, 0).staleIfError.count() == 0);
}

TEST_CASE("cache rules: first match wins, path exact, prefix by prefix") {
  std::vector<cfg::CacheRule> rules = {
      {"/articles/special", "", milliseconds{5000}, "public, max-age=5"},
      {"", "/articles/", milliseconds{60000}, "public, max-age=60"},
      {"", "/", milliseconds{1000}, "public, max-age=1"},
  };
  using gateway::cache::matchRule;
  CHECK(matchRule(rules, "/articles/special") == &rules[0]);
  CHECK(matchRule(rules, "/articles/special/x") == &rules[1]);
  CHECK(matchRule(rules, "/articles/1") == &rules[1]);
  CHECK(matchRule(rules, "/articles") == &rules[2]);
  CHECK(matchRule(std::span(rules).subspan(0, 2), "/orders/1") == nullptr);
  CHECK(matchRule(cfg::CacheConfig{}.rules, "/articles/42") != nullptr);
  CHECK(matchRule({}, "/articles/42") == nullptr);
}

TEST_CASE("cache keys: GET and HEAD share, host folds case, encoding separates") {
  using gateway::cache::buildCacheKey;
  const std::string get = buildCacheKey("GET", "Api.Example.com", "/articles/1", "page=2", "br");
  CHECK(get == "GET\napi.example.com\n/articles/1?page=2\nbr");
  CHECK(buildCacheKey("HEAD", "api.example.com", "/articles/1", "page=2", "br") == get);
  CHECK(buildCacheKey("GET", "api.example.com", "/articles/1", "page=2", "gzip") != get);
  CHECK(buildCacheKey("GET", "api.example.com", "/articles/1", "page=3", "br") != get);
  CHECK(buildCacheKey("GET", "api.example.com", "/Articles/1", "page=2", "br") != get);
  CHECK(buildCacheKey("GET", "other.example.com", "/articles/1", "page=2", "br") != get);
  CHECK(buildCacheKey("GET", "h", "/a", "", "identity") == "GET\nh\n/a\nidentity");
  std::string reused = "left over";
  CHECK_FALSE(buildCacheKey(reused, "POST", "h", "/a", "", "identity"));
  CHECK(reused.empty());
  CHECK_FALSE(gateway::cache::isCacheableMethod("get"));
  CHECK(gateway::cache::isCacheableMethod("HEAD"));
}
