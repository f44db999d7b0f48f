#include "upstream_app/routes/router.h"

#include <vector>

namespace app::routes {

namespace {

// Next segment of a path starting with '/': "/a/b" -> "a", rest "/b".
bool nextSegment(std::string_view& rest, std::string_view& segment) {
  if (rest.empty() || rest[0] != '/') {
    return false;
  }
  rest.remove_prefix(1);
  const size_t slash = rest.find('/');
  segment = rest.substr(0, slash);
  rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  return true;
}

}  // namespace

bool matchPattern(std::string_view pattern, std::string_view path, std::string_view* id) {
  std::string_view p = pattern;
  std::string_view q = path;
  while (!p.empty() || !q.empty()) {
    std::string_view ps;
    std::string_view qs;
    if (!nextSegment(p, ps) || !nextSegment(q, qs)) {
      return false;
    }
    if (ps == "{id}") {
      if (qs.empty()) {
        return false;
      }
      if (id != nullptr) {
        *id = qs;
      }
    } else if (ps != qs) {
      return false;
    }
  }
  return true;
}

RouteMatch matchRoute(std::span<const Route> routes, llhttp_method_t method, std::string_view path) {
  RouteMatch m;
  const llhttp_method_t effective = method == HTTP_HEAD ? HTTP_GET : method;
  std::vector<llhttp_method_t> allowed;
  for (const Route& r : routes) {
    std::string_view id;
    if (!matchPattern(r.pattern, path, &id)) {
      continue;
    }
    if (r.method == effective) {
      m.route = &r;
      m.id = id;
      return m;
    }
    allowed.push_back(r.method);
  }
  if (!allowed.empty()) {
    m.methodNotAllowed = true;
    for (llhttp_method_t am : allowed) {
      if (!m.allow.empty()) {
        m.allow += ", ";
      }
      m.allow += llhttp_method_name(am);
      if (am == HTTP_GET) {
        m.allow += ", HEAD";
      }
    }
  }
  return m;
}

}  // namespace app::routes
