#pragma once
// What a route of upstream_app sees: the request (synchronously), and a Responder that stays valid
// across asynchronous steps (database, Redis) and turns into a no-op once the client is gone.
//
// Contract of a RouteHandler: called once per request on the loop thread, after the whole body
// arrived. It must end the exchange exactly once through `reply` (now or later). `conn`, `path`,
// `query`, `id` and the request headers are valid only during the call: copy what later steps need.
#include <llhttp.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/http/server.h"
#include "upstream_app/db/pool.h"

namespace app {
class AppContext;
}

namespace app::routes {

class Responder {
 public:
  Responder() = default;
  explicit Responder(std::weak_ptr<http::ServerConnection*> token) : token_(std::move(token)) {}

  // The connection, or nullptr when the client went away (or the exchange was aborted).
  http::ServerConnection* connection() const {
    auto alive = token_.lock();
    return alive ? *alive : nullptr;
  }
  // `headers`: extra "Name: value\r\n" lines. An empty contentType sends none (304).
  void send(int status, std::string_view contentType, std::string_view body, std::string_view headers = {}) const;
  void json(int status, std::string_view body, std::string_view headers = {}) const {
    send(status, "application/json", body, headers);
  }
  // {"error": message, ["field": field,] "request_id": ...}
  void error(int status, std::string_view message, std::string_view field = {}, std::string_view headers = {}) const;
  // The answer for a failed database transaction (logged with `what`):
  //   PoolTimeout -> 503 "database busy"; Unavailable/Closed -> 503 "database unavailable";
  //   StatementTimeout -> 504 "database statement timeout"; Server -> 500 "database error".
  void dbError(const db::DbError& e, std::string_view what) const;

 private:
  std::weak_ptr<http::ServerConnection*> token_;
};

struct RouteRequest {
  AppContext& ctx;
  http::ServerConnection& conn;
  std::string_view path;
  std::string_view query;
  std::string_view id;  // the {id} segment of the route pattern, if any
  std::string& body;    // the request body; the handler may move it away
  Responder reply;

  // All values of a request header joined with ", " ("" when absent).
  std::string header(std::string_view name) const;
};

using RouteHandler = void (*)(RouteRequest&);

struct Route {
  llhttp_method_t method;    // HTTP_GET routes answer HEAD too
  std::string_view pattern;  // literal segments and at most one "{id}": "/articles/{id}"
  RouteHandler handler;
};

}  // namespace app::routes
