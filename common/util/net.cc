#include "common/util/net.h"

#include <uv.h>

#include <algorithm>

namespace util {

std::vector<std::string> addressStrings(const addrinfo* res) {
  std::vector<std::string> out;
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {0};
    if (a->ai_family == AF_INET) {
      uv_ip4_name(reinterpret_cast<const sockaddr_in*>(a->ai_addr), buf, sizeof(buf));
    } else if (a->ai_family == AF_INET6) {
      uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(a->ai_addr), buf, sizeof(buf));
    } else {
      continue;
    }
    if (buf[0] != '\0' && std::find(out.begin(), out.end(), buf) == out.end()) {
      out.emplace_back(buf);
    }
  }
  return out;
}

}  // namespace util
