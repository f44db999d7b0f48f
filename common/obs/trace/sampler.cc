#include "common/obs/trace/sampler.h"

#include <cmath>

namespace obs::trace {

Sampler::Sampler(double ratio) : ratio_(ratio), bound_(0), always_(false) {
  if (std::isnan(ratio) || ratio <= 0.0) {
    ratio_ = 0.0;
  } else if (ratio >= 1.0) {
    ratio_ = 1.0;
    always_ = true;
  } else {
    bound_ = static_cast<uint64_t>(ratio * 9223372036854775808.0);  // ratio * 2^63 < 2^63
  }
}

bool Sampler::sampleNewTrace(TraceId traceId) const { return always_ || (traceId.lo >> 1) < bound_; }

bool Sampler::shouldSample(const SpanContext* parent, TraceId traceId) const {
  if (parent != nullptr && parent->valid()) {
    return parent->sampled();
  }
  return sampleNewTrace(traceId);
}

}  // namespace obs::trace
