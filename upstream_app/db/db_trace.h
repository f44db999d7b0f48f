#pragma once
// Client spans for the pool's statements (OpenTelemetry database semantic conventions): one span
// per statement sent -- set_config, the route's statements, pre-pings -- each a child of the
// request span that was current when the transaction was submitted (Pool::run captures it).
//
//   name                  "<db.operation.name> <db.namespace>", e.g. "SELECT app"
//   db.system             "postgresql"
//   db.operation.name     the statement's first keyword ("SELECT", "UPDATE", "WITH"...)
//   db.query.text         the SQL as sent: parameters are $1, $2... placeholders, so no values
//   db.namespace          the database name of the conninfo
//   server.address/port   where the pool connects (PgBouncer), from the conninfo
//   error                 status Error; error.type and db.response.status_code = SQLSTATE for a
//                         statement the server rejected (57014 for statement_timeout), error.type
//                         "skipped" for the statements after it (not run: the implicit transaction
//                         aborted), "timeout" / "connection_lost" / "closed" for statements with no
//                         result when the pipeline failed.
//
// Timing: a transaction is ONE pipeline, so every statement is in flight from the moment the
// pipeline is sent until its own result arrives (the server runs them in order; results usually
// arrive together, at the Sync). Spans therefore all start at the send and end at their result.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/obs/trace/span.h"

namespace app::db {

// Where the statements go, as span attributes. Parsed once from the conninfo (no I/O).
struct DbPeer {
  std::string address;  // host (or unix socket directory); "localhost" when the conninfo has none
  int port = 5432;
  std::string dbName;   // db.namespace; empty when the conninfo names none
};
DbPeer dbPeerFromConninfo(const std::string& conninfo);

// The SQL's first keyword, upper-cased ("SELECT"); leading whitespace, `--` and `/* */` comments
// and '(' are skipped. Empty when there is none. At most 15 chars (SSO: no allocation).
std::string sqlOperationName(std::string_view sql);

// Starts-and-fills one statement span's attributes (name, db.*, server.*). `span` must be a fresh
// span from SpanParent::startChild; does nothing when it does not record.
void describeStatementSpan(obs::trace::Span& span, const DbPeer& peer, std::string_view sql);

// Marks a statement span failed: error.type (and db.response.status_code when `sqlState` is set),
// status Error with `message`.
void failStatementSpan(obs::trace::Span& span, std::string_view errorType, std::string_view sqlState,
                       std::string_view message);

}  // namespace app::db
