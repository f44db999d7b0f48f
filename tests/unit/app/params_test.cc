// upstream_app request-target parsing (routes/params.h): table-driven, no sockets.
#include "upstream_app/routes/params.h"

#include <doctest/doctest.h>

#include <string>

using app::routes::parseOrdersPageQuery;
using app::routes::parsePositiveId;
using app::routes::parseQuery;
using app::routes::percentDecode;
using app::routes::splitTarget;

TEST_CASE("app params: splitTarget") {
  CHECK(splitTarget("/orders?limit=5").first == "/orders");
  CHECK(splitTarget("/orders?limit=5").second == "limit=5");
  CHECK(splitTarget("/orders").second.empty());
  CHECK(splitTarget("/orders?").second.empty());
  CHECK(splitTarget("/a?b?c").second == "b?c");
}

TEST_CASE("app params: parsePositiveId accepts only positive decimal int64") {
  struct Case {
    const char* text;
    int64_t want;  // 0 = rejected
  };
  const Case cases[] = {
      {"1", 1},
      {"42", 42},
      {"007", 7},
      {"9223372036854775807", INT64_MAX},
      {"9223372036854775808", 0},
      {"99999999999999999999", 0},
      {"0", 0},
      {"000", 0},
      {"", 0},
      {"-1", 0},
      {"+1", 0},
      {" 1", 0},
      {"1 ", 0},
      {"1a", 0},
      {"abc", 0},
      {"1.0", 0},
      {"0x10", 0},
      {"1e3", 0},
      {"%31", 0},
      {"00000000000000000000000000000000001", 0},  // too long to be a sensible id
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto got = parsePositiveId(c.text);
    if (c.want == 0) {
      CHECK_FALSE(got.has_value());
    } else {
      REQUIRE(got.has_value());
      CHECK(*got == c.want);
    }
  }
}

TEST_CASE("app params: percentDecode") {
  CHECK(percentDecode("a%20b").value() == "a b");
  CHECK(percentDecode("a+b").value() == "a b");
  CHECK(percentDecode("%41%62").value() == "Ab");
  CHECK(percentDecode("%4a").value() == "J");
  CHECK_FALSE(percentDecode("%").has_value());
  CHECK_FALSE(percentDecode("%4").has_value());
  CHECK_FALSE(percentDecode("%zz").has_value());
  CHECK_FALSE(percentDecode("ab%").has_value());
}

TEST_CASE("app params: parseQuery") {
  auto q = parseQuery("a=1&b=&c&&d=x%3Dy");
  REQUIRE(q.has_value());
  REQUIRE(q->size() == 4);
  CHECK((*q)[0].name == "a");
  CHECK((*q)[0].value == "1");
  CHECK((*q)[1].name == "b");
  CHECK((*q)[1].value.empty());
  CHECK((*q)[2].name == "c");
  CHECK((*q)[3].value == "x=y");
  CHECK(parseQuery("")->empty());
  CHECK_FALSE(parseQuery("a=%G0").has_value());
}

TEST_CASE("app params: GET /orders query") {
  struct Case {
    const char* query;
    bool ok;
    int limit;
    int64_t after;  // 0 = none
    const char* field;
  };
  const Case cases[] = {
      {"", true, 20, 0, ""},
      {"limit=1", true, 1, 0, ""},
      {"limit=100", true, 100, 0, ""},
      {"limit=020", true, 20, 0, ""},
      {"limit=5&after=900", true, 5, 900, ""},
      {"after=3", true, 20, 3, ""},
      {"other=x&limit=7", true, 7, 0, ""},
      {"limit=0", false, 0, 0, "limit"},
      {"limit=101", false, 0, 0, "limit"},
      {"limit=-1", false, 0, 0, "limit"},
      {"limit=abc", false, 0, 0, "limit"},
      {"limit=", false, 0, 0, "limit"},
      {"limit", false, 0, 0, "limit"},
      {"limit=1.5", false, 0, 0, "limit"},
      {"limit=99999999999999999999", false, 0, 0, "limit"},
      {"limit=5&limit=6", false, 0, 0, "limit"},
      {"after=0", false, 0, 0, "after"},
      {"after=-5", false, 0, 0, "after"},
      {"after=x", false, 0, 0, "after"},
      {"after=", false, 0, 0, "after"},
      {"after=1&after=2", false, 0, 0, "after"},
      {"limit=%", false, 0, 0, "query"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.query);
    auto r = parseOrdersPageQuery(c.query);
    CHECK(r.ok() == c.ok);
    if (c.ok) {
      CHECK(r.query.limit == c.limit);
      CHECK(r.query.after.value_or(0) == c.after);
    } else {
      CHECK(r.field == c.field);
      CHECK(r.error.find(c.field) != std::string::npos);  // the message names the parameter
    }
  }
}
