#include "common/obs/trace/log_context.h"

namespace obs::trace {
namespace {

thread_local const SpanContext* tCurrent = nullptr;

}  // namespace

LogIds logIds(const SpanContext& context) {
  LogIds ids;
  if (context.valid()) {
    writeHex(context.traceId, ids.traceIdText);
    ids.traceIdText[32] = '\0';
    writeHex(context.spanId, ids.spanIdText);
    ids.spanIdText[16] = '\0';
  }
  return ids;
}

CurrentSpanScope::CurrentSpanScope(const SpanContext& context) : previous_(tCurrent) { tCurrent = &context; }

CurrentSpanScope::~CurrentSpanScope() { tCurrent = previous_; }

const SpanContext* currentSpanContext() { return tCurrent; }

LogIds currentLogIds() { return tCurrent != nullptr ? logIds(*tCurrent) : LogIds(); }

}  // namespace obs::trace
