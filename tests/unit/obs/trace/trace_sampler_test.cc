// Sampling (common/obs/trace/sampler.h and Tracer's decisions): ratio 0 and 1, the 10 % ratio
// over many random ids, agreement between samplers (the decision depends on the trace id only),
// and parent-based behaviour through the Tracer.

#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "common/config/app_config.h"
#include "common/obs/trace/context.h"
#include "common/obs/trace/ids.h"
#include "common/obs/trace/sampler.h"
#include "common/obs/trace/tracer.h"

using namespace obs::trace;

namespace {

// A tracer that makes and propagates contexts but records nothing and starts no thread: the
// endpoint is https (export disabled with a warning), which is what these tests need.
cfg::TracingConfig contextOnlyConfig(double ratio) {
  cfg::TracingConfig c;
  c.enabled = true;
  c.sample_ratio = ratio;
  c.otlp_endpoint = "https://collector.invalid/v1/traces";
  c.service_name = "sampler-test";
  return c;
}

}  // namespace

TEST_CASE("trace: sampler ratio 0 samples nothing, ratio 1 everything") {
  const Sampler never(0.0);
  const Sampler always(1.0);
  const Sampler nan(std::nan(""));
  const Sampler above(7.0);
  const Sampler below(-1.0);
  for (int i = 0; i < 20000; ++i) {
    const TraceId id = newTraceId();
    CHECK_FALSE(never.sampleNewTrace(id));
    CHECK_FALSE(nan.sampleNewTrace(id));
    CHECK_FALSE(below.sampleNewTrace(id));
    CHECK(always.sampleNewTrace(id));
    CHECK(above.sampleNewTrace(id));
  }
  // Extremes of the low bits.
  CHECK(Sampler(1e-9).sampleNewTrace(TraceId{1, 0}));
  CHECK_FALSE(Sampler(0.999999).sampleNewTrace(TraceId{1, ~0ULL}));
  CHECK(Sampler(0.5).sampleNewTrace(TraceId{0, 0x7FFFFFFFFFFFFFFEULL}));        // (lo >> 1) just below 2^62
  CHECK_FALSE(Sampler(0.5).sampleNewTrace(TraceId{0, 0x8000000000000000ULL}));  // == 2^62
}

TEST_CASE("trace: sampler ratio 0.1 samples about 10 % of random trace ids") {
  const Sampler s(0.1);
  constexpr int kIds = 200000;
  int sampled = 0;
  for (int i = 0; i < kIds; ++i) {
    sampled += s.sampleNewTrace(newTraceId()) ? 1 : 0;
  }
  // Binomial(200000, 0.1): sd = 134; +/- 1000 is beyond 7 sd.
  CHECK(sampled > 19000);
  CHECK(sampled < 21000);
}

TEST_CASE("trace: sampling a new trace depends on the trace id only (services agree)") {
  const Sampler a(0.25);
  const Sampler b(0.25);
  const Sampler wider(0.5);
  for (int i = 0; i < 20000; ++i) {
    const TraceId id = newTraceId();
    const bool d = a.sampleNewTrace(id);
    CHECK(d == b.sampleNewTrace(id));
    CHECK(d == a.sampleNewTrace(id));
    if (d) {
      CHECK(wider.sampleNewTrace(id));  // a trace kept at 25 % is kept at 50 %
    }
    // The high half plays no part (OpenTelemetry reads bytes 8..15).
    CHECK(d == a.sampleNewTrace(TraceId{id.hi ^ 0xFFFFULL, id.lo}));
  }
}

TEST_CASE("trace: sampler is parent-based") {
  SpanContext sampledParent{newTraceId(), newSpanId(), kFlagSampled};
  SpanContext unsampledParent{newTraceId(), newSpanId(), 0};
  SpanContext invalidParent;
  invalidParent.flags = kFlagSampled;
  const Sampler never(0.0);
  const Sampler always(1.0);
  for (int i = 0; i < 100; ++i) {
    const TraceId id = newTraceId();
    CHECK(never.shouldSample(&sampledParent, id));
    CHECK_FALSE(always.shouldSample(&unsampledParent, id));
    CHECK_FALSE(never.shouldSample(&invalidParent, id));  // invalid parent: ratio decides
    CHECK(always.shouldSample(&invalidParent, id));
    CHECK(always.shouldSample(nullptr, id));
    CHECK_FALSE(never.shouldSample(nullptr, id));
  }
}

TEST_CASE("trace: tracer follows the incoming parent and samples new traces by ratio") {
  Tracer never(contextOnlyConfig(0.0));
  Tracer always(contextOnlyConfig(1.0));
  CHECK(never.enabled());
  CHECK_FALSE(never.exporting());  // https endpoint: no thread, nothing recorded

  const std::string sampledHeader = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const std::string unsampledHeader = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

  ParentContext parent = extractParent(sampledHeader, "rojo=1");
  Span s = never.startServerSpan("GET", parent);
  CHECK(s.context().valid());
  CHECK(s.context().sampled());  // a sampled parent wins over ratio 0
  CHECK(s.context().traceId == parent.span.traceId);
  CHECK_FALSE(s.context().spanId == parent.span.spanId);
  CHECK_FALSE(s.recording());
  CHECK(formatTraceparent(s.context()).view().substr(0, 36) == sampledHeader.substr(0, 36));
  CHECK(formatTraceparent(s.context()).view().substr(52) == "-01");

  parent = extractParent(unsampledHeader, "");
  Span u = always.startServerSpan("GET", parent);
  CHECK_FALSE(u.context().sampled());  // an unsampled parent wins over ratio 1
  CHECK(u.context().traceId == parent.span.traceId);

  // No (or an invalid) parent: a new trace, decided by the ratio.
  Span r1 = always.startServerSpan("GET", extractParent("garbage", "a=1"));
  CHECK(r1.context().valid());
  CHECK(r1.context().sampled());
  Span r0 = never.startServerSpan("GET", ParentContext{});
  CHECK(r0.context().valid());
  CHECK_FALSE(r0.context().sampled());

  // Children inherit the trace and the decision.
  Span child = always.startSpan("SELECT", SpanKind::Client, r1);
  CHECK(child.context().traceId == r1.context().traceId);
  CHECK(child.context().sampled());
  Span child0 = always.startSpan("SELECT", SpanKind::Client, u);
  CHECK_FALSE(child0.context().sampled());

  // Over many requests without a parent the tracer samples ~ratio.
  Tracer tenth(contextOnlyConfig(0.1));
  int sampled = 0;
  for (int i = 0; i < 50000; ++i) {
    sampled += tenth.startServerSpan("GET", ParentContext{}).context().sampled() ? 1 : 0;
  }
  CHECK(sampled > 4500);  // sd = 67
  CHECK(sampled < 5500);
}

TEST_CASE("trace: tracing disabled makes empty spans and no thread") {
  cfg::TracingConfig c = contextOnlyConfig(1.0);
  c.enabled = false;
  c.otlp_endpoint = "http://127.0.0.1:1/v1/traces";
  Tracer t(c);
  CHECK_FALSE(t.enabled());
  CHECK_FALSE(t.exporting());
  Span s = t.startServerSpan("GET", extractParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""));
  CHECK_FALSE(s.context().valid());  // callers forward the incoming headers untouched
  CHECK_FALSE(s.recording());
  s.setString("url.path", "/x").setInt("http.response.status_code", 200);
  s.end();
  CHECK(t.shutdown(std::chrono::milliseconds(10)));
  CHECK(t.stats().droppedSpans() == 0);
  CHECK_FALSE(t.stats().exporterRunning);
}
