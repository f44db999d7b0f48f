#pragma once
// ETags of upstream_app's article representations and If-None-Match evaluation (RFC 9110 §8.8.3,
// §13.1.2). Pure functions, unit-tested in tests/unit/app/etag_test.cc.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/util/xxh64.h"

namespace app::routes {

// A strong ETag for a representation: the quoted XXH64 (16 lowercase hex digits) of its exact
// bytes. Derived from the body (not from updated_at) so it changes whenever the bytes do and only
// then, whichever worker, cache entry or database row produced them.
std::string strongEtag(std::string_view body);

// XXH64 (common/util/xxh64.h; test vectors in tests/unit/app/json_output_test.cc).
using util::xxh64;

// True when one If-None-Match field value matches `etag` with the weak comparison that RFC 9110
// prescribes for If-None-Match (W/ prefixes ignored), or is "*". Malformed members are skipped.
bool ifNoneMatchMatches(std::string_view fieldValue, std::string_view etag);

}  // namespace app::routes
