#pragma once
#include <string>
#include <string_view>

namespace http {

// CONTRACT §4: an incoming ID of 1-128 characters of [A-Za-z0-9._-] is kept.
bool isValidRequestId(std::string_view id);
// A new random 32-hex-character ID (128 bits: per-thread random state, no syscalls).
void generateRequestId(std::string& out);

}  // namespace http
