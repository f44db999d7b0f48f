#pragma once
// JSON for upstream_app, on RapidJSON (Debian rapidjson-dev 1.1, header-only).
//
// Why RapidJSON, and why this way:
//   - Output goes through rapidjson::Writer, a SAX writer that appends straight into one
//     StringBuffer: no DOM, no allocation per value, escaping in a tight loop. That is what makes
//     ORJSON fast on the Python side, done the same way here. Numbers that come from PostgreSQL as
//     text are copied verbatim (they are already valid JSON numbers), so a page of orders is
//     serialized without parsing a single integer. The page of orders, the largest document, goes
//     through Appender below (same bytes, whole runs at a time).
//   - Input (request bodies, at most 1 MiB) is parsed with rapidjson::Document, strict RFC 8259:
//     no comments, no trailing commas, no NaN/Infinity, and kParseValidateEncodingFlag rejects
//     invalid UTF-8 before anything reaches the database. The DOM is fine there: bodies are small
//     and parsed once.
//   - simdjson (libsimdjson-dev) would parse faster but cannot write; nlohmann::json is
//     convenient but allocates per node on both paths. One library for both directions.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace app::json {

using Buffer = rapidjson::StringBuffer;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

inline std::string_view view(const Buffer& b) { return std::string_view(b.GetString(), b.GetSize()); }

inline void key(Writer& w, std::string_view k) { w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size())); }
inline void string(Writer& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }
// A number PostgreSQL printed (int, bigint): already JSON, copied as is.
inline void rawNumber(Writer& w, std::string_view digits) {
  w.RawValue(digits.data(), digits.size(), rapidjson::kNumberType);
}

// Appends JSON text to a Buffer in whole runs: structure and keys as literals, strings escaped
// byte for byte as rapidjson::Writer::String does (same escapes, same \u00XX upper-case hex, bytes
// >= 0x80 copied as they are), so output is identical to the Writer's. For the big repetitive
// documents (a page of orders): the Writer copies everything one byte at a time through the
// buffer's memory-resident top pointer and checks its nesting state per value, which made it and
// its callers a third of upstream_app's instructions on GET /orders. The caller writes the commas
// and braces, so the structure is its responsibility (the routes' tests parse every answer).
class Appender {
 public:
  explicit Appender(Buffer& b) : b_(b) {}
  // Text that is already JSON: a literal such as `,"status":`, or a number PostgreSQL printed.
  void raw(std::string_view s) {
    if (!s.empty()) {
      std::memcpy(b_.Push(s.size()), s.data(), s.size());
    }
  }
  void raw(char c) { *b_.Push(1) = c; }
  // A JSON string: quotes, escapes.
  void string(std::string_view s);
  // The JSON string of an epoch-microseconds number (see timestampMicros below).
  void timestampMicros(std::string_view epochMicros);

 private:
  Buffer& b_;
};

// Microseconds since 1970-01-01 UTC as RFC 3339 "YYYY-MM-DDTHH:MM:SS.ffffffZ" (exactly what
// PostgreSQL's to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') prints for years
// 0-9999; a year above 9999 gets all its digits, a year below 0 a leading '-'). Writes into `out`
// and returns the length (at most kTimestampMax).
// Why: PostgreSQL's to_char costs about as much as the rest of an order row; the order queries
// return (EXTRACT(EPOCH FROM t) * 1000000)::int8 instead, which, like to_char, depends on neither
// the session TimeZone nor DateStyle.
inline constexpr size_t kTimestampMax = 40;
size_t formatEpochMicros(int64_t micros, char* out);

// The JSON string of `epochMicros` (decimal digits from PostgreSQL, see above); anything that is
// not such a number is written as the string it is.
void timestampMicros(Writer& w, std::string_view epochMicros);

// {"error": message, "request_id": id} plus, when given, "field": the offending input field.
std::string errorBody(std::string_view message, std::string_view requestId, std::string_view field = {});

}  // namespace app::json
