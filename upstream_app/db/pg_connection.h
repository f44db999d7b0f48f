#pragma once
// app::db::PgConnection: one asynchronous libpq connection driven by a libuv loop. The building
// block of the connection pool: the pool owns many of these and adds sizing, waiting, recycling
// and pre-ping; this class knows one socket, one statement (or one pipeline of statements, see
// pipeline()) at a time.
//
// Everything is non-blocking: PQconnectStartParams/PQconnectPoll for the connect (host names are
// resolved on the libuv thread pool first, since libpq's own lookup blocks), PQsetnonblocking +
// PQsendQueryParams/PQflush/PQconsumeInput/PQisBusy/PQgetResult for statements, all driven by a
// uv_poll_t on PQsocket(). A statement's timeout closes the connection (PQcancel would block on a
// second connect) and reports QueryTimeout.
//
// PgBouncer runs in transaction pooling mode, so only unnamed statements are used (no
// PQprepare) and nothing here sets session state. Statements are sent with text parameters and
// text results.
//
// States:
//   Disconnected  no connection (initially, after a failure, timeout, loss or disconnect()).
//   Connecting    connect() in progress (resolve, TCP, startup, auth), bounded by its timeout.
//   Ready         idle and usable. The socket is watched while idle, so a server-side close
//                 (PgBouncer restart, pg_terminate_backend) moves it to Disconnected at once.
//   Busy          one statement in flight.
//   Closed        close() was called; permanent.
//
// Callback contract (loop thread only):
//   - connect()'s and query()'s callbacks run exactly once, unless the connection is destroyed
//     first, and never inside the connect()/query() call itself (refusals are delivered on the next
//     loop iteration) -- except after close(), see there.
//   - A callback may start the next statement, disconnect(), close() or destroy the connection.
//   - Destroying the connection drops pending callbacks without calling them.
#include <libpq-fe.h>
#include <sys/types.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/uv/handle.h"

namespace app::db {

// Owns one PGresult (PQclear on destruction). Move-only.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* res) : res_(res) {}
  ~PgResult() { reset(); }
  PgResult(PgResult&& other) noexcept : res_(std::exchange(other.res_, nullptr)) {}
  PgResult& operator=(PgResult&& other) noexcept {
    if (this != &other) {
      reset();
      res_ = std::exchange(other.res_, nullptr);
    }
    return *this;
  }
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;

  explicit operator bool() const { return res_ != nullptr; }
  PGresult* get() const { return res_; }
  ExecStatusType status() const { return res_ != nullptr ? PQresultStatus(res_) : PGRES_FATAL_ERROR; }
  int rows() const { return res_ != nullptr ? PQntuples(res_) : 0; }
  int columns() const { return res_ != nullptr ? PQnfields(res_) : 0; }
  bool isNull(int row, int column) const { return PQgetisnull(res_, row, column) != 0; }
  // Text of a field ("" for NULL); valid while this PgResult lives.
  std::string_view value(int row, int column) const {
    return std::string_view(PQgetvalue(res_, row, column), static_cast<size_t>(PQgetlength(res_, row, column)));
  }
  // Column index by name, -1 if absent.
  int column(const char* name) const { return PQfnumber(res_, name); }
  // Rows touched by INSERT/UPDATE/DELETE ("" otherwise).
  std::string_view affectedRows() const { return res_ != nullptr ? PQcmdTuples(res_) : ""; }
  void reset() {
    if (res_ != nullptr) {
      PQclear(res_);
      res_ = nullptr;
    }
  }

 private:
  PGresult* res_ = nullptr;
};

enum class PgErrorKind {
  None,
  ConnectFailed,   // refused, unreachable, auth/startup error, bad conninfo
  ConnectTimeout,  // connect() did not finish within its timeout
  QueryTimeout,    // the statement did not finish in time; the connection was closed
  ConnectionLost,  // the connection broke (or was found broken) during the statement
  ServerError,     // the server rejected the statement (sqlState says why); the connection is still Ready
  Busy,            // a statement (or connect) is already in progress on this connection
  NotConnected,    // query() while Disconnected/Connecting
  Closed,          // close() was called
};

const char* pgErrorKindName(PgErrorKind kind);

struct PgError {
  PgErrorKind kind = PgErrorKind::None;
  std::string message;   // one line, no password
  std::string sqlState;  // five-character SQLSTATE for ServerError (and some ConnectionLost), else ""
  // The statement may have run on the server (QueryTimeout, ConnectionLost after sending).
  bool maybeExecuted = false;

  bool ok() const { return kind == PgErrorKind::None; }
  // Serialization failure / deadlock: the whole transaction can be retried.
  bool isTransientServerError() const { return sqlState == "40001" || sqlState == "40P01"; }
  // "kind: message" for logs and readiness reports.
  std::string describe() const;
};

struct PgQueryResult {
  PgError error;
  PgResult result;  // set when ok() (PGRES_TUPLES_OK or PGRES_COMMAND_OK); for ServerError it holds the error result
  // pipeline() only: one result per statement, in order, when ok(); `result` is then empty.
  std::vector<PgResult> results;
  // pipeline() only: the index of the statement whose error `error` reports (a ServerError, or a
  // connection-level error result), -1 otherwise.
  int failedStatement = -1;
  // pipeline() with StatementTimes::Record only: per statement, the uv_hrtime() at which its last
  // result (or its "skipped" notice) arrived; 0 for statements that got none (timeout, loss).
  std::vector<uint64_t> statementDoneNs;
  bool ok() const { return error.ok(); }
};

// One statement of a pipeline(): SQL with $n placeholders and its text parameters.
struct PgStatement {
  std::string sql;
  std::vector<std::optional<std::string>> params;  // nullopt = SQL NULL
};

// Whether pipeline() notes when each statement's result arrived (for per-statement trace spans;
// a clock read per statement, so only asked for when a span will be recorded).
enum class StatementTimes : bool { Skip, Record };

struct PgConnectionOptions {
  // A libpq connection string or URI ("postgresql://app@127.0.0.1:6432/app", "host=... dbname=...").
  std::string conninfo;
  // Sent as fallback_application_name (shows in pg_stat_activity and PgBouncer's SHOW CLIENTS).
  std::string applicationName = "upstream_app";
};

class PgConnection {
 public:
  enum class State { Disconnected, Connecting, Ready, Busy, Closed };
  using ConnectCallback = std::function<void(PgError)>;
  using QueryCallback = std::function<void(PgQueryResult)>;
  using Params = std::vector<std::optional<std::string>>;  // nullopt = SQL NULL

  PgConnection(uv_loop_t* loop, PgConnectionOptions options);
  // Drops pending callbacks, closes the connection and every handle (the loop must run once
  // more to finish the close callbacks before uv_loop_close()).
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Starts connecting when Disconnected; cb gets an ok PgError once Ready, or why not (the state
  // is then Disconnected again). Refused with Busy unless Disconnected.
  void connect(std::chrono::milliseconds timeout, ConnectCallback cb);

  // Runs one SQL command ($1, $2... placeholders, text parameters) when Ready, through the
  // extended protocol with an unnamed statement (so "SELECT 1; SELECT 2" is a ServerError 42601:
  // send BEGIN/COMMIT as their own calls). The timeout covers sending, execution and reading the
  // result; on expiry the connection is closed and cb gets QueryTimeout.
  void query(std::string sql, Params params, std::chrono::milliseconds timeout, QueryCallback cb);
  void query(std::string sql, std::chrono::milliseconds timeout, QueryCallback cb) {
    query(std::move(sql), Params{}, timeout, std::move(cb));
  }

  // Runs several statements in one round trip with libpq's pipeline mode: each is sent like
  // query() (unnamed statement, text parameters and results), then one Sync. Without BEGIN they
  // form one implicit transaction that commits at the Sync: if one fails, the following ones are
  // skipped and everything rolls back, so cb gets that statement's error (ServerError with its
  // sqlState) and no results. On success `results` holds one result per statement. The timeout
  // covers the whole pipeline; the other rules of query() apply. With StatementTimes::Record the
  // result carries statementDoneNs.
  void pipeline(std::vector<PgStatement> statements, std::chrono::milliseconds timeout, QueryCallback cb,
                StatementTimes times = StatementTimes::Skip);

  // Closes the connection (back to Disconnected; connect() may be called again). A statement or
  // connect in progress gets ConnectionLost / ConnectFailed on the next loop iteration.
  void disconnect();

  // Closes for good and closes every handle. Before close() returns, the pending connect/query
  // callback runs with Closed and any failure not yet delivered runs with its own error;
  // connect()/query() after close() call back with Closed before returning. Safe to call twice
  // and from a callback.
  void close();

  State state() const { return state_; }
  static const char* stateName(State s);
  // Why the connection is not Ready (last failure); empty after a successful connect.
  const std::string& lastError() const { return lastError_; }
  // "host:port/dbname" of the conninfo (no credentials), for logs.
  const std::string& target() const { return target_; }
  // Loop time (uv_now) of the last successful connect, and of the last finished statement: the
  // pool's `recycle` and pre-ping decisions use them.
  uint64_t connectedAtMs() const { return connectedAtMs_; }
  uint64_t lastUsedAtMs() const { return lastUsedAtMs_; }
  // The libpq connection while Ready/Busy (for PQescape* and server version checks), else null.
  PGconn* native() const { return conn_; }

 private:
  struct Resolve {
    uv_getaddrinfo_t req{};
    PgConnection* owner = nullptr;
  };

  static void onPollThunk(uv_poll_t* handle, int status, int events);
  static void onTimerThunk(uv_timer_t* t);
  static void onDeferThunk(uv_timer_t* t);
  static void onResolvedThunk(uv_getaddrinfo_t* req, int status, addrinfo* res);

  // addresses: the resolved addresses of `host` (empty when libpq needs no lookup).
  void startLibpq(const std::vector<std::string>& addresses);
  void continueConnect();
  void finishConnect();
  void failConnect(PgErrorKind kind, const std::string& message);
  void onQueryIo(int events);
  void drainResults();
  void drainPipelineResults();
  void finishQuery();
  void finishPipeline();
  // The common end of query() and pipeline(): keeps or drops the connection, then calls back.
  void completeStatement(PgQueryResult out, bool connectionGone);
  // Refuses a statement unless Ready (the refusal is delivered like query()'s); true when Ready.
  bool acceptStatement(QueryCallback& cb);
  // After the statement(s) were queued in libpq: becomes Busy and starts sending.
  void startSending(std::chrono::milliseconds timeout, QueryCallback cb);
  // PQsend* failed: the connection is unusable; cb gets ConnectionLost (nothing ran).
  void sendFailed(QueryCallback cb);
  void failQuery(PgErrorKind kind, const std::string& message, const std::string& sqlState = "");
  void onIdleIo();
  // (Re)starts watching PQsocket() for `events`, replacing the poll handle when the socket is
  // not the one it watches. Returns 0 or a libuv error code.
  int watch(int events);
  void closePoll();
  // Closes the socket and frees the PGconn (poll handle first: libuv must stop watching a
  // descriptor before it is closed).
  void teardown();
  void cancelResolve();
  void defer(std::function<void()> fn);
  uint64_t now() const { return uv_now(loop_); }

  uv_loop_t* loop_;
  PgConnectionOptions options_;
  State state_ = State::Disconnected;
  PGconn* conn_ = nullptr;
  Resolve* resolve_ = nullptr;
  std::vector<std::pair<std::string, std::string>> params_;  // parsed conninfo, for PQconnectStartParams

  // The poll handle and the identity of the socket it watches. PQconnectPoll may close the socket
  // and open another (next host, SSL/GSS fallback), possibly with the same descriptor number, so
  // the inode is compared too.
  uv_poll_t* poll_ = nullptr;
  int pollFd_ = -1;
  ino_t pollInode_ = 0;
  int pollEvents_ = 0;
  bool flushing_ = false;  // PQflush reported unsent data

  uvx::OwnedHandle<uv_timer_t> timer_;  // connect or statement timeout
  uvx::OwnedHandle<uv_timer_t> deferTimer_;
  std::vector<std::function<void()>> deferred_;

  ConnectCallback connectCb_;
  QueryCallback queryCb_;
  std::chrono::milliseconds opTimeout_{0};
  PgResult result_;  // result being collected for the statement in flight
  // pipeline(): statements sent, results so far, and which statement the next result belongs to.
  bool pipelining_ = false;
  size_t pipelineCount_ = 0;
  size_t pipelineIndex_ = 0;
  std::vector<PgResult> pipelineResults_;
  int pipelineFailed_ = -1;                 // index of the first statement that reported an error
  bool pipelineTimed_ = false;              // StatementTimes::Record
  std::vector<uint64_t> pipelineDoneNs_;    // per statement, when timed

  std::string target_;
  std::string lastError_;
  uint64_t connectedAtMs_ = 0;
  uint64_t lastUsedAtMs_ = 0;
  std::shared_ptr<bool> alive_;
};

}  // namespace app::db
