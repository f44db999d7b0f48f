// W3C Trace Context (common/obs/trace/context.h): traceparent / tracestate tables in the spirit
// of the W3C test suite (test/test.py in w3c/trace-context), ID hex round trips, extraction,
// the collector URL parser and log-id formatting.

#include <doctest/doctest.h>

#include <string>
#include <unordered_set>

#include "common/obs/trace/context.h"
#include "common/obs/trace/endpoint.h"
#include "common/obs/trace/ids.h"
#include "common/obs/trace/log_context.h"

using namespace obs::trace;

namespace {

constexpr const char* kTrace = "0af7651916cd43dd8448eb211c80319c";
constexpr const char* kSpan = "b7ad6b7169203331";

std::string tp(const std::string& version, const std::string& trace, const std::string& span,
               const std::string& flags) {
  return version + "-" + trace + "-" + span + "-" + flags;
}

}  // namespace

TEST_CASE("trace: traceparent values the W3C spec accepts") {
  struct Row {
    std::string value;
    bool sampled;
  };
  const Row rows[] = {
      {tp("00", kTrace, kSpan, "01"), true},
      {tp("00", kTrace, kSpan, "00"), false},
      {tp("00", kTrace, kSpan, "09"), true},                 // unknown flag bits ignored, sampled bit read
      {tp("00", kTrace, kSpan, "fe"), false},                // every bit but sampled
      {" \t" + tp("00", kTrace, kSpan, "01") + "  ", true},  // OWS around the value
      {tp("01", kTrace, kSpan, "01"), true},                 // a future version, same layout
      {tp("cc", kTrace, kSpan, "01") + "-what-the-future-will-be-like", true},
      {tp("fe", kTrace, kSpan, "00") + "-x", false},
      {tp("00", "00000000000000000000000000000001", "0000000000000001", "01"), true},
  };
  for (const Row& r : rows) {
    CAPTURE(r.value);
    SpanContext ctx;
    REQUIRE(parseTraceparent(r.value, ctx));
    CHECK(ctx.valid());
    CHECK(ctx.sampled() == r.sampled);
    CHECK((ctx.flags & ~kFlagSampled) == 0);  // only the bits we know travel on
  }
  SpanContext ctx;
  REQUIRE(parseTraceparent(tp("00", kTrace, kSpan, "01"), ctx));
  CHECK(toHex(ctx.traceId).view() == kTrace);
  CHECK(toHex(ctx.spanId).view() == kSpan);
  CHECK(ctx.traceId.hi == 0x0af7651916cd43ddULL);
  CHECK(ctx.traceId.lo == 0x8448eb211c80319cULL);
}

TEST_CASE("trace: traceparent values the W3C spec rejects are treated as absent") {
  const std::string zeros32(32, '0');
  const std::string zeros16(16, '0');
  const std::string rows[] = {
      "",
      "00",
      tp("ff", kTrace, kSpan, "01"),                       // forbidden version
      tp("ff", kTrace, kSpan, "01") + "-more",             // forbidden version, extra fields
      tp("00", kTrace, kSpan, "01") + "-what-the-future",  // version 00 has exactly 4 fields
      tp("00", kTrace, kSpan, "01") + ",",                 // two headers joined
      tp("00", kTrace, kSpan, "01") + " x",
      tp("cc", kTrace, kSpan, "01") + "what-the-future",  // future fields must follow a '-'
      tp("0", kTrace, kSpan, "01"),                       // version length
      tp("000", kTrace, kSpan, "01"),
      tp("0A", kTrace, kSpan, "01"),  // uppercase version
      tp("gg", kTrace, kSpan, "01"),
      tp("00", "0AF7651916CD43DD8448EB211C80319C", kSpan, "01"),  // uppercase trace-id
      tp("00", kTrace, "B7AD6B7169203331", "01"),                 // uppercase parent-id
      tp("00", kTrace, kSpan, "0A"),                              // uppercase flags
      tp("00", zeros32, kSpan, "01"),                             // all-zero trace-id
      tp("00", kTrace, zeros16, "01"),                            // all-zero parent-id
      tp("00", std::string(kTrace).substr(1), kSpan, "01"),       // 31 hex
      tp("00", std::string(kTrace) + "0", kSpan, "01"),           // 33 hex
      tp("00", kTrace, std::string(kSpan).substr(1), "01"),       // 15 hex
      tp("00", kTrace, std::string(kSpan) + "0", "01"),           // 17 hex
      tp("00", kTrace, kSpan, "1"),                               // flags length
      tp("00", kTrace, kSpan, "001"),
      tp("00", kTrace, kSpan, ".1"),
      tp("00", "0af7651916cd43dd8448eb211c80319g", kSpan, "01"),  // non-hex
      tp("00", "0af7651916cd43dd-448eb211c80319c", kSpan, "01"),
      tp("00", kTrace, "b7ad6b716920333.", "01"),
      "00_" + std::string(kTrace) + "-" + kSpan + "-01",  // wrong separators
      "00-" + std::string(kTrace) + "_" + kSpan + "-01",
      "00-" + std::string(kTrace) + "-" + kSpan + "_01",
      "00-" + std::string(kTrace) + "-" + kSpan + "-0\x01",
      std::string(55, '-'),
      std::string(300, 'a'),
  };
  for (const std::string& v : rows) {
    CAPTURE(v);
    SpanContext ctx;
    ctx.flags = 7;
    CHECK_FALSE(parseTraceparent(v, ctx));
    CHECK(ctx.flags == 7);  // untouched
    const ParentContext p = extractParent(v, "rojo=00f067aa0ba902b7");
    CHECK_FALSE(p.valid());
    CHECK(p.tracestate.empty());  // a tracestate never outlives its traceparent
  }
}

TEST_CASE("trace: formatTraceparent always writes version 00 and round-trips") {
  for (int i = 0; i < 200; ++i) {
    SpanContext ctx;
    ctx.traceId = newTraceId();
    ctx.spanId = newSpanId();
    ctx.flags = (i % 2 == 0) ? kFlagSampled : 0;
    const TraceparentText text = formatTraceparent(ctx);
    CHECK(text.view().size() == kTraceparentLength);
    CHECK(text.view().substr(0, 3) == "00-");
    CHECK(text.text[kTraceparentLength] == '\0');
    SpanContext back;
    REQUIRE(parseTraceparent(text.view(), back));
    CHECK(back.traceId == ctx.traceId);
    CHECK(back.spanId == ctx.spanId);
    CHECK(back.sampled() == ctx.sampled());
  }
  SpanContext fixed;
  REQUIRE(parseTraceparent(tp("cc", kTrace, kSpan, "03") + "-future", fixed));
  CHECK(formatTraceparent(fixed).view() == tp("00", kTrace, kSpan, "01"));
}

TEST_CASE("trace: tracestate list-member rules") {
  const char* valid[] = {
      "rojo=00f067aa0ba902b7",
      "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
      "  rojo=1 ,\tcongo=2  ",
      "a=1,,b=2",
      ",",
      "",
      "tenant@system=x",
      "0tenant@sys=x",
      "a_b-c*d/e=1",
      "k=some value with spaces",
      "k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~",
  };
  for (const char* v : valid) {
    CAPTURE(v);
    CHECK(validTracestate(v));
  }
  std::string members32;
  std::string members33;
  for (int i = 0; i < 33; ++i) {
    std::string m = "k" + std::to_string(i) + "=v";
    if (i < 32) {
      members32 += (i > 0 ? "," : "") + m;
    }
    members33 += (i > 0 ? "," : "") + m;
  }
  CHECK(validTracestate(members32));
  const std::string invalid[] = {
      "Rojo=1",               // uppercase key
      "1a=1",                 // a simple key starts with a letter
      "a=1,a=2",              // duplicate key
      "a",                    // no '='
      "a=",                   // empty value
      "=1",                   // empty key
      "a=b=c",                // '=' in a value
      "a=1,b",                // one bad member spoils the list
      "a=1 2\x7f",            // non-printable
      "a=\xc3\xa9",           // non-ASCII
      "t@=1",                 // empty system id
      "@sys=1",               // empty tenant id
      "t@abcdefghijklmno=1",  // system id longer than 14
      "t@s@x=1",
      "_a=1",
      std::string(257, 'a') + "=1",  // key longer than 256
      "a=" + std::string(257, 'v'),  // value longer than 256
      members33,                     // more than 32 members
      "a=" + std::string(250, 'v') + ",b=" + std::string(250, 'v') + ",c=" + std::string(10, 'v'),  // > 512
  };
  for (const std::string& v : invalid) {
    CAPTURE(v);
    CHECK_FALSE(validTracestate(v));
  }
}

TEST_CASE("trace: extractParent keeps a valid tracestate next to a valid traceparent") {
  const std::string header = tp("00", kTrace, kSpan, "01");
  ParentContext p = extractParent(header, "  rojo=00f067aa0ba902b7,congo=t61rcWkgMzE ");
  REQUIRE(p.valid());
  CHECK(p.span.sampled());
  CHECK(p.tracestate == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  p = extractParent(header, "Bad=1");
  CHECK(p.valid());
  CHECK(p.tracestate.empty());
  p = extractParent(header, "");
  CHECK(p.valid());
  CHECK(p.tracestate.empty());
  p = extractParent("", "");
  CHECK_FALSE(p.valid());
}

TEST_CASE("trace: ids are random, non-zero and hex round-trips") {
  std::unordered_set<uint64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    const TraceId t = newTraceId();
    const SpanId s = newSpanId();
    REQUIRE(t.valid());
    REQUIRE(s.valid());
    seen.insert(t.lo);
    TraceId t2;
    SpanId s2;
    REQUIRE(parseHex(toHex(t).view(), t2));
    REQUIRE(parseHex(toHex(s).view(), s2));
    CHECK(t2 == t);
    CHECK(s2 == s);
  }
  CHECK(seen.size() == 10000);
  TraceId t;
  CHECK_FALSE(parseHex(std::string_view("0AF7651916CD43DD8448EB211C80319C"), t));
  CHECK_FALSE(parseHex(std::string_view("0af7"), t));
  SpanId s;
  CHECK_FALSE(parseHex(std::string_view("b7ad6b716920333z"), s));
  // Wall clock in nanoseconds: after 2020-01-01, and moving.
  const uint64_t a = nowUnixNanos();
  CHECK(a > 1577836800ULL * 1000000000ULL);
  CHECK(nowUnixNanos() >= a);
}

TEST_CASE("trace: log ids for a context, and the thread's current span scope") {
  SpanContext ctx;
  REQUIRE(parseTraceparent(tp("00", kTrace, kSpan, "00"), ctx));
  const LogIds ids = logIds(ctx);
  CHECK(ids.traceId() == kTrace);
  CHECK(ids.spanId() == kSpan);
  CHECK(logIds(SpanContext{}).traceId().empty());
  CHECK(logIds(SpanContext{}).spanId().empty());

  CHECK(currentSpanContext() == nullptr);
  CHECK(currentLogIds().traceId().empty());
  {
    CurrentSpanScope outer(ctx);
    CHECK(currentLogIds().spanId() == kSpan);
    SpanContext inner = ctx;
    inner.spanId = SpanId{0x1234};
    {
      CurrentSpanScope scope(inner);
      CHECK(currentLogIds().spanId() == "0000000000001234");
    }
    CHECK(currentLogIds().spanId() == kSpan);
  }
  CHECK(currentSpanContext() == nullptr);
}

TEST_CASE("trace: otlp_endpoint URL parsing") {
  struct Good {
    const char* url;
    const char* host;
    uint16_t port;
    const char* path;
    const char* hostHeader;
  };
  const Good good[] = {
      {"http://127.0.0.1:4318/v1/traces", "127.0.0.1", 4318, "/v1/traces", "127.0.0.1:4318"},
      {"HTTP://Collector.Local/v1/traces", "Collector.Local", 80, "/v1/traces", "Collector.Local:80"},
      {"http://otel-collector:4318", "otel-collector", 4318, "/", "otel-collector:4318"},
      {"http://[::1]:4318/v1/traces", "::1", 4318, "/v1/traces", "[::1]:4318"},
      {"http://[::1]/x", "::1", 80, "/x", "[::1]:80"},
      {"http://host?tenant=a", "host", 80, "/?tenant=a", "host:80"},
      {"http://h:65535/a/b?c=d", "h", 65535, "/a/b?c=d", "h:65535"},
  };
  for (const Good& g : good) {
    CAPTURE(g.url);
    HttpEndpoint ep;
    std::string err;
    REQUIRE(parseHttpEndpoint(g.url, ep, err));
    CHECK(ep.host == g.host);
    CHECK(ep.port == g.port);
    CHECK(ep.path == g.path);
    CHECK(ep.hostHeader == g.hostHeader);
  }
  const char* bad[] = {
      "",
      "127.0.0.1:4318/v1/traces",
      "ftp://h/x",
      "http://",
      "http:///v1/traces",
      "http://:4318/v1/traces",
      "http://h:/x",
      "http://h:0/x",
      "http://h:65536/x",
      "http://h:123456/x",
      "http://h:4318x/x",
      "http://user:pw@h/x",
      "http://h/x#frag",
      "http://h/a b",
      "http://[::1/x",
      "http://[]/x",
      "http://[::1]x/y",
      "http://bad host/x",
  };
  for (const char* b : bad) {
    CAPTURE(b);
    HttpEndpoint ep;
    ep.host = "untouched";
    std::string err;
    CHECK_FALSE(parseHttpEndpoint(b, ep, err));
    CHECK_FALSE(err.empty());
    CHECK(ep.host == "untouched");
  }
  HttpEndpoint ep;
  std::string err;
  CHECK_FALSE(parseHttpEndpoint("https://collector:4318/v1/traces", ep, err));
  CHECK(err.find("https") != std::string::npos);
}
