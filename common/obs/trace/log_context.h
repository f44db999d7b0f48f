#pragma once
// Trace/log correlation: the `trace_id` and `span_id` hex strings of a span for its log lines.
// Event loops interleave requests, so there is no implicit "current request": code that logs
// while handling one either passes the span's context to logIds(), or marks the callback's
// extent with a CurrentSpanScope so that deeper code (and the logger) can ask currentLogIds().
#include <string_view>

#include "common/obs/trace/context.h"

namespace obs::trace {

struct LogIds {
  char traceIdText[33] = {};
  char spanIdText[17] = {};
  // Empty views when the context is invalid (tracing disabled): callers omit the fields.
  std::string_view traceId() const { return {traceIdText, traceIdText[0] != '\0' ? 32u : 0u}; }
  std::string_view spanId() const { return {spanIdText, spanIdText[0] != '\0' ? 16u : 0u}; }
};

LogIds logIds(const SpanContext& context);

// Sets the calling thread's current span context for the scope's lifetime (nests; restores the
// previous one on exit). `context` must outlive the scope.
class CurrentSpanScope {
 public:
  explicit CurrentSpanScope(const SpanContext& context);
  ~CurrentSpanScope();
  CurrentSpanScope(const CurrentSpanScope&) = delete;
  CurrentSpanScope& operator=(const CurrentSpanScope&) = delete;

 private:
  const SpanContext* previous_;
};

// The innermost CurrentSpanScope's context on this thread, or nullptr.
const SpanContext* currentSpanContext();
// logIds() of the current context; empty when there is none.
LogIds currentLogIds();

}  // namespace obs::trace
