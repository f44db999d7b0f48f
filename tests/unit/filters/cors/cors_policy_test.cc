// gateway::cors::CorsPolicy without sockets: preflight decisions and response headers.
#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "common/config/app_config.h"
#include "common/http/headers.h"
#include "gateway/filters/cors/cors_policy.h"

using gateway::cors::CorsPolicy;
using gateway::cors::HeaderFields;
using gateway::cors::PreflightDenial;
using gateway::cors::PreflightResult;

namespace {

// Anything with add(name, value) works as a sink; this one records for assertions.
struct RecordingSink {
  std::vector<std::pair<std::string, std::string>> items;
  void add(std::string_view name, std::string_view value) { items.emplace_back(name, value); }
};

std::string valueOf(const HeaderFields& fields, std::string_view name) {
  const std::string_view* value = fields.find(name);
  return value == nullptr ? std::string("<absent>") : std::string(*value);
}

cfg::CorsConfig contractDefaults() { return cfg::CorsConfig{}; }

}  // namespace

TEST_CASE("cors preflight from an allowed origin gets every allow header") {
  CorsPolicy policy(contractDefaults());
  PreflightResult result = policy.evaluatePreflight("https://example.com", "PUT", "content-type, x-request-id");
  CHECK(result.allowed);
  CHECK(result.denial == PreflightDenial::None);
  CHECK(valueOf(result.headers, "Access-Control-Allow-Origin") == "https://example.com");
  CHECK(valueOf(result.headers, "Access-Control-Allow-Methods") == "GET, POST, PUT, PATCH, DELETE, OPTIONS");
  CHECK(valueOf(result.headers, "Access-Control-Allow-Headers") == "Authorization, Content-Type, X-Request-ID");
  CHECK(valueOf(result.headers, "Access-Control-Max-Age") == "600");
  CHECK(valueOf(result.headers, "Access-Control-Allow-Credentials") == "true");
  CHECK(valueOf(result.headers, "Vary") == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
  CHECK(result.headers.size() == 6);
}

TEST_CASE("cors preflight denials name what was refused and carry only Vary") {
  CorsPolicy policy(contractDefaults());
  struct Case {
    const char* origin;
    const char* method;
    const char* headers;
    PreflightDenial denial;
  };
  const Case cases[] = {
      {"https://evil.com", "GET", "", PreflightDenial::Origin},
      {"http://example.com", "GET", "", PreflightDenial::Origin},  // scheme differs
      {"https://example.com:8443", "GET", "", PreflightDenial::Origin},
      {"https://example.com.evil.com", "GET", "", PreflightDenial::Origin},
      {"https://sub.example.com", "GET", "", PreflightDenial::Origin},
      {"https://example.com/", "GET", "", PreflightDenial::Origin},  // not an origin serialization
      {"https://user@example.com", "GET", "", PreflightDenial::Origin},
      {" https://example.com", "GET", "", PreflightDenial::Origin},
      {"null", "GET", "", PreflightDenial::Origin},
      {"", "GET", "", PreflightDenial::Origin},
      {"https://example.com", "TRACE", "", PreflightDenial::Method},
      {"https://example.com", "put", "", PreflightDenial::Method},  // methods are case-sensitive
      {"https://example.com", "", "", PreflightDenial::Method},
      {"https://example.com", "GET", "X-Custom", PreflightDenial::Headers},
      {"https://example.com", "GET", "content-type, x-evil", PreflightDenial::Headers},
      {"https://example.com", "GET", "bad header", PreflightDenial::Headers},
  };
  for (const Case& c : cases) {
    CAPTURE(c.origin);
    CAPTURE(c.method);
    CAPTURE(c.headers);
    PreflightResult result = policy.evaluatePreflight(c.origin, c.method, c.headers);
    CHECK_FALSE(result.allowed);
    CHECK(result.denial == c.denial);
    CHECK(result.headers.size() == 1);
    CHECK(valueOf(result.headers, "Vary") == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    CHECK(valueOf(result.headers, "Access-Control-Allow-Origin") == "<absent>");
  }
  CHECK(gateway::cors::denialName(PreflightDenial::Headers) == "headers");
}

TEST_CASE("cors origins compare by scheme, host and port, echoing the request's bytes") {
  cfg::CorsConfig config;
  config.allow_origins = {"https://example.com", "http://localhost:3000", "http://[::1]:8080", "HTTPS://App.Example.org:443"};
  CorsPolicy policy(config);
  // Case-insensitive scheme and host, default port equal to none.
  CHECK(policy.isOriginAllowed("https://EXAMPLE.com"));
  CHECK(policy.isOriginAllowed("HTTPS://example.com:443"));
  CHECK(policy.isOriginAllowed("https://app.example.org"));
  CHECK(policy.isOriginAllowed("http://localhost:3000"));
  CHECK(policy.isOriginAllowed("http://[::1]:8080"));
  CHECK_FALSE(policy.isOriginAllowed("http://localhost:3001"));
  CHECK_FALSE(policy.isOriginAllowed("http://localhost"));
  CHECK_FALSE(policy.isOriginAllowed("http://[::1]"));
  CHECK_FALSE(policy.isOriginAllowed("https://example.com:443x"));
  CHECK_FALSE(policy.isOriginAllowed("https://example.com:"));
  CHECK_FALSE(policy.isOriginAllowed("https://example.com:99999"));
  CHECK_FALSE(policy.isOriginAllowed("https://example.com?x"));
  CHECK_FALSE(policy.isOriginAllowed("example.com"));
  PreflightResult result = policy.evaluatePreflight("https://EXAMPLE.com", "GET", "");
  REQUIRE(result.allowed);
  CHECK(valueOf(result.headers, "Access-Control-Allow-Origin") == "https://EXAMPLE.com");
}

TEST_CASE("cors request header names compare case-insensitively as a comma list") {
  CorsPolicy policy(contractDefaults());
  CHECK(policy.areHeadersAllowed(""));
  CHECK(policy.areHeadersAllowed("authorization"));
  CHECK(policy.areHeadersAllowed("CONTENT-TYPE,x-request-id"));
  CHECK(policy.areHeadersAllowed(" content-type ,, authorization , "));
  CHECK_FALSE(policy.areHeadersAllowed("content-type, cookie"));
  CHECK_FALSE(policy.areHeadersAllowed("content-type;x"));
}

TEST_CASE("cors actual responses: allowed origin, other origin, no origin") {
  CorsPolicy policy(contractDefaults());
  HeaderFields allowed = policy.actualResponseHeaders("https://example.com");
  CHECK(valueOf(allowed, "Access-Control-Allow-Origin") == "https://example.com");
  CHECK(valueOf(allowed, "Access-Control-Allow-Credentials") == "true");
  CHECK(valueOf(allowed, "Access-Control-Expose-Headers") == "X-Request-ID");
  CHECK(valueOf(allowed, "Vary") == "Origin");
  CHECK(allowed.size() == 4);

  // A response a cache may keep must say it depends on Origin even when it carries no CORS.
  HeaderFields other = policy.actualResponseHeaders("https://evil.com");
  CHECK(other.size() == 1);
  CHECK(valueOf(other, "Vary") == "Origin");
  HeaderFields none = policy.actualResponseHeaders("");
  CHECK(none.size() == 1);
  CHECK(valueOf(none, "Vary") == "Origin");

  RecordingSink sink;
  CHECK(policy.addActualResponseHeaders("https://example.com", sink));
  CHECK(sink.items.size() == 4);
  CHECK(sink.items[1].first == "Access-Control-Allow-Origin");
  http::HeaderList list;
  CHECK_FALSE(policy.addActualResponseHeaders("https://evil.com", list));
  REQUIRE(list.find("Vary") != nullptr);
  CHECK(*list.find("Vary") == "Origin");
  CHECK(list.find("Access-Control-Allow-Origin") == nullptr);
}

TEST_CASE("cors never answers * with credentials") {
  cfg::CorsConfig config;
  config.allow_origins = {"*"};
  config.allow_credentials = true;  // the loader rejects this; the policy must still be safe
  CorsPolicy policy(config);
  CHECK_FALSE(policy.isOriginAllowed("https://evil.com"));
  CHECK_FALSE(policy.evaluatePreflight("https://evil.com", "GET", "").allowed);
  HeaderFields fields = policy.actualResponseHeaders("https://evil.com");
  CHECK(valueOf(fields, "Access-Control-Allow-Origin") == "<absent>");
  CHECK(valueOf(fields, "Access-Control-Allow-Credentials") == "<absent>");
}

TEST_CASE("cors wildcard origin without credentials answers *") {
  cfg::CorsConfig config;
  config.allow_origins = {"*"};
  config.allow_credentials = false;
  config.expose_headers = {};
  CorsPolicy policy(config);
  PreflightResult result = policy.evaluatePreflight("https://anything.test", "DELETE", "authorization");
  REQUIRE(result.allowed);
  CHECK(valueOf(result.headers, "Access-Control-Allow-Origin") == "*");
  CHECK(valueOf(result.headers, "Access-Control-Allow-Credentials") == "<absent>");
  HeaderFields actual = policy.actualResponseHeaders("https://anything.test");
  CHECK(actual.size() == 1);
  CHECK(valueOf(actual, "Access-Control-Allow-Origin") == "*");
  CHECK(policy.actualResponseHeaders("").empty());  // the same for everyone: no Vary needed
}

TEST_CASE("cors wildcard methods and headers are answered by echo") {
  cfg::CorsConfig config;
  config.allow_methods = {"*"};
  config.allow_headers = {"*"};
  config.max_age = cfg::Duration{90500};
  CorsPolicy policy(config);
  PreflightResult result = policy.evaluatePreflight("https://example.com", "PURGE", " X-One, x-two ");
  REQUIRE(result.allowed);
  CHECK(valueOf(result.headers, "Access-Control-Allow-Methods") == "PURGE");
  CHECK(valueOf(result.headers, "Access-Control-Allow-Headers") == "X-One, x-two");
  CHECK(valueOf(result.headers, "Access-Control-Max-Age") == "90");
  CHECK(policy.evaluatePreflight("https://example.com", "BAD METHOD", "").denial == PreflightDenial::Method);
  PreflightResult noHeaders = policy.evaluatePreflight("https://example.com", "GET", "");
  CHECK(valueOf(noHeaders.headers, "Access-Control-Allow-Headers") == "<absent>");
}

TEST_CASE("cors null origin matches only when configured") {
  cfg::CorsConfig config;
  config.allow_origins = {"null"};
  CorsPolicy policy(config);
  CHECK(policy.isOriginAllowed("null"));
  CHECK_FALSE(policy.isOriginAllowed("https://example.com"));
}

TEST_CASE("cors preflight detection") {
  using gateway::cors::isPreflight;
  CHECK(isPreflight("OPTIONS", true, true));
  CHECK_FALSE(isPreflight("OPTIONS", true, false));
  CHECK_FALSE(isPreflight("OPTIONS", false, true));
  CHECK_FALSE(isPreflight("GET", true, true));
}
