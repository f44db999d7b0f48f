#pragma once
// Trace and span identifiers (W3C Trace Context: 16-byte trace-id, 8-byte parent-id), their
// lowercase-hex text, and a fast generator: one xoshiro256** state per thread, seeded once from
// the OS, so making an ID on the request path is a few arithmetic instructions and no syscall.
#include <cstdint>
#include <string_view>

namespace obs::trace {

// 128 bits as two big-endian halves: the hex text is `hi` then `lo`, so `lo` holds bytes 8..15,
// the part OpenTelemetry's TraceIdRatioBased sampler reads.
struct TraceId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool valid() const { return (hi | lo) != 0; }  // all zeros is the spec's invalid value
  friend bool operator==(const TraceId&, const TraceId&) = default;
};

struct SpanId {
  uint64_t value = 0;
  bool valid() const { return value != 0; }
  friend bool operator==(const SpanId&, const SpanId&) = default;
};

// Fixed-size text buffers: formatting an ID never allocates.
struct TraceIdHex {
  char text[33];
  std::string_view view() const { return {text, 32}; }
};
struct SpanIdHex {
  char text[17];
  std::string_view view() const { return {text, 16}; }
};

TraceIdHex toHex(TraceId id);
SpanIdHex toHex(SpanId id);
// Writes exactly 32 (trace) or 16 (span) lowercase hex chars at `out`, no terminator.
void writeHex(TraceId id, char* out);
void writeHex(SpanId id, char* out);

// Parses exactly 32 / 16 lowercase hex chars (uppercase is refused, as W3C requires). Does not
// reject all-zero IDs: callers decide what an invalid ID means for them.
bool parseHex(std::string_view text, TraceId& out);
bool parseHex(std::string_view text, SpanId& out);

// Fresh random IDs, never the all-zero value. Thread-safe (per-thread generator state).
TraceId newTraceId();
SpanId newSpanId();

// Wall-clock time in Unix nanoseconds (CLOCK_REALTIME through the vDSO: no syscall), the time
// base OTLP spans carry.
uint64_t nowUnixNanos();

}  // namespace obs::trace
