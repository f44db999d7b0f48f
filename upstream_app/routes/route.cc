#include "upstream_app/routes/route.h"

#include "common/obs/log.h"
#include "upstream_app/json/json.h"

namespace app::routes {

void Responder::send(int status, std::string_view contentType, std::string_view body, std::string_view headers) const {
  if (http::ServerConnection* c = connection()) {
    c->sendResponse(status, contentType, body, headers);
  }
}

void Responder::error(int status, std::string_view message, std::string_view field, std::string_view headers) const {
  if (http::ServerConnection* c = connection()) {
    c->sendResponse(status, "application/json", json::errorBody(message, c->requestId(), field), headers);
  }
}

void Responder::dbError(const db::DbError& e, std::string_view what) const {
  http::ServerConnection* c = connection();
  obs::warn("database request failed", obs::LogFields()
                                           .str("what", what)
                                           .str("kind", db::dbErrorKindName(e.kind))
                                           .str("sqlstate", e.sqlState)
                                           .str("error", e.message)
                                           .str("request_id", c != nullptr ? c->requestId() : ""));
  switch (e.kind) {
    case db::DbErrorKind::PoolTimeout:
      error(503, "database busy", {}, "Retry-After: 1\r\n");
      return;
    case db::DbErrorKind::StatementTimeout:
      error(504, "database statement timeout");
      return;
    case db::DbErrorKind::Server:
      error(500, "database error");
      return;
    default:
      error(503, "database unavailable", {}, "Retry-After: 1\r\n");
      return;
  }
}

std::string RouteRequest::header(std::string_view name) const {
  std::string out;
  for (const http::Header& h : conn.request().headers) {
    if (http::iequals(h.name, name)) {
      if (!out.empty()) {
        out += ", ";
      }
      out += h.value;
    }
  }
  return out;
}

}  // namespace app::routes
