#include "upstream_app/db/migrate.h"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <vector>

namespace app::db {
namespace {

namespace fs = std::filesystem;

// Transaction-scoped advisory lock keys (any constant bigint; they only need to
// differ from the keys the app itself uses). ASCII "UAMIGRAT" / "UASEEDDM".
constexpr const char* kMigrateLockKey = "6142377237617409876";
constexpr const char* kSeedLockKey = "6142375417862915149";

// Without a connect_timeout libpq waits for the OS TCP timeout on a dead host;
// a value in the URL still wins because dbname is expanded after it.
constexpr const char* kDefaultConnectTimeoutSeconds = "10";

constexpr int kDemoArticles = 10000;
constexpr int kDemoOrders = 1000;

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultClearer {
  void operator()(PGresult* res) const { PQclear(res); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;
using ResultPtr = std::unique_ptr<PGresult, ResultClearer>;

// "user@host:port/db" from the connection object: never contains the password.
std::string describe(PGconn* conn) {
  auto orEmpty = [](const char* s) { return std::string(s != nullptr ? s : ""); };
  return orEmpty(PQuser(conn)) + "@" + orEmpty(PQhost(conn)) + ":" + orEmpty(PQport(conn)) + "/" +
         orEmpty(PQdb(conn));
}

std::string trimmed(const char* message) {
  std::string s = message != nullptr ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// libpq prints notices to stderr by default. NOTICEs here are expected noise
// ("relation ... already exists, skipping"); WARNINGs go to the log (errors
// arrive as results, not notices).
void forwardWarnings(void* arg, const PGresult* res) {
  const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (severity == nullptr || std::string(severity) != "WARNING") {
    return;
  }
  *static_cast<std::ostream*>(arg) << "postgres: " << trimmed(PQresultErrorMessage(res)) << "\n";
}

ConnPtr connect(const std::string& dbUrl, const char* applicationName, const char* who, std::ostream& log) {
  const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {kDefaultConnectTimeoutSeconds, applicationName, dbUrl.c_str(), nullptr};
  ConnPtr conn(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  if (!conn) {
    log << who << ": out of memory creating a database connection\n";
    return nullptr;
  }
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    log << who << ": cannot connect to " << describe(conn.get()) << ": " << trimmed(PQerrorMessage(conn.get()))
        << "\n";
    return nullptr;
  }
  PQsetNoticeReceiver(conn.get(), forwardWarnings, &log);
  return conn;
}

// Runs one command without parameters (simple protocol: may hold several
// statements). Returns the result when its status is `expected`, else logs
// `what` with the server's message and returns null.
ResultPtr exec(PGconn* conn, const std::string& sql, ExecStatusType expected, const std::string& what,
               const char* who, std::ostream& log) {
  ResultPtr res(PQexec(conn, sql.c_str()));
  if (!res || PQresultStatus(res.get()) != expected) {
    log << who << ": " << what << " failed: " << trimmed(res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn))
        << "\n";
    return nullptr;
  }
  return res;
}

// One text parameter, extended protocol with an unnamed statement (fine under
// transaction pooling, unlike named prepared statements).
ResultPtr execParam(PGconn* conn, const char* sql, const std::string& param, ExecStatusType expected,
                    const std::string& what, const char* who, std::ostream& log) {
  const char* values[] = {param.c_str()};
  ResultPtr res(PQexecParams(conn, sql, 1, nullptr, values, nullptr, nullptr, 0));
  if (!res || PQresultStatus(res.get()) != expected) {
    log << who << ": " << what << " failed: " << trimmed(res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn))
        << "\n";
    return nullptr;
  }
  return res;
}

// Ends a failed transaction. The connection is dropped right after, which
// would roll back anyway; the explicit ROLLBACK returns a PgBouncer server
// connection to the pool clean instead of making it wait for the disconnect.
void rollback(PGconn* conn) {
  ResultPtr res(PQexec(conn, "ROLLBACK"));
}

// Begins a transaction holding the advisory lock `lockKey`. The lock waits at
// most lock_timeout so a wedged migrator elsewhere yields an error, not a hang.
bool beginLocked(PGconn* conn, const char* lockKey, const char* who, std::ostream& log) {
  std::string sql = "BEGIN; SET LOCAL lock_timeout = '60s'; SELECT pg_advisory_xact_lock(";
  sql += lockKey;
  sql += ")";
  if (!exec(conn, sql, PGRES_TUPLES_OK, "taking the advisory lock", who, log)) {
    rollback(conn);
    return false;
  }
  return true;
}

bool commit(PGconn* conn, const std::string& what, const char* who, std::ostream& log) {
  if (!exec(conn, "COMMIT", PGRES_COMMAND_OK, "committing " + what, who, log)) {
    rollback(conn);
    return false;
  }
  return true;
}

struct MigrationFile {
  std::string version;  // file name without .sql
  fs::path path;
};

// *.sql regular files of `dir` sorted by name; hidden files (editor droppings) skipped.
bool listMigrations(const std::string& dir, std::vector<MigrationFile>& out, std::ostream& log) {
  std::error_code ec;
  if (dir.empty()) {
    log << "migrate: no migrations directory found; set APP_MIGRATIONS_DIR\n";
    return false;
  }
  if (!fs::is_directory(dir, ec)) {
    log << "migrate: migrations directory " << dir << " does not exist (set APP_MIGRATIONS_DIR)\n";
    return false;
  }
  fs::directory_iterator it(dir, ec);
  if (ec) {
    log << "migrate: cannot list " << dir << ": " << ec.message() << "\n";
    return false;
  }
  for (const fs::directory_entry& entry : it) {
    const fs::path& p = entry.path();
    const std::string name = p.filename().string();
    if (p.extension() != ".sql" || name.empty() || name[0] == '.' || !entry.is_regular_file(ec)) {
      continue;
    }
    out.push_back({p.stem().string(), p});
  }
  std::sort(out.begin(), out.end(),
            [](const MigrationFile& a, const MigrationFile& b) { return a.version < b.version; });
  return true;
}

bool readFile(const fs::path& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return false;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  out = buf.str();
  return !in.bad();
}

// PostgreSQL reports an error position as a 1-based character (not byte) index
// into the query text; turn it into a line number of the file.
int lineOfPosition(const std::string& text, const char* position) {
  if (position == nullptr) {
    return 0;
  }
  long chars = std::strtol(position, nullptr, 10);
  int line = 1;
  for (unsigned char c : text) {
    if (chars <= 1) {
      break;
    }
    if ((c & 0xC0) != 0x80) {  // first byte of a UTF-8 character
      --chars;
    }
    if (c == '\n') {
      ++line;
    }
  }
  return line;
}

enum class Applied { kNow, kAlready, kFailed };

Applied applyOne(PGconn* conn, const MigrationFile& m, std::ostream& log) {
  std::string sql;
  if (!readFile(m.path, sql)) {
    log << "migrate: cannot read " << m.path.string() << "\n";
    return Applied::kFailed;
  }
  const auto start = std::chrono::steady_clock::now();
  if (!beginLocked(conn, kMigrateLockKey, "migrate", log)) {
    return Applied::kFailed;
  }
  // Checked again under the lock: another migrator may have applied it since we listed.
  ResultPtr seen = execParam(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", m.version, PGRES_TUPLES_OK,
                             "reading schema_migrations", "migrate", log);
  if (!seen) {
    rollback(conn);
    return Applied::kFailed;
  }
  if (PQntuples(seen.get()) > 0) {
    return commit(conn, m.version, "migrate", log) ? Applied::kAlready : Applied::kFailed;
  }
  ResultPtr res(PQexec(conn, sql.c_str()));
  const ExecStatusType status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
    const char* position = res ? PQresultErrorField(res.get(), PG_DIAG_STATEMENT_POSITION) : nullptr;
    log << "migrate: " << m.path.string();
    if (int line = lineOfPosition(sql, position); line > 0) {
      log << ":" << line;
    }
    log << ": " << trimmed(res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn))
        << " (rolled back; nothing of " << m.version << " was applied)\n";
    rollback(conn);
    return Applied::kFailed;
  }
  if (!execParam(conn, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", m.version,
                 PGRES_COMMAND_OK, "recording " + m.version, "migrate", log)) {
    rollback(conn);
    return Applied::kFailed;
  }
  if (!commit(conn, m.version, "migrate", log)) {
    return Applied::kFailed;
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  log << "migrate: applied " << m.version << " in " << ms << " ms\n";
  return Applied::kNow;
}

}  // namespace

int runMigrations(const std::string& dbUrl, const std::string& migrationsDir, std::ostream& log) {
  std::vector<MigrationFile> files;
  if (!listMigrations(migrationsDir, files, log)) {
    return 1;
  }
  if (files.empty()) {
    log << "migrate: no *.sql files in " << migrationsDir << "\n";
    return 1;
  }
  ConnPtr conn = connect(dbUrl, "upstream_app-migrate", "migrate", log);
  if (!conn) {
    return 1;
  }
  // Under the lock too: two first-time migrators racing on CREATE TABLE IF NOT
  // EXISTS can otherwise fail with a unique violation in pg_type.
  if (!beginLocked(conn.get(), kMigrateLockKey, "migrate", log)) {
    return 1;
  }
  if (!exec(conn.get(),
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())",
            PGRES_COMMAND_OK, "creating schema_migrations", "migrate", log)) {
    rollback(conn.get());
    return 1;
  }
  ResultPtr known = exec(conn.get(), "SELECT version FROM schema_migrations ORDER BY version", PGRES_TUPLES_OK,
                         "reading schema_migrations", "migrate", log);
  if (!known) {
    rollback(conn.get());
    return 1;
  }
  if (!commit(conn.get(), "schema_migrations", "migrate", log)) {
    return 1;
  }
  std::set<std::string> applied;
  for (int row = 0; row < PQntuples(known.get()); ++row) {
    applied.insert(PQgetvalue(known.get(), row, 0));
  }

  int appliedNow = 0;
  int alreadyApplied = 0;
  for (const MigrationFile& m : files) {
    if (applied.count(m.version) != 0) {
      ++alreadyApplied;
      continue;
    }
    switch (applyOne(conn.get(), m, log)) {
      case Applied::kNow:
        ++appliedNow;
        break;
      case Applied::kAlready:
        ++alreadyApplied;
        break;
      case Applied::kFailed:
        return 1;
    }
  }
  // A database ahead of this binary is normal during a rolling deploy, but worth saying.
  std::set<std::string> onDisk;
  for (const MigrationFile& m : files) {
    onDisk.insert(m.version);
  }
  for (const std::string& version : applied) {
    if (onDisk.count(version) == 0) {
      log << "migrate: note: database has migration " << version << " that " << migrationsDir
          << " does not contain\n";
    }
  }
  log << "migrate: schema at " << files.back().version << " (" << appliedNow << " applied now, " << alreadyApplied
      << " already applied) on " << describe(conn.get()) << "\n";
  return 0;
}

int seedDemo(const std::string& dbUrl, std::ostream& log) {
  ConnPtr conn = connect(dbUrl, "upstream_app-seed", "seed-demo", log);
  if (!conn) {
    return 1;
  }
  PGconn* c = conn.get();
  const auto start = std::chrono::steady_clock::now();
  if (!beginLocked(c, kSeedLockKey, "seed-demo", log)) {
    return 1;
  }
  ResultPtr schema = exec(c,
                          "SELECT to_regclass('public.articles') IS NOT NULL"
                          " AND to_regclass('public.orders') IS NOT NULL"
                          " AND to_regclass('public.order_items') IS NOT NULL",
                          PGRES_TUPLES_OK, "checking the schema", "seed-demo", log);
  if (!schema) {
    rollback(c);
    return 1;
  }
  if (std::string(PQgetvalue(schema.get(), 0, 0)) != "t") {
    log << "seed-demo: tables articles/orders/order_items are missing; run --migrate first\n";
    rollback(c);
    return 1;
  }
  const std::string countSql =
      "SELECT (SELECT count(*) FROM articles WHERE id BETWEEN 1 AND " + std::to_string(kDemoArticles) +
      "), (SELECT count(*) FROM orders WHERE id BETWEEN 1 AND " + std::to_string(kDemoOrders) + ")";
  ResultPtr present = exec(c, countSql, PGRES_TUPLES_OK, "counting demo rows", "seed-demo", log);
  if (!present) {
    rollback(c);
    return 1;
  }
  if (std::atoi(PQgetvalue(present.get(), 0, 0)) == kDemoArticles &&
      std::atoi(PQgetvalue(present.get(), 0, 1)) == kDemoOrders) {
    if (!commit(c, "the seed check", "seed-demo", log)) {
      return 1;
    }
    log << "seed-demo: demo data already present (" << kDemoArticles << " articles, " << kDemoOrders
        << " orders); nothing to do\n";
    return 0;
  }

  // Every column is a function of the id so two machines (or two runs) hold the
  // same rows; explicit ids plus ON CONFLICT keep whatever is already there.
  // Bodies are exactly 1024 ASCII characters: a header, then an md5 of the id
  // (so bodies differ and don't all compress alike), then filler text.
  const std::string articlesSql =
      "INSERT INTO articles (id, title, body, updated_at)"
      " SELECT i,"
      "        format('Demo article %s', i),"
      "        rpad(format('Article %s. ', i), 1024,"
      "             md5(i::text) || ' Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod"
      " tempor incididunt ut labore et dolore magna aliqua. '),"
      "        timestamptz '2024-01-01 00:00:00+00' + make_interval(mins => i)"
      " FROM generate_series(1, " +
      std::to_string(kDemoArticles) +
      ") AS i"
      " ON CONFLICT (id) DO NOTHING";
  // Order i has 1 + (37 i mod 5) items (1..5, 3000 in all); item ids are
  // (order_id - 1) * 5 + k so they too are fixed whatever order rows arrive in.
  const std::string ordersSql =
      "WITH new_orders AS ("
      "  INSERT INTO orders (id, customer_id, status, created_at)"
      "  SELECT i,"
      "         1 + (i * 19) % 100,"
      "         ('{pending,paid,shipped,delivered}'::text[])[1 + i % 4],"
      "         timestamptz '2024-01-01 00:00:00+00' + make_interval(hours => i)"
      "  FROM generate_series(1, " +
      std::to_string(kDemoOrders) +
      ") AS i"
      "  ON CONFLICT (id) DO NOTHING"
      "  RETURNING id)"
      " INSERT INTO order_items (id, order_id, sku, quantity, unit_price_cents)"
      " SELECT (o.id - 1) * 5 + k,"
      "        o.id,"
      "        format('SKU-%s', lpad(((o.id * 13 + k * 7) % 500 + 1)::text, 4, '0')),"
      "        1 + (o.id + k) % 3,"
      "        100 + (o.id * 37 + k * 101) % 9900"
      " FROM new_orders o CROSS JOIN generate_series(1, 5) AS k"
      " WHERE k <= 1 + (o.id * 37) % 5"
      " ON CONFLICT (id) DO NOTHING";
  // setval(seq, n, false): the next nextval() returns n, i.e. max(id) + 1.
  const std::string sequencesSql =
      "SELECT setval(pg_get_serial_sequence('articles', 'id'), COALESCE(max(id), 0) + 1, false) FROM articles;"
      "SELECT setval(pg_get_serial_sequence('orders', 'id'), COALESCE(max(id), 0) + 1, false) FROM orders;"
      "SELECT setval(pg_get_serial_sequence('order_items', 'id'), COALESCE(max(id), 0) + 1, false)"
      " FROM order_items";

  ResultPtr articles = exec(c, articlesSql, PGRES_COMMAND_OK, "inserting articles", "seed-demo", log);
  if (!articles) {
    rollback(c);
    return 1;
  }
  ResultPtr orders = exec(c, ordersSql, PGRES_COMMAND_OK, "inserting orders", "seed-demo", log);
  if (!orders) {
    rollback(c);
    return 1;
  }
  // Fresh statistics so the first queries after seeding get sensible plans.
  if (!exec(c, sequencesSql, PGRES_TUPLES_OK, "moving the id sequences", "seed-demo", log) ||
      !exec(c, "ANALYZE articles, orders, order_items", PGRES_COMMAND_OK, "analyzing", "seed-demo", log)) {
    rollback(c);
    return 1;
  }
  if (!commit(c, "the demo data", "seed-demo", log)) {
    return 1;
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  log << "seed-demo: inserted " << PQcmdTuples(articles.get()) << " articles and " << PQcmdTuples(orders.get())
      << " order items (with their orders) in " << ms << " ms\n";
  return 0;
}

std::string defaultMigrationsDir(const char* argv0) {
  if (const char* fromEnv = std::getenv("APP_MIGRATIONS_DIR"); fromEnv != nullptr && fromEnv[0] != '\0') {
    return fromEnv;
  }
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec && argv0 != nullptr && argv0[0] != '\0') {
    exe = fs::weakly_canonical(fs::path(argv0), ec);
  }
  std::vector<fs::path> candidates;
  if (!exe.empty()) {
    const fs::path exeDir = exe.parent_path();
    candidates.push_back(exeDir / "migrations");
    candidates.push_back(exeDir / ".." / ".." / "upstream_app" / "migrations");
  }
  candidates.emplace_back("/usr/share/upstream_app/migrations");
  for (const fs::path& candidate : candidates) {
    if (fs::is_directory(candidate, ec)) {
      return fs::weakly_canonical(candidate, ec).string();
    }
  }
  return "";
}

}  // namespace app::db
