// ETag and If-None-Match evaluation of upstream_app (routes/etag.h).
#include "upstream_app/routes/etag.h"

#include <doctest/doctest.h>

using app::routes::ifNoneMatchMatches;
using app::routes::strongEtag;

TEST_CASE("app etag: strong, quoted, a function of the bytes") {
  const std::string a = strongEtag(R"({"id":1})");
  CHECK(a.size() == 18);
  CHECK(a.front() == '"');
  CHECK(a.back() == '"');
  CHECK(a == strongEtag(R"({"id":1})"));
  CHECK(a != strongEtag(R"({"id":2})"));
}

TEST_CASE("app etag: If-None-Match uses the weak comparison") {
  const std::string tag = "\"0123456789abcdef\"";
  struct Case {
    const char* header;
    bool match;
  };
  const Case cases[] = {
      {"\"0123456789abcdef\"", true},
      {"W/\"0123456789abcdef\"", true},
      {"*", true},
      {"\"other\", \"0123456789abcdef\"", true},
      {"\"other\",W/\"0123456789abcdef\"", true},
      {"  \"x\" ,  \"0123456789abcdef\"  ", true},
      {"\"a,b\", \"0123456789abcdef\"", true},  // a comma inside a tag
      {"\"other\"", false},
      {"0123456789abcdef", false},  // unquoted
      {"\"0123456789abcde\"", false},
      {"\"0123456789abcdef", false},  // unterminated
      {"", false},
      {"junk, \"0123456789abcdef\"", true},
      {"W/", false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.header);
    CHECK(ifNoneMatchMatches(c.header, tag) == c.match);
  }
}
