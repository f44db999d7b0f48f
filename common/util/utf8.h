#pragma once
#include <cstddef>
#include <string_view>

namespace util {

// Length of the well-formed UTF-8 sequence starting at s[i] (1 for ASCII), or 0 if it is
// malformed: overlong forms, surrogates and code points above U+10FFFF are malformed (RFC 3629).
size_t utf8SequenceLength(std::string_view s, size_t i);

}  // namespace util
