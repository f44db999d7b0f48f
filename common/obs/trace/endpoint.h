#pragma once
// The collector URL from `tracing.otlp_endpoint`. Plain HTTP only: the exporter speaks through
// the project's HTTP/1.1 client, which has no TLS. I/O-free.
#include <cstdint>
#include <string>
#include <string_view>

namespace obs::trace {

struct HttpEndpoint {
  std::string host;  // name or IP literal, without IPv6 brackets
  uint16_t port = 80;
  std::string path = "/";  // request target, query included
  std::string hostHeader;  // "host:port" as the Host header wants it (brackets for IPv6)
};

// Parses "http://host[:port][/path[?query]]" (scheme case-insensitive, "[v6]" hosts allowed).
// Refuses https (with an error saying so), other schemes, userinfo, fragments, empty hosts and
// bad ports. On failure `error` says why and `out` is untouched.
bool parseHttpEndpoint(std::string_view url, HttpEndpoint& out, std::string& error);

}  // namespace obs::trace
