#pragma once
// The span model. `SpanData` is what gets exported: name, kind, ids, times, status and up to
// kMaxAttributes typed attributes kept inline (keys and string values packed in one buffer, so a
// recorded span costs a few allocations, not one per attribute). `Span` is the handle code holds
// while the work runs: for a span that is not sampled it carries only the context (enough to
// propagate and to log ids) and owns no memory at all.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/obs/trace/context.h"

namespace obs::trace {

class Tracer;

// Values are OTLP's Span.SpanKind numbers.
enum class SpanKind : uint8_t { Internal = 1, Server = 2, Client = 3 };
// Values are OTLP's Status.StatusCode numbers.
enum class StatusCode : uint8_t { Unset = 0, Ok = 1, Error = 2 };
enum class AttributeType : uint8_t { String, Int, Double, Bool };

struct AttributeView {
  std::string_view key;
  AttributeType type = AttributeType::String;
  std::string_view stringValue;
  int64_t intValue = 0;
  double doubleValue = 0;
  bool boolValue = false;
};

class SpanData {
 public:
  static constexpr size_t kMaxAttributes = 24;
  static constexpr size_t kMaxKeyBytes = 128;
  static constexpr size_t kMaxStringValueBytes = 2048;  // longer values are cut (UTF-8 safe)
  static constexpr size_t kMaxArenaBytes = 16 * 1024;   // keys + string values of one span
  static constexpr size_t kMaxNameBytes = 256;
  static constexpr size_t kMaxStatusMessageBytes = 512;

  SpanContext context;
  SpanId parentSpanId;  // invalid for a root span
  SpanKind kind = SpanKind::Internal;
  uint64_t startUnixNanos = 0;
  uint64_t endUnixNanos = 0;
  StatusCode statusCode = StatusCode::Unset;
  std::string statusMessage;
  std::string name;
  std::string tracestate;

  // Setting a key again replaces its value (and type). When kMaxAttributes distinct keys or the
  // arena are used up the attribute is dropped and counted (OTLP droppedAttributesCount).
  void setString(std::string_view key, std::string_view value);
  void setInt(std::string_view key, int64_t value);
  void setDouble(std::string_view key, double value);
  void setBool(std::string_view key, bool value);

  size_t attributeCount() const { return count_; }
  AttributeView attribute(size_t index) const;
  // The attribute named `key`, or nullptr-equivalent (false) when absent. For tests and helpers.
  bool findAttribute(std::string_view key, AttributeView& out) const;
  uint32_t droppedAttributes() const { return dropped_; }

 private:
  struct StrRef {
    uint32_t offset;
    uint32_t length;
  };
  struct Attribute {
    StrRef key;
    AttributeType type;
    union {
      int64_t i;
      double d;
      bool b;
      StrRef s;
    } value;
  };

  // The slot for `key` (existing or new), or nullptr when full (the drop is counted).
  Attribute* slotFor(std::string_view key);
  bool append(std::string_view bytes, StrRef& out);
  std::string_view view(StrRef r) const { return {arena_.data() + r.offset, r.length}; }

  std::array<Attribute, kMaxAttributes> attributes_{};
  uint32_t count_ = 0;
  uint32_t dropped_ = 0;
  std::string arena_;
};

// Cuts `s` to at most `maxBytes` without splitting a UTF-8 sequence.
std::string_view truncateUtf8(std::string_view s, size_t maxBytes);

// The handle for a span in progress. Move-only; owned by the request (or call) it describes.
// Not thread-safe: one thread uses a span at a time (a request's loop thread).
class Span {
 public:
  Span() = default;  // an empty span: invalid context, records nothing
  Span(Span&& other) noexcept;
  Span& operator=(Span&& other) noexcept;
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;
  // Ends the span if end() was not called (a request torn down early still reports its span).
  ~Span();

  // Trace id, this span's id and flags: what goes into outgoing `traceparent` headers and logs.
  // Valid for every span the tracer made, sampled or not; stays valid after end().
  const SpanContext& context() const { return context_; }
  SpanKind kind() const { return kind_; }
  // True while the span is sampled, exported and not yet ended: attribute setters do something
  // only then (they are cheap no-ops otherwise, so callers need not check).
  bool recording() const { return data_ != nullptr; }

  Span& setString(std::string_view key, std::string_view value);
  Span& setInt(std::string_view key, int64_t value);
  Span& setDouble(std::string_view key, double value);
  Span& setBool(std::string_view key, bool value);
  // Renames the span (e.g. "GET /articles/{id}" once the route is known).
  Span& setName(std::string_view name);
  // Status Error with an optional description; Ok is for callers that know better than "unset".
  Span& setError(std::string_view message = {});
  Span& setOk();

  // Records the end time (now, or the given Unix nanos) and hands the span to the tracer's
  // export queue; never blocks (a full queue drops the span and counts it). Idempotent.
  void end();
  void end(uint64_t endUnixNanos);

  // The recorded data (nullptr when not recording); for tests and the tracer.
  const SpanData* data() const { return data_.get(); }
  // The tracer recording this span, nullptr when not recording: children of a recording span are
  // made by the same tracer (SpanParent).
  Tracer* tracer() const { return data_ ? tracer_ : nullptr; }

 private:
  friend class Tracer;
  Span(const SpanContext& context, SpanKind kind, Tracer* tracer, std::unique_ptr<SpanData> data)
      : context_(context), kind_(kind), tracer_(tracer), data_(std::move(data)) {}

  SpanContext context_;
  SpanKind kind_ = SpanKind::Internal;
  Tracer* tracer_ = nullptr;
  std::unique_ptr<SpanData> data_;  // only for recorded (sampled and exported) spans
};

}  // namespace obs::trace
