#include "common/config/validators.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>

namespace cfg::detail {
namespace {

bool isDigits(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

bool isHostnameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

bool isIpv4(const std::string& text) {
  in_addr addr{};
  return inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

bool isIpv6(const std::string& text) {
  in6_addr addr{};
  return inet_pton(AF_INET6, text.c_str(), &addr) == 1;
}

}  // namespace

std::optional<HostPort> parseHostPort(std::string_view text) {
  std::string host;
  std::string_view portText;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = std::string(text.substr(1, close - 1));
    if (!isIpv6(host)) {
      return std::nullopt;
    }
    portText = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return std::nullopt;
    }
    host = std::string(text.substr(0, colon));
    portText = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return std::nullopt;  // an IPv6 host needs brackets
    }
    for (char c : host) {
      if (!isHostnameChar(c)) {
        return std::nullopt;
      }
    }
    // All digits and dots must be a real IPv4 address ("300.1.1.1" is not a name).
    if (host.find_first_not_of("0123456789.") == std::string::npos && !isIpv4(host)) {
      return std::nullopt;
    }
  }
  if (!isDigits(portText) || portText.size() > 5) {
    return std::nullopt;
  }
  unsigned long port = std::stoul(std::string(portText));
  if (port < 1 || port > 65535) {
    return std::nullopt;
  }
  return HostPort{host, static_cast<uint16_t>(port)};
}

std::string checkCidr(std::string_view text) {
  size_t slash = text.find('/');
  std::string address(text.substr(0, slash));
  std::array<unsigned char, 16> bytes{};
  int bits = 0;
  if (inet_pton(AF_INET, address.c_str(), bytes.data()) == 1) {
    bits = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), bytes.data()) == 1) {
    bits = 128;
  } else {
    return "expected a CIDR like \"10.0.0.0/8\" or \"fd00::/8\", got \"" + std::string(text) + "\"";
  }
  if (slash == std::string_view::npos) {
    return "";
  }
  std::string_view lengthText = text.substr(slash + 1);
  if (!isDigits(lengthText) || lengthText.size() > 3 || std::stoi(std::string(lengthText)) > bits) {
    return "prefix length must be 0-" + std::to_string(bits) + " in \"" + std::string(text) + "\"";
  }
  int length = std::stoi(std::string(lengthText));
  for (int bit = length; bit < bits; ++bit) {
    if ((bytes[static_cast<size_t>(bit / 8)] >> (7 - bit % 8)) & 1) {
      return "\"" + std::string(text) + "\" has bits set beyond the /" + std::to_string(length) +
             " prefix (write the network address)";
    }
  }
  return "";
}

bool isToken(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && std::strchr("!#$%&'*+-.^_`|~", c) == nullptr) {
      return false;
    }
  }
  return true;
}

bool isMediaRange(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return false;
  }
  return isToken(text.substr(0, slash)) && isToken(text.substr(slash + 1));
}

std::string checkUrl(std::string_view text, std::initializer_list<std::string_view> schemes) {
  size_t sep = text.find("://");
  std::string expected;
  for (std::string_view scheme : schemes) {
    expected += expected.empty() ? "" : " or ";
    expected += std::string(scheme) + "://";
  }
  if (sep != std::string_view::npos && sep + 3 < text.size()) {
    std::string_view scheme = text.substr(0, sep);
    for (std::string_view allowed : schemes) {
      if (scheme == allowed) {
        return "";
      }
    }
  }
  return "expected a URL starting with " + expected + ", got \"" + std::string(text) + "\"";
}

bool listenersConflict(const HostPort& a, const HostPort& b) {
  if (a.port != b.port) {
    return false;
  }
  if (a.host == b.host || a.host == "::" || b.host == "::") {
    return true;  // "::" is dual-stack on Linux by default
  }
  // 0.0.0.0 covers every IPv4 address and any name, not IPv6 literals.
  auto v4Wildcard = [](const HostPort& x, const HostPort& y) {
    return x.host == "0.0.0.0" && y.host.find(':') == std::string::npos;
  };
  return v4Wildcard(a, b) || v4Wildcard(b, a);
}

}  // namespace cfg::detail
