#include "common/obs/trace/otlp_json.h"

#include "common/util/utf8.h"

#include <charconv>
#include <cmath>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace obs::trace {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// Bytes copied as they are: printable ASCII other than '"' and '\\'.
struct PlainBytes {
  bool plain[256] = {};
  constexpr PlainBytes() {
    for (int c = 0x20; c < 0x7F; ++c) {
      plain[c] = c != '"' && c != '\\';
    }
  }
};
constexpr PlainBytes kPlain;

// The end of the run of kPlain bytes starting at `i`.
size_t plainRun(std::string_view s, size_t i) {
#if defined(__SSE2__)
  // 16 bytes per step: a byte is plain unless it is below 0x20 or at/above 0x7F (signed compare:
  // bytes >= 0x80 are negative), or '"' or '\\'.
  const __m128i space = _mm_set1_epi8(0x20);
  const __m128i del = _mm_set1_epi8(0x7F);
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  while (i + 16 <= s.size()) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
    const __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, del)),
                                     _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
    const int mask = _mm_movemask_epi8(bad);
    if (mask != 0) {
      return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    }
    i += 16;
  }
#endif
  while (i < s.size() && kPlain.plain[static_cast<unsigned char>(s[i])]) {
    ++i;
  }
  return i;
}

// Writes into memory sized beforehand (by the *Bound functions): no capacity check per piece,
// which is most of the cost of building the document with std::string appends. The exporter
// encodes every attribute of every sampled span, so this is its main work.
class Out {
 public:
  explicit Out(char* p) : p_(p) {}
  char* pos() const { return p_; }
  void ch(char c) { *p_++ = c; }
  void lit(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void uint(uint64_t v) { p_ = std::to_chars(p_, p_ + 20, v).ptr; }
  void quotedUint(uint64_t v) {
    ch('"');
    uint(v);
    ch('"');
  }
  void sint(int64_t v) { p_ = std::to_chars(p_, p_ + 20, v).ptr; }
  void dbl(double v) {
    // Protobuf's JSON mapping spells non-finite doubles as strings.
    if (std::isnan(v)) {
      lit("\"NaN\"");
    } else if (std::isinf(v)) {
      lit(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
      p_ = std::to_chars(p_, p_ + kDoubleBound, v).ptr;  // shortest round-trip form
    }
  }
  void hexField(std::string_view name, TraceId id) {
    ch('"');
    lit(name);
    lit("\":\"");
    writeHex(id, p_);
    p_ += 32;
    ch('"');
  }
  void hexField(std::string_view name, SpanId id) {
    ch('"');
    lit(name);
    lit("\":\"");
    writeHex(id, p_);
    p_ += 16;
    ch('"');
  }
  // `s` as a JSON string literal, quotes included: at most strBound(s) bytes.
  void str(std::string_view s) {
    ch('"');
    size_t i = 0;
    while (i < s.size()) {
      // Printable ASCII other than '"' and '\\' (nearly every byte of names, keys and values)
      // is copied in runs.
      size_t run = plainRun(s, i);
      if (run > i) {
        lit(s.substr(i, run - i));
        i = run;
        continue;
      }
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x80) {
        const size_t len = util::utf8SequenceLength(s, i);
        if (len == 0) {
          lit(kReplacementChar);
          ++i;
        } else {
          lit(s.substr(i, len));
          i += len;
        }
        continue;
      }
      switch (c) {
        case '"': lit("\\\""); break;
        case '\\': lit("\\\\"); break;
        case '\n': lit("\\n"); break;
        case '\r': lit("\\r"); break;
        case '\t': lit("\\t"); break;
        default:
          lit("\\u00");
          ch(kHex[c >> 4]);
          ch(kHex[c & 0xF]);
      }
      ++i;
    }
    ch('"');
  }

  static constexpr size_t kDoubleBound = 32;

 private:
  char* p_;
};

// Worst case of Out::str: every byte escaped as \u00XX (6 bytes; U+FFFD for a stray byte is 3).
size_t strBound(std::string_view s) { return s.size() * 6 + 2; }

// Worst case of writeSpan: the strings' bounds plus the fixed keys, ids, numbers and punctuation
// (about 250 bytes without attributes; 64 per attribute besides its key and value).
size_t spanBound(const SpanData& s) {
  size_t n = 384 + strBound(s.name) + strBound(s.tracestate) + strBound(s.statusMessage);
  for (size_t i = 0; i < s.attributeCount(); ++i) {
    const AttributeView a = s.attribute(i);
    n += 64 + strBound(a.key) + (a.type == AttributeType::String ? strBound(a.stringValue) : Out::kDoubleBound);
  }
  return n;
}

void writeKeyValue(Out& out, const AttributeView& a) {
  out.lit("{\"key\":");
  out.str(a.key);
  out.lit(",\"value\":{");
  switch (a.type) {
    case AttributeType::String:
      out.lit("\"stringValue\":");
      out.str(a.stringValue);
      break;
    case AttributeType::Int:
      out.lit("\"intValue\":\"");
      out.sint(a.intValue);
      out.ch('"');
      break;
    case AttributeType::Double:
      out.lit("\"doubleValue\":");
      out.dbl(a.doubleValue);
      break;
    case AttributeType::Bool: out.lit(a.boolValue ? "\"boolValue\":true" : "\"boolValue\":false"); break;
  }
  out.lit("}}");
}

void writeSpan(Out& out, const SpanData& s) {
  out.ch('{');
  out.hexField("traceId", s.context.traceId);
  out.ch(',');
  out.hexField("spanId", s.context.spanId);
  if (s.parentSpanId.valid()) {
    out.ch(',');
    out.hexField("parentSpanId", s.parentSpanId);
  }
  if (!s.tracestate.empty()) {
    out.lit(",\"traceState\":");
    out.str(s.tracestate);
  }
  out.lit(",\"name\":");
  out.str(s.name);
  out.lit(",\"kind\":");
  out.uint(static_cast<uint64_t>(s.kind));
  out.lit(",\"startTimeUnixNano\":");
  out.quotedUint(s.startUnixNanos);
  out.lit(",\"endTimeUnixNano\":");
  out.quotedUint(s.endUnixNanos);
  out.lit(",\"attributes\":[");
  for (size_t i = 0; i < s.attributeCount(); ++i) {
    if (i > 0) {
      out.ch(',');
    }
    writeKeyValue(out, s.attribute(i));
  }
  out.ch(']');
  if (s.droppedAttributes() > 0) {
    out.lit(",\"droppedAttributesCount\":");
    out.uint(s.droppedAttributes());
  }
  out.lit(",\"status\":{\"code\":");
  out.uint(static_cast<uint64_t>(s.statusCode));
  if (!s.statusMessage.empty()) {
    out.lit(",\"message\":");
    out.str(s.statusMessage);
  }
  out.lit("}}");
}

}  // namespace

void appendJsonString(std::string& out, std::string_view s) {
  const size_t old = out.size();
  out.resize(old + strBound(s));
  Out o(out.data() + old);
  o.str(s);
  out.resize(static_cast<size_t>(o.pos() - out.data()));
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
  out.reserve(prefix_.size() + spans.size() * 1024 + 8);
  out.append(prefix_);
  bool first = true;
  for (const auto& s : spans) {
    if (!s) {
      continue;
    }
    const size_t old = out.size();
    out.resize(old + 1 + spanBound(*s));
    Out o(out.data() + old);
    if (!first) {
      o.ch(',');
    }
    first = false;
    writeSpan(o, *s);
    out.resize(static_cast<size_t>(o.pos() - out.data()));
  }
  out.append("]}]}]}");
}

}  // namespace obs::trace
