// libFuzzer target: CORS decisions (gateway/filters/cors/cors_policy.h) on the Origin,
// Access-Control-Request-Method and Access-Control-Request-Headers a browser (or anyone) sends.
//
// Input: three '\n'-separated fields: Origin, request method, request headers. Each input is
// evaluated against four policies: the contract's default, a credentialed multi-origin one (with
// "null", a port and an IPv6 host), the wildcard one without credentials, and "*" origins with
// credentials (which must never reflect an arbitrary origin).
//
// Properties:
//  - an allowed preflight carries Access-Control-Allow-Origin equal to the request's Origin byte
//    for byte (or "*" for the wildcard policy), and the origin, method and every requested
//    header are individually allowed; a denied one carries only Vary;
//  - never "*" together with Access-Control-Allow-Credentials;
//  - actual responses carry Allow-Origin exactly when the origin is allowed;
//  - scheme and host compare case-insensitively, header names too;
//  - no header value produced holds CR, LF or NUL.
#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/filters/cors/cors_policy.h"
#include "tests/fuzz/fuzz_support.h"

namespace gcors = gateway::cors;

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::array<cfg::CorsConfig, 4> makeConfigs() {
  std::array<cfg::CorsConfig, 4> configs;  // [0] = the contract's defaults
  configs[1].allow_origins = {"https://example.com", "http://localhost:8080", "null", "https://[::1]:8443",
                              "https://Sub.Example.org"};
  configs[1].allow_methods = {"GET", "PATCH", "PURGE"};
  configs[1].allow_headers = {"Content-Type", "X-Custom-Header"};
  configs[1].expose_headers = {};
  configs[2].allow_origins = {"*"};
  configs[2].allow_credentials = false;
  configs[2].allow_methods = {"*"};
  configs[2].allow_headers = {"*"};
  // Rejected by the loader; the policy's own backstop must still refuse to reflect origins.
  configs[3].allow_origins = {"*", "https://example.com"};
  configs[3].allow_credentials = true;
  configs[3].allow_headers = {"*"};
  return configs;
}

std::string describe(const gcors::HeaderFields& fields) {
  std::string out;
  for (const gcors::HeaderField& f : fields) {
    out += "\n  " + std::string(f.name) + ": " + fuzz::quote(f.value);
  }
  return out;
}

void checkFields(const gcors::HeaderFields& fields, bool credentials, const std::string& what) {
  const std::string_view* allowOrigin = fields.find("Access-Control-Allow-Origin");
  const std::string_view* allowCredentials = fields.find("Access-Control-Allow-Credentials");
  FUZZ_CHECK(!(allowOrigin != nullptr && *allowOrigin == "*" && allowCredentials != nullptr),
             "'*' with credentials: " + what + describe(fields));
  if (allowCredentials != nullptr) {
    FUZZ_CHECK(credentials, "credentials header from a policy without credentials: " + what + describe(fields));
  }
  for (const gcors::HeaderField& f : fields) {
    FUZZ_CHECK(f.value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos,
               "CR/LF/NUL in a CORS header value: " + what + describe(fields));
  }
}

void checkPolicy(const gcors::CorsPolicy& policy, const cfg::CorsConfig& config, std::string_view origin,
                 std::string_view method, std::string_view requestHeaders) {
  const std::string what = "origin " + fuzz::quote(origin) + " method " + fuzz::quote(method) + " headers " +
                           fuzz::quote(requestHeaders);
  bool wildcard = false;
  for (const std::string& o : config.allow_origins) {
    wildcard = wildcard || (o == "*" && !config.allow_credentials);
  }

  const gcors::PreflightResult pre = policy.evaluatePreflight(origin, method, requestHeaders);
  checkFields(pre.headers, config.allow_credentials, what);
  const std::string_view* allowOrigin = pre.headers.find("Access-Control-Allow-Origin");
  if (pre.allowed) {
    FUZZ_CHECK(pre.denial == gcors::PreflightDenial::None, "allowed with a denial: " + what);
    FUZZ_CHECK(allowOrigin != nullptr && (*allowOrigin == origin || (wildcard && *allowOrigin == "*")),
               "allowed preflight without the exact origin echoed: " + what + describe(pre.headers));
    FUZZ_CHECK(policy.isOriginAllowed(origin), "preflight allowed for an origin not allowed: " + what);
    FUZZ_CHECK(policy.areHeadersAllowed(requestHeaders), "preflight allowed with headers not allowed: " + what);
  } else {
    FUZZ_CHECK(allowOrigin == nullptr, "denied preflight carries Allow-Origin: " + what + describe(pre.headers));
    FUZZ_CHECK(pre.denial != gcors::PreflightDenial::None, "denied without a reason: " + what);
  }

  const gcors::HeaderFields actual = policy.actualResponseHeaders(origin);
  checkFields(actual, config.allow_credentials, what);
  const bool allowed = !origin.empty() && policy.isOriginAllowed(origin);
  const std::string_view* actualOrigin = actual.find("Access-Control-Allow-Origin");
  FUZZ_CHECK((actualOrigin != nullptr) == allowed,
             "Allow-Origin on an actual response disagrees with isOriginAllowed: " + what + describe(actual));
  if (actualOrigin != nullptr && !wildcard) {
    FUZZ_CHECK(*actualOrigin == origin, "actual response echoes another origin: " + what + describe(actual));
  }
  if (allowed && origin != "null") {
    FUZZ_CHECK(policy.isOriginAllowed(upper(origin)), "origin match is case-sensitive: " + what);
  }
  FUZZ_CHECK(policy.areHeadersAllowed(requestHeaders) == policy.areHeadersAllowed(upper(requestHeaders)),
             "header-name match is case-sensitive: " + what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4 * 1024) {
    return 0;
  }
  static const std::array<cfg::CorsConfig, 4> configs = makeConfigs();
  static const std::array<gcors::CorsPolicy, 4> policies = {gcors::CorsPolicy(configs[0]), gcors::CorsPolicy(configs[1]),
                                                            gcors::CorsPolicy(configs[2]), gcors::CorsPolicy(configs[3])};
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view origin = fuzz::nextField(rest, '\n');
  const std::string_view method = fuzz::nextField(rest, '\n');
  const std::string_view requestHeaders = fuzz::nextField(rest, '\n');
  FUZZ_CHECK(gcors::isPreflight("OPTIONS", true, true) && !gcors::isPreflight("OPTIONS", true, false) &&
                 !gcors::isPreflight("GET", true, true),
             "isPreflight");
  for (size_t i = 0; i < policies.size(); ++i) {
    checkPolicy(policies[i], configs[i], origin, method, requestHeaders);
  }
  return 0;
}
