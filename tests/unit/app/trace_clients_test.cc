// Client spans of upstream_app (issue 7): SpanParent / CurrentSpanScope capture across callbacks,
// the database pool's per-statement spans and the Redis wrapper's per-command spans, checked on
// the recorded SpanData through a test sink (ExportOptions::sink), against the real PostgreSQL +
// PgBouncer + Redis of scripts/stack.sh where a server is needed.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/config/app_config.h"
#include "common/obs/trace/ids.h"
#include "common/obs/trace/log_context.h"
#include "common/obs/trace/otlp_json.h"
#include "common/obs/trace/semconv.h"
#include "common/obs/trace/tracer.h"
#include "common/redis/redis_client.h"
#include "common/util/utf8.h"
#include "tests/unit/db/test_support.h"
#include "upstream_app/cache/traced_redis.h"
#include "upstream_app/db/db_trace.h"
#include "upstream_app/db/pool.h"

using namespace std::chrono_literals;
namespace tr = obs::trace;
using testsupport::TestLoop;

namespace {

// A tracer that records every span (ratio 1, or 0 for "unsampled") into a vector.
struct SinkTracer {
  std::mutex mu;
  std::vector<std::unique_ptr<tr::SpanData>> spans;
  std::unique_ptr<tr::Tracer> tracer;

  explicit SinkTracer(double ratio = 1.0) {
    cfg::TracingConfig c;
    c.enabled = true;
    c.sample_ratio = ratio;
    c.otlp_endpoint = "http://127.0.0.1:1/v1/traces";
    c.service_name = "trace-clients-test";
    tr::ExportOptions o;
    o.sink = [this](std::unique_ptr<tr::SpanData> s) {
      std::lock_guard<std::mutex> lock(mu);
      spans.push_back(std::move(s));
    };
    tracer = std::make_unique<tr::Tracer>(c, o);
  }

  std::vector<const tr::SpanData*> named(std::string_view system) {
    std::vector<const tr::SpanData*> out;
    for (const auto& s : spans) {
      tr::AttributeView v;
      if (s->findAttribute(tr::attr::kDbSystem, v) && v.stringValue == system) {
        out.push_back(s.get());
      }
    }
    return out;
  }
};

std::string str(const tr::SpanData& s, std::string_view key) {
  tr::AttributeView v;
  if (!s.findAttribute(key, v)) {
    return "<absent>";
  }
  if (v.type == tr::AttributeType::Int) {
    return std::to_string(v.intValue);
  }
  return std::string(v.stringValue);
}

app::db::PoolSettings poolSettings(const testsupport::RealStack* stack) {
  app::db::PoolSettings s;
  s.conninfo = stack->dbUrl();
  s.poolSize = 1;
  s.maxOverflow = 0;
  s.poolTimeout = 2000ms;
  s.statementTimeout = 2000ms;
  s.connectTimeout = 2000ms;
  s.applicationName = "unit-tests-trace";
  return s;
}

}  // namespace

TEST_CASE("trace: SpanParent captures the current span; scopes nest and restore") {
  SinkTracer sink;
  CHECK_FALSE(tr::SpanParent::current().context().valid());
  CHECK_FALSE(tr::SpanParent::current().recording());
  tr::Span server = sink.tracer->startServerSpan("GET", tr::ParentContext{});
  REQUIRE(server.recording());
  tr::SpanParent captured;
  {
    tr::CurrentSpanScope scope(server);
    captured = tr::SpanParent::current();
  }
  CHECK(tr::currentSpanContext() == nullptr);
  REQUIRE(captured.recording());
  CHECK(captured.context().spanId == server.context().spanId);
  tr::Span child = captured.startChild("SELECT app", tr::SpanKind::Client);
  REQUIRE(child.recording());
  CHECK(child.context().traceId == server.context().traceId);
  CHECK(child.data()->parentSpanId == server.context().spanId);
  CHECK(child.data()->kind == tr::SpanKind::Client);
  {
    // Re-entered in a later callback: what is captured there has the same parent.
    tr::CurrentSpanScope again(captured);
    CHECK(tr::SpanParent::current().context().spanId == server.context().spanId);
    CHECK(tr::currentLogIds().spanId() == tr::logIds(server.context()).spanId());
  }
  CHECK(tr::currentSpanContext() == nullptr);
  child.end();
  server.end();
  CHECK(sink.spans.size() == 2);
}

TEST_CASE("trace: an unsampled parent propagates its context but makes no child spans") {
  SinkTracer sink(0.0);
  tr::Span server = sink.tracer->startServerSpan("GET", tr::ParentContext{});
  REQUIRE_FALSE(server.recording());
  REQUIRE(server.context().valid());
  tr::CurrentSpanScope scope(server);
  const tr::SpanParent p = tr::SpanParent::current();
  CHECK(p.context().valid());
  CHECK_FALSE(p.context().sampled());
  CHECK_FALSE(p.recording());
  CHECK(p.tracestate().empty());
  CHECK_FALSE(p.startChild("x", tr::SpanKind::Client).recording());
  server.end();
  CHECK(sink.spans.empty());
}

TEST_CASE("trace: database span helpers: operation name, peer from conninfo") {
  using app::db::sqlOperationName;
  CHECK(sqlOperationName("SELECT 1") == "SELECT");
  CHECK(sqlOperationName("  \n\tselect * from t") == "SELECT");
  CHECK(sqlOperationName("-- why\n/* c */ WITH x AS (SELECT 1) SELECT * FROM x") == "WITH");
  CHECK(sqlOperationName("(SELECT 1) UNION (SELECT 2)") == "SELECT");
  CHECK(sqlOperationName("UPDATE articles SET title = $2 WHERE id = $1") == "UPDATE");
  CHECK(sqlOperationName("insert\tinto t values ($1)") == "INSERT");
  CHECK(sqlOperationName("") == "");
  CHECK(sqlOperationName("-- only a comment") == "");
  CHECK(sqlOperationName("$1").empty());

  auto uri = app::db::dbPeerFromConninfo("postgresql://app:secret@127.0.0.1:6432/appdb?sslmode=disable");
  CHECK(uri.address == "127.0.0.1");
  CHECK(uri.port == 6432);
  CHECK(uri.dbName == "appdb");
  auto kv = app::db::dbPeerFromConninfo("host=db.internal,db2 port=6433,6434 dbname=app user=app");
  CHECK(kv.address == "db.internal");
  CHECK(kv.port == 6433);
  CHECK(kv.dbName == "app");
  auto bare = app::db::dbPeerFromConninfo("dbname=x");
  CHECK(bare.address == "localhost");
  CHECK(bare.port == 5432);
  auto bad = app::db::dbPeerFromConninfo("postgresql://[broken");
  CHECK(bad.address == "localhost");
}

TEST_CASE("trace: Redis query text keeps commands and scripts, never keys or values") {
  using app::TracedRedis;
  CHECK(TracedRedis::queryText({"get", "app:article:7"}) == "GET ?");
  CHECK(TracedRedis::queryText({"SET", "k", "secret body", "PX", "60000"}) == "SET ? ? ? ?");
  CHECK(TracedRedis::queryText({"EVAL", "return redis.call('GET', KEYS[1])", "1", "k", "token"}) ==
        "EVAL return redis.call('GET', KEYS[1]) 1 ? ?");
  CHECK(TracedRedis::queryText({"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "2", "a", "b"}) ==
        "EVALSHA 0123456789abcdef0123456789abcdef01234567 2 ? ?");
  CHECK(TracedRedis::queryText({"PING"}) == "PING");
  CHECK(TracedRedis::queryText({}).empty());
}

TEST_SUITE("real-servers") {
  TEST_CASE("trace (real PgBouncer): one client span per statement, children of the submitting span") {
    REQUIRE_REAL_STACK(stack);
    SinkTracer sink;
    TestLoop loop;
    {
      app::db::Pool pool(loop.get(), poolSettings(stack));
      tr::Span server = sink.tracer->startServerSpan("GET /x", tr::ParentContext{});
      std::optional<app::db::TxResult> out;
      std::optional<tr::SpanParent> seenInCallback;
      {
        tr::CurrentSpanScope scope(server);
        app::db::Transaction t;
        t.label = "trace.ok";
        t.statements.push_back({"SELECT $1::int + 1", {"41"}});
        t.statements.push_back({"select 'second'", {}});
        pool.run(std::move(t), [&](app::db::TxResult r) {
          seenInCallback = tr::SpanParent::current();
          out = std::move(r);
        });
      }
      REQUIRE(loop.runUntil([&] { return out.has_value(); }, 5000));
      REQUIRE_MESSAGE(out->ok(), out->error.message);
      REQUIRE(seenInCallback.has_value());
      CHECK(seenInCallback->context().spanId == server.context().spanId);
      CHECK(seenInCallback->recording());

      const auto spans = sink.named("postgresql");
      REQUIRE(spans.size() == 3);  // set_config, then the two statements
      const auto peer = app::db::dbPeerFromConninfo(stack->dbUrl());
      for (const tr::SpanData* s : spans) {
        CHECK(s->context.traceId == server.context().traceId);
        CHECK(s->parentSpanId == server.context().spanId);
        CHECK(s->kind == tr::SpanKind::Client);
        CHECK(s->statusCode == tr::StatusCode::Unset);
        CHECK(s->endUnixNanos >= s->startUnixNanos);
        CHECK(str(*s, tr::attr::kServerAddress) == "127.0.0.1");
        CHECK(str(*s, tr::attr::kServerPort) == std::to_string(stack->pgbouncerPort));
        CHECK(str(*s, tr::attr::kDbNamespace) == peer.dbName);
        CHECK(str(*s, tr::attr::kDbOperationName) == "SELECT");
        CHECK(s->name == "SELECT " + peer.dbName);
      }
      CHECK(str(*spans[0], tr::attr::kDbQueryText) == "SELECT set_config('statement_timeout', $1, true)");
      CHECK(str(*spans[1], tr::attr::kDbQueryText) == "SELECT $1::int + 1");  // the placeholder, not 41
      CHECK(str(*spans[2], tr::attr::kDbQueryText) == "select 'second'");
      server.end();
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("trace (real PgBouncer): the failing statement is an error with its SQLSTATE, the rest skipped") {
    REQUIRE_REAL_STACK(stack);
    SinkTracer sink;
    TestLoop loop;
    {
      app::db::Pool pool(loop.get(), poolSettings(stack));
      tr::Span server = sink.tracer->startServerSpan("GET /x", tr::ParentContext{});
      std::optional<app::db::TxResult> out;
      {
        tr::CurrentSpanScope scope(server);
        app::db::Transaction t;
        t.statements.push_back({"SELECT 1", {}});
        t.statements.push_back({"SELECT $1::int / 0", {"7"}});
        t.statements.push_back({"SELECT 3", {}});
        pool.run(std::move(t), [&](app::db::TxResult r) { out = std::move(r); });
      }
      REQUIRE(loop.runUntil([&] { return out.has_value(); }, 5000));
      REQUIRE_FALSE(out->ok());
      CHECK(out->error.sqlState == "22012");
      const auto spans = sink.named("postgresql");
      REQUIRE(spans.size() == 4);
      CHECK(spans[0]->statusCode == tr::StatusCode::Unset);
      CHECK(spans[1]->statusCode == tr::StatusCode::Unset);
      CHECK(spans[2]->statusCode == tr::StatusCode::Error);
      CHECK(str(*spans[2], tr::attr::kDbResponseStatusCode) == "22012");
      CHECK(str(*spans[2], tr::attr::kErrorType) == "22012");
      CHECK(spans[2]->statusMessage.find('7') == std::string::npos);
      CHECK(spans[3]->statusCode == tr::StatusCode::Error);
      CHECK(str(*spans[3], tr::attr::kErrorType) == "skipped");
      server.end();
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("trace (real PgBouncer): a pre-ping before the transaction is a span of its own") {
    REQUIRE_REAL_STACK(stack);
    SinkTracer sink;
    TestLoop loop;
    {
      app::db::PoolSettings ps = poolSettings(stack);
      ps.prePingAfterIdle = std::chrono::milliseconds(1);
      app::db::Pool pool(loop.get(), ps);
      int done = 0;
      pool.run(app::db::Transaction{"warm", {{"SELECT 1", {}}}, true}, [&](app::db::TxResult r) {
        CHECK(r.ok());
        ++done;
      });
      REQUIRE(loop.runUntil([&] { return done == 1; }, 5000));
      loop.runFor(20);  // idle past prePingAfterIdle
      tr::Span server = sink.tracer->startServerSpan("GET /x", tr::ParentContext{});
      {
        tr::CurrentSpanScope scope(server);
        pool.run(app::db::Transaction{"t", {{"SELECT 2", {}}}, true}, [&](app::db::TxResult r) {
          CHECK(r.ok());
          ++done;
        });
      }
      REQUIRE(loop.runUntil([&] { return done == 2; }, 5000));
      CHECK(pool.stats().prePings == 1);
      const auto spans = sink.named("postgresql");
      REQUIRE(spans.size() == 3);  // pre-ping, set_config, SELECT 2
      CHECK(str(*spans[0], tr::attr::kDbQueryText) == "SELECT 1");
      CHECK(str(*spans[2], tr::attr::kDbQueryText) == "SELECT 2");
      for (const tr::SpanData* s : spans) {
        CHECK(s->parentSpanId == server.context().spanId);
        CHECK(s->statusCode == tr::StatusCode::Unset);
      }
      CHECK(spans[0]->endUnixNanos <= spans[1]->startUnixNanos);
      server.end();
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("trace (real PgBouncer): no current span or an unsampled one records nothing") {
    REQUIRE_REAL_STACK(stack);
    SinkTracer sink(0.0);
    TestLoop loop;
    {
      app::db::Pool pool(loop.get(), poolSettings(stack));
      tr::Span server = sink.tracer->startServerSpan("GET /x", tr::ParentContext{});
      int done = 0;
      bool contextInCallback = false;
      {
        tr::CurrentSpanScope scope(server);
        pool.run(app::db::Transaction{"t", {{"SELECT 1", {}}}, true}, [&](app::db::TxResult r) {
          CHECK(r.ok());
          // Propagation survives the hop even unsampled (a later HTTP call still sends it).
          contextInCallback = tr::currentSpanContext() != nullptr &&
                              tr::currentSpanContext()->spanId == server.context().spanId;
          ++done;
        });
      }
      pool.run(app::db::Transaction{"t", {{"SELECT 1", {}}}, true}, [&](app::db::TxResult r) {
        CHECK(r.ok());
        CHECK(tr::currentSpanContext() == nullptr);
        ++done;
      });
      REQUIRE(loop.runUntil([&] { return done == 2; }, 5000));
      CHECK(contextInCallback);
      server.end();
      CHECK(sink.spans.empty());
      pool.close();
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("trace (real Redis): one client span per command; failures are errors; callbacks keep the scope") {
    REQUIRE_REAL_STACK(stack);
    SinkTracer sink;
    TestLoop loop;
    {
      redisx::RedisOptions o;
      o.url = stack->redisUrl(9);
      o.commandTimeout = 1000ms;
      redisx::RedisClient client(loop.get(), o);
      REQUIRE(client.start());
      app::TracedRedis redis(client);
      tr::Span server = sink.tracer->startServerSpan("GET /x", tr::ParentContext{});
      int done = 0;
      {
        tr::CurrentSpanScope scope(server);
        redis.command({"SET", "trace:test:k", "secret-value", "PX", "10000"}, [&](redisx::RedisResult r) {
          CHECK(r.ok());
          // The callback runs in the request's scope: its next command is a sibling span.
          redis.command({"LPUSH", "trace:test:k", "x"}, [&](redisx::RedisResult r2) {
            CHECK(r2.error == redisx::RedisErrorKind::ServerError);
            ++done;
          });
        });
      }
      REQUIRE(loop.runUntil([&] { return done == 1; }, 5000));
      const auto spans = sink.named("redis");
      REQUIRE(spans.size() == 2);
      for (const tr::SpanData* s : spans) {
        CHECK(s->context.traceId == server.context().traceId);
        CHECK(s->parentSpanId == server.context().spanId);
        CHECK(s->kind == tr::SpanKind::Client);
        CHECK(str(*s, tr::attr::kDbNamespace) == "9");
        CHECK(str(*s, tr::attr::kServerAddress) == "127.0.0.1");
        CHECK(str(*s, tr::attr::kServerPort) == std::to_string(stack->redisPort));
      }
      CHECK(spans[0]->name == "SET 9");
      CHECK(str(*spans[0], tr::attr::kDbOperationName) == "SET");
      CHECK(str(*spans[0], tr::attr::kDbQueryText) == "SET ? ? ? ?");
      CHECK(spans[0]->statusCode == tr::StatusCode::Unset);
      CHECK(spans[1]->statusCode == tr::StatusCode::Error);
      CHECK(str(*spans[1], tr::attr::kDbResponseStatusCode) == "WRONGTYPE");
      CHECK(str(*spans[1], tr::attr::kErrorType) == "WRONGTYPE");
      server.end();
      client.close();
    }
    CHECK(loop.finish() == 0);
  }
}

TEST_CASE("trace: a Redis command that cannot be sent is an error span (disconnected)") {
  SinkTracer sink;
  TestLoop loop;
  {
    redisx::RedisOptions o;
    o.url = "redis://127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/0";
    o.connectTimeout = 200ms;
    o.commandTimeout = 200ms;
    redisx::RedisClient client(loop.get(), o);
    REQUIRE(client.start());
    tr::Span server = sink.tracer->startServerSpan("GET /x", tr::ParentContext{});
    std::optional<redisx::RedisResult> out;
    {
      tr::CurrentSpanScope scope(server);
      app::TracedRedis(client).command({"GET", "k"}, [&](redisx::RedisResult r) { out = std::move(r); });
    }
    REQUIRE(loop.runUntil([&] { return out.has_value(); }, 3000));
    CHECK_FALSE(out->ok());
    const auto spans = sink.named("redis");
    REQUIRE(spans.size() == 1);
    CHECK(spans[0]->statusCode == tr::StatusCode::Error);
    const std::string type = str(*spans[0], tr::attr::kErrorType);
    CHECK((type == "disconnected" || type == "timeout"));
    server.end();
    client.close();
  }
  CHECK(loop.finish() == 0);
}

TEST_CASE("trace: id hex formatting matches printf for edge and random values") {
  const uint64_t edges[] = {0, 1, 9, 10, 15, 16, 0x99999999ULL, 0xAAAAAAAAULL, 0xFFFFFFFFULL, 0x100000000ULL,
                            0x0123456789ABCDEFULL, 0xFEDCBA9876543210ULL, ~0ULL};
  std::vector<uint64_t> values(std::begin(edges), std::end(edges));
  for (int i = 0; i < 2000; ++i) {
    values.push_back(tr::newSpanId().value);
  }
  for (uint64_t v : values) {
    char want[17];
    std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(v));
    CHECK(tr::toHex(tr::SpanId{v}).view() == std::string_view(want, 16));
    char want2[33];
    std::snprintf(want2, sizeof want2, "%016llx%016llx", static_cast<unsigned long long>(v),
                  static_cast<unsigned long long>(~v));
    CHECK(tr::toHex(tr::TraceId{v, ~v}).view() == std::string_view(want2, 32));
  }
}

namespace {
// The escaping rules of otlp_json.h, byte by byte, as a reference for the run-copying encoder.
std::string referenceJsonString(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t len = util::utf8SequenceLength(s, i);
      out.append(len == 0 ? std::string_view("\xEF\xBF\xBD") : s.substr(i, len));
      i += len == 0 ? 1 : len;
      continue;
    }
    char buf[8];
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out.append(buf);
    } else {
      out.push_back(static_cast<char>(c));
    }
    ++i;
  }
  out.push_back('"');
  return out;
}
}  // namespace

TEST_CASE("trace: JSON string escaping of long mixed strings matches the byte-by-byte rules") {
  const std::string_view alphabet[] = {"a", "Z", " ", "~", "\"", "\\", "\n", "\t", "\x01", "\x7f", "\xc3\xa9",
                                       "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff", "\xc3", "\x80"};
  uint64_t seed = 12345;
  for (int round = 0; round < 3000; ++round) {
    std::string s;
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    const size_t pieces = (seed >> 33) % 70;
    for (size_t k = 0; k < pieces; ++k) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      // Mostly plain runs (the fast path), sometimes a special byte at any offset.
      const size_t pick = (seed >> 35) % 40;
      s.append(pick < std::size(alphabet) ? alphabet[pick] : std::string_view("plain-text-run."));
    }
    std::string out = "prefix:";
    tr::appendJsonString(out, s);
    CAPTURE(s);
    CHECK(out == "prefix:" + referenceJsonString(s));
  }
}
