#pragma once
// ETags the gateway generates for cacheable responses that lack one, and If-None-Match
// evaluation (RFC 9110 §8.8.3, §13.1.2).
//
// The tag is '"' + 16 lowercase hex digits of XXH64(body, seed 0) + '"'. XXH64 runs at memory
// speed and is incremental, so the proxy can hash a body as it streams past instead of holding
// it. A 64-bit non-cryptographic hash is enough here: the tag only has to change when the body
// of one URL changes, and nobody gains from forging a collision against their own cache entry.
// It is not SHA-1 because that costs ~10x the CPU per byte for no benefit in this role.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/util/xxh64.h"

namespace gateway::cache {

using util::Xxh64;
using util::xxh64;

// '"' + 16 hex digits + '"'.
std::string etagFromHash(uint64_t hash);
// The strong ETag of a whole body.
std::string makeEtag(std::string_view body);

// True for an entity-tag: [W/] '"' *etagc '"', etagc being any visible ASCII byte but '"', or
// a byte >= 0x80 (obs-text).
bool isValidEtag(std::string_view etag);

// Weak comparison (RFC 9110 §8.8.3.2): the opaque tags are equal, "W/" ignored on both sides.
// False when either is not a valid entity-tag.
bool weakEtagMatch(std::string_view a, std::string_view b);

// Evaluates an If-None-Match value against the current representation's ETag: true (answer
// 304 to GET/HEAD) when it is "*" or a list holding a tag that weakly matches `etag`. Several
// If-None-Match lines are joined with ", " by the caller. A malformed value gives false: the
// conservative answer is the full response, never a 304 the client may not be able to use. An
// empty `etag` (no tag on the representation) matches only "*".
bool ifNoneMatchMatches(std::string_view ifNoneMatch, std::string_view etag);

}  // namespace gateway::cache
