#pragma once
// The tracer: one per process, built from `cfg::TracingConfig`, shared by every worker thread.
// It makes spans (ids, parent-based sampling), and hands finished sampled spans to a bounded
// lock-free queue drained by the OTLP/HTTP exporter thread (exporter.h), which runs its own
// libuv loop, never a request loop.
//
// Per request (gateway worker thread):
//   ParentContext parent = extractParent(headerOrEmpty("traceparent"), headerOrEmpty("tracestate"));
//   Span span = tracer.startServerSpan("GET", parent);   // no allocation unless sampled
//   span.setString(attr::kHttpRequestMethod, "GET").setString(attr::kUrlPath, path);
//   ... upstream request: traceparent = formatTraceparent(span.context()).view(),
//       tracestate = parent.tracestate (send only when non-empty) ...
//   setHttpResponseStatus(span, 502);  // semconv.h: status code attribute, Error on 5xx
//   span.end();                        // enqueue (or drop and count if the queue is full)
// At exit (after the workers stopped): tracer.shutdown(timeout) flushes what is queued.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "common/obs/trace/context.h"
#include "common/obs/trace/sampler.h"
#include "common/obs/trace/span.h"
#include "common/obs/trace/span_queue.h"

namespace cfg {
struct TracingConfig;
}

namespace obs::trace {

class OtlpExporter;

// Export tuning. Not in the YAML contract: the defaults are the product; tests shrink them.
struct ExportOptions {
  size_t queueCapacity = 2048;                 // finished spans waiting for export (rounded up to a power of 2)
  size_t maxBatch = 512;                       // spans per POST; a queue this full wakes the exporter at once
  std::chrono::milliseconds maxDelay{1000};    // a span waits at most about this long to be sent
  int maxAttempts = 5;                         // POSTs per batch, the first included
  std::chrono::milliseconds backoffBase{250};  // full-jitter exponential backoff between tries
  std::chrono::milliseconds backoffMax{5000};
  // A batch that failed is given up instead of retried while the queue is fuller than this
  // fraction of its capacity: fresh spans matter more than old ones during an outage.
  double dropWatermark = 0.75;
  std::chrono::milliseconds connectTimeout{1000};
  std::chrono::milliseconds requestTimeout{10000};  // write and response timeouts of one POST
  // Tests: when set (and tracing is enabled), sampled spans are recorded and each ended one is
  // handed to this function, on the thread that ended it, instead of the export queue; no
  // exporter thread starts and otlp_endpoint is not used.
  std::function<void(std::unique_ptr<SpanData>)> sink;
};

// Counts since start, for metrics. All spans the tracer recorded end up in exactly one of
// exportedSpans or the dropped* counters once shutdown() finished.
struct TracerStats {
  uint64_t exportedSpans = 0;
  uint64_t droppedQueueFull = 0;  // the queue was full when the span ended
  uint64_t droppedExport = 0;     // batches given up: attempts used, queue over the watermark,
                                  // refused by the collector (4xx, partialSuccess.rejectedSpans)
  uint64_t droppedShutdown = 0;   // still queued or in flight when shutdown's timeout ran out
  uint64_t exportRequests = 0;    // POSTs the collector accepted (2xx)
  uint64_t exportFailures = 0;    // POST attempts that failed (every retry counts)
  uint64_t queuedSpans = 0;       // waiting now (approximate)
  bool exporterRunning = false;
  bool exporterLoopClosed = false;  // the exporter thread ended with uv_loop_close() == 0

  uint64_t droppedSpans() const { return droppedQueueFull + droppedExport + droppedShutdown; }
};

// Counters shared by the tracer (producers) and the exporter thread.
struct ExportCounters {
  std::atomic<uint64_t> exported{0};
  std::atomic<uint64_t> droppedQueueFull{0};
  std::atomic<uint64_t> droppedExport{0};
  std::atomic<uint64_t> droppedShutdown{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> failures{0};
};

class Tracer {
 public:
  // Tracing disabled: no thread, every span is empty (invalid context); callers forward the
  // incoming trace headers untouched. Enabled with an endpoint that is not plain http:// (https,
  // malformed, empty): a startup warning, spans are made and propagated (ids, sampled flag) but
  // never recorded or exported, and no thread starts.
  explicit Tracer(const cfg::TracingConfig& config, ExportOptions options = {});
  // Stops the exporter if shutdown() was not called (queued spans are dropped, not sent).
  // Every Span the tracer made must be gone (or ended) first.
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  bool enabled() const { return enabled_; }
  // True when sampled spans are recorded and exported (an exporter thread was started, or a
  // test sink takes them).
  bool exporting() const { return exporter_ != nullptr || sinkOnly_; }
  const Sampler& sampler() const { return sampler_; }

  // A SERVER span for an incoming request: a child of `parent` when it is valid (same trace id,
  // parent's sampled flag followed), otherwise the root of a new trace sampled by the ratio.
  // `name` is only copied when the span records. Start time: `startUnixNanos`, or now when 0.
  // Thread-safe.
  Span startServerSpan(std::string_view name, const ParentContext& parent, uint64_t startUnixNanos = 0);

  // A span of any kind under a local parent (e.g. a CLIENT span for the upstream call, a DB
  // statement). An empty/invalid parent starts a new trace. Inherits the parent's sampling
  // decision and tracestate. Thread-safe.
  Span startSpan(std::string_view name, SpanKind kind, const Span& parent, uint64_t startUnixNanos = 0);

  // The same under a remote or stored parent context (e.g. a span id kept in a request context
  // after the parent Span moved on). `tracestate` is recorded as the span's traceState.
  Span startSpan(std::string_view name, SpanKind kind, const SpanContext& parent, std::string_view tracestate = {},
                 uint64_t startUnixNanos = 0);

  // Span::end's path into the export queue: never blocks; a full queue (or an exporter already
  // shut down) drops the span and counts it. Thread-safe.
  void submit(std::unique_ptr<SpanData> span);

  // Flushes queued spans and stops the exporter thread, waiting at most `timeout`. Returns true
  // when everything queued was exported. Idempotent; later spans are dropped and counted. Call
  // once the workers stopped making spans (the gateway's drain).
  bool shutdown(std::chrono::milliseconds timeout);

  TracerStats stats() const;
  uint64_t droppedSpans() const { return stats().droppedSpans(); }

 private:
  Span makeSpan(std::string_view name, SpanKind kind, const SpanContext* parent, std::string_view tracestate,
                uint64_t startUnixNanos);
  void drainQueue();

  bool enabled_ = false;
  bool sinkOnly_ = false;  // ExportOptions::sink set
  std::atomic<bool> stopped_{false};  // shutdown() ran: nothing more is recorded or queued
  Sampler sampler_;
  ExportOptions options_;
  size_t wakeThreshold_ = 1;
  std::unique_ptr<BoundedQueue<SpanData*>> queue_;
  ExportCounters counters_;
  std::unique_ptr<OtlpExporter> exporter_;
};

}  // namespace obs::trace
