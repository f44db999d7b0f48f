#pragma once
// Parent-based sampling with a trace-id ratio for new traces, as OpenTelemetry's
// ParentBased(TraceIdRatioBased(ratio)): a parent's sampled flag is followed either way; without
// a parent the decision is a pure function of the trace id, so every service configured with the
// same ratio makes the same choice for the same trace. I/O-free.
#include <cstdint>

#include "common/obs/trace/context.h"

namespace obs::trace {

class Sampler {
 public:
  // `ratio` <= 0 (or NaN) samples nothing, >= 1 everything.
  explicit Sampler(double ratio);

  // The decision for a trace started here: the trace id's low 64 bits (bytes 8..15), shifted
  // right by one, compared against ratio * 2^63 (the same arithmetic as OpenTelemetry's Go and
  // Java TraceIdRatioBased).
  bool sampleNewTrace(TraceId traceId) const;

  // The decision for a span: follows a valid parent's sampled flag, otherwise sampleNewTrace.
  bool shouldSample(const SpanContext* parent, TraceId traceId) const;

  double ratio() const { return ratio_; }

 private:
  double ratio_;
  uint64_t bound_;  // sample when (lo >> 1) < bound_
  bool always_;
};

}  // namespace obs::trace
