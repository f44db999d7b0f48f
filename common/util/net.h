#pragma once
#include <netdb.h>

#include <string>
#include <vector>

namespace util {

// Distinct numeric addresses of a getaddrinfo result, in its order (RFC 6724 preference).
std::vector<std::string> addressStrings(const addrinfo* res);

}  // namespace util
