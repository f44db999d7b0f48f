// http::Parser without sockets: what a proxy must refuse, and how messages are delivered.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/http/headers.h"
#include "common/http/parser.h"
#include "common/http/request_id.h"

namespace {

struct Collector : http::Parser::Sink {
  std::vector<std::string> targets;
  std::vector<http::BodyKind> bodyKinds;
  std::string body;
  int completed = 0;
  bool onMessageHead(http::MessageHead& head) override {
    targets.push_back(head.target.empty() ? std::to_string(head.status) : head.target);
    bodyKinds.push_back(head.body);
    return true;
  }
  bool onMessageBody(const char* data, size_t len) override {
    body.append(data, len);
    return true;
  }
  void onMessageComplete() override { ++completed; }
};

struct Outcome {
  http::Parser::Status status;
  int errorStatus;
  std::string reason;
};

Outcome parseRequest(const std::string& raw, size_t maxHead = 16 * 1024) {
  Collector sink;
  http::Parser parser(HTTP_REQUEST, &sink, maxHead);
  size_t consumed = 0;
  const auto st = parser.feed(raw.data(), raw.size(), consumed);
  return {st, parser.errorStatus(), parser.errorReason()};
}

}  // namespace

TEST_CASE("http parser refuses requests that could be read two ways") {
  struct Case {
    const char* name;
    std::string raw;
    int status;
  };
  const std::vector<Case> cases = {
      {"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
      {"same CL twice", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
      {"invalid CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400},
      {"negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
      {"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"TE chunked, gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
      {"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400},
      {"two TE headers", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
      {"bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n", 400},
      {"bare LF in header line", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400},
      {"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400},
      {"NUL in value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 36), 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
      {"invalid chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"overflowing chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400},
      {"no Host in HTTP/1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
      {"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"absolute-form target", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      // Found by the fuzzers (tests/fuzz/regressions/http_parser): llhttp 8.1 accepts these.
      {"space inside a header name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400},
      {"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
      {"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},
      {"request line without version", "POST /x\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 400},
      {"chunk data not followed by CRLF",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", 400},
      {"trailer fields in a request",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n", 400},
      {"CONNECT", "CONNECT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 400},
      {"TAB in the target", "GET /heavy\tx HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"Transfer-Encoding chunked followed by a TAB",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 400},
      {"chunked message ended by a bare LF",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET / HTTP/1.1\r\n\r\n", 400},
      // llhttp 8.1 takes any byte after the chunk-size line's CR as its LF
      // (tests/fuzz/regressions/http_response_parser/chunk_size_line_ended_by_cr_and_any_byte).
      {"chunk-size line ended by CR and a letter",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\rxhello\r\n0\r\n\r\n", 400},
      {"chunk-size line with an extension ended by CR and a letter",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\rxhello\r\n0\r\n\r\n", 400},
      {"last-chunk line ended by CR CR",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\r\r\n\r\n", 400},
      // A peer that stops at 16 digits reads 0 here, llhttp reads 5
      // (tests/fuzz/regressions/http_response_parser/chunk_size_of_18_hex_digits).
      {"chunk size of 17 hex digits",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n", 400},
      {"last chunk of 17 zeros",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n00000000000000000\r\n\r\n", 400},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const Outcome o = parseRequest(c.raw);
    CHECK(o.status == http::Parser::Status::Error);
    CHECK(o.errorStatus == c.status);
    CHECK_FALSE(o.reason.empty());
  }
}

TEST_CASE("http parser answers 431 for a head over the limit") {
  std::string raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n";
  const Outcome o = parseRequest(raw, 1024);
  CHECK(o.status == http::Parser::Status::Error);
  CHECK(o.errorStatus == 431);
}

TEST_CASE("http parser pauses after each pipelined request and resumes on the next") {
  Collector sink;
  http::Parser parser(HTTP_REQUEST, &sink, 16 * 1024);
  const std::string raw =
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t offset = 0;
  int messages = 0;
  while (offset < raw.size()) {
    size_t consumed = 0;
    const auto st = parser.feed(raw.data() + offset, raw.size() - offset, consumed);
    REQUIRE(st == http::Parser::Status::Paused);
    offset += consumed;
    ++messages;
    parser.resume();
  }
  CHECK(messages == 3);
  CHECK(sink.targets == std::vector<std::string>{"/a", "/b", "/c"});
  CHECK(sink.body == "abc");
  CHECK(sink.bodyKinds[1] == http::BodyKind::Chunked);
}

TEST_CASE("http parser checks chunk framing split at every byte") {
  const std::string good =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  const std::string bad =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\n2\r\nde\r\n0\r\n\r\n";
  for (const std::string* raw : {&good, &bad}) {
    Collector sink;
    http::Parser parser(HTTP_REQUEST, &sink, 16 * 1024);
    http::Parser::Status st = http::Parser::Status::Ok;
    for (size_t i = 0; i < raw->size() && st == http::Parser::Status::Ok; ++i) {
      size_t consumed = 0;
      st = parser.feed(raw->data() + i, 1, consumed);
    }
    if (raw == &good) {
      CHECK(st == http::Parser::Status::Paused);
      CHECK(sink.body == "abcde");
    } else {
      CHECK(st == http::Parser::Status::Error);
    }
  }
}

TEST_CASE("http parser checks chunk-size lines in every segmentation, responses too") {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  // 16 hex digits with leading zeros are still a size.
  const std::string good = head + "5;x=y\r\nhello\r\n000000000000000A\r\n0123456789\r\n0\r\nf: v\r\n\r\n";
  const std::vector<std::string> bad = {
      head + "0\rf:\r\n\r\n",                                 // CR and any byte end the line
      head + "5\r\nhello\r\n00000000000000000\r\nf: v\r\n\r\n",  // 17 digits
      head + "000000000000000005\r\nhello\r\n0\r\n\r\n",           // 18 digits, first chunk
      // Trailer lines are held to the head's rules (tests/fuzz/regressions/http_response_parser/
      // bare_cr_in_trailer_line).
      head + "0\r\nX: a\rb: c\r\n\r\n",                        // bare CR
      head + "0\r\nX: a\r\n b\r\n\r\n",                       // obsolete line folding
      head + std::string("0\r\nX: a\0b\r\n\r\n", 13),          // NUL
  };
  std::vector<const std::string*> inputs = {&good};
  for (const std::string& b : bad) {
    inputs.push_back(&b);
  }
  for (const std::string* raw : inputs) {
    for (size_t piece : {raw->size(), size_t{1}, size_t{2}, size_t{7}}) {
      CAPTURE(*raw);
      CAPTURE(piece);
      Collector sink;
      http::Parser parser(HTTP_RESPONSE, &sink, 16 * 1024);
      http::Parser::Status st = http::Parser::Status::Ok;
      for (size_t i = 0; i < raw->size() && st == http::Parser::Status::Ok; i += piece) {
        size_t consumed = 0;
        const size_t n = std::min(piece, raw->size() - i);
        st = parser.feed(raw->data() + i, n, consumed);
      }
      if (raw == &good) {
        CHECK(st == http::Parser::Status::Paused);
        CHECK(sink.body == "hello0123456789");
        CHECK(sink.completed == 1);
        CHECK(parser.sawTrailers());
      } else {
        CHECK(st == http::Parser::Status::Error);
        CHECK(sink.completed == 0);
      }
    }
  }
}

TEST_CASE("http parser accepts a head split at every byte") {
  const std::string raw = "GET /split?q=1 HTTP/1.1\r\nHost: x\r\nX-Long-Header: some value\r\n\r\n";
  Collector sink;
  http::Parser parser(HTTP_REQUEST, &sink, 16 * 1024);
  http::Parser::Status st = http::Parser::Status::Ok;
  for (size_t i = 0; i < raw.size(); ++i) {
    size_t consumed = 0;
    st = parser.feed(raw.data() + i, 1, consumed);
    REQUIRE(st != http::Parser::Status::Error);
  }
  CHECK(st == http::Parser::Status::Paused);
  REQUIRE(sink.targets.size() == 1);
  CHECK(sink.targets[0] == "/split?q=1");
}

TEST_CASE("http response parser: read-until-close body, 1xx, HEAD") {
  Collector sink;
  http::Parser parser(HTTP_RESPONSE, &sink, 16 * 1024);
  const std::string raw = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nhello";
  size_t consumed = 0;
  CHECK(parser.feed(raw.data(), raw.size(), consumed) == http::Parser::Status::Ok);
  CHECK(sink.bodyKinds[0] == http::BodyKind::UntilClose);
  CHECK(parser.finish() == http::Parser::Status::Paused);
  CHECK(sink.body == "hello");

  Collector headSink;
  http::Parser headParser(HTTP_RESPONSE, &headSink, 16 * 1024);
  headParser.setNextResponseHasNoBody(true);
  const std::string headRaw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
  CHECK(headParser.feed(headRaw.data(), headRaw.size(), consumed) == http::Parser::Status::Paused);
  CHECK(headSink.bodyKinds[0] == http::BodyKind::None);
}

TEST_CASE("request ids: incoming ones are validated, new ones are 32 hex chars") {
  CHECK(http::isValidRequestId("abc-DEF_1.2"));
  CHECK(http::isValidRequestId(std::string(128, 'a')));
  CHECK_FALSE(http::isValidRequestId(std::string(129, 'a')));
  CHECK_FALSE(http::isValidRequestId(""));
  CHECK_FALSE(http::isValidRequestId("a b"));
  CHECK_FALSE(http::isValidRequestId("<script>"));
  std::string a, b;
  http::generateRequestId(a);
  http::generateRequestId(b);
  CHECK(a.size() == 32);
  CHECK(a != b);
  CHECK(http::isValidRequestId(a));
}

TEST_CASE("hop-by-hop headers include those named in Connection") {
  CHECK(http::isHopByHop("Keep-Alive", ""));
  CHECK(http::isHopByHop("transfer-encoding", ""));
  CHECK(http::isHopByHop("X-Foo", "close, x-foo"));
  CHECK_FALSE(http::isHopByHop("X-Bar", "close, x-foo"));
  CHECK_FALSE(http::isHopByHop("Content-Type", ""));
}

TEST_CASE("http parser finds a bare CR, bare LF or NUL at every position of a long header line") {
  // The head scanner skips ordinary bytes eight at a time: the byte that needs a decision must be
  // found wherever it falls relative to those eight-byte steps.
  const std::string prefix = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: ";
  for (size_t at = 0; at < 40; ++at) {
    for (const char bad : {'\n', '\0', '\r'}) {
      std::string value(48, 'v');
      value[at] = bad;
      if (bad == '\r') {
        value[at + 1] = 'x';  // CR not followed by LF
      }
      const Outcome o = parseRequest(prefix + value + "\r\n\r\n");
      INFO("byte " << int(bad) << " at " << at);
      CHECK(o.status == http::Parser::Status::Error);
      CHECK(o.errorStatus == 400);
    }
    std::string value(48, 'v');
    value[at] = '\x80';  // high bytes are ordinary (obs-text), never mistaken for CR/LF/NUL
    CHECK(parseRequest(prefix + value + "\r\n\r\n").status == http::Parser::Status::Paused);
  }
}

TEST_CASE("hop-by-hop detection is case-insensitive and exact") {
  for (const char* name : {"Connection", "KEEP-ALIVE", "te", "Trailer", "Upgrade", "transfer-encoding",
                           "Content-Length", "Expect", "Proxy-Connection", "proxy-authenticate", "Proxy-Authorization"}) {
    CHECK(http::isHopByHop(name, ""));
  }
  for (const char* name : {"tee", "host", "Content-Type", "upgraded", "connections", "x-te", ""}) {
    CHECK_FALSE(http::isHopByHop(name, ""));
  }
  CHECK(http::iequals("X-Forwarded-For", "x-forwarded-for"));
  CHECK_FALSE(http::iequals("x-forwarded-for", "x-forwarded-fox"));
  CHECK_FALSE(http::iequals("\xc3\x89", "\xc3\xa9"));  // non-ASCII bytes compare exactly
}
