#pragma once

// One-shot schema commands behind `upstream_app --migrate` and `--seed-demo`.
//
// These run before (or beside) the server, never on an event loop, so they use
// blocking libpq on one connection. They work through PgBouncer in transaction
// pooling mode: no session state survives between transactions, so every step
// is one transaction that takes its own `pg_advisory_xact_lock` (released at
// COMMIT/ROLLBACK, unlike session advisory locks that would leak into the pool).

#include <ostream>
#include <string>

namespace app::db {

// Applies, in file-name order, every `*.sql` file of `migrationsDir` whose
// version (the file name without `.sql`, e.g. `0001_init`) is not yet in
// `schema_migrations(version text primary key, applied_at timestamptz)`.
// Each file runs in its own transaction together with its schema_migrations
// row, under a transaction-scoped advisory lock, so concurrent migrators
// serialize and a failing file leaves nothing behind. Files must therefore not
// contain BEGIN/COMMIT or statements that refuse transactions (e.g. CREATE
// INDEX CONCURRENTLY). Idempotent: a second run applies nothing.
// Progress and errors (with FILE:LINE for SQL errors) go to `log`.
// Returns a process exit code: 0 when the schema is current, 1 on any failure.
int runMigrations(const std::string& dbUrl, const std::string& migrationsDir, std::ostream& log);

// Inserts the demo data set of CONTRACT §5: articles 1..10000 with 1 KiB
// bodies, orders 1..1000 with 1-5 items each. Every value is a function of the
// row id, so the data are the same on every machine. One transaction; skipped
// when all demo rows exist, rows already present are left alone otherwise, and
// the id sequences are moved past the largest id so later inserts don't
// collide. Requires the schema (`--migrate` first).
// Returns a process exit code: 0 on success or nothing to do, 1 on failure.
int seedDemo(const std::string& dbUrl, std::ostream& log);

// Where the migrations are when no path is configured: the first of
//   $APP_MIGRATIONS_DIR (used as given, even if missing, so a typo is reported),
//   <exe dir>/migrations                       (installed next to the binary),
//   <exe dir>/../../upstream_app/migrations    (build/upstream_app/upstream_app in a checkout),
//   /usr/share/upstream_app/migrations         (distribution package)
// that is a directory. The exe dir comes from /proc/self/exe, else from argv0.
// Returns "" when none exists; runMigrations then reports what to set.
std::string defaultMigrationsDir(const char* argv0);

}  // namespace app::db
