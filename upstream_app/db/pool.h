#pragma once
// app::db::Pool: the PostgreSQL connection pool of one event loop (one per AppWorker). Routes hand
// it a whole transaction -- a few statements -- and get every result or one classified error; the
// pool owns checkout, waiting, retries, timeouts and the slow-query log, so routes never hold a
// connection across their own asynchronous steps.
//
// Sizing (upstream_app.database):
//   pool_size      connections kept open once opened (opened lazily, on demand).
//   max_overflow   extra connections opened when all pool_size are busy; an overflow connection
//                  idle for overflowIdleTimeout (5s) is closed, so bursts do not pin connections
//                  (SQLAlchemy closes them on return; a short linger avoids a connect per request
//                  when load hovers just above pool_size).
//   pool_timeout   how long a transaction waits for a connection when pool_size + max_overflow are
//                  all in use; past it the transaction fails with PoolTimeout, which routes answer
//                  503 {"error":"database busy"}. Waiters are served first come, first served.
//   recycle        a connection older than this is closed instead of being reused (checked at
//                  checkout, on return and by the idle sweep) and a new one is opened on demand.
//   pre_ping       a connection that has been idle for at least prePingAfterIdle (5s) gets a
//                  `SELECT 1` (bounded by min(connectTimeout, 1s)) before it is handed out; if it
//                  fails the connection is dropped and the checkout continues with another one,
//                  without consuming a transaction attempt. Connections used more recently are not
//                  pinged: PgConnection watches idle sockets, so a closed one (PgBouncer or server
//                  restart, pg_terminate_backend) is already known to be gone, and a ping per
//                  checkout would double the round trips of every request.
//
// Transactions go through PgBouncer in transaction pooling mode, so nothing is session state: each
// transaction is sent as ONE libpq pipeline (PgConnection::pipeline):
//     SELECT set_config('statement_timeout', '<ms>', true)    -- = SET LOCAL, ends with the transaction
//     <the route's statements>
//     Sync
// The statements form one implicit transaction that commits at the Sync and rolls back entirely
// when one fails -- BEGIN/COMMIT semantics in a single round trip instead of 2 + N.
//
// statement_timeout: enforced by the server per statement (SQLSTATE 57014 -> StatementTimeout).
// The client also bounds the pipeline by statement_timeout x statements + 1s, so a server that
// stopped answering cannot hold a connection forever: the connection is then closed and the
// transaction fails with Unavailable (PgBouncer keeps a query waiting while PostgreSQL is down).
//
// Retries: a transaction is retried as a whole, with exponential backoff and full jitter
// (retryBackoffBase..retryBackoffMax), at most maxAttempts tries in all, when it failed with
//   - SQLSTATE 40001 (serialization failure) or 40P01 (deadlock): always (it rolled back);
//   - connection loss, or a failed connect: only when Transaction::idempotent, or when nothing was
//     sent (a lost connection after the Sync may have committed: a non-idempotent write must not
//     run twice).
// Statement timeouts and other SQL errors are not retried.
//
// Slow queries: a transaction whose round trip took at least slow_query_threshold is logged
// (obs::warn "slow query" with label, duration_ms, statements, attempt) -- never parameter values.
// Every finished transaction is also logged at debug level with its statement count ("db
// transaction"), and stats() counts statements sent.
//
// Tracing (db_trace.h): run() captures the calling thread's current span
// (obs::trace::SpanParent::current()). When that span is sampled, every statement sent for the
// transaction -- pre-ping, set_config, the route's statements, again on each retry -- becomes a
// CLIENT span under it; otherwise nothing is recorded (no clock reads, no allocation). The
// callback runs inside CurrentSpanScope(captured parent), so what it submits next (a Redis
// command, another transaction) is parented to the same request span.
//
// Threading: one loop, one pool; every method and callback runs on the loop thread.
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config/app_config.h"
#include "common/uv/handle.h"
#include "upstream_app/db/db_trace.h"
#include "upstream_app/db/pg_connection.h"

namespace app::db {

struct PoolSettings {
  std::string conninfo;
  int poolSize = 20;
  int maxOverflow = 20;
  std::chrono::milliseconds poolTimeout{10000};
  std::chrono::milliseconds recycle{1800000};
  bool prePing = true;
  std::chrono::milliseconds prePingAfterIdle{5000};
  std::chrono::milliseconds statementTimeout{5000};
  std::chrono::milliseconds slowQueryThreshold{200};
  std::chrono::milliseconds connectTimeout{5000};
  std::chrono::milliseconds overflowIdleTimeout{5000};
  int maxAttempts = 3;
  std::chrono::milliseconds retryBackoffBase{20};
  std::chrono::milliseconds retryBackoffMax{200};
  std::string applicationName = "upstream_app";

  // upstream_app.database as loaded; connectTimeout = clamp(pool_timeout, 1s, 5s).
  static PoolSettings fromConfig(const cfg::DatabaseConfig& db);
};

enum class DbErrorKind {
  None,
  PoolTimeout,       // no connection within pool_timeout (route: 503 "database busy")
  Unavailable,       // cannot connect, the connection broke (after the allowed tries), or no answer
                     // within the client-side bound (route: 503)
  StatementTimeout,  // the server cancelled a statement after statement_timeout (57014) (route: 504)
  Server,            // the server rejected a statement (sqlState says why); not retried
  Closed,            // the pool was closed (shutdown)
};

const char* dbErrorKindName(DbErrorKind kind);

struct DbError {
  DbErrorKind kind = DbErrorKind::None;
  std::string message;   // one line, no password, no parameter values
  std::string sqlState;  // for Server (and some others), else ""
  bool ok() const { return kind == DbErrorKind::None; }
};

struct Transaction {
  // Names the transaction in logs and metrics ("articles.get"); a static string.
  const char* label = "query";
  std::vector<PgStatement> statements;
  // True when running it twice is harmless (reads, updates that set absolute values): then a
  // connection lost after sending is retried too.
  bool idempotent = true;
};

struct TxResult {
  DbError error;
  std::vector<PgResult> results;  // one per Transaction::statements entry when error.ok()
  int attempts = 0;
  bool ok() const { return error.ok(); }
};

struct PoolStats {
  int open = 0;  // connected (idle + in use)
  int idle = 0;
  int inUse = 0;  // checked out (running a transaction or its pre-ping)
  int connecting = 0;
  int waiting = 0;  // transactions waiting for a connection
  uint64_t connectsOk = 0;
  uint64_t connectsFailed = 0;
  uint64_t poolTimeouts = 0;
  uint64_t transactions = 0;  // finished, whatever the outcome
  uint64_t retries = 0;
  uint64_t statements = 0;  // statements sent to the server, set_config and pre-pings included
  uint64_t slowQueries = 0;
  uint64_t prePings = 0;
  uint64_t recycled = 0;
};

// Optional observers for metrics (db_pool_wait_seconds, db_query_duration_seconds); called on the
// loop thread, must not call back into the pool.
struct PoolHooks {
  // A transaction got a connection, or gave up at pool_timeout, after waiting `seconds` (0 when one
  // was idle; a new connection's connect time counts as waiting).
  std::function<void(double seconds)> onCheckout;
  // One try of a transaction finished its round trip: label, seconds, success.
  std::function<void(const char* label, double seconds, bool ok)> onQuery;
};

class Pool {
 public:
  using Callback = std::function<void(TxResult)>;

  Pool(uv_loop_t* loop, PoolSettings settings);
  // Drops pending callbacks without calling them and closes every handle (the loop must run once
  // more to finish the close callbacks).
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs `tx` (see the header comment) and calls cb exactly once, never before run() returns --
  // except after close(), when cb runs at once with Closed.
  void run(Transaction tx, Callback cb);

  // Shutdown: fails waiting and running transactions with Closed (their callbacks run before
  // close() returns), closes every connection and timer. Safe to call twice.
  void close();

  PoolStats stats() const;
  void setHooks(PoolHooks hooks) { hooks_ = std::move(hooks); }
  const PoolSettings& settings() const { return settings_; }

 private:
  struct Slot {
    std::unique_ptr<PgConnection> conn;
    uint64_t idleSinceMs = 0;
    bool connecting = false;
    bool inUse = false;  // checked out (connecting counts as in use)
  };
  struct Op;

  void acquire(const std::shared_ptr<Op>& op);
  Slot* takeIdle();
  void openFor(const std::shared_ptr<Op>& op);
  void prePingThenExecute(const std::shared_ptr<Op>& op, Slot* slot);
  void execute(const std::shared_ptr<Op>& op, Slot* slot);
  void onExecuted(const std::shared_ptr<Op>& op, Slot* slot, PgQueryResult r, uint64_t startedNs, size_t sent,
                  uint64_t sentUnixNs);
  // One span per statement of the try that just ended (only when op's parent is sampled).
  void traceStatements(const Op& op, const PgQueryResult& r, uint64_t startedNs, uint64_t sentUnixNs) const;
  // A try failed; retries after a backoff when allowed, else finishes op with `error`.
  void retryOrFail(const std::shared_ptr<Op>& op, DbError error, bool retryable);
  void finish(const std::shared_ptr<Op>& op, TxResult result);
  // Back to the pool (or closed when broken, too old or surplus); then serves a waiter.
  void release(Slot* slot);
  void discard(Slot* slot);
  void serveWaiters();
  void armWaitTimer();
  void onWaitTimer();
  void armRetryTimer();
  void onRetryTimer();
  void onSweep();
  bool tooOld(const Slot& slot) const;
  int total() const { return static_cast<int>(slots_.size()); }
  int capacity() const { return settings_.poolSize + settings_.maxOverflow; }
  uint64_t now() const { return uv_now(loop_); }

  uv_loop_t* loop_;
  PoolSettings settings_;
  std::vector<std::unique_ptr<Slot>> slots_;              // every connection: connecting, idle or in use
  std::vector<Slot*> idle_;                               // LIFO: the hottest connection on top, extras age out below
  std::deque<std::shared_ptr<Op>> waiters_;               // FIFO; all wait pool_timeout, so deadlines are sorted
  std::multimap<uint64_t, std::shared_ptr<Op>> retries_;  // transactions in backoff, by due time
  std::string statementTimeoutText_;                      // set_config's value, in milliseconds
  uvx::OwnedHandle<uv_timer_t> waitTimer_;                // the first waiter's pool_timeout
  uvx::OwnedHandle<uv_timer_t> retryTimer_;               // the first due retry
  uvx::OwnedHandle<uv_timer_t> sweepTimer_;               // overflow idle / recycle sweep, every second
  bool closed_ = false;
  PoolStats counters_;
  PoolHooks hooks_;
  DbPeer peer_;  // span attributes: server.address/port, db.namespace
  std::shared_ptr<bool> alive_;
};

}  // namespace app::db
