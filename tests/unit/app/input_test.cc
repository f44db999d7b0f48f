// upstream_app request bodies (routes/input.h): strict JSON, validation naming the field.
#include "upstream_app/routes/input.h"

#include <doctest/doctest.h>

#include <string>

using app::routes::ArticleUpdate;
using app::routes::InputError;
using app::routes::NewOrder;
using app::routes::parseArticleUpdate;
using app::routes::parseNewOrder;

TEST_CASE("app input: a valid order") {
  NewOrder o;
  InputError e = parseNewOrder(
      R"({"customer_id":1,"items":[{"sku":"A","quantity":2,"unit_price_cents":150},{"sku":"B,\"{}\\","quantity":1,"unit_price_cents":0,"extra":true}],"note":"ignored"})",
      o);
  REQUIRE_MESSAGE(e.ok(), e.message);
  CHECK(o.customerId == 1);
  REQUIRE(o.items.size() == 2);
  CHECK(o.items[0].sku == "A");
  CHECK(o.items[0].quantity == 2);
  CHECK(o.items[0].unitPriceCents == 150);
  CHECK(o.items[1].sku == "B,\"{}\\");
  CHECK(o.items[1].unitPriceCents == 0);
}

TEST_CASE("app input: invalid orders name the field") {
  struct Case {
    const char* body;
    const char* field;
  };
  const Case cases[] = {
      {"", "body"},
      {"{", "body"},
      {"not json", "body"},
      {"{\"customer_id\":1,}", "body"},    // trailing comma
      {"{\"customer_id\":1} {}", "body"},  // content after the document
      {"{\"customer_id\":NaN}", "body"},
      {"/* c */ {\"customer_id\":1}", "body"},  // comments
      {"[1,2]", "body"},                        // not an object
      {"\"text\"", "body"},
      {"{\"customer_id\":\"\xff\xfe\"}", "body"},  // invalid UTF-8
      {"{\"items\":[{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":1}]}", "customer_id"},
      {"{\"customer_id\":0,\"items\":[]}", "customer_id"},
      {"{\"customer_id\":-3,\"items\":[]}", "customer_id"},
      {"{\"customer_id\":1.5,\"items\":[]}", "customer_id"},
      {"{\"customer_id\":1.0,\"items\":[]}", "customer_id"},
      {"{\"customer_id\":\"1\",\"items\":[]}", "customer_id"},
      {"{\"customer_id\":null,\"items\":[]}", "customer_id"},
      {"{\"customer_id\":18446744073709551615,\"items\":[]}", "customer_id"},
      {"{\"customer_id\":1}", "items"},
      {"{\"customer_id\":1,\"items\":[]}", "items"},
      {"{\"customer_id\":1,\"items\":{}}", "items"},
      {"{\"customer_id\":1,\"items\":null}", "items"},
      {"{\"customer_id\":1,\"items\":[5]}", "items[0]"},
      {"{\"customer_id\":1,\"items\":[{\"quantity\":1,\"unit_price_cents\":1}]}", "items[0].sku"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"\",\"quantity\":1,\"unit_price_cents\":1}]}", "items[0].sku"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":7,\"quantity\":1,\"unit_price_cents\":1}]}", "items[0].sku"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"a\\u0000b\",\"quantity\":1,\"unit_price_cents\":1}]}", "items[0].sku"},
      // Unpaired surrogate escapes decode to bytes that are not UTF-8 (found by the app_input
      // fuzzer, tests/fuzz/regressions/app_input/sku_with_unpaired_surrogate_escape).
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"BOOK\\udd32-1\",\"quantity\":1,\"unit_price_cents\":1}]}",
       "items[0].sku"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"\\uDFFF\",\"quantity\":1,\"unit_price_cents\":1}]}", "items[0].sku"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"unit_price_cents\":1}]}", "items[0].quantity"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":0,\"unit_price_cents\":1}]}", "items[0].quantity"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":-1,\"unit_price_cents\":1}]}", "items[0].quantity"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":2.5,\"unit_price_cents\":1}]}", "items[0].quantity"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":2147483648,\"unit_price_cents\":1}]}",
       "items[0].quantity"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":1}]}", "items[0].unit_price_cents"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":-1}]}",
       "items[0].unit_price_cents"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":\"1\"}]}",
       "items[0].unit_price_cents"},
      {"{\"customer_id\":1,\"items\":[{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":1},{\"sku\":\"B\","
       "\"quantity\":0,"
       "\"unit_price_cents\":1}]}",
       "items[1].quantity"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.body);
    NewOrder o;
    InputError e = parseNewOrder(c.body, o);
    CHECK_FALSE(e.ok());
    CHECK(e.field == c.field);
    CHECK_FALSE(e.message.empty());
    if (std::string(c.field) != "body") {
      CHECK(e.message.find(c.field) != std::string::npos);
    }
  }
}

TEST_CASE("app input: item count bound") {
  std::string body = "{\"customer_id\":1,\"items\":[";
  for (size_t i = 0; i <= app::routes::kMaxOrderItems; ++i) {
    body += std::string(i == 0 ? "" : ",") + "{\"sku\":\"A\",\"quantity\":1,\"unit_price_cents\":1}";
  }
  body += "]}";
  NewOrder o;
  CHECK(parseNewOrder(body, o).field == "items");
}

TEST_CASE("app input: article update") {
  ArticleUpdate u;
  CHECK(parseArticleUpdate(R"({"title":"T","body":""})", u).ok());
  CHECK(u.title == "T");
  CHECK(u.body.empty());
  CHECK(parseArticleUpdate(R"({"title":"héllo","body":"x"})", u).ok());
  CHECK(parseArticleUpdate(R"({"body":"x"})", u).field == "title");
  CHECK(parseArticleUpdate(R"({"title":"","body":"x"})", u).field == "title");
  CHECK(parseArticleUpdate(R"({"title":1,"body":"x"})", u).field == "title");
  CHECK(parseArticleUpdate(R"({"title":"t"})", u).field == "body");
  CHECK(parseArticleUpdate(R"({"title":"t","body":null})", u).field == "body");
  CHECK(parseArticleUpdate(R"({"title":"t","body":["x"]})", u).field == "body");
  CHECK(parseArticleUpdate(R"({"title":"a\ud800","body":"x"})", u).field == "body");  // no low half: JSON error
  CHECK(parseArticleUpdate(R"({"title":"t","body":"x\udc00y"})", u).field == "body");
  CHECK(parseArticleUpdate(R"({"title":"\ud83d\ude00","body":"x"})", u).ok());  // a pair is a character
  CHECK(u.title == "\xf0\x9f\x98\x80");
  CHECK(parseArticleUpdate("{\"title\":\"t\",\"body\":\"x\"", u).field == "body");
  CHECK(parseArticleUpdate(std::string("{\"title\":\"") + std::string(1001, 'a') + "\",\"body\":\"\"}", u).field ==
        "title");
}

TEST_CASE("app input: order fingerprint ignores formatting, not content") {
  NewOrder a;
  NewOrder b;
  NewOrder c;
  REQUIRE(parseNewOrder(R"({"customer_id":1,"items":[{"sku":"A","quantity":2,"unit_price_cents":150}]})", a).ok());
  REQUIRE(
      parseNewOrder(R"( { "items" : [ {"unit_price_cents":150, "quantity":2, "sku":"A"} ], "customer_id" : 1 } )", b)
          .ok());
  REQUIRE(parseNewOrder(R"({"customer_id":1,"items":[{"sku":"A","quantity":3,"unit_price_cents":150}]})", c).ok());
  CHECK(app::routes::orderFingerprint(a) == app::routes::orderFingerprint(b));
  CHECK(app::routes::orderFingerprint(a) != app::routes::orderFingerprint(c));
  CHECK(app::routes::orderFingerprint(a).size() == 16);
}

TEST_CASE("app input: PostgreSQL array literals") {
  using app::routes::intArrayLiteral;
  using app::routes::textArrayLiteral;
  CHECK(textArrayLiteral({"A", "b c", "x,y", "q\"uote", "back\\slash", "NULL", "{}"}) ==
        R"({"A","b c","x,y","q\"uote","back\\slash","NULL","{}"})");
  CHECK(textArrayLiteral({}) == "{}");
  CHECK(intArrayLiteral({1, -2, 300}) == "{1,-2,300}");
}

TEST_CASE("app input: fnv1a64 and hex16") {
  CHECK(app::routes::fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(app::routes::fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(app::routes::hex16(0x1234abcdULL) == "000000001234abcd");
}
