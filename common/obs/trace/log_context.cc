#include "common/obs/trace/log_context.h"

#include "common/obs/trace/tracer.h"

namespace obs::trace {
namespace {

thread_local const CurrentSpanScope::State* tCurrent = nullptr;

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

SpanParent::SpanParent(const Span& span) : context_(span.context()), tracer_(span.tracer()) {
  if (tracer_ != nullptr && span.data() != nullptr) {
    tracestate_ = span.data()->tracestate;
  }
}

SpanParent SpanParent::current() {
  SpanParent p;
  const CurrentSpanScope::State* s = tCurrent;
  if (s == nullptr || s->context == nullptr || !s->context->valid()) {
    return p;
  }
  p.context_ = *s->context;
  if (s->tracer != nullptr && s->context->sampled()) {
    p.tracer_ = s->tracer;
    p.tracestate_.assign(s->tracestate);
  }
  return p;
}

Span SpanParent::startChild(std::string_view name, SpanKind kind, uint64_t startUnixNanos) const {
  if (tracer_ == nullptr) {
    return Span();
  }
  return tracer_->startSpan(name, kind, context_, tracestate_, startUnixNanos);
}

CurrentSpanScope::CurrentSpanScope(const SpanContext& context) : state_{&context, nullptr, {}}, previous_(tCurrent) {
  tCurrent = &state_;
}

CurrentSpanScope::CurrentSpanScope(const Span& span)
    : state_{&span.context(), span.tracer(),
             span.data() != nullptr ? std::string_view(span.data()->tracestate) : std::string_view()},
      previous_(tCurrent) {
  tCurrent = &state_;
}

CurrentSpanScope::CurrentSpanScope(const SpanParent& parent)
    : state_{&parent.context_, parent.tracer_, parent.tracestate_}, previous_(tCurrent) {
  tCurrent = &state_;
}

CurrentSpanScope::~CurrentSpanScope() { tCurrent = previous_; }

const SpanContext* currentSpanContext() {
  const CurrentSpanScope::State* s = tCurrent;
  return s != nullptr && s->context != nullptr && s->context->valid() ? s->context : nullptr;
}

LogIds currentLogIds() {
  const SpanContext* c = currentSpanContext();
  return c != nullptr ? logIds(*c) : LogIds();
}

}  // namespace obs::trace
