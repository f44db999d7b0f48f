#pragma once
// OTLP/HTTP JSON encoding of an ExportTraceServiceRequest (opentelemetry-proto
// collector/trace/v1, JSON mapping per the OTLP spec): traceId/spanId as lowercase hex, 64-bit
// integers (times, intValue) as decimal strings, enums as numbers, attributes as typed AnyValues.
// Strings are escaped and invalid UTF-8 is replaced with U+FFFD, so the output is always valid
// JSON whatever bytes a request path carried.
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/obs/trace/span.h"

namespace obs::trace {

class OtlpJsonEncoder {
 public:
  // The resource (service.name, service.version) and scope are fixed per process: encoded once.
  explicit OtlpJsonEncoder(std::string_view serviceName, std::string_view scopeName = "sidecar");

  // Replaces `out` with one request holding `spans` (one resource, one scope).
  void encode(std::span<const std::unique_ptr<SpanData>> spans, std::string& out) const;

 private:
  std::string prefix_;
};

// Appends `s` as a JSON string literal (quotes included).
void appendJsonString(std::string& out, std::string_view s);

}  // namespace obs::trace
