#pragma once
// W3C Trace Context level 1 (https://www.w3.org/TR/trace-context/): the span context a request
// carries, `traceparent` / `tracestate` parsing and formatting. Anything malformed is treated as
// absent (the request starts a new trace); nothing here allocates or throws.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/obs/trace/ids.h"

namespace obs::trace {

inline constexpr uint8_t kFlagSampled = 0x01;
inline constexpr size_t kTraceparentLength = 55;     // "00-" 32 "-" 16 "-" 2
inline constexpr size_t kMaxTracestateLength = 512;  // longer values are dropped, not truncated
inline constexpr size_t kMaxTracestateMembers = 32;

struct SpanContext {
  TraceId traceId;
  SpanId spanId;
  uint8_t flags = 0;  // trace-flags; only the sampled bit is interpreted

  bool valid() const { return traceId.valid() && spanId.valid(); }
  bool sampled() const { return (flags & kFlagSampled) != 0; }
};

// Parses a `traceparent` value (surrounding spaces/tabs ignored). Version 00 must be exactly 55
// chars; a higher version (not ff) may carry more fields after a '-' and is read with the 00
// layout (the spec's forward-compatibility rule). Hex must be lowercase; all-zero trace-id or
// parent-id is invalid. On success `out.spanId` is the caller's span (our parent). Returns false
// and leaves `out` untouched when the value is invalid.
bool parseTraceparent(std::string_view value, SpanContext& out);

// "00-<trace-id>-<span-id>-<flags>": the header we send for a call made inside `context`. We
// always send version 00, whatever version we received, and only the flag bits we know.
struct TraceparentText {
  char text[kTraceparentLength + 1];
  std::string_view view() const { return {text, kTraceparentLength}; }
};
TraceparentText formatTraceparent(const SpanContext& context);

// True when `value` is a well-formed tracestate list: at most 512 chars and 32 members, each
// `key=value` per the spec's grammar (simple or tenant@system keys, printable values), no
// duplicate keys; empty members (",,") and spaces/tabs around members are allowed.
bool validTracestate(std::string_view value);

// What an incoming request says about its trace.
struct ParentContext {
  SpanContext span;             // invalid: no usable traceparent; start a new trace
  std::string_view tracestate;  // points into the caller's header value; empty when absent,
                                // invalid, or dropped along with an invalid traceparent
  bool valid() const { return span.valid(); }
};

// Reads the two headers (pass empty views for absent ones). A tracestate is only kept next to a
// valid traceparent, as the spec requires. Several `tracestate` header lines must be joined with
// ',' by the caller first; several `traceparent` lines joined that way fail to parse (invalid).
ParentContext extractParent(std::string_view traceparent, std::string_view tracestate);

}  // namespace obs::trace
