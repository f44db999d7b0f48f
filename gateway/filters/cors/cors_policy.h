#pragma once
// The I/O-free core of the CORS filter (CONTRACT §4 "CORS"): decides preflights and says which
// headers go on responses. Built once from config; every header value that does not depend on
// the request is rendered in the constructor, so the per-request calls only compare strings and
// return views (no allocation).
//
// Origin comparison: an Origin is "scheme://host[:port]". Scheme and host compare
// case-insensitively, the port numerically, and a default port (http 80, https 443) equals no
// port, so "https://Example.com:443" matches a configured "https://example.com". Anything else
// in the value (a path, a trailing '/', userinfo, whitespace) makes it not match. "null" matches
// only a configured "null". The response echoes the request's Origin byte for byte, as browsers
// compare it exactly against their own serialization.
//
// Methods compare case-sensitively (RFC 9110 §9.1) and must be listed, GET/HEAD/POST included:
// stricter than browsers (which skip the method check for those three), so that allow_methods
// is the whole policy. Request header names compare case-insensitively.
// "*" in allow_origins, allow_methods or allow_headers means "any". For methods and headers the
// wildcard is answered by echoing what was asked, which stays valid with credentials (the Fetch
// standard ignores a literal "*" there when credentials are on). A "*" origin is ignored when
// allow_credentials is true (the config loader rejects that combination; this is the backstop
// that keeps "reflect any origin with credentials" impossible).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/app_config.h"

namespace gateway::cors {

// One header to send. The views point into the CorsPolicy and into the request's own header
// values, so they stay valid while both live (i.e. for the request).
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// A handful of headers in fixed storage: the most a CORS answer needs is 6.
class HeaderFields {
 public:
  static constexpr size_t kCapacity = 8;
  void add(std::string_view name, std::string_view value) {
    if (size_ < kCapacity) {
      items_[size_++] = HeaderField{name, value};
    }
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const HeaderField* begin() const { return items_.data(); }
  const HeaderField* end() const { return items_.data() + size_; }
  // Value of the first field named `name` (case-insensitive), or nullptr.
  const std::string_view* find(std::string_view name) const;

  // Appends every field to anything with add(name, value): gateway::ResponseHead,
  // http::HeaderList, http::HeaderBlock.
  template <class Sink>
  void writeTo(Sink& sink) const {
    for (const HeaderField& field : *this) {
      sink.add(field.name, field.value);
    }
  }

 private:
  std::array<HeaderField, kCapacity> items_{};
  size_t size_ = 0;
};

enum class PreflightDenial {
  None,
  Origin,   // Origin missing, malformed or not in allow_origins
  Method,   // Access-Control-Request-Method missing or not in allow_methods
  Headers,  // a name in Access-Control-Request-Headers not in allow_headers
};

std::string_view denialName(PreflightDenial denial);

struct PreflightResult {
  bool allowed = false;
  PreflightDenial denial = PreflightDenial::None;
  // Allowed: Access-Control-Allow-Origin, -Allow-Methods, -Allow-Headers (when any are
  // configured), -Max-Age, -Allow-Credentials (when configured) and Vary. Denied: only Vary,
  // so that a cache between us and the browser does not reuse the 403 for another origin.
  HeaderFields headers;
};

// A request is a CORS preflight when it is OPTIONS with both Origin and
// Access-Control-Request-Method present (Fetch standard §3.2.2). Everything else is an
// "actual" request, even OPTIONS without those headers (that one is proxied).
bool isPreflight(std::string_view method, bool hasOrigin, bool hasRequestMethod);

class CorsPolicy {
 public:
  explicit CorsPolicy(const cfg::CorsConfig& config);

  // Decides a preflight. The caller answers 204 with result.headers when allowed, 403 with
  // result.headers otherwise, without contacting the upstream. `requestHeaders` is the
  // Access-Control-Request-Headers value (empty when absent): a comma list whose names must all
  // be allowed; empty elements are skipped.
  PreflightResult evaluatePreflight(std::string_view origin, std::string_view requestMethod,
                                    std::string_view requestHeaders) const;

  // Headers for a non-preflight response (proxied, cached or made by the gateway). Call it for
  // every response, with an empty `origin` when the request had none: an allowed origin gets
  // Access-Control-Allow-Origin, -Allow-Credentials and -Expose-Headers; unless the policy is
  // the wildcard one, every response also gets `Vary: Origin` because its CORS headers depend on
  // the Origin (Fetch standard §3.2.5 "CORS protocol and HTTP caches").
  HeaderFields actualResponseHeaders(std::string_view origin) const;

  template <class Sink>
  bool addActualResponseHeaders(std::string_view origin, Sink& sink) const {
    HeaderFields fields = actualResponseHeaders(origin);
    fields.writeTo(sink);
    return !origin.empty() && isOriginAllowed(origin);
  }

  bool isOriginAllowed(std::string_view origin) const;
  bool isMethodAllowed(std::string_view method) const;
  // True when every name of the comma list is allowed (an empty list is).
  bool areHeadersAllowed(std::string_view requestHeaders) const;

 private:
  struct ParsedOrigin {
    std::string scheme;  // lower case
    std::string host;    // lower case; IPv6 with its brackets
    uint32_t port = 0;   // 0 when absent or default
    bool isNull = false;
  };

  std::vector<ParsedOrigin> origins_;
  bool anyOrigin_ = false;  // "*" and no credentials
  bool credentials_ = false;
  std::vector<std::string> methods_;
  bool anyMethod_ = false;
  std::vector<std::string> headers_;
  bool anyHeader_ = false;

  // Rendered once.
  std::string allowMethodsValue_;
  std::string allowHeadersValue_;
  std::string exposeHeadersValue_;
  std::string maxAgeValue_;
};

}  // namespace gateway::cors
