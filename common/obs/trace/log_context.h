#pragma once
// Trace/log correlation and the "current span" of a callback.
//
// Event loops interleave requests, so there is no implicit "current request": code that logs
// while handling one either passes the span's context to logIds(), or marks the callback's
// extent with a CurrentSpanScope so that deeper code (and the logger) can ask currentLogIds().
//
// The same scope carries the span's parent-making ability across asynchronous hops: a client
// (database pool, Redis wrapper, HTTP client) captures SpanParent::current() when work is
// submitted -- callbacks run on later loop turns, when no scope is active any more -- makes its
// child spans from it, and runs its completion callback inside CurrentSpanScope(parent), so that
// the caller's next submission is captured under the same parent:
//
//   // request handler
//   CurrentSpanScope scope(serverSpan);
//   route(request);                          // pool.run(tx, cb) captures SpanParent::current()
//
//   // in the client, at submit time
//   SpanParent parent = SpanParent::current();
//   Span span = parent.startChild("SELECT app", SpanKind::Client);   // empty unless sampled
//   ... later, on completion:
//   span.end();
//   CurrentSpanScope again(parent);
//   cb(result);                              // cb's own submissions see the same parent
#include <string>
#include <string_view>

#include "common/obs/trace/context.h"
#include "common/obs/trace/span.h"

namespace obs::trace {

class Tracer;

struct LogIds {
  char traceIdText[33] = {};
  char spanIdText[17] = {};
  // Empty views when the context is invalid (tracing disabled): callers omit the fields.
  std::string_view traceId() const { return {traceIdText, traceIdText[0] != '\0' ? 32u : 0u}; }
  std::string_view spanId() const { return {spanIdText, spanIdText[0] != '\0' ? 16u : 0u}; }
};

LogIds logIds(const SpanContext& context);

// A span's identity kept by value for work that finishes after the span's owner moved on: the
// context (for propagation and logs), and -- only while the span records -- its tracer and
// tracestate, to make child spans. Copyable; owns nothing but the tracestate copy, which is made
// only for a recording span, so capturing the parent of an unsampled request never allocates.
class SpanParent {
 public:
  SpanParent() = default;
  // `span`'s context; recording() when the span records (sampled and exported).
  explicit SpanParent(const Span& span);

  // The innermost CurrentSpanScope's span on this thread; an empty parent (invalid context, not
  // recording) when no scope is active.
  static SpanParent current();

  const SpanContext& context() const { return context_; }
  // Children would be recorded: the parent is sampled and its tracer exports.
  bool recording() const { return tracer_ != nullptr; }
  const std::string& tracestate() const { return tracestate_; }

  // A child span of `kind` (same trace, this span as parent, tracestate inherited), started at
  // `startUnixNanos` (0 = now). An empty span when !recording(): callers need not check.
  Span startChild(std::string_view name, SpanKind kind, uint64_t startUnixNanos = 0) const;

 private:
  friend class CurrentSpanScope;
  SpanContext context_;
  Tracer* tracer_ = nullptr;
  std::string tracestate_;
};

// Sets the calling thread's current span for the scope's lifetime (nests; restores the previous
// one on exit). The argument must outlive the scope. A scope over an invalid context (tracing
// disabled, or an empty SpanParent) is allowed and reads as "no current span".
class CurrentSpanScope {
 public:
  // Context only: ids for logs and propagation; SpanParent::current() is then not recording.
  explicit CurrentSpanScope(const SpanContext& context);
  // A live span: children made under the scope are recorded when `span` records.
  explicit CurrentSpanScope(const Span& span);
  // A captured parent, re-entered in a completion callback.
  explicit CurrentSpanScope(const SpanParent& parent);
  ~CurrentSpanScope();
  CurrentSpanScope(const CurrentSpanScope&) = delete;
  CurrentSpanScope& operator=(const CurrentSpanScope&) = delete;

  // What the thread-local slot points at (internal).
  struct State {
    const SpanContext* context = nullptr;
    Tracer* tracer = nullptr;
    std::string_view tracestate;
  };

 private:
  State state_;
  const State* previous_;
};

// The innermost CurrentSpanScope's context on this thread, or nullptr (also when that context is
// invalid).
const SpanContext* currentSpanContext();
// logIds() of the current context; empty when there is none.
LogIds currentLogIds();

}  // namespace obs::trace
