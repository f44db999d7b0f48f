#include "upstream_app/db/pool.h"

#include <algorithm>

#include "common/obs/log.h"
#include "common/obs/trace/ids.h"
#include "common/obs/trace/log_context.h"
#include "common/resilience/backoff.h"

namespace app::db {

namespace {

constexpr uint64_t kSweepIntervalMs = 1000;
// The client-side bound of a pipeline beyond statement_timeout x statements: time for the server
// to report 57014 itself (and for PgBouncer to hand over a server connection).
constexpr uint64_t kClientTimeoutMarginMs = 1000;
// A pre-ping is a SELECT 1 on an idle connection: if it takes longer than this, the connection is
// not one to trust with a transaction.
constexpr std::chrono::milliseconds kPrePingMaxTimeout{1000};

const char* const kSetStatementTimeout = "SELECT set_config('statement_timeout', $1, true)";
const char* const kPrePing = "SELECT 1";

void initTimer(uv_loop_t* loop, uvx::OwnedHandle<uv_timer_t>& timer, void* owner) {
  uv_timer_init(loop, timer.get());
  timer.markInitialized();
  timer.get()->data = owner;
}

DbError makeError(DbErrorKind kind, std::string message, std::string sqlState = "") {
  DbError e;
  e.kind = kind;
  e.message = std::move(message);
  e.sqlState = std::move(sqlState);
  return e;
}

}  // namespace

const char* dbErrorKindName(DbErrorKind kind) {
  switch (kind) {
    case DbErrorKind::None:
      return "ok";
    case DbErrorKind::PoolTimeout:
      return "pool timeout";
    case DbErrorKind::Unavailable:
      return "unavailable";
    case DbErrorKind::StatementTimeout:
      return "statement timeout";
    case DbErrorKind::Server:
      return "server error";
    case DbErrorKind::Closed:
      return "closed";
  }
  return "unknown";
}

PoolSettings PoolSettings::fromConfig(const cfg::DatabaseConfig& db) {
  PoolSettings s;
  s.conninfo = db.url;
  s.poolSize = db.pool_size;
  s.maxOverflow = db.max_overflow;
  s.poolTimeout = db.pool_timeout;
  s.recycle = db.recycle;
  s.prePing = db.pre_ping;
  s.statementTimeout = db.statement_timeout;
  s.slowQueryThreshold = db.slow_query_threshold;
  s.connectTimeout = std::clamp(db.pool_timeout, std::chrono::milliseconds(1000), std::chrono::milliseconds(5000));
  return s;
}

struct Pool::Op {
  Op(Transaction t, Callback c, resilience::RetryState r) : tx(std::move(t)), cb(std::move(c)), retry(std::move(r)) {}
  Transaction tx;
  Callback cb;
  resilience::RetryState retry;
  uint64_t waitDeadlineMs = 0;
  uint64_t acquireStartNs = 0;  // for PoolHooks::onCheckout
  obs::trace::SpanParent parent;  // the request span current at run()
  obs::trace::Span pingSpan;      // the pre-ping in flight, when traced
};

Pool::Pool(uv_loop_t* loop, PoolSettings settings)
    : loop_(loop),
      settings_(std::move(settings)),
      peer_(dbPeerFromConninfo(settings_.conninfo)),
      alive_(std::make_shared<bool>(true)) {
  settings_.poolSize = std::max(settings_.poolSize, 1);
  settings_.maxOverflow = std::max(settings_.maxOverflow, 0);
  settings_.maxAttempts = std::max(settings_.maxAttempts, 1);
  statementTimeoutText_ = std::to_string(std::max<int64_t>(settings_.statementTimeout.count(), 0));
  initTimer(loop_, waitTimer_, this);
  initTimer(loop_, retryTimer_, this);
  initTimer(loop_, sweepTimer_, this);
  uv_timer_start(
      sweepTimer_.get(), [](uv_timer_t* t) { static_cast<Pool*>(t->data)->onSweep(); }, kSweepIntervalMs,
      kSweepIntervalMs);
  // The sweep alone must not keep a finished loop running.
  uv_unref(sweepTimer_.base());
}

Pool::~Pool() {
  *alive_ = false;
  closed_ = true;
  waiters_.clear();
  retries_.clear();
  idle_.clear();
  slots_.clear();  // PgConnection's destructor drops its pending callbacks
}

void Pool::run(Transaction tx, Callback cb) {
  if (closed_) {
    TxResult r;
    r.error = makeError(DbErrorKind::Closed, "database pool closed");
    cb(std::move(r));
    return;
  }
  resilience::BackoffPolicy policy;
  policy.attempts = settings_.maxAttempts;
  policy.base = settings_.retryBackoffBase;
  policy.max = settings_.retryBackoffMax;
  // A bound on the whole transaction's retries: no retry starts once a try could no longer
  // finish within one more wait and one more statement.
  auto deadline = std::chrono::steady_clock::now() + 2 * (settings_.poolTimeout + settings_.statementTimeout);
  auto op = std::make_shared<Op>(std::move(tx), std::move(cb), resilience::RetryState(policy, deadline));
  op->parent = obs::trace::SpanParent::current();
  op->retry.beginTry();
  acquire(op);
}

void Pool::acquire(const std::shared_ptr<Op>& op) {
  if (op->acquireStartNs == 0) {
    op->acquireStartNs = uv_hrtime();
  }
  if (Slot* slot = takeIdle()) {
    prePingThenExecute(op, slot);
    return;
  }
  if (total() < capacity()) {
    openFor(op);
    return;
  }
  op->waitDeadlineMs = now() + static_cast<uint64_t>(std::max<int64_t>(settings_.poolTimeout.count(), 0));
  waiters_.push_back(op);
  armWaitTimer();
}

bool Pool::tooOld(const Slot& slot) const {
  return settings_.recycle.count() > 0 &&
         now() - slot.conn->connectedAtMs() >= static_cast<uint64_t>(settings_.recycle.count());
}

Pool::Slot* Pool::takeIdle() {
  while (!idle_.empty()) {
    Slot* slot = idle_.back();
    idle_.pop_back();
    if (slot->conn->state() != PgConnection::State::Ready || tooOld(*slot)) {
      if (slot->conn->state() == PgConnection::State::Ready) {
        ++counters_.recycled;
      }
      discard(slot);
      continue;
    }
    slot->inUse = true;
    return slot;
  }
  return nullptr;
}

void Pool::openFor(const std::shared_ptr<Op>& op) {
  auto owned = std::make_unique<Slot>();
  PgConnectionOptions options;
  options.conninfo = settings_.conninfo;
  options.applicationName = settings_.applicationName;
  owned->conn = std::make_unique<PgConnection>(loop_, std::move(options));
  owned->connecting = true;
  owned->inUse = true;
  Slot* slot = owned.get();
  slots_.push_back(std::move(owned));
  slot->conn->connect(settings_.connectTimeout, [this, op, slot](PgError err) {
    if (closed_) {
      TxResult r;
      r.error = makeError(DbErrorKind::Closed, "database pool closed");
      finish(op, std::move(r));
      return;
    }
    slot->connecting = false;
    if (!err.ok()) {
      ++counters_.connectsFailed;
      std::string why = err.describe();
      discard(slot);
      // Nothing was sent: always safe to try again.
      retryOrFail(op, makeError(DbErrorKind::Unavailable, why), true);
      serveWaiters();
      return;
    }
    ++counters_.connectsOk;
    slot->idleSinceMs = now();
    execute(op, slot);
  });
}

void Pool::prePingThenExecute(const std::shared_ptr<Op>& op, Slot* slot) {
  if (!settings_.prePing || now() - slot->idleSinceMs < static_cast<uint64_t>(settings_.prePingAfterIdle.count())) {
    execute(op, slot);
    return;
  }
  ++counters_.prePings;
  ++counters_.statements;
  auto timeout = std::min(settings_.connectTimeout, kPrePingMaxTimeout);
  if (op->parent.recording()) {
    op->pingSpan = op->parent.startChild("SELECT", obs::trace::SpanKind::Client);
    describeStatementSpan(op->pingSpan, peer_, kPrePing);
  }
  slot->conn->query(kPrePing, timeout, [this, op, slot](PgQueryResult r) {
    if (op->pingSpan.recording()) {
      if (!r.ok()) {
        failStatementSpan(op->pingSpan, r.error.kind == PgErrorKind::QueryTimeout ? "timeout" : "connection_lost",
                          r.error.sqlState, pgErrorKindName(r.error.kind));
      }
      op->pingSpan.end();
    }
    if (closed_) {
      TxResult out;
      out.error = makeError(DbErrorKind::Closed, "database pool closed");
      finish(op, std::move(out));
      return;
    }
    if (r.ok() && slot->conn->state() == PgConnection::State::Ready) {
      execute(op, slot);
      return;
    }
    obs::info("database pre-ping failed; replacing the connection",
              obs::LogFields().str("db", slot->conn->target()).str("error", r.error.describe()));
    slot->inUse = false;
    discard(slot);
    acquire(op);  // not a transaction attempt: nothing of it ran
  });
}

void Pool::execute(const std::shared_ptr<Op>& op, Slot* slot) {
  if (op->acquireStartNs != 0) {
    if (hooks_.onCheckout) {
      hooks_.onCheckout(static_cast<double>(uv_hrtime() - op->acquireStartNs) / 1e9);
    }
    op->acquireStartNs = 0;  // a retry measures its own wait
  }
  std::vector<PgStatement> statements;
  statements.reserve(op->tx.statements.size() + 1);
  statements.push_back(PgStatement{kSetStatementTimeout, {statementTimeoutText_}});
  for (const PgStatement& st : op->tx.statements) {
    statements.push_back(st);  // copied: a retry sends them again
  }
  const size_t sent = statements.size();
  counters_.statements += sent;
  const auto timeout = std::chrono::milliseconds(settings_.statementTimeout.count() *
                                                     static_cast<int64_t>(std::max<size_t>(sent - 1, 1)) +
                                                 static_cast<int64_t>(kClientTimeoutMarginMs));
  const bool traced = op->parent.recording();
  const uint64_t sentUnixNs = traced ? obs::trace::nowUnixNanos() : 0;
  const uint64_t startedNs = uv_hrtime();
  slot->conn->pipeline(
      std::move(statements), timeout,
      [this, op, slot, startedNs, sent, sentUnixNs](PgQueryResult r) {
        onExecuted(op, slot, std::move(r), startedNs, sent, sentUnixNs);
      },
      traced ? StatementTimes::Record : StatementTimes::Skip);
}

void Pool::traceStatements(const Op& op, const PgQueryResult& r, uint64_t startedNs, uint64_t sentUnixNs) const {
  namespace tr = obs::trace;
  const size_t count = op.tx.statements.size() + 1;  // set_config first
  const uint64_t nowUnix = tr::nowUnixNanos();
  const PgError& e = r.error;
  // Why statements without a result got none.
  const char* lostType = e.kind == PgErrorKind::QueryTimeout ? "timeout"
                         : e.kind == PgErrorKind::Closed     ? "closed"
                                                             : "connection_lost";
  for (size_t i = 0; i < count; ++i) {
    const std::string_view sql = i == 0 ? std::string_view(kSetStatementTimeout) : op.tx.statements[i - 1].sql;
    tr::Span span = op.parent.startChild("postgresql", tr::SpanKind::Client, sentUnixNs);
    describeStatementSpan(span, peer_, sql);
    const uint64_t doneNs = i < r.statementDoneNs.size() ? r.statementDoneNs[i] : 0;
    if (!e.ok()) {
      const int failed = r.failedStatement;
      if (failed >= 0 && i == static_cast<size_t>(failed)) {
        // The server's message may quote a value ("invalid input syntax for type bigint: ..."):
        // the span says what failed, not with what.
        failStatementSpan(span, e.sqlState.empty() ? std::string_view("server_error") : std::string_view(e.sqlState),
                          e.sqlState, e.sqlState == "57014" ? "statement timeout" : pgErrorKindName(e.kind));
      } else if (failed >= 0 && i > static_cast<size_t>(failed)) {
        failStatementSpan(span, "skipped", {}, "not run: an earlier statement of the transaction failed");
      } else if (failed < 0 && doneNs == 0) {
        failStatementSpan(span, lostType, e.sqlState, pgErrorKindName(e.kind));
      }
    }
    span.end(doneNs != 0 && doneNs >= startedNs ? sentUnixNs + (doneNs - startedNs) : nowUnix);
  }
}

void Pool::onExecuted(const std::shared_ptr<Op>& op, Slot* slot, PgQueryResult r, uint64_t startedNs, size_t sent,
                      uint64_t sentUnixNs) {
  if (op->parent.recording()) {
    traceStatements(*op, r, startedNs, sentUnixNs);
  }
  if (closed_) {
    TxResult out;
    out.error = makeError(DbErrorKind::Closed, "database pool closed");
    finish(op, std::move(out));
    return;
  }
  const double durationMs = static_cast<double>(uv_hrtime() - startedNs) / 1e6;
  const int attempt = op->retry.triesStarted();
  const char* outcome = r.ok() ? "ok" : pgErrorKindName(r.error.kind);
  if (hooks_.onQuery) {
    hooks_.onQuery(op->tx.label, durationMs / 1000.0, r.ok());
  }
  if (durationMs >= static_cast<double>(settings_.slowQueryThreshold.count())) {
    ++counters_.slowQueries;
    obs::warn("slow query", obs::LogFields()
                                .str("label", op->tx.label)
                                .real("duration_ms", durationMs)
                                .num("statements", static_cast<int64_t>(sent))
                                .num("attempt", attempt)
                                .str("outcome", outcome)
                                .num("threshold_ms", settings_.slowQueryThreshold.count()));
  }
  if (obs::enabled(obs::Level::Debug)) {
    obs::debug("db transaction", obs::LogFields()
                                     .str("label", op->tx.label)
                                     .real("duration_ms", durationMs)
                                     .num("statements", static_cast<int64_t>(sent))
                                     .num("attempt", attempt)
                                     .str("outcome", outcome));
  }
  if (r.ok()) {
    TxResult out;
    out.results = std::move(r.results);
    if (!out.results.empty()) {
      out.results.erase(out.results.begin());  // set_config's
    }
    release(slot);
    finish(op, std::move(out));
    return;
  }
  const PgError& e = r.error;
  switch (e.kind) {
    case PgErrorKind::ServerError:
      release(slot);
      if (e.sqlState == "57014") {
        finish(op, TxResult{makeError(DbErrorKind::StatementTimeout,
                                      "statement timeout (" + statementTimeoutText_ + "ms): " + e.message, e.sqlState),
                            {},
                            0});
      } else {
        retryOrFail(op, makeError(DbErrorKind::Server, e.message, e.sqlState), e.isTransientServerError());
      }
      return;
    case PgErrorKind::QueryTimeout:
      // The server's own statement_timeout would have answered first, so nothing answers at all
      // (PgBouncer waiting for a server that is down, a dead network path). PgConnection closed
      // the connection; release() drops it. Not retried: the time is spent.
      release(slot);
      finish(op, TxResult{makeError(DbErrorKind::Unavailable, "no answer from the database: " + e.message), {}, 0});
      return;
    case PgErrorKind::Closed:
      release(slot);
      finish(op, TxResult{makeError(DbErrorKind::Closed, e.message), {}, 0});
      return;
    default:
      // ConnectionLost, NotConnected, Busy: the connection is not usable; release() drops it.
      release(slot);
      retryOrFail(op, makeError(DbErrorKind::Unavailable, e.describe(), e.sqlState),
                  op->tx.idempotent || !e.maybeExecuted);
      return;
  }
}

void Pool::retryOrFail(const std::shared_ptr<Op>& op, DbError error, bool retryable) {
  if (retryable && !closed_) {
    if (auto delay = op->retry.nextDelay(std::chrono::steady_clock::now())) {
      ++counters_.retries;
      obs::info("retrying database transaction", obs::LogFields()
                                                     .str("label", op->tx.label)
                                                     .num("attempt", op->retry.triesStarted())
                                                     .num("delay_ms", delay->count())
                                                     .str("error", error.message)
                                                     .str("sqlstate", error.sqlState));
      retries_.emplace(now() + static_cast<uint64_t>(delay->count()), op);
      armRetryTimer();
      return;
    }
  }
  TxResult out;
  out.error = std::move(error);
  finish(op, std::move(out));
}

void Pool::finish(const std::shared_ptr<Op>& op, TxResult result) {
  result.attempts = op->retry.triesStarted();
  ++counters_.transactions;
  Callback cb = std::move(op->cb);
  op->cb = nullptr;
  if (!cb) {
    return;
  }
  if (op->parent.context().valid()) {
    // What the callback submits next belongs to the same request. (`hold`: the scope points into
    // op, which must outlive the callback whatever it does to the pool's queues.)
    const std::shared_ptr<Op> hold = op;
    obs::trace::CurrentSpanScope scope(hold->parent);
    cb(std::move(result));
    return;
  }
  cb(std::move(result));
}

void Pool::release(Slot* slot) {
  slot->inUse = false;
  if (closed_) {
    return;
  }
  const bool ready = slot->conn->state() == PgConnection::State::Ready;
  if (!ready || tooOld(*slot)) {
    if (ready) {
      ++counters_.recycled;
    }
    discard(slot);
    serveWaiters();
    return;
  }
  slot->idleSinceMs = now();
  if (!waiters_.empty()) {
    std::shared_ptr<Op> op = waiters_.front();
    waiters_.pop_front();
    armWaitTimer();
    slot->inUse = true;
    execute(op, slot);  // just used: no pre-ping
    return;
  }
  idle_.push_back(slot);
}

void Pool::discard(Slot* slot) {
  idle_.erase(std::remove(idle_.begin(), idle_.end(), slot), idle_.end());
  auto it = std::find_if(slots_.begin(), slots_.end(), [slot](const auto& s) { return s.get() == slot; });
  if (it != slots_.end()) {
    slots_.erase(it);  // destroys the PgConnection (allowed from inside its own callback)
  }
}

void Pool::serveWaiters() {
  while (!waiters_.empty() && !closed_) {
    if (Slot* slot = takeIdle()) {
      std::shared_ptr<Op> op = waiters_.front();
      waiters_.pop_front();
      prePingThenExecute(op, slot);
      continue;
    }
    if (total() < capacity()) {
      std::shared_ptr<Op> op = waiters_.front();
      waiters_.pop_front();
      openFor(op);
      continue;
    }
    break;
  }
  armWaitTimer();
}

void Pool::armWaitTimer() {
  if (!waitTimer_.isOpen()) {
    return;
  }
  if (waiters_.empty()) {
    uv_timer_stop(waitTimer_.get());
    return;
  }
  const uint64_t due = waiters_.front()->waitDeadlineMs;
  const uint64_t t = now();
  uv_timer_start(
      waitTimer_.get(), [](uv_timer_t* h) { static_cast<Pool*>(h->data)->onWaitTimer(); }, due > t ? due - t : 0, 0);
}

void Pool::onWaitTimer() {
  const uint64_t t = now();
  auto alive = alive_;
  while (!waiters_.empty() && waiters_.front()->waitDeadlineMs <= t) {
    std::shared_ptr<Op> op = waiters_.front();
    waiters_.pop_front();
    ++counters_.poolTimeouts;
    if (hooks_.onCheckout && op->acquireStartNs != 0) {
      hooks_.onCheckout(static_cast<double>(uv_hrtime() - op->acquireStartNs) / 1e9);
    }
    TxResult out;
    out.error = makeError(DbErrorKind::PoolTimeout, "no database connection free within pool_timeout (" +
                                                        std::to_string(settings_.poolTimeout.count()) + "ms)");
    finish(op, std::move(out));
    if (!*alive || closed_) {
      return;
    }
  }
  armWaitTimer();
}

void Pool::armRetryTimer() {
  if (!retryTimer_.isOpen()) {
    return;
  }
  if (retries_.empty()) {
    uv_timer_stop(retryTimer_.get());
    return;
  }
  const uint64_t due = retries_.begin()->first;
  const uint64_t t = now();
  uv_timer_start(
      retryTimer_.get(), [](uv_timer_t* h) { static_cast<Pool*>(h->data)->onRetryTimer(); }, due > t ? due - t : 0, 0);
}

void Pool::onRetryTimer() {
  const uint64_t t = now();
  std::vector<std::shared_ptr<Op>> due;
  while (!retries_.empty() && retries_.begin()->first <= t) {
    due.push_back(std::move(retries_.begin()->second));
    retries_.erase(retries_.begin());
  }
  auto alive = alive_;
  for (auto& op : due) {
    if (!*alive || closed_) {
      return;
    }
    op->retry.beginTry();
    acquire(op);
  }
  armRetryTimer();
}

void Pool::onSweep() {
  if (closed_) {
    return;
  }
  // idle_ is a LIFO stack: its bottom holds the connections idle the longest.
  std::vector<Slot*> drop;
  int surplus = total() - settings_.poolSize;
  const uint64_t t = now();
  for (Slot* slot : idle_) {
    if (slot->conn->state() != PgConnection::State::Ready || tooOld(*slot)) {
      if (slot->conn->state() == PgConnection::State::Ready) {
        ++counters_.recycled;
      }
      drop.push_back(slot);
      --surplus;
    } else if (surplus > 0 && t - slot->idleSinceMs >= static_cast<uint64_t>(settings_.overflowIdleTimeout.count())) {
      drop.push_back(slot);
      --surplus;
    }
  }
  for (Slot* slot : drop) {
    discard(slot);
  }
  if (!drop.empty()) {
    serveWaiters();
  }
}

void Pool::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  waitTimer_.close();
  retryTimer_.close();
  sweepTimer_.close();
  std::deque<std::shared_ptr<Op>> waiters = std::move(waiters_);
  waiters_.clear();
  std::multimap<uint64_t, std::shared_ptr<Op>> retries = std::move(retries_);
  retries_.clear();
  idle_.clear();
  // Kept alive until the end: callbacks running inside PgConnection::close() still name their slot.
  std::vector<std::unique_ptr<Slot>> slots = std::move(slots_);
  slots_.clear();
  auto alive = alive_;
  for (auto& op : waiters) {
    finish(op, TxResult{makeError(DbErrorKind::Closed, "database pool closed"), {}, 0});
    if (!*alive) {
      return;
    }
  }
  for (auto& [due, op] : retries) {
    finish(op, TxResult{makeError(DbErrorKind::Closed, "database pool closed"), {}, 0});
    if (!*alive) {
      return;
    }
  }
  for (auto& slot : slots) {
    slot->conn->close();
    if (!*alive) {
      return;
    }
  }
}

PoolStats Pool::stats() const {
  PoolStats s = counters_;
  s.open = 0;
  s.idle = static_cast<int>(idle_.size());
  s.inUse = 0;
  s.connecting = 0;
  for (const auto& slot : slots_) {
    if (slot->connecting) {
      ++s.connecting;
      continue;
    }
    ++s.open;
    if (slot->inUse) {
      ++s.inUse;
    }
  }
  s.waiting = static_cast<int>(waiters_.size());
  return s;
}

}  // namespace app::db
