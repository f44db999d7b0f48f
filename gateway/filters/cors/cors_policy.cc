#include "gateway/filters/cors/cors_policy.h"

#include <charconv>
#include <optional>

#include "common/http/headers.h"

namespace gateway::cors {
namespace {

constexpr std::string_view kAllowOrigin = "Access-Control-Allow-Origin";
constexpr std::string_view kAllowMethods = "Access-Control-Allow-Methods";
constexpr std::string_view kAllowHeaders = "Access-Control-Allow-Headers";
constexpr std::string_view kAllowCredentials = "Access-Control-Allow-Credentials";
constexpr std::string_view kExposeHeaders = "Access-Control-Expose-Headers";
constexpr std::string_view kMaxAge = "Access-Control-Max-Age";
constexpr std::string_view kVary = "Vary";
constexpr std::string_view kPreflightVary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 9110 §5.6.2 tchar.
bool isTokenChar(char c) {
  if (isAlpha(c) || isDigit(c)) {
    return true;
  }
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool isToken(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!isTokenChar(c)) {
      return false;
    }
  }
  return true;
}

// Views into the origin string; port 0 = absent or the scheme's default.
struct OriginView {
  std::string_view scheme;
  std::string_view host;
  uint32_t port = 0;
};

uint32_t defaultPort(std::string_view scheme) {
  if (http::iequals(scheme, "http")) {
    return 80;
  }
  if (http::iequals(scheme, "https")) {
    return 443;
  }
  return 0;
}

// Accepts exactly the serialization of a tuple origin (RFC 6454 §6.2), leniently about case and
// an explicit default port. No path, query, userinfo or surrounding whitespace.
std::optional<OriginView> parseOrigin(std::string_view s) {
  size_t sep = s.find("://");
  if (sep == std::string_view::npos || sep == 0) {
    return std::nullopt;
  }
  OriginView out;
  out.scheme = s.substr(0, sep);
  if (!isAlpha(out.scheme[0])) {
    return std::nullopt;
  }
  for (char c : out.scheme) {
    if (!(isAlpha(c) || isDigit(c) || c == '+' || c == '-' || c == '.')) {
      return std::nullopt;
    }
  }
  std::string_view rest = s.substr(sep + 3);
  std::string_view portText;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close < 2) {
      return std::nullopt;
    }
    out.host = rest.substr(0, close + 1);
    for (char c : out.host.substr(1, out.host.size() - 2)) {
      if (!(isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.')) {
        return std::nullopt;
      }
    }
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return std::nullopt;
      }
      portText = rest.substr(1);
      if (portText.empty()) {
        return std::nullopt;
      }
    }
  } else {
    size_t colon = rest.find(':');
    out.host = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      portText = rest.substr(colon + 1);
      if (portText.empty()) {
        return std::nullopt;
      }
    }
    if (out.host.empty()) {
      return std::nullopt;
    }
    for (char c : out.host) {
      if (!(isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_')) {
        return std::nullopt;
      }
    }
  }
  if (!portText.empty()) {
    if (portText.size() > 5) {
      return std::nullopt;
    }
    uint32_t port = 0;
    for (char c : portText) {
      if (!isDigit(c)) {
        return std::nullopt;
      }
      port = port * 10 + static_cast<uint32_t>(c - '0');
    }
    if (port == 0 || port > 65535) {
      return std::nullopt;
    }
    out.port = port;
  }
  if (out.port == defaultPort(out.scheme)) {
    out.port = 0;
  }
  return out;
}

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

std::string joinList(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) {
      out.append(", ");
    }
    out.append(item);
  }
  return out;
}

// Calls fn(name) for every non-empty element of a comma list; stops when fn returns false.
template <class Fn>
bool forEachListItem(std::string_view list, Fn fn) {
  while (true) {
    size_t comma = list.find(',');
    std::string_view item = http::trim(list.substr(0, comma));
    if (!item.empty() && !fn(item)) {
      return false;
    }
    if (comma == std::string_view::npos) {
      return true;
    }
    list.remove_prefix(comma + 1);
  }
}

}  // namespace

const std::string_view* HeaderFields::find(std::string_view name) const {
  for (size_t i = 0; i < size_; ++i) {
    if (http::iequals(items_[i].name, name)) {
      return &items_[i].value;
    }
  }
  return nullptr;
}

std::string_view denialName(PreflightDenial denial) {
  switch (denial) {
    case PreflightDenial::None:
      return "none";
    case PreflightDenial::Origin:
      return "origin";
    case PreflightDenial::Method:
      return "method";
    case PreflightDenial::Headers:
      return "headers";
  }
  return "unknown";
}

bool isPreflight(std::string_view method, bool hasOrigin, bool hasRequestMethod) {
  return method == "OPTIONS" && hasOrigin && hasRequestMethod;
}

CorsPolicy::CorsPolicy(const cfg::CorsConfig& config) : credentials_(config.allow_credentials) {
  for (const std::string& origin : config.allow_origins) {
    if (origin == "*") {
      // Never "*" with credentials: see the header comment.
      anyOrigin_ = anyOrigin_ || !credentials_;
      continue;
    }
    ParsedOrigin parsed;
    if (origin == "null") {
      parsed.isNull = true;
    } else if (std::optional<OriginView> view = parseOrigin(origin)) {
      parsed.scheme = toLower(view->scheme);
      parsed.host = toLower(view->host);
      parsed.port = view->port;
    } else {
      // Not an origin: it can never match. The loader is the place to reject it.
      continue;
    }
    origins_.push_back(std::move(parsed));
  }
  for (const std::string& method : config.allow_methods) {
    if (method == "*") {
      anyMethod_ = true;
    } else {
      methods_.push_back(method);
    }
  }
  for (const std::string& header : config.allow_headers) {
    if (header == "*") {
      anyHeader_ = true;
    } else {
      headers_.push_back(header);
    }
  }
  allowMethodsValue_ = joinList(methods_);
  allowHeadersValue_ = joinList(headers_);
  exposeHeadersValue_ = joinList(config.expose_headers);
  maxAgeValue_ = std::to_string(config.max_age.count() / 1000);
}

bool CorsPolicy::isOriginAllowed(std::string_view origin) const {
  if (anyOrigin_) {
    return !origin.empty();
  }
  if (origin == "null") {
    for (const ParsedOrigin& allowed : origins_) {
      if (allowed.isNull) {
        return true;
      }
    }
    return false;
  }
  std::optional<OriginView> view = parseOrigin(origin);
  if (!view) {
    return false;
  }
  for (const ParsedOrigin& allowed : origins_) {
    if (!allowed.isNull && allowed.port == view->port && http::iequals(allowed.host, view->host) &&
        http::iequals(allowed.scheme, view->scheme)) {
      return true;
    }
  }
  return false;
}

bool CorsPolicy::isMethodAllowed(std::string_view method) const {
  if (!isToken(method)) {
    return false;
  }
  if (anyMethod_) {
    return true;
  }
  for (const std::string& allowed : methods_) {
    if (allowed == method) {
      return true;
    }
  }
  return false;
}

bool CorsPolicy::areHeadersAllowed(std::string_view requestHeaders) const {
  return forEachListItem(requestHeaders, [this](std::string_view name) {
    if (!isToken(name)) {
      return false;
    }
    if (anyHeader_) {
      return true;
    }
    for (const std::string& allowed : headers_) {
      if (http::iequals(allowed, name)) {
        return true;
      }
    }
    return false;
  });
}

PreflightResult CorsPolicy::evaluatePreflight(std::string_view origin, std::string_view requestMethod,
                                              std::string_view requestHeaders) const {
  PreflightResult result;
  result.headers.add(kVary, kPreflightVary);
  if (origin.empty() || !isOriginAllowed(origin)) {
    result.denial = PreflightDenial::Origin;
    return result;
  }
  requestMethod = http::trim(requestMethod);
  if (requestMethod.empty() || !isMethodAllowed(requestMethod)) {
    result.denial = PreflightDenial::Method;
    return result;
  }
  if (!areHeadersAllowed(requestHeaders)) {
    result.denial = PreflightDenial::Headers;
    return result;
  }
  result.allowed = true;
  result.headers.add(kAllowOrigin, anyOrigin_ ? std::string_view("*") : origin);
  result.headers.add(kAllowMethods, anyMethod_ ? requestMethod : std::string_view(allowMethodsValue_));
  std::string_view allowHeaders = anyHeader_ ? http::trim(requestHeaders) : std::string_view(allowHeadersValue_);
  if (!allowHeaders.empty()) {
    result.headers.add(kAllowHeaders, allowHeaders);
  }
  result.headers.add(kMaxAge, maxAgeValue_);
  if (credentials_) {
    result.headers.add(kAllowCredentials, "true");
  }
  return result;
}

HeaderFields CorsPolicy::actualResponseHeaders(std::string_view origin) const {
  HeaderFields fields;
  if (anyOrigin_) {
    // The answer is the same for every origin, so caches need no Vary.
    if (!origin.empty()) {
      fields.add(kAllowOrigin, "*");
      if (!exposeHeadersValue_.empty()) {
        fields.add(kExposeHeaders, exposeHeadersValue_);
      }
    }
    return fields;
  }
  fields.add(kVary, "Origin");
  if (origin.empty() || !isOriginAllowed(origin)) {
    return fields;
  }
  fields.add(kAllowOrigin, origin);
  if (credentials_) {
    fields.add(kAllowCredentials, "true");
  }
  if (!exposeHeadersValue_.empty()) {
    fields.add(kExposeHeaders, exposeHeadersValue_);
  }
  return fields;
}

}  // namespace gateway::cors
