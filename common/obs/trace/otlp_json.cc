#include "common/obs/trace/otlp_json.h"

#include "common/util/utf8.h"

#include <charconv>
#include <cmath>

namespace obs::trace {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendQuotedUint(std::string& out, uint64_t v) {
  out.push_back('"');
  appendUint(out, v);
  out.push_back('"');
}

void appendDouble(std::string& out, double v) {
  // Protobuf's JSON mapping spells non-finite doubles as strings.
  if (std::isnan(v)) {
    out.append("\"NaN\"");
  } else if (std::isinf(v)) {
    out.append(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  } else {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
    out.append(buf, r.ptr);
  }
}

void appendHexField(std::string& out, std::string_view name, std::string_view hex) {
  out.push_back('"');
  out.append(name);
  out.append("\":\"");
  out.append(hex);
  out.push_back('"');
}

void appendKeyValue(std::string& out, const AttributeView& a) {
  out.append("{\"key\":");
  appendJsonString(out, a.key);
  out.append(",\"value\":{");
  switch (a.type) {
    case AttributeType::String:
      out.append("\"stringValue\":");
      appendJsonString(out, a.stringValue);
      break;
    case AttributeType::Int:
      out.append("\"intValue\":\"");
      appendInt(out, a.intValue);
      out.push_back('"');
      break;
    case AttributeType::Double:
      out.append("\"doubleValue\":");
      appendDouble(out, a.doubleValue);
      break;
    case AttributeType::Bool: out.append(a.boolValue ? "\"boolValue\":true" : "\"boolValue\":false"); break;
  }
  out.append("}}");
}

void appendSpan(std::string& out, const SpanData& s) {
  out.push_back('{');
  appendHexField(out, "traceId", toHex(s.context.traceId).view());
  out.push_back(',');
  appendHexField(out, "spanId", toHex(s.context.spanId).view());
  if (s.parentSpanId.valid()) {
    out.push_back(',');
    appendHexField(out, "parentSpanId", toHex(s.parentSpanId).view());
  }
  if (!s.tracestate.empty()) {
    out.append(",\"traceState\":");
    appendJsonString(out, s.tracestate);
  }
  out.append(",\"name\":");
  appendJsonString(out, s.name);
  out.append(",\"kind\":");
  appendUint(out, static_cast<uint64_t>(s.kind));
  out.append(",\"startTimeUnixNano\":");
  appendQuotedUint(out, s.startUnixNanos);
  out.append(",\"endTimeUnixNano\":");
  appendQuotedUint(out, s.endUnixNanos);
  out.append(",\"attributes\":[");
  for (size_t i = 0; i < s.attributeCount(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    appendKeyValue(out, s.attribute(i));
  }
  out.push_back(']');
  if (s.droppedAttributes() > 0) {
    out.append(",\"droppedAttributesCount\":");
    appendUint(out, s.droppedAttributes());
  }
  out.append(",\"status\":{\"code\":");
  appendUint(out, static_cast<uint64_t>(s.statusCode));
  if (!s.statusMessage.empty()) {
    out.append(",\"message\":");
    appendJsonString(out, s.statusMessage);
  }
  out.append("}}");
}

}  // namespace

void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t len = util::utf8SequenceLength(s, i);
      if (len == 0) {
        out.append(kReplacementChar);
        ++i;
      } else {
        out.append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
}

OtlpJsonEncoder::OtlpJsonEncoder(std::string_view serviceName, std::string_view scopeName) {
  prefix_ = "{\"resourceSpans\":[{\"resource\":{\"attributes\":[";
  prefix_.append("{\"key\":\"service.name\",\"value\":{\"stringValue\":");
  appendJsonString(prefix_, serviceName);
  prefix_.append("}},{\"key\":\"telemetry.sdk.language\",\"value\":{\"stringValue\":\"cpp\"}}");
#ifdef SIDECAR_VERSION
  prefix_.append(",{\"key\":\"service.version\",\"value\":{\"stringValue\":");
  appendJsonString(prefix_, SIDECAR_VERSION);
  prefix_.append("}}");
#endif
  prefix_.append("]},\"scopeSpans\":[{\"scope\":{\"name\":");
  appendJsonString(prefix_, scopeName);
#ifdef SIDECAR_VERSION
  prefix_.append(",\"version\":");
  appendJsonString(prefix_, SIDECAR_VERSION);
#endif
  prefix_.append("},\"spans\":[");
}

void OtlpJsonEncoder::encode(std::span<const std::unique_ptr<SpanData>> spans, std::string& out) const {
  out.clear();
  out.reserve(prefix_.size() + spans.size() * 640 + 8);
  out.append(prefix_);
  bool first = true;
  for (const auto& s : spans) {
    if (!s) {
      continue;
    }
    if (!first) {
      out.push_back(',');
    }
    first = false;
    appendSpan(out, *s);
  }
  out.append("]}]}]}");
}

}  // namespace obs::trace
