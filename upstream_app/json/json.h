#pragma once
// JSON for upstream_app, on RapidJSON (Debian rapidjson-dev 1.1, header-only).
//
// Why RapidJSON, and why this way:
//   - Output goes through rapidjson::Writer, a SAX writer that appends straight into one
//     StringBuffer: no DOM, no allocation per value, escaping in a tight loop. That is what makes
//     ORJSON fast on the Python side, done the same way here. Numbers that come from PostgreSQL as
//     text are copied verbatim with RawValue (they are already valid JSON numbers), so a page of
//     orders is serialized without parsing a single integer.
//   - Input (request bodies, at most 1 MiB) is parsed with rapidjson::Document, strict RFC 8259:
//     no comments, no trailing commas, no NaN/Infinity, and kParseValidateEncodingFlag rejects
//     invalid UTF-8 before anything reaches the database. The DOM is fine there: bodies are small
//     and parsed once.
//   - simdjson (libsimdjson-dev) would parse faster but cannot write; nlohmann::json is
//     convenient but allocates per node on both paths. One library for both directions.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
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

// {"error": message, "request_id": id} plus, when given, "field": the offending input field.
std::string errorBody(std::string_view message, std::string_view requestId, std::string_view field = {});

}  // namespace app::json
