#pragma once

// Format checks for config values (the "meaning" layer). Each returns an empty
// string when the value is fine, or the message to report.

#include <optional>
#include <string>
#include <string_view>

#include "common/config/app_config.h"

namespace cfg::detail {

// "host:port" / "[v6]:port"; port 1-65535. nullopt when malformed.
std::optional<HostPort> parseHostPort(std::string_view text);

// "10.0.0.0/8", "fd00::/8", or a bare address (one host). Host bits beyond
// the prefix must be zero, so a typo like "10.0.0.1/8" is caught.
std::string checkCidr(std::string_view text);

// RFC 9110 token (header names, methods).
bool isToken(std::string_view text);

// "type/subtype" or "type/*", both tokens.
bool isMediaRange(std::string_view text);

// scheme://rest with scheme among the comma-separated list, and a non-empty rest.
std::string checkUrl(std::string_view text, std::initializer_list<std::string_view> schemes);

// True when two listeners cannot both bind: same port and the same host, or
// either host is a wildcard (0.0.0.0, ::, empty).
bool listenersConflict(const HostPort& a, const HostPort& b);

}  // namespace cfg::detail
