#include "common/obs/trace/endpoint.h"

#include <cctype>

namespace obs::trace {
namespace {

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) {
      return false;
    }
  }
  return true;
}

bool validHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

}  // namespace

bool parseHttpEndpoint(std::string_view url, HttpEndpoint& out, std::string& error) {
  if (startsWithNoCase(url, "https://")) {
    error = "https is not supported (the exporter has no TLS); use an http:// collector address";
    return false;
  }
  if (!startsWithNoCase(url, "http://")) {
    error = "must start with http://";
    return false;
  }
  std::string_view rest = url.substr(7);
  if (rest.find('#') != std::string_view::npos) {
    error = "a fragment (#) has no meaning in an endpoint";
    return false;
  }
  const size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (path[0] == '?') {
    path.insert(path.begin(), '/');
  }
  for (char c : path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
      error = "the path contains spaces or control characters";
      return false;
    }
  }
  if (authority.find('@') != std::string_view::npos) {
    error = "credentials in the URL are not supported";
    return false;
  }
  HttpEndpoint ep;
  std::string_view portText;
  bool ipv6 = false;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) {
      error = "bad IPv6 host";
      return false;
    }
    ep.host = std::string(authority.substr(1, close - 1));
    for (char c : ep.host) {
      if (std::isxdigit(static_cast<unsigned char>(c)) == 0 && c != ':' && c != '.') {
        error = "bad IPv6 host";
        return false;
      }
    }
    ipv6 = true;
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        error = "unexpected characters after the IPv6 host";
        return false;
      }
      portText = after.substr(1);
      if (portText.empty()) {
        error = "empty port";
        return false;
      }
    }
  } else {
    const size_t colon = authority.find(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      portText = authority.substr(colon + 1);
      if (portText.empty()) {
        error = "empty port";
        return false;
      }
    }
    for (char c : ep.host) {
      if (!validHostChar(c)) {
        error = "bad host name";
        return false;
      }
    }
  }
  if (ep.host.empty()) {
    error = "empty host";
    return false;
  }
  if (!portText.empty()) {
    if (portText.size() > 5) {
      error = "bad port";
      return false;
    }
    uint32_t port = 0;
    for (char c : portText) {
      if (c < '0' || c > '9') {
        error = "bad port";
        return false;
      }
      port = port * 10 + static_cast<uint32_t>(c - '0');
    }
    if (port == 0 || port > 65535) {
      error = "port out of range";
      return false;
    }
    ep.port = static_cast<uint16_t>(port);
  }
  ep.path = std::move(path);
  ep.hostHeader = (ipv6 ? "[" + ep.host + "]" : ep.host) + ":" + std::to_string(ep.port);
  out = std::move(ep);
  return true;
}

}  // namespace obs::trace
