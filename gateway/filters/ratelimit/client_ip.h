#pragma once
// Which address a request comes from: the socket peer, or, when the peer is a trusted proxy
// (gateway.trusted_proxies), the right-most X-Forwarded-For hop that is not itself trusted.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gateway {

class TrustedProxies {
 public:
  // CIDRs were validated by the config loader; unparsable entries are ignored here.
  explicit TrustedProxies(const std::vector<std::string>& cidrs);
  bool empty() const { return nets_.empty(); }
  bool contains(std::string_view ip) const;
  // The client address for rate limiting and logs.
  std::string_view clientIp(std::string_view peer, std::string_view forwardedFor) const;

 private:
  struct Net {
    std::array<uint8_t, 16> addr{};
    int prefix = 0;
    bool v6 = false;
  };
  std::vector<Net> nets_;
};

}  // namespace gateway
