// upstream_app's fast output paths (json/json.h Appender and timestamps, routes/etag.h xxh64):
// the same bytes as the slow paths they replaced.
#include <doctest/doctest.h>

#include <string>

#include "upstream_app/json/json.h"
#include "upstream_app/routes/etag.h"

namespace {

std::string viaWriter(std::string_view s) {
  app::json::Buffer buf;
  app::json::Writer w(buf);
  app::json::string(w, s);
  return std::string(app::json::view(buf));
}

std::string viaAppender(std::string_view s) {
  app::json::Buffer buf;
  app::json::Appender out(buf);
  out.string(s);
  return std::string(app::json::view(buf));
}

std::string formatted(int64_t micros) {
  char out[app::json::kTimestampMax];
  return std::string(out, app::json::formatEpochMicros(micros, out));
}

}  // namespace

TEST_CASE("app json: Appender strings are byte for byte rapidjson::Writer's") {
  std::string every;
  for (int c = 0; c < 256; ++c) {
    every.push_back(static_cast<char>(c));
    const std::string one(1, static_cast<char>(c));
    CAPTURE(c);
    CHECK(viaAppender(one) == viaWriter(one));
  }
  CHECK(viaAppender(every) == viaWriter(every));
  CHECK(viaAppender("") == "\"\"");
  CHECK(viaAppender("q\"uo\\te/\x01\n") == R"("q\"uo\\te/\u0001\n")");
  CHECK(viaAppender("ünï ✓") == "\"ünï ✓\"");
}

TEST_CASE("app json: Appender raw runs and several values in one buffer") {
  app::json::Buffer buf;
  app::json::Appender out(buf);
  out.raw("{\"a\":");
  out.raw("12");
  out.raw("");
  out.raw(',');
  out.raw("\"b\":");
  out.string("x");
  out.raw(",\"t\":");
  out.timestampMicros("1707667200123456");
  out.raw(",\"u\":");
  out.timestampMicros("not a number");
  out.raw('}');
  CHECK(app::json::view(buf) ==
        R"({"a":12,"b":"x","t":"2024-02-11T16:00:00.123456Z","u":"not a number"})");
}

TEST_CASE("app json: epoch microseconds as PostgreSQL's to_char(... 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')") {
  // Expected strings are what PostgreSQL 15 printed for the same instants.
  CHECK(formatted(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(formatted(-1) == "1969-12-31T23:59:59.999999Z");
  CHECK(formatted(1707667200000000) == "2024-02-11T16:00:00.000000Z");
  CHECK(formatted(951868799123456) == "2000-02-29T23:59:59.123456Z");
  CHECK(formatted(4107542400000000) == "2100-03-01T00:00:00.000000Z");
  CHECK(formatted(-2203948800000000) == "1900-02-28T08:00:00.000000Z");
  CHECK(formatted(-11644473600000000) == "1601-01-01T00:00:00.000000Z");
  CHECK(formatted(-33765897599999999) == "0900-01-01T00:00:00.000001Z");
  CHECK(formatted(-62135596800000000) == "0001-01-01T00:00:00.000000Z");
  CHECK(formatted(253402300799999999) == "9999-12-31T23:59:59.999999Z");
  CHECK(formatted(253402346096500000) == "10000-01-01T12:34:56.500000Z");

  app::json::Buffer buf;
  app::json::Writer w(buf);
  w.StartArray();
  app::json::timestampMicros(w, "-1");
  app::json::timestampMicros(w, "");
  app::json::timestampMicros(w, "12x");
  w.EndArray();
  CHECK(app::json::view(buf) == R"(["1969-12-31T23:59:59.999999Z","","12x"])");
}

TEST_CASE("app etag: xxh64 reference vectors") {
  CHECK(app::routes::xxh64("") == 0xEF46DB3751D8E999ULL);
  CHECK(app::routes::xxh64("a") == 0xD24EC4F1A98C6E5BULL);
  CHECK(app::routes::xxh64("abc") == 0x44BC2CF5AD770999ULL);
  CHECK(app::routes::strongEtag("abc") == "\"44bc2cf5ad770999\"");
}
