#pragma once
// The I/O-free decisions of the response cache (CONTRACT §4 "ETag and response cache"): parsing
// Cache-Control and HTTP dates, deciding whether a response may be stored and for how long, the
// rule lookup and the cache key. Time comes in as a parameter (unix seconds), never from a
// clock here.
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/config/app_config.h"
#include "common/http/headers.h"

namespace gateway::cache {

// The directives the gateway acts on (RFC 9111 §5.2, RFC 5861). Names compare
// case-insensitively; arguments may be tokens or quoted strings; a directive given twice keeps
// its first value (RFC 9111 §4.2.1). A delta-seconds that is not a number makes the response
// count as stale (value 0); one too large for 31 bits is capped at 2^31 (RFC 9111 §1.2.2).
struct CacheControl {
  bool noStore = false;
  bool noCache = false;  // also the qualified form no-cache="field" (treated as unqualified)
  bool isPrivate = false;  // also private="field" (treated as unqualified)
  bool isPublic = false;
  bool noTransform = false;
  bool mustRevalidate = false;  // must-revalidate or proxy-revalidate
  std::optional<int64_t> maxAge;        // seconds
  std::optional<int64_t> sMaxAge;       // seconds
  std::optional<int64_t> staleIfError;  // seconds
};

// Parses one Cache-Control field value. Call it once per header line with the same `into` to
// combine several lines (as if joined with ", "). Unknown directives are ignored.
// This is the gateway's one Cache-Control reader: the cache and the compression filter
// (no-transform) both use it, so they cannot disagree about what a response said. A '"' opens
// a quoted string only where an argument starts (after '='); a stray one inside a directive
// name hides nothing that follows the next comma.
void parseCacheControl(std::string_view value, CacheControl& into);
CacheControl parseCacheControl(std::string_view value);

// Every `name` line of `headers` (any letter case) joined with ", "
// (RFC 9110 §5.3), so that a directive on a second line counts. A view of the line itself when
// there is at most one (no copy), otherwise of `scratch`.
std::string_view joinedField(const http::HeaderList& headers, std::string_view name, std::string& scratch);

// An HTTP-date (RFC 9110 §5.6.7) as unix seconds: IMF-fixdate
// ("Sun, 06 Nov 1994 08:49:37 GMT"), and the obsolete RFC 850 and asctime forms recipients
// must accept. nullopt when malformed.
std::optional<int64_t> parseHttpDate(std::string_view value);
// IMF-fixdate for unix seconds, for Date / Expires / Last-Modified headers we write.
std::string formatHttpDate(int64_t unixSeconds);

// Why a response is (not) stored; a metrics / debug label.
enum class StoreDecision : uint8_t {
  Store,
  Status,         // only 200 responses are stored
  NoStore,        // response or request Cache-Control: no-store
  Private,        // Cache-Control: private
  NoCache,        // no-cache: reuse needs revalidation, which this cache does not do
  SetCookie,      // a Set-Cookie response is per client
  Authorization,  // request carried Authorization; response not marked public / s-maxage
  Vary,           // Vary names something other than Accept-Encoding (the key covers only that)
  Expired,        // freshness lifetime already used up (max-age=0, past Expires, Age)
};
std::string_view storeDecisionName(StoreDecision decision);

// What the storage decision looks at; header values are empty when absent, and several
// Cache-Control / Vary lines are joined with ", ".
struct ResponseFacts {
  int status = 200;
  std::string_view cacheControl;
  std::string_view expires;
  std::string_view date;
  std::string_view age;   // the upstream's Age, subtracted from the lifetime
  std::string_view vary;
  bool hasSetCookie = false;
  bool requestHasAuthorization = false;
  std::string_view requestCacheControl;
};

struct Freshness {
  bool storable = false;
  StoreDecision decision = StoreDecision::Status;
  // How long the entry is fresh from now (> 0 when storable).
  std::chrono::milliseconds ttl{0};
  // How long after ttl a stale entry may still answer when the upstream fails (RFC 5861
  // stale-if-error); 0 when not given or when must-revalidate forbids serving stale.
  std::chrono::milliseconds staleIfError{0};
};

// The storage decision and lifetime for a response to a GET/HEAD that matched a cache rule.
// Lifetime precedence: s-maxage, then max-age, then Expires - Date (Date missing: `now`), then
// the rule's ttl; minus the upstream's Age. Not stored: no-store (either side), private,
// no-cache, Set-Cookie, a non-200 status, Vary beyond Accept-Encoding (Vary: * included), and a
// request with Authorization unless the response says public or s-maxage (RFC 9111 §3.5).
// The cache should store the upstream's response before per-request headers (CORS, X-Cache,
// Age) are added, since those are not part of the key.
Freshness evaluateStorage(const ResponseFacts& facts, std::chrono::milliseconds ruleTtl, int64_t nowUnixSeconds);

// The first rule whose `path` equals, or whose `prefix` starts, the request path (query
// excluded); nullptr when none does.
const cfg::CacheRule* matchRule(std::span<const cfg::CacheRule> rules, std::string_view path);

// True for the methods the cache serves: GET and HEAD (HEAD is answered from the GET entry).
bool isCacheableMethod(std::string_view method);

// Builds the cache key into `out` (cleared first; reuse the string to avoid allocating):
// "GET" '\n' host '\n' path ['?' query] '\n' encoding. HEAD maps to GET; the host is lowered
// (it is case-insensitive) while path and query stay byte-exact; '\n' cannot occur in any part
// of a request the parser accepted, so distinct requests never share a key. `query` is without
// its '?' (empty: none). `encoding` is the negotiated Content-Encoding token ("identity", "br",
// ...). Returns false (and leaves `out` empty) for any other method.
bool buildCacheKey(std::string& out, std::string_view method, std::string_view host, std::string_view path,
                   std::string_view query, std::string_view encoding);
std::string buildCacheKey(std::string_view method, std::string_view host, std::string_view path,
                          std::string_view query, std::string_view encoding);

}  // namespace gateway::cache
