#pragma once
// OpenTelemetry semantic-convention attribute names used by the gateway and the app (HTTP and
// database conventions, stable v1.2x names), and the HTTP status rule for span status.
#include <string_view>

#include "common/obs/trace/span.h"

namespace obs::trace {
namespace attr {

inline constexpr std::string_view kHttpRequestMethod = "http.request.method";
inline constexpr std::string_view kHttpResponseStatusCode = "http.response.status_code";
inline constexpr std::string_view kHttpRoute = "http.route";  // the template, never the raw path
inline constexpr std::string_view kUrlPath = "url.path";
inline constexpr std::string_view kUrlScheme = "url.scheme";
inline constexpr std::string_view kUrlFull = "url.full";  // client spans
inline constexpr std::string_view kServerAddress = "server.address";
inline constexpr std::string_view kServerPort = "server.port";
inline constexpr std::string_view kClientAddress = "client.address";
inline constexpr std::string_view kNetworkPeerAddress = "network.peer.address";
inline constexpr std::string_view kNetworkPeerPort = "network.peer.port";
inline constexpr std::string_view kUserAgentOriginal = "user_agent.original";
// Database client spans (semantic conventions v1.26+, "db.*" stable names).
inline constexpr std::string_view kDbSystem = "db.system";                 // "postgresql", "redis"
inline constexpr std::string_view kDbOperationName = "db.operation.name";  // "SELECT", "EVAL"
inline constexpr std::string_view kDbQueryText = "db.query.text";  // $1 placeholders / "?", never values
inline constexpr std::string_view kDbNamespace = "db.namespace";   // database name; Redis: db index
inline constexpr std::string_view kDbResponseStatusCode = "db.response.status_code";  // SQLSTATE, Redis error prefix
// Their pre-1.26 names, for collectors that still map them.
inline constexpr std::string_view kDbStatement = "db.statement";
inline constexpr std::string_view kDbOperation = "db.operation";
inline constexpr std::string_view kErrorType = "error.type";

}  // namespace attr

// Sets http.response.status_code and the span status the HTTP conventions ask for: a SERVER
// span is an error on 5xx only (a 4xx is the client's problem), a CLIENT span on 4xx and 5xx;
// error.type is then the status code. Status 0 (no response) leaves both untouched.
inline void setHttpResponseStatus(Span& span, int status) {
  if (!span.recording() || status <= 0) {
    return;
  }
  span.setInt(attr::kHttpResponseStatusCode, status);
  const bool error = status >= 500 || (span.kind() == SpanKind::Client && status >= 400);
  if (error) {
    char code[4] = {static_cast<char>('0' + (status / 100) % 10), static_cast<char>('0' + (status / 10) % 10),
                    static_cast<char>('0' + status % 10), '\0'};
    span.setString(attr::kErrorType, std::string_view(code, 3));
    span.setError();
  }
}

// A request that ended without a response (upstream timeout, reset, connect failure): status
// Error and error.type naming the failure (e.g. "timeout", "connect_failure").
inline void setSpanFailure(Span& span, std::string_view errorType) {
  if (!span.recording()) {
    return;
  }
  span.setString(attr::kErrorType, errorType);
  span.setError(errorType);
}

}  // namespace obs::trace
