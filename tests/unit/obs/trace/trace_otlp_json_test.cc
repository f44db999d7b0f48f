// OTLP/HTTP JSON encoding (common/obs/trace/otlp_json.h), parsed back with RapidJSON: the
// resource and scope, ids as hex, times and intValues as strings, enums as numbers, typed
// attributes, status, and that arbitrary bytes still give valid UTF-8 JSON.

#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/obs/trace/otlp_json.h"
#include "common/obs/trace/semconv.h"

using namespace obs::trace;

namespace {

rapidjson::Document parseStrict(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(text.c_str(), text.size());
  if (doc.HasParseError()) {
    FAIL("JSON parse error at " << doc.GetErrorOffset() << ": " << rapidjson::GetParseError_En(doc.GetParseError())
                                << "\n"
                                << text);
  }
  return doc;
}

const rapidjson::Value* findAttr(const rapidjson::Value& attrs, const char* key) {
  for (const auto& kv : attrs.GetArray()) {
    if (std::string(kv["key"].GetString()) == key) {
      return &kv["value"];
    }
  }
  return nullptr;
}

std::unique_ptr<SpanData> serverSpan() {
  auto d = std::make_unique<SpanData>();
  REQUIRE(parseHex(std::string_view("0af7651916cd43dd8448eb211c80319c"), d->context.traceId));
  REQUIRE(parseHex(std::string_view("00f067aa0ba902b7"), d->context.spanId));
  REQUIRE(parseHex(std::string_view("b7ad6b7169203331"), d->parentSpanId));
  d->context.flags = kFlagSampled;
  d->kind = SpanKind::Server;
  d->name = "GET /articles/{id}";
  d->startUnixNanos = 1700000000123456789ULL;
  d->endUnixNanos = 1700000000223456789ULL;
  d->tracestate = "rojo=00f067aa0ba902b7";
  d->setString(attr::kHttpRequestMethod, "GET");
  d->setInt(attr::kHttpResponseStatusCode, 503);
  d->setString(attr::kUrlPath, "/articles/\"42\"\\\n\x01\xff\xc3\xa9");  // quotes, controls, bad UTF-8, é
  d->setString(attr::kUrlScheme, "http");
  d->setString(attr::kServerAddress, "127.0.0.1");
  d->setInt(attr::kServerPort, 8080);
  d->setInt("big.negative", std::numeric_limits<int64_t>::min());
  d->setDouble("ratio", 0.1);
  d->setDouble("not.a.number", std::nan(""));
  d->setDouble("infinite", -std::numeric_limits<double>::infinity());
  d->setBool("cache.hit", false);
  d->statusCode = StatusCode::Error;
  d->statusMessage = "upstream \"timeout\"";
  return d;
}

}  // namespace

TEST_CASE("trace: OTLP JSON request round-trips through RapidJSON") {
  std::vector<std::unique_ptr<SpanData>> spans;
  spans.push_back(serverSpan());
  auto client = std::make_unique<SpanData>();
  client->context.traceId = TraceId{0x1111, 0x2222};
  client->context.spanId = SpanId{0x3333};
  client->kind = SpanKind::Client;
  client->name = "SELECT";
  client->startUnixNanos = 5;
  client->endUnixNanos = 6;
  client->setString(attr::kDbSystem, "postgresql");
  client->setString(attr::kDbStatement, "SELECT * FROM articles WHERE id = $1");
  spans.push_back(std::move(client));

  const OtlpJsonEncoder encoder("gateway");
  std::string out = "leftover";
  encoder.encode(spans, out);
  const rapidjson::Document doc = parseStrict(out);

  REQUIRE(doc.IsObject());
  const auto& rs = doc["resourceSpans"];
  REQUIRE(rs.IsArray());
  REQUIRE(rs.Size() == 1);
  const rapidjson::Value* service = findAttr(rs[0]["resource"]["attributes"], "service.name");
  REQUIRE(service != nullptr);
  CHECK(std::string((*service)["stringValue"].GetString()) == "gateway");
  const auto& ss = rs[0]["scopeSpans"];
  REQUIRE(ss.Size() == 1);
  CHECK(std::string(ss[0]["scope"]["name"].GetString()) == "sidecar");
  const auto& js = ss[0]["spans"];
  REQUIRE(js.Size() == 2);

  const auto& s = js[0];
  CHECK(std::string(s["traceId"].GetString()) == "0af7651916cd43dd8448eb211c80319c");
  CHECK(std::string(s["spanId"].GetString()) == "00f067aa0ba902b7");
  CHECK(std::string(s["parentSpanId"].GetString()) == "b7ad6b7169203331");
  CHECK(std::string(s["traceState"].GetString()) == "rojo=00f067aa0ba902b7");
  CHECK(std::string(s["name"].GetString()) == "GET /articles/{id}");
  CHECK(s["kind"].GetInt() == 2);
  REQUIRE(s["startTimeUnixNano"].IsString());
  CHECK(std::string(s["startTimeUnixNano"].GetString()) == "1700000000123456789");
  CHECK(std::string(s["endTimeUnixNano"].GetString()) == "1700000000223456789");
  CHECK(s["status"]["code"].GetInt() == 2);
  CHECK(std::string(s["status"]["message"].GetString()) == "upstream \"timeout\"");
  CHECK_FALSE(s.HasMember("droppedAttributesCount"));

  const auto& attrs = s["attributes"];
  CHECK(attrs.Size() == 11);
  CHECK(std::string((*findAttr(attrs, "http.request.method"))["stringValue"].GetString()) == "GET");
  const rapidjson::Value* code = findAttr(attrs, "http.response.status_code");
  REQUIRE((*code)["intValue"].IsString());  // int64 as a decimal string (protobuf JSON mapping)
  CHECK(std::string((*code)["intValue"].GetString()) == "503");
  CHECK(std::string((*findAttr(attrs, "server.port"))["intValue"].GetString()) == "8080");
  CHECK(std::string((*findAttr(attrs, "big.negative"))["intValue"].GetString()) == "-9223372036854775808");
  CHECK((*findAttr(attrs, "ratio"))["doubleValue"].GetDouble() == 0.1);
  CHECK(std::string((*findAttr(attrs, "not.a.number"))["doubleValue"].GetString()) == "NaN");
  CHECK(std::string((*findAttr(attrs, "infinite"))["doubleValue"].GetString()) == "-Infinity");
  CHECK((*findAttr(attrs, "cache.hit"))["boolValue"].IsFalse());
  const rapidjson::Value* path = findAttr(attrs, "url.path");
  CHECK(std::string((*path)["stringValue"].GetString()) == "/articles/\"42\"\\\n\x01\xef\xbf\xbd\xc3\xa9");

  const auto& c = js[1];
  CHECK(c["kind"].GetInt() == 3);
  CHECK_FALSE(c.HasMember("parentSpanId"));  // a root span
  CHECK_FALSE(c.HasMember("traceState"));
  CHECK(std::string(c["traceId"].GetString()) == "00000000000011110000000000002222");
  CHECK(std::string(c["spanId"].GetString()) == "0000000000003333");
  CHECK(c["status"]["code"].GetInt() == 0);
  CHECK_FALSE(c["status"].HasMember("message"));
  CHECK(std::string((*findAttr(c["attributes"], "db.statement"))["stringValue"].GetString()) ==
        "SELECT * FROM articles WHERE id = $1");
}

TEST_CASE("trace: OTLP JSON for an empty batch, dropped attributes and hostile strings") {
  const OtlpJsonEncoder encoder("svc \"quoted\"\n");
  std::string out;
  std::vector<std::unique_ptr<SpanData>> none;
  encoder.encode(none, out);
  rapidjson::Document doc = parseStrict(out);
  CHECK(doc["resourceSpans"][0]["scopeSpans"][0]["spans"].Size() == 0);
  CHECK(std::string((*findAttr(doc["resourceSpans"][0]["resource"]["attributes"], "service.name"))["stringValue"]
                        .GetString()) == "svc \"quoted\"\n");

  std::vector<std::unique_ptr<SpanData>> spans;
  auto d = std::make_unique<SpanData>();
  d->context.traceId = TraceId{1, 2};
  d->context.spanId = SpanId{3};
  for (size_t i = 0; i < SpanData::kMaxAttributes + 3; ++i) {
    d->setBool("k" + std::to_string(i), true);
  }
  // Every byte value, including NUL, DEL, lone continuation bytes, overlongs and surrogates.
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all.push_back(static_cast<char>(b));
  }
  all += "\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82";
  d->name = all;
  spans.push_back(std::move(d));
  encoder.encode(spans, out);
  doc = parseStrict(out);  // validates UTF-8
  const auto& s = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  CHECK(s["droppedAttributesCount"].GetInt() == 3);
  CHECK(s["attributes"].Size() == SpanData::kMaxAttributes);
  const std::string name(s["name"].GetString(), s["name"].GetStringLength());
  CHECK(name.size() > 128);
  CHECK(name.substr(0, 3) == std::string("\0\x01\x02", 3));  // control chars survive as \u00XX
}

TEST_CASE("trace: appendJsonString escapes") {
  std::string out;
  appendJsonString(out, std::string_view("a\"b\\c\n\r\t\x1f\x7f", 10));
  CHECK(out == "\"a\\\"b\\\\c\\n\\r\\t\\u001f\\u007f\"");
  out.clear();
  appendJsonString(out, "\xf0\x9f\x98\x80 ok");  // a valid 4-byte sequence is kept
  CHECK(out == "\"\xf0\x9f\x98\x80 ok\"");
}
