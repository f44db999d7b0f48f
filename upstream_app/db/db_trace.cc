#include "upstream_app/db/db_trace.h"

#include <libpq-fe.h>

#include <cstdlib>

#include "common/obs/trace/semconv.h"

namespace app::db {

namespace tr = obs::trace;

DbPeer dbPeerFromConninfo(const std::string& conninfo) {
  DbPeer peer;
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (parsed == nullptr) {
    PQfreemem(error);
    peer.address = "localhost";
    return peer;
  }
  std::string host;
  std::string hostaddr;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || o->val[0] == '\0') {
      continue;
    }
    const std::string_view key = o->keyword;
    if (key == "host") {
      host = o->val;
    } else if (key == "hostaddr") {
      hostaddr = o->val;
    } else if (key == "port") {
      // A list ("6432,6433") goes with a host list: the first entry describes the first host.
      peer.port = std::atoi(o->val);
    } else if (key == "dbname") {
      peer.dbName = o->val;
    }
  }
  PQconninfoFree(parsed);
  peer.address = !host.empty() ? host : !hostaddr.empty() ? hostaddr : "localhost";
  if (const size_t comma = peer.address.find(','); comma != std::string::npos) {
    peer.address.resize(comma);
  }
  if (peer.port <= 0) {
    peer.port = 5432;
  }
  return peer;
}

std::string sqlOperationName(std::string_view sql) {
  size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(') {
      ++i;
    } else if (sql.substr(i, 2) == "--") {
      const size_t nl = sql.find('\n', i);
      i = nl == std::string_view::npos ? sql.size() : nl + 1;
    } else if (sql.substr(i, 2) == "/*") {
      const size_t end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else {
      break;
    }
  }
  std::string op;
  while (i < sql.size() && op.size() < 15) {
    char c = sql[i++];
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    } else if (!(c >= 'A' && c <= 'Z')) {
      break;
    }
    op.push_back(c);
  }
  return op;
}

void describeStatementSpan(tr::Span& span, const DbPeer& peer, std::string_view sql) {
  if (!span.recording()) {
    return;
  }
  const std::string op = sqlOperationName(sql);
  std::string name = op.empty() ? std::string("postgresql") : op;
  if (!peer.dbName.empty()) {
    name.append(" ").append(peer.dbName);
  }
  span.setName(name)
      .setString(tr::attr::kDbSystem, "postgresql")
      .setString(tr::attr::kDbQueryText, sql)
      .setString(tr::attr::kServerAddress, peer.address)
      .setInt(tr::attr::kServerPort, peer.port);
  if (!op.empty()) {
    span.setString(tr::attr::kDbOperationName, op);
  }
  if (!peer.dbName.empty()) {
    span.setString(tr::attr::kDbNamespace, peer.dbName);
  }
}

void failStatementSpan(tr::Span& span, std::string_view errorType, std::string_view sqlState,
                       std::string_view message) {
  if (!span.recording()) {
    return;
  }
  span.setString(tr::attr::kErrorType, errorType);
  if (!sqlState.empty()) {
    span.setString(tr::attr::kDbResponseStatusCode, sqlState);
  }
  span.setError(message);
}

}  // namespace app::db
