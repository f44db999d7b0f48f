// upstream_app's route table matching (routes/router.h).
#include "upstream_app/routes/router.h"

#include <doctest/doctest.h>

#include "upstream_app/routes/routes.h"

using app::routes::matchPattern;
using app::routes::matchRoute;

namespace {
void noop(app::routes::RouteRequest&) {}
void other(app::routes::RouteRequest&) {}

constexpr app::routes::Route kTable[] = {
    {HTTP_GET, "/articles/{id}", &noop}, {HTTP_PUT, "/articles/{id}", &other}, {HTTP_GET, "/orders", &noop},
    {HTTP_POST, "/orders", &other},      {HTTP_GET, "/orders/{id}", &noop},
};
}  // namespace

TEST_CASE("app router: patterns") {
  std::string_view id;
  CHECK(matchPattern("/articles/{id}", "/articles/42", &id));
  CHECK(id == "42");
  CHECK(matchPattern("/articles/{id}", "/articles/abc", &id));  // the route validates the id itself
  CHECK(id == "abc");
  CHECK_FALSE(matchPattern("/articles/{id}", "/articles/", &id));
  CHECK_FALSE(matchPattern("/articles/{id}", "/articles", &id));
  CHECK_FALSE(matchPattern("/articles/{id}", "/articles/1/x", &id));
  CHECK_FALSE(matchPattern("/articles/{id}", "/articlesx/1", &id));
  CHECK(matchPattern("/orders", "/orders", nullptr));
  CHECK_FALSE(matchPattern("/orders", "/orders/", nullptr));
  CHECK_FALSE(matchPattern("/orders", "/", nullptr));
  CHECK_FALSE(matchPattern("/orders", "", nullptr));
}

TEST_CASE("app router: method, HEAD, 405 with Allow") {
  auto m = matchRoute(kTable, HTTP_GET, "/articles/7");
  REQUIRE(m.route != nullptr);
  CHECK((m.route->handler == &noop));
  CHECK(m.id == "7");

  m = matchRoute(kTable, HTTP_PUT, "/articles/7");
  REQUIRE(m.route != nullptr);
  CHECK((m.route->handler == &other));

  m = matchRoute(kTable, HTTP_HEAD, "/orders");
  REQUIRE(m.route != nullptr);
  CHECK(m.route->method == HTTP_GET);

  m = matchRoute(kTable, HTTP_DELETE, "/orders");
  CHECK(m.route == nullptr);
  CHECK(m.methodNotAllowed);
  CHECK(m.allow == "GET, HEAD, POST");

  m = matchRoute(kTable, HTTP_GET, "/nope");
  CHECK(m.route == nullptr);
  CHECK_FALSE(m.methodNotAllowed);
}

TEST_CASE("app router: the real table") {
  auto routes = app::routes::appRoutes();
  for (const char* path : {"/healthz", "/readyz", "/articles/1", "/orders", "/orders/3", "/heavy"}) {
    CAPTURE(path);
    CHECK(matchRoute(routes, HTTP_GET, path).route != nullptr);
  }
  CHECK(matchRoute(routes, HTTP_POST, "/orders").route != nullptr);
  CHECK(matchRoute(routes, HTTP_PUT, "/articles/1").route != nullptr);
  CHECK(matchRoute(routes, HTTP_GET, "/orders/3/shipment").route != nullptr);
  CHECK(matchRoute(routes, HTTP_GET, "/orders/3/shipment").route->pattern == "/orders/{id}/shipment");
  CHECK(matchRoute(routes, HTTP_GET, "/metrics").route != nullptr);
  CHECK(matchRoute(routes, HTTP_POST, "/articles/1").allow == "GET, HEAD, PUT");
}
