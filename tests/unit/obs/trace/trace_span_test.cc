// The span model (common/obs/trace/span.h, semconv.h): inline attribute storage and its limits,
// the Span handle's no-op behaviour when not recording, the HTTP status rule, and that an
// unsampled request allocates nothing.

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "common/config/app_config.h"
#include "common/obs/trace/semconv.h"
#include "common/obs/trace/span.h"
#include "common/obs/trace/tracer.h"

using namespace obs::trace;

// Counting global operator new/delete for this binary: the count moves only while a thread has
// asked for it (tAllocCounting), so other tests are unaffected. Every non-aligned form is replaced
// (plain, array, nothrow, sized) so that each allocation is paired with a matching free under
// ASan; the aligned forms keep their defaults and pair among themselves.
namespace {
thread_local bool tAllocCounting = false;
thread_local size_t tAllocations = 0;

void* countedAlloc(std::size_t size) noexcept {
  if (tAllocCounting) {
    ++tAllocations;
  }
  return std::malloc(size == 0 ? 1 : size);
}
}  // namespace

void* operator new(std::size_t size) {
  if (void* p = countedAlloc(size)) {
    return p;
  }
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* p = countedAlloc(size)) {
    return p;
  }
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return countedAlloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return countedAlloc(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

cfg::TracingConfig contextOnlyConfig(double ratio) {
  cfg::TracingConfig c;
  c.enabled = true;
  c.sample_ratio = ratio;
  c.otlp_endpoint = "https://collector.invalid/v1/traces";  // export disabled: no thread
  c.service_name = "span-test";
  return c;
}

}  // namespace

TEST_CASE("trace: span attributes are typed, replaceable and bounded") {
  SpanData d;
  d.setString(attr::kHttpRequestMethod, "GET");
  d.setInt(attr::kHttpResponseStatusCode, 200);
  d.setDouble("sample.rate", 0.25);
  d.setBool("cache.hit", true);
  REQUIRE(d.attributeCount() == 4);
  AttributeView v;
  REQUIRE(d.findAttribute("http.request.method", v));
  CHECK(v.type == AttributeType::String);
  CHECK(v.stringValue == "GET");
  REQUIRE(d.findAttribute("http.response.status_code", v));
  CHECK(v.type == AttributeType::Int);
  CHECK(v.intValue == 200);
  REQUIRE(d.findAttribute("sample.rate", v));
  CHECK(v.doubleValue == 0.25);
  REQUIRE(d.findAttribute("cache.hit", v));
  CHECK(v.boolValue);

  // Same key again: replaced in place, not appended; the type may change.
  d.setString(attr::kHttpRequestMethod, "POST");
  d.setString(attr::kHttpRequestMethod, "PATCH-LONGER-THAN-BEFORE");
  d.setString(attr::kHttpRequestMethod, "PUT");
  d.setString("cache.hit", "yes");
  CHECK(d.attributeCount() == 4);
  REQUIRE(d.findAttribute("http.request.method", v));
  CHECK(v.stringValue == "PUT");
  REQUIRE(d.findAttribute("cache.hit", v));
  CHECK(v.type == AttributeType::String);
  CHECK(v.stringValue == "yes");
  CHECK(d.droppedAttributes() == 0);

  // Beyond kMaxAttributes distinct keys: dropped and counted.
  for (size_t i = 0; i < SpanData::kMaxAttributes + 5; ++i) {
    d.setInt("k" + std::to_string(i), static_cast<int64_t>(i));
  }
  CHECK(d.attributeCount() == SpanData::kMaxAttributes);
  CHECK(d.droppedAttributes() == 9);
  CHECK(d.findAttribute("http.request.method", v));

  // Long values are cut, never in the middle of a UTF-8 sequence.
  SpanData e;
  std::string longValue(SpanData::kMaxStringValueBytes - 1, 'x');
  longValue += "\xc3\xa9\xc3\xa9";  // é é straddling the limit
  e.setString(attr::kDbStatement, longValue);
  REQUIRE(e.findAttribute("db.statement", v));
  CHECK(v.stringValue.size() == SpanData::kMaxStringValueBytes - 1);
  CHECK(truncateUtf8("a\xc3\xa9", 2) == "a");
  CHECK(truncateUtf8("a\xc3\xa9", 3) == "a\xc3\xa9");
  CHECK(truncateUtf8("abc", 10) == "abc");

  // The per-span arena is bounded too.
  SpanData f;
  const std::string big(SpanData::kMaxStringValueBytes, 'v');
  for (int i = 0; i < 20; ++i) {
    f.setString("big" + std::to_string(i), big);
  }
  CHECK(f.droppedAttributes() > 0);
}

TEST_CASE("trace: an unsampled span is a no-op handle that still carries its context") {
  Tracer tracer(contextOnlyConfig(0.0));
  Span s = tracer.startServerSpan("GET /articles/{id}", ParentContext{});
  CHECK(s.context().valid());
  CHECK_FALSE(s.recording());
  CHECK(s.data() == nullptr);
  CHECK(s.kind() == SpanKind::Server);
  s.setString(attr::kUrlPath, "/articles/1").setInt(attr::kServerPort, 8080).setDouble("x", 1).setBool("y", true);
  s.setName("renamed").setError("boom").setOk();
  setHttpResponseStatus(s, 503);
  setSpanFailure(s, "timeout");
  const SpanContext before = s.context();
  s.end();
  s.end();
  CHECK(s.context().traceId == before.traceId);  // still usable for the access log after end()

  Span moved = std::move(s);
  CHECK(moved.context().spanId == before.spanId);
  Span empty;
  CHECK_FALSE(empty.context().valid());
  empty.end();
}

TEST_CASE("trace: an unsampled request allocates nothing") {
  Tracer tracer(contextOnlyConfig(0.0));
  const std::string incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
  const std::string tracestate = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
  // Warm up thread-local state (the ID generator) outside the counted region.
  (void)tracer.startServerSpan("warm", ParentContext{});

  tAllocations = 0;
  tAllocCounting = true;
  for (int i = 0; i < 1000; ++i) {
    const ParentContext parent = extractParent(i % 2 == 0 ? incoming : std::string_view(), tracestate);
    Span span = tracer.startServerSpan("GET /articles/{id}", parent);
    span.setString(attr::kHttpRequestMethod, "GET").setString(attr::kUrlPath, "/articles/42");
    Span client = tracer.startSpan("GET", SpanKind::Client, span);
    const TraceparentText header = formatTraceparent(client.context());
    (void)header;
    setHttpResponseStatus(client, 200);
    client.end();
    setHttpResponseStatus(span, 200);
    span.end();
  }
  tAllocCounting = false;
  CHECK(tAllocations == 0);
}

TEST_CASE("trace: HTTP status rule for server and client spans") {
  // A recording span needs an exporting tracer: point it at a closed port and never flush.
  cfg::TracingConfig c = contextOnlyConfig(1.0);
  c.otlp_endpoint = "http://127.0.0.1:1/v1/traces";
  ExportOptions o;
  o.maxDelay = std::chrono::milliseconds(60000);
  Tracer tracer(c, o);
  REQUIRE(tracer.exporting());
  struct Row {
    SpanKind kind;
    int status;
    bool error;
  };
  const Row rows[] = {
      {SpanKind::Server, 200, false}, {SpanKind::Server, 404, false}, {SpanKind::Server, 500, true},
      {SpanKind::Server, 503, true},  {SpanKind::Client, 404, true},  {SpanKind::Client, 429, true},
      {SpanKind::Client, 200, false}, {SpanKind::Client, 302, false},
  };
  for (const Row& r : rows) {
    CAPTURE(r.status);
    Span span = r.kind == SpanKind::Server ? tracer.startServerSpan("GET", ParentContext{})
                                           : tracer.startSpan("GET", SpanKind::Client, Span());
    REQUIRE(span.recording());
    CHECK(span.data()->kind == r.kind);
    setHttpResponseStatus(span, r.status);
    AttributeView v;
    REQUIRE(span.data()->findAttribute(attr::kHttpResponseStatusCode, v));
    CHECK(v.intValue == r.status);
    CHECK((span.data()->statusCode == StatusCode::Error) == r.error);
    CHECK(span.data()->findAttribute(attr::kErrorType, v) == r.error);
    if (r.error) {
      CHECK(v.stringValue == std::to_string(r.status));
    }
  }
  Span failed = tracer.startSpan("GET", SpanKind::Client, Span());
  setSpanFailure(failed, "connect_failure");
  CHECK(failed.data()->statusCode == StatusCode::Error);
  CHECK(failed.data()->statusMessage == "connect_failure");
  // Names, status and times as the tracer sets them.
  Span named = tracer.startServerSpan("GET", ParentContext{}, 1000);
  named.setName("GET /articles/{id}").setError("upstream timeout");
  CHECK(named.data()->name == "GET /articles/{id}");
  CHECK(named.data()->startUnixNanos == 1000);
  CHECK(named.data()->statusMessage == "upstream timeout");
  named.setOk();
  CHECK(named.data()->statusCode == StatusCode::Ok);
  named.end(500);  // before the start: clamped
  CHECK_FALSE(named.recording());
  CHECK(tracer.shutdown(std::chrono::milliseconds(0)) == false);
}
