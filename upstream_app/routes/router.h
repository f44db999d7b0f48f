#pragma once
// Matching a request to upstream_app's route table: pure, unit-tested in tests/unit/app/router_test.cc.
#include <llhttp.h>

#include <span>
#include <string>
#include <string_view>

#include "upstream_app/routes/route.h"

namespace app::routes {

struct RouteMatch {
  const Route* route = nullptr;  // the route to run, or nullptr
  std::string_view id;           // the {id} segment (a view into the path)
  // No route for this method but some for this path: answer 405 with `allow` ("GET, HEAD, PUT").
  bool methodNotAllowed = false;
  std::string allow;
};

// Segment-by-segment comparison; "{id}" matches any one non-empty segment. HEAD runs GET routes.
// The first route (in table order) that matches path and method wins.
RouteMatch matchRoute(std::span<const Route> routes, llhttp_method_t method, std::string_view path);

// Whether `path` fits `pattern`; sets *id to the "{id}" segment.
bool matchPattern(std::string_view pattern, std::string_view path, std::string_view* id);

}  // namespace app::routes
