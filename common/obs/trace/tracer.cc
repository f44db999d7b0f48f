#include "common/obs/trace/tracer.h"

#include <algorithm>

#include "common/config/app_config.h"
#include "common/obs/log.h"
#include "common/obs/trace/endpoint.h"
#include "common/obs/trace/exporter.h"

namespace obs::trace {

Tracer::Tracer(const cfg::TracingConfig& config, ExportOptions options)
    : enabled_(config.enabled), sampler_(config.sample_ratio), options_(options) {
  if (!enabled_) {
    return;
  }
  if (options_.sink) {
    sinkOnly_ = true;
    return;
  }
  HttpEndpoint endpoint;
  std::string error;
  if (!parseHttpEndpoint(config.otlp_endpoint, endpoint, error)) {
    obs::LogFields f;
    f.str("key", "tracing.otlp_endpoint").str("value", config.otlp_endpoint).str("error", error);
    obs::warn("trace export disabled: trace context is still propagated, spans are not exported", f);
    return;
  }
  options_.maxBatch = std::max<size_t>(1, options_.maxBatch);
  queue_ = std::make_unique<BoundedQueue<SpanData*>>(std::max<size_t>(2, options_.queueCapacity));
  wakeThreshold_ = std::max<size_t>(1, std::min(options_.maxBatch, queue_->capacity() / 2));
  exporter_ = std::make_unique<OtlpExporter>(std::move(endpoint), options_, config.service_name, *queue_, counters_);
  exporter_->start();
}

Tracer::~Tracer() {
  exporter_.reset();  // stops the thread (at once if shutdown() was not called)
  drainQueue();
}

void Tracer::drainQueue() {
  if (!queue_) {
    return;
  }
  SpanData* s = nullptr;
  uint64_t n = 0;
  while (queue_->tryPop(s)) {
    delete s;
    ++n;
  }
  counters_.droppedShutdown.fetch_add(n, std::memory_order_relaxed);
}

Span Tracer::makeSpan(std::string_view name, SpanKind kind, const SpanContext* parent, std::string_view tracestate,
                      uint64_t startUnixNanos) {
  if (!enabled_) {
    return Span();
  }
  const bool hasParent = parent != nullptr && parent->valid();
  SpanContext ctx;
  ctx.traceId = hasParent ? parent->traceId : newTraceId();
  ctx.spanId = newSpanId();
  ctx.flags = sampler_.shouldSample(hasParent ? parent : nullptr, ctx.traceId) ? kFlagSampled : 0;
  if (!ctx.sampled() || !exporting() || stopped_.load(std::memory_order_relaxed)) {
    return Span(ctx, kind, nullptr, nullptr);  // propagated and logged, never recorded
  }
  auto data = std::make_unique<SpanData>();
  data->context = ctx;
  data->parentSpanId = hasParent ? parent->spanId : SpanId{};
  data->kind = kind;
  data->startUnixNanos = startUnixNanos != 0 ? startUnixNanos : nowUnixNanos();
  data->name.assign(truncateUtf8(name, SpanData::kMaxNameBytes));
  if (hasParent && !tracestate.empty()) {
    data->tracestate.assign(tracestate.substr(0, kMaxTracestateLength));
  }
  return Span(ctx, kind, this, std::move(data));
}

Span Tracer::startServerSpan(std::string_view name, const ParentContext& parent, uint64_t startUnixNanos) {
  return makeSpan(name, SpanKind::Server, parent.valid() ? &parent.span : nullptr, parent.tracestate, startUnixNanos);
}

Span Tracer::startSpan(std::string_view name, SpanKind kind, const Span& parent, uint64_t startUnixNanos) {
  const SpanData* pd = parent.data();
  return makeSpan(name, kind, &parent.context(), pd != nullptr ? std::string_view(pd->tracestate) : std::string_view(),
                  startUnixNanos);
}

Span Tracer::startSpan(std::string_view name, SpanKind kind, const SpanContext& parent, std::string_view tracestate,
                       uint64_t startUnixNanos) {
  return makeSpan(name, kind, &parent, tracestate, startUnixNanos);
}

void Tracer::submit(std::unique_ptr<SpanData> span) {
  if (!span) {
    return;
  }
  if (sinkOnly_) {
    options_.sink(std::move(span));
    return;
  }
  if (!queue_) {
    return;  // cannot happen: only an exporting tracer records spans
  }
  if (stopped_.load(std::memory_order_acquire)) {
    counters_.droppedShutdown.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  SpanData* raw = span.release();
  if (!queue_->tryPush(raw)) {
    delete raw;
    counters_.droppedQueueFull.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (queue_->sizeApprox() >= wakeThreshold_) {
    exporter_->wake();
  }
}

bool Tracer::shutdown(std::chrono::milliseconds timeout) {
  if (!exporter_) {
    return true;
  }
  const bool flushed = exporter_->shutdown(timeout);
  stopped_.store(true, std::memory_order_release);
  drainQueue();  // spans that raced with the exporter's last look at the queue
  return flushed;
}

TracerStats Tracer::stats() const {
  TracerStats s;
  s.exportedSpans = counters_.exported.load(std::memory_order_relaxed);
  s.droppedQueueFull = counters_.droppedQueueFull.load(std::memory_order_relaxed);
  s.droppedExport = counters_.droppedExport.load(std::memory_order_relaxed);
  s.droppedShutdown = counters_.droppedShutdown.load(std::memory_order_relaxed);
  s.exportRequests = counters_.requests.load(std::memory_order_relaxed);
  s.exportFailures = counters_.failures.load(std::memory_order_relaxed);
  s.queuedSpans = queue_ ? queue_->sizeApprox() : 0;
  s.exporterRunning = exporter_ && exporter_->running();
  s.exporterLoopClosed = exporter_ && exporter_->loopClosed();
  return s;
}

}  // namespace obs::trace
