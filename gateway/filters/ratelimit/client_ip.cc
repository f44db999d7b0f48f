#include "gateway/filters/ratelimit/client_ip.h"

#include <arpa/inet.h>

#include <cstring>

#include "common/http/headers.h"

namespace gateway {
namespace {

// Parses an IPv4 or IPv6 address into 16 bytes (IPv4 in the first 4).
bool parseIp(std::string_view text, std::array<uint8_t, 16>& out, bool& v6) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof buf) {
    return false;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  out.fill(0);
  if (inet_pton(AF_INET, buf, out.data()) == 1) {
    v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, buf, out.data()) == 1) {
    v6 = true;
    return true;
  }
  return false;
}

}  // namespace

TrustedProxies::TrustedProxies(const std::vector<std::string>& cidrs) {
  for (const std::string& c : cidrs) {
    const size_t slash = c.find('/');
    Net n;
    if (!parseIp(std::string_view(c).substr(0, slash), n.addr, n.v6)) {
      continue;
    }
    n.prefix = slash == std::string::npos ? (n.v6 ? 128 : 32) : std::atoi(c.c_str() + slash + 1);
    nets_.push_back(n);
  }
}

bool TrustedProxies::contains(std::string_view ip) const {
  std::array<uint8_t, 16> a{};
  bool v6 = false;
  if (nets_.empty() || !parseIp(http::trim(ip), a, v6)) {
    return false;
  }
  for (const Net& n : nets_) {
    if (n.v6 != v6) {
      continue;
    }
    int bits = n.prefix;
    bool match = true;
    for (int i = 0; bits > 0 && match; ++i, bits -= 8) {
      const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
      match = (a[i] & mask) == (n.addr[i] & mask);
    }
    if (match) {
      return true;
    }
  }
  return false;
}

std::string_view TrustedProxies::clientIp(std::string_view peer, std::string_view forwardedFor) const {
  if (forwardedFor.empty() || !contains(peer)) {
    return peer;
  }
  std::string_view hop;
  while (!forwardedFor.empty()) {
    const size_t comma = forwardedFor.rfind(',');
    hop = http::trim(comma == std::string_view::npos ? forwardedFor : forwardedFor.substr(comma + 1));
    if (!contains(hop)) {
      return hop;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    forwardedFor = forwardedFor.substr(0, comma);
  }
  return hop.empty() ? peer : hop;  // every hop trusted: the left-most one is the client
}

}  // namespace gateway
