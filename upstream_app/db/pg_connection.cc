#include "upstream_app/db/pg_connection.h"

#include "common/util/net.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>

#include "common/obs/log.h"

namespace app::db {

namespace {

// libpq messages end in "\n" and continue on "\n\t" lines (hints); logs and JSON want one line.
std::string oneLine(const char* text) {
  std::string out;
  if (text == nullptr) {
    return out;
  }
  for (const char* p = text; *p != '\0'; ++p) {
    char c = *p;
    if (c == '\n' || c == '\r' || c == '\t') {
      if (!out.empty() && out.back() != ' ') {
        out.push_back(' ');
      }
      continue;
    }
    out.push_back(c);
  }
  while (!out.empty() && out.back() == ' ') {
    out.pop_back();
  }
  return out;
}

std::string connError(const PGconn* conn, const char* fallback) {
  std::string m = conn != nullptr ? oneLine(PQerrorMessage(conn)) : std::string();
  return m.empty() ? fallback : m;
}


bool isNumericHost(const std::string& host) {
  in_addr a4{};
  in6_addr a6{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// SQLSTATEs after which the session is gone even though an error result arrived:
// class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
bool isConnectionLevelSqlState(const std::string& s) {
  return s.rfind("08", 0) == 0 || s == "57P01" || s == "57P02" || s == "57P03";
}

// libpq prints notices to stderr by default; route them to the structured log.
void logNotice(void* /*arg*/, const char* message) {
  obs::warn("postgres notice", obs::LogFields().str("notice", oneLine(message)));
}

void initTimer(uv_loop_t* loop, uvx::OwnedHandle<uv_timer_t>& timer, void* owner) {
  uv_timer_init(loop, timer.get());
  timer.markInitialized();
  timer.get()->data = owner;
}

PgError makeError(PgErrorKind kind, std::string message, std::string sqlState = "", bool maybeExecuted = false) {
  PgError e;
  e.kind = kind;
  e.message = std::move(message);
  e.sqlState = std::move(sqlState);
  e.maybeExecuted = maybeExecuted;
  return e;
}

}  // namespace

const char* pgErrorKindName(PgErrorKind kind) {
  switch (kind) {
    case PgErrorKind::None:
      return "ok";
    case PgErrorKind::ConnectFailed:
      return "connect failed";
    case PgErrorKind::ConnectTimeout:
      return "connect timeout";
    case PgErrorKind::QueryTimeout:
      return "query timeout";
    case PgErrorKind::ConnectionLost:
      return "connection lost";
    case PgErrorKind::ServerError:
      return "server error";
    case PgErrorKind::Busy:
      return "busy";
    case PgErrorKind::NotConnected:
      return "not connected";
    case PgErrorKind::Closed:
      return "closed";
  }
  return "unknown";
}

std::string PgError::describe() const {
  if (ok()) {
    return "ok";
  }
  std::string out = pgErrorKindName(kind);
  if (!sqlState.empty()) {
    out += " (" + sqlState + ")";
  }
  if (!message.empty()) {
    out += ": " + message;
  }
  return out;
}

PgConnection::PgConnection(uv_loop_t* loop, PgConnectionOptions options)
    : loop_(loop), options_(std::move(options)), alive_(std::make_shared<bool>(true)) {
  initTimer(loop_, timer_, this);
  initTimer(loop_, deferTimer_, this);
}

PgConnection::~PgConnection() {
  *alive_ = false;
  teardown();
}

const char* PgConnection::stateName(State s) {
  switch (s) {
    case State::Disconnected:
      return "disconnected";
    case State::Connecting:
      return "connecting";
    case State::Ready:
      return "ready";
    case State::Busy:
      return "busy";
    case State::Closed:
      return "closed";
  }
  return "unknown";
}

void PgConnection::defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
  if (deferTimer_.isOpen()) {
    uv_timer_start(deferTimer_.get(), &PgConnection::onDeferThunk, 0, 0);
  }
}

void PgConnection::onDeferThunk(uv_timer_t* t) {
  auto* self = static_cast<PgConnection*>(t->data);
  if (self == nullptr) {
    return;
  }
  std::vector<std::function<void()>> ready;
  ready.swap(self->deferred_);
  auto alive = self->alive_;
  for (auto& fn : ready) {
    if (!*alive) {
      return;
    }
    fn();
  }
}

// ---- connect -------------------------------------------------------------------------------

void PgConnection::connect(std::chrono::milliseconds timeout, ConnectCallback cb) {
  if (state_ == State::Closed) {
    cb(makeError(PgErrorKind::Closed, "connection closed"));
    return;
  }
  if (state_ != State::Disconnected) {
    defer([cb = std::move(cb), state = stateName(state_)] {
      cb(makeError(PgErrorKind::Busy, std::string("connect() while ") + state));
    });
    return;
  }

  char* parseError = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options_.conninfo.c_str(), &parseError);
  if (parsed == nullptr) {
    std::string why = parseError != nullptr ? oneLine(parseError) : "out of memory";
    PQfreemem(parseError);
    lastError_ = "invalid database url: " + why;
    defer([cb = std::move(cb), why = lastError_] { cb(makeError(PgErrorKind::ConnectFailed, why)); });
    return;
  }
  params_.clear();
  std::string host;
  std::string hostaddr;
  std::string port;
  std::string dbname;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) {
      continue;
    }
    std::string key = o->keyword;
    params_.emplace_back(key, o->val);
    if (key == "host") {
      host = o->val;
    } else if (key == "hostaddr") {
      hostaddr = o->val;
    } else if (key == "port") {
      port = o->val;
    } else if (key == "dbname") {
      dbname = o->val;
    }
  }
  PQconninfoFree(parsed);
  std::string shownHost = host.empty() ? (hostaddr.empty() ? "localhost" : hostaddr) : host;
  target_ = (shownHost.find(':') != std::string::npos && shownHost[0] != '/' ? "[" + shownHost + "]" : shownHost) +
            ":" + (port.empty() ? "5432" : port) + "/" + dbname;

  state_ = State::Connecting;
  connectCb_ = std::move(cb);
  opTimeout_ = timeout;
  uv_timer_start(timer_.get(), &PgConnection::onTimerThunk,
                 static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 1)), 0);

  // libpq looks host names up with a blocking getaddrinfo() inside PQconnectStartParams; resolve
  // on the thread pool instead and pass the address as hostaddr (host still names the server for
  // TLS checks and messages). Host lists and unix socket directories are left to libpq.
  bool needsLookup = hostaddr.empty() && !host.empty() && host.find(',') == std::string::npos && host[0] != '/' &&
                     host[0] != '@' && !isNumericHost(host);
  if (!needsLookup) {
    startLibpq({});
    return;
  }
  auto* resolve = new Resolve;
  resolve->owner = this;
  resolve->req.data = resolve;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop_, &resolve->req, &PgConnection::onResolvedThunk, host.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete resolve;
    failConnect(PgErrorKind::ConnectFailed, "resolve " + host + ": " + uv_strerror(rc));
    return;
  }
  resolve_ = resolve;
}

void PgConnection::onResolvedThunk(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* resolve = static_cast<Resolve*>(req->data);
  PgConnection* self = resolve->owner;
  std::vector<std::string> addresses = status == 0 ? util::addressStrings(res) : std::vector<std::string>{};
  if (res != nullptr) {
    uv_freeaddrinfo(res);
  }
  delete resolve;
  if (self == nullptr) {
    return;  // abandoned (timeout, disconnect, close or destruction)
  }
  self->resolve_ = nullptr;
  if (addresses.empty()) {
    self->failConnect(PgErrorKind::ConnectFailed,
                      "resolve " + self->target_ + ": " + (status != 0 ? uv_strerror(status) : "no IPv4/IPv6 address"));
    return;
  }
  self->startLibpq(addresses);
}

void PgConnection::cancelResolve() {
  if (resolve_ == nullptr) {
    return;
  }
  resolve_->owner = nullptr;
  uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
  resolve_ = nullptr;
}

void PgConnection::startLibpq(const std::vector<std::string>& addresses) {
  // Several addresses (e.g. ::1 and 127.0.0.1 for localhost): libpq tries host/hostaddr pairs in
  // order, so repeat the name once per address.
  std::string hostaddrList;
  std::string hostList;
  for (const std::string& a : addresses) {
    hostaddrList += (hostaddrList.empty() ? "" : ",") + a;
  }
  std::vector<const char*> keys;
  std::vector<const char*> values;
  bool hasAppName = false;
  for (const auto& [k, v] : params_) {
    if (k == "application_name" || k == "fallback_application_name") {
      hasAppName = true;
    }
    if (k == "host" && !addresses.empty()) {
      for (size_t i = 0; i < addresses.size(); ++i) {
        hostList += (i == 0 ? "" : ",") + v;
      }
      keys.push_back("host");
      values.push_back(hostList.c_str());
      continue;
    }
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  if (!addresses.empty()) {
    keys.push_back("hostaddr");
    values.push_back(hostaddrList.c_str());
  }
  if (!hasAppName && !options_.applicationName.empty()) {
    keys.push_back("fallback_application_name");
    values.push_back(options_.applicationName.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);

  conn_ = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/0);
  if (conn_ == nullptr) {
    failConnect(PgErrorKind::ConnectFailed, "connect to " + target_ + ": out of memory");
    return;
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    failConnect(PgErrorKind::ConnectFailed, connError(conn_, "connect failed"));
    return;
  }
  PQsetNoticeProcessor(conn_, &logNotice, nullptr);
  // libpq's contract: after PQconnectStart, behave as if PQconnectPoll returned POLLING_WRITING.
  int rc = watch(UV_WRITABLE);
  if (rc != 0) {
    failConnect(PgErrorKind::ConnectFailed, "connect to " + target_ + ": cannot watch the socket: " + uv_strerror(rc));
  }
}

void PgConnection::continueConnect() {
  int rc = 0;
  switch (PQconnectPoll(conn_)) {
    case PGRES_POLLING_OK:
      finishConnect();
      return;
    case PGRES_POLLING_READING:
      rc = watch(UV_READABLE);
      break;
    case PGRES_POLLING_WRITING:
      rc = watch(UV_WRITABLE);
      break;
    default:
      failConnect(PgErrorKind::ConnectFailed, connError(conn_, "connect failed"));
      return;
  }
  if (rc != 0) {
    failConnect(PgErrorKind::ConnectFailed, "connect to " + target_ + ": cannot watch the socket: " + uv_strerror(rc));
  }
}

void PgConnection::finishConnect() {
  if (PQsetnonblocking(conn_, 1) != 0) {
    failConnect(PgErrorKind::ConnectFailed, connError(conn_, "cannot switch the connection to non-blocking mode"));
    return;
  }
  // Idle watch: notices a server-side close right away.
  int rc = watch(UV_READABLE);
  if (rc != 0) {
    failConnect(PgErrorKind::ConnectFailed, "connect to " + target_ + ": cannot watch the socket: " + uv_strerror(rc));
    return;
  }
  uv_timer_stop(timer_.get());
  state_ = State::Ready;
  connectedAtMs_ = now();
  lastUsedAtMs_ = connectedAtMs_;
  lastError_.clear();
  ConnectCallback cb = std::move(connectCb_);
  connectCb_ = nullptr;
  if (cb) {
    cb(PgError{});  // last statement: cb may destroy us
  }
}

void PgConnection::failConnect(PgErrorKind kind, const std::string& message) {
  teardown();
  state_ = State::Disconnected;
  lastError_ = message;
  ConnectCallback cb = std::move(connectCb_);
  connectCb_ = nullptr;
  if (cb) {
    defer([cb = std::move(cb), err = makeError(kind, message)] { cb(err); });
  }
}

// ---- statements ----------------------------------------------------------------------------

bool PgConnection::acceptStatement(QueryCallback& cb) {
  if (state_ == State::Closed) {
    PgQueryResult r;
    r.error = makeError(PgErrorKind::Closed, "connection closed");
    cb(std::move(r));
    return false;
  }
  if (state_ != State::Ready) {
    PgError err = state_ == State::Busy
                      ? makeError(PgErrorKind::Busy, "a statement is already running on this connection")
                  : state_ == State::Connecting
                      ? makeError(PgErrorKind::NotConnected, "still connecting to " + target_)
                      : makeError(PgErrorKind::NotConnected,
                                  lastError_.empty() ? std::string("not connected") : "not connected: " + lastError_);
    defer([cb = std::move(cb), err = std::move(err)] {
      PgQueryResult r;
      r.error = err;
      cb(std::move(r));
    });
    return false;
  }
  return true;
}

void PgConnection::sendFailed(QueryCallback cb) {
  std::string why = connError(conn_, "cannot send the statement");
  teardown();
  state_ = State::Disconnected;
  lastError_ = why;
  defer([cb = std::move(cb), why] {
    PgQueryResult r;
    r.error = makeError(PgErrorKind::ConnectionLost, why);
    cb(std::move(r));
  });
}

void PgConnection::query(std::string sql, Params params, std::chrono::milliseconds timeout, QueryCallback cb) {
  if (!acceptStatement(cb)) {
    return;
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) {
    values.push_back(p ? p->c_str() : nullptr);
  }
  // Unnamed statement, text parameters, text results: works through PgBouncer's transaction mode.
  if (PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr,
                        0) == 0) {
    sendFailed(std::move(cb));
    return;
  }
  pipelining_ = false;
  startSending(timeout, std::move(cb));
}

void PgConnection::pipeline(std::vector<PgStatement> statements, std::chrono::milliseconds timeout, QueryCallback cb,
                            StatementTimes times) {
  if (!acceptStatement(cb)) {
    return;
  }
  if (PQenterPipelineMode(conn_) == 0) {
    sendFailed(std::move(cb));
    return;
  }
  std::vector<const char*> values;
  for (const PgStatement& st : statements) {
    values.clear();
    for (const auto& p : st.params) {
      values.push_back(p ? p->c_str() : nullptr);
    }
    if (PQsendQueryParams(conn_, st.sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                          nullptr, 0) == 0) {
      // Nothing ran: without the Sync the server commits nothing, and the connection is dropped.
      sendFailed(std::move(cb));
      return;
    }
  }
  if (PQpipelineSync(conn_) == 0) {
    sendFailed(std::move(cb));
    return;
  }
  pipelining_ = true;
  pipelineCount_ = statements.size();
  pipelineIndex_ = 0;
  pipelineResults_.clear();
  pipelineResults_.resize(statements.size());
  pipelineFailed_ = -1;
  pipelineTimed_ = times == StatementTimes::Record;
  pipelineDoneNs_.assign(pipelineTimed_ ? statements.size() : 0, 0);
  startSending(timeout, std::move(cb));
}

void PgConnection::startSending(std::chrono::milliseconds timeout, QueryCallback cb) {
  state_ = State::Busy;
  queryCb_ = std::move(cb);
  opTimeout_ = timeout;
  result_.reset();
  uv_timer_start(timer_.get(), &PgConnection::onTimerThunk,
                 static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 1)), 0);
  int flushed = PQflush(conn_);
  if (flushed < 0) {
    failQuery(PgErrorKind::ConnectionLost, connError(conn_, "cannot send the statement"));
    return;
  }
  // Until everything is sent, wait for writability too; keep reading meanwhile so a server that
  // answers early (an error) cannot deadlock us against a full send buffer.
  flushing_ = flushed == 1;
  int rc = watch(flushing_ ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
  if (rc != 0) {
    failQuery(PgErrorKind::ConnectionLost, std::string("cannot watch the socket: ") + uv_strerror(rc));
  }
}

void PgConnection::onQueryIo(int events) {
  if ((events & UV_READABLE) != 0 && PQconsumeInput(conn_) == 0) {
    failQuery(PgErrorKind::ConnectionLost, connError(conn_, "connection lost"));
    return;
  }
  if (flushing_) {
    int flushed = PQflush(conn_);
    if (flushed < 0) {
      failQuery(PgErrorKind::ConnectionLost, connError(conn_, "connection lost while sending"));
      return;
    }
    if (flushed == 0) {
      flushing_ = false;
      int rc = watch(UV_READABLE);
      if (rc != 0) {
        failQuery(PgErrorKind::ConnectionLost, std::string("cannot watch the socket: ") + uv_strerror(rc));
        return;
      }
    }
  }
  drainResults();
}

void PgConnection::drainResults() {
  if (pipelining_) {
    drainPipelineResults();
    return;
  }
  while (PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      finishQuery();
      return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      PQclear(res);
      failQuery(PgErrorKind::ConnectionLost, "COPY is not supported on PgConnection; connection closed");
      return;
    }
    // Keep the first error, otherwise the last result.
    if (result_ && (result_.status() == PGRES_FATAL_ERROR || result_.status() == PGRES_BAD_RESPONSE)) {
      PQclear(res);
    } else {
      result_ = PgResult(res);
    }
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    failQuery(PgErrorKind::ConnectionLost, connError(conn_, "connection lost"));
  }
}

void PgConnection::drainPipelineResults() {
  // Each statement yields its result(s) then a null; a failed statement's successors yield
  // PGRES_PIPELINE_ABORTED; PGRES_PIPELINE_SYNC ends the pipeline (no null follows it).
  while (PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      if (pipelineTimed_ && pipelineIndex_ < pipelineCount_) {
        pipelineDoneNs_[pipelineIndex_] = uv_hrtime();
      }
      if (++pipelineIndex_ > pipelineCount_) {
        // libpq gave up on the pipeline (the connection broke): report the server's last word if
        // there was one (PgBouncer's "server conn crashed?", an admin shutdown...).
        const char* primary = result_ ? PQresultErrorField(result_.get(), PG_DIAG_MESSAGE_PRIMARY) : nullptr;
        std::string why = primary != nullptr ? oneLine(primary)
                                             : connError(conn_, "connection lost before the pipeline's sync point");
        failQuery(PgErrorKind::ConnectionLost, why);
        return;
      }
      continue;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      finishPipeline();
      return;
    }
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      PQclear(res);
      failQuery(PgErrorKind::ConnectionLost, "COPY is not supported on PgConnection; connection closed");
      return;
    }
    if (st == PGRES_PIPELINE_ABORTED) {
      PQclear(res);
    } else if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
      if (result_) {
        PQclear(res);  // keep the first error
      } else {
        result_ = PgResult(res);
        pipelineFailed_ = static_cast<int>(pipelineIndex_);
      }
    } else if (pipelineIndex_ < pipelineCount_) {
      pipelineResults_[pipelineIndex_] = PgResult(res);
    } else {
      PQclear(res);
    }
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    failQuery(PgErrorKind::ConnectionLost, connError(conn_, "connection lost"));
  }
}

void PgConnection::finishQuery() {
  PgQueryResult out;
  out.result = std::move(result_);
  bool connectionGone = PQstatus(conn_) == CONNECTION_BAD;
  if (!out.result) {
    out.error = makeError(PgErrorKind::ConnectionLost, connError(conn_, "no result"), "", true);
    connectionGone = true;
  }
  completeStatement(std::move(out), connectionGone);
}

void PgConnection::finishPipeline() {
  pipelining_ = false;
  PgQueryResult out;
  bool connectionGone = PQstatus(conn_) == CONNECTION_BAD;
  if (!connectionGone && PQexitPipelineMode(conn_) == 0) {
    // Results still pending after the sync point: the protocol state is not trustworthy.
    out.error = makeError(PgErrorKind::ConnectionLost, connError(conn_, "cannot leave pipeline mode"), "", true);
    connectionGone = true;
  }
  if (result_) {
    out.result = std::move(result_);  // the failed statement's error result
    out.failedStatement = pipelineFailed_;
  } else if (out.error.ok()) {
    out.results = std::move(pipelineResults_);
  }
  pipelineResults_.clear();
  out.statementDoneNs = std::move(pipelineDoneNs_);
  pipelineDoneNs_.clear();
  completeStatement(std::move(out), connectionGone);
}

void PgConnection::completeStatement(PgQueryResult out, bool connectionGone) {
  uv_timer_stop(timer_.get());
  lastUsedAtMs_ = now();
  ExecStatusType st = out.result.status();
  if (out.error.ok() && out.result &&
      (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR)) {
    const char* state = PQresultErrorField(out.result.get(), PG_DIAG_SQLSTATE);
    const char* primary = PQresultErrorField(out.result.get(), PG_DIAG_MESSAGE_PRIMARY);
    std::string sqlState = state != nullptr ? state : "";
    std::string message = primary != nullptr ? oneLine(primary) : oneLine(PQresultErrorMessage(out.result.get()));
    if (connectionGone || isConnectionLevelSqlState(sqlState)) {
      connectionGone = true;
      out.error = makeError(PgErrorKind::ConnectionLost, message, sqlState, true);
    } else {
      out.error = makeError(PgErrorKind::ServerError, message, sqlState, true);
    }
  }
  if (connectionGone) {
    teardown();
    state_ = State::Disconnected;
    lastError_ = out.error.message;
  } else {
    state_ = State::Ready;
    int rc = watch(UV_READABLE);
    if (rc != 0) {
      // The answer is good; the connection is not worth keeping.
      teardown();
      state_ = State::Disconnected;
      lastError_ = std::string("cannot watch the socket: ") + uv_strerror(rc);
    }
  }
  QueryCallback cb = std::move(queryCb_);
  queryCb_ = nullptr;
  if (cb) {
    cb(std::move(out));  // last statement: cb may destroy us
  }
}

void PgConnection::failQuery(PgErrorKind kind, const std::string& message, const std::string& sqlState) {
  // Statements that finished before the failure keep their times (teardown() forgets them).
  std::vector<uint64_t> doneNs = pipelining_ ? std::move(pipelineDoneNs_) : std::vector<uint64_t>();
  pipelineDoneNs_.clear();
  teardown();
  state_ = State::Disconnected;
  lastError_ = message;
  QueryCallback cb = std::move(queryCb_);
  queryCb_ = nullptr;
  if (cb) {
    defer([cb = std::move(cb), err = makeError(kind, message, sqlState, true), doneNs = std::move(doneNs)] {
      PgQueryResult r;
      r.error = err;
      r.statementDoneNs = doneNs;
      cb(std::move(r));
    });
  }
}

void PgConnection::onIdleIo() {
  // Nothing was asked: readable means the server closed the connection or sent an asynchronous
  // message (notice, NOTIFY, or the FATAL before a shutdown).
  if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) == CONNECTION_BAD) {
    std::string why = connError(conn_, "server closed the connection");
    obs::info("postgres connection closed by the server", obs::LogFields().str("db", target_).str("error", why));
    teardown();
    state_ = State::Disconnected;
    lastError_ = "connection closed by the server: " + why;
    return;
  }
  while (PGnotify* n = PQnotifies(conn_)) {
    PQfreemem(n);
  }
}

// ---- I/O plumbing --------------------------------------------------------------------------

void PgConnection::onPollThunk(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<PgConnection*>(handle->data);
  if (self == nullptr || self->poll_ != handle) {
    return;
  }
  if (status < 0) {
    // libuv turns POLLERR (refused connect, reset) into UV_EBADF and stops the handle. libpq
    // reads the actual error from the socket (SO_ERROR while connecting, recv() later), moves
    // on to the next address or fails with a precise message; watch() re-arms the handle.
    events = UV_READABLE | UV_WRITABLE;
  }
  auto alive = self->alive_;
  switch (self->state_) {
    case State::Connecting:
      self->continueConnect();
      break;
    case State::Busy:
      self->onQueryIo(events);
      break;
    case State::Ready:
      self->onIdleIo();
      break;
    default:
      self->closePoll();
      break;
  }
  // After a spurious error (the socket turned out fine) the stopped handle must watch again.
  if (status < 0 && *alive && self->conn_ != nullptr && (self->state_ == State::Ready || self->state_ == State::Busy)) {
    int rc = self->watch(self->state_ == State::Busy && self->flushing_ ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
    if (rc != 0 && self->state_ == State::Busy) {
      self->failQuery(PgErrorKind::ConnectionLost, std::string("cannot watch the socket: ") + uv_strerror(rc));
    }
  }
}

int PgConnection::watch(int events) {
  int fd = PQsocket(conn_);
  if (fd < 0) {
    return UV_EBADF;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    return UV_EBADF;
  }
  if (poll_ == nullptr || fd != pollFd_ || st.st_ino != pollInode_) {
    // A different socket (libpq moved on to another address or retried without SSL): the old
    // handle's registration belongs to a closed descriptor, so watch the new one with a new handle.
    closePoll();
    auto* handle = new uv_poll_t{};
    int rc = uv_poll_init(loop_, handle, fd);
    if (rc != 0) {
      delete handle;
      return rc;
    }
    handle->data = this;
    poll_ = handle;
    pollFd_ = fd;
    pollInode_ = st.st_ino;
    pollEvents_ = 0;
  }
  if (events == pollEvents_ && uv_is_active(reinterpret_cast<uv_handle_t*>(poll_)) != 0) {
    return 0;
  }
  int rc = uv_poll_start(poll_, events, &PgConnection::onPollThunk);
  if (rc == 0) {
    pollEvents_ = events;
  }
  return rc;
}

void PgConnection::closePoll() {
  if (poll_ == nullptr) {
    return;
  }
  poll_->data = nullptr;
  // uv_close stops the watch synchronously; the memory goes in the close callback.
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll_ = nullptr;
  pollFd_ = -1;
  pollInode_ = 0;
  pollEvents_ = 0;
}

void PgConnection::teardown() {
  cancelResolve();
  closePoll();
  if (conn_ != nullptr) {
    // Non-blocking by now (or still connecting): PQfinish's Terminate message is best effort.
    PQfinish(conn_);
    conn_ = nullptr;
  }
  flushing_ = false;
  result_.reset();
  pipelining_ = false;
  pipelineResults_.clear();
  pipelineDoneNs_.clear();
  if (timer_.isOpen()) {
    uv_timer_stop(timer_.get());
  }
}

void PgConnection::onTimerThunk(uv_timer_t* t) {
  auto* self = static_cast<PgConnection*>(t->data);
  if (self == nullptr) {
    return;
  }
  std::string after = std::to_string(self->opTimeout_.count()) + "ms";
  if (self->state_ == State::Connecting) {
    self->failConnect(PgErrorKind::ConnectTimeout, "connect to " + self->target_ + " timed out after " + after);
  } else if (self->state_ == State::Busy) {
    // PQcancel would open a second connection with blocking calls; closing this one is the
    // non-blocking way to stop waiting (PgBouncer then drops its server connection).
    self->failQuery(PgErrorKind::QueryTimeout, "statement timed out after " + after + "; connection closed");
  }
}

// ---- lifecycle -----------------------------------------------------------------------------

void PgConnection::disconnect() {
  if (state_ == State::Closed || state_ == State::Disconnected) {
    return;
  }
  State was = state_;
  std::string why = "disconnected by the application";
  if (was == State::Connecting) {
    failConnect(PgErrorKind::ConnectFailed, "connect abandoned: " + why);
  } else if (was == State::Busy) {
    failQuery(PgErrorKind::ConnectionLost, why);
  } else {
    teardown();
    state_ = State::Disconnected;
    lastError_ = why;
  }
}

void PgConnection::close() {
  if (state_ == State::Closed) {
    return;
  }
  State was = state_;
  state_ = State::Closed;
  lastError_ = "connection closed";
  teardown();
  timer_.close();
  deferTimer_.close();
  std::vector<std::function<void()>> toRun;
  toRun.swap(deferred_);
  ConnectCallback connectCb = std::move(connectCb_);
  connectCb_ = nullptr;
  QueryCallback queryCb = std::move(queryCb_);
  queryCb_ = nullptr;
  if (was == State::Connecting && connectCb) {
    toRun.push_back([cb = std::move(connectCb)] { cb(makeError(PgErrorKind::Closed, "connection closed")); });
  }
  if (was == State::Busy && queryCb) {
    toRun.push_back([cb = std::move(queryCb)] {
      PgQueryResult r;
      r.error = makeError(PgErrorKind::Closed, "connection closed", "", true);
      cb(std::move(r));
    });
  }
  auto alive = alive_;
  for (auto& fn : toRun) {
    if (!*alive) {
      return;
    }
    fn();
  }
}

}  // namespace app::db
