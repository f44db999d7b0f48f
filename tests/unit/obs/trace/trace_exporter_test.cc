// The OTLP/HTTP exporter against a REAL HTTP receiver: tests/integration/otlp_receiver.py (stdlib
// http.server) started as a child process on a free 127.0.0.1 port, recording each POST as a
// JSON line. Checks every span arrives with the right ids, retries carry spans over a receiver
// that starts late or answers 429/503, a 400 drops without retry, and a dead receiver makes the
// exporter drop and count while shutdown keeps its timeout. Every test ends with the exporter's
// loop closed (uv_loop_close() == 0).

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/config/app_config.h"
#include "common/obs/trace/semconv.h"
#include "common/obs/trace/tracer.h"

extern char** environ;

using namespace obs::trace;
using namespace std::chrono_literals;

namespace {

std::string repoRoot() {
  const std::string file = __FILE__;
  const size_t pos = file.rfind("/tests/unit/");
  return pos == std::string::npos ? std::string(".") : file.substr(0, pos);
}

uint16_t freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool canConnect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string tempPath(const char* tag) {
  static int counter = 0;
  return (std::filesystem::temp_directory_path() /
          ("otlp-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".jsonl"))
      .string();
}

// The receiver as a child process; SIGTERM (then SIGKILL) and reaped on destruction.
class Receiver {
 public:
  Receiver(uint16_t port, std::string out, std::vector<std::string> extra = {}) : port_(port), out_(std::move(out)) {
    std::vector<std::string> args = {"/usr/bin/python3",
                                     repoRoot() + "/tests/integration/otlp_receiver.py",
                                     "--port",
                                     std::to_string(port),
                                     "--out",
                                     out_};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (std::string& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(rc == 0);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!canConnect(port_)) {
      int status = 0;
      REQUIRE(::waitpid(pid_, &status, WNOHANG) == 0);  // the receiver did not die on startup
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(20ms);
    }
  }
  ~Receiver() {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        std::remove(out_.c_str());
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    std::remove(out_.c_str());
  }

 private:
  pid_t pid_ = -1;
  uint16_t port_;
  std::string out_;
};

struct ReceivedSpan {
  std::string traceId;
  std::string parentSpanId;
  std::string name;
  int kind = 0;
  std::string service;
  std::map<std::string, std::string> attributes;  // value rendered as text
};

struct Received {
  std::map<std::string, ReceivedSpan> spans;  // by span id
  size_t duplicates = 0;
  size_t requests = 0;
  std::set<std::string> paths;
  std::set<std::string> contentTypes;
};

Received readReceived(const std::string& file) {
  Received r;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    REQUIRE_FALSE(d.HasParseError());
    ++r.requests;
    r.paths.insert(d["path"].GetString());
    r.contentTypes.insert(d["content_type"].GetString());
    for (const auto& rs : d["body"]["resourceSpans"].GetArray()) {
      std::string service;
      for (const auto& a : rs["resource"]["attributes"].GetArray()) {
        if (std::string(a["key"].GetString()) == "service.name") {
          service = a["value"]["stringValue"].GetString();
        }
      }
      for (const auto& ss : rs["scopeSpans"].GetArray()) {
        for (const auto& s : ss["spans"].GetArray()) {
          ReceivedSpan rec;
          rec.traceId = s["traceId"].GetString();
          rec.parentSpanId = s.HasMember("parentSpanId") ? s["parentSpanId"].GetString() : "";
          rec.name = s["name"].GetString();
          rec.kind = s["kind"].GetInt();
          rec.service = service;
          for (const auto& a : s["attributes"].GetArray()) {
            const auto& v = a["value"];
            std::string text;
            if (v.HasMember("stringValue")) {
              text = v["stringValue"].GetString();
            } else if (v.HasMember("intValue")) {
              text = v["intValue"].GetString();
            } else if (v.HasMember("boolValue")) {
              text = v["boolValue"].GetBool() ? "true" : "false";
            }
            rec.attributes[a["key"].GetString()] = text;
          }
          const std::string id = s["spanId"].GetString();
          if (r.spans.count(id) != 0) {
            ++r.duplicates;
          }
          r.spans[id] = rec;
        }
      }
    }
  }
  return r;
}

cfg::TracingConfig configFor(uint16_t port, const std::string& service = "gateway") {
  cfg::TracingConfig c;
  c.enabled = true;
  c.sample_ratio = 1.0;
  c.otlp_endpoint = "http://127.0.0.1:" + std::to_string(port) + "/v1/traces";
  c.service_name = service;
  return c;
}

ExportOptions fastOptions() {
  ExportOptions o;
  o.maxDelay = 50ms;
  o.backoffBase = 20ms;
  o.backoffMax = 100ms;
  o.connectTimeout = 500ms;
  o.requestTimeout = 2000ms;
  return o;
}

struct Expected {
  std::string traceId;
  std::string parentSpanId;
};

// Ends `count` SERVER spans from `threads` threads; every other one continues a remote parent.
std::map<std::string, Expected> produce(Tracer& tracer, int threads, int count) {
  std::mutex mu;
  std::map<std::string, Expected> expected;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = t; i < count; i += threads) {
        SpanContext remote{newTraceId(), newSpanId(), kFlagSampled};
        const std::string header(formatTraceparent(remote).view());
        const ParentContext parent = i % 2 == 0 ? extractParent(header, "") : ParentContext{};
        Span span = tracer.startServerSpan("GET /articles/{id}", parent);
        REQUIRE(span.recording());
        span.setString(attr::kHttpRequestMethod, "GET")
            .setString(attr::kUrlPath, "/articles/" + std::to_string(i))
            .setString(attr::kHttpRoute, "/articles/{id}");
        setHttpResponseStatus(span, 200);
        Expected e;
        e.traceId = std::string(toHex(span.context().traceId).view());
        e.parentSpanId = i % 2 == 0 ? std::string(toHex(remote.spanId).view()) : "";
        if (i % 2 == 0) {
          CHECK(span.context().traceId == remote.traceId);
        }
        const std::string id(toHex(span.context().spanId).view());
        span.end();
        std::lock_guard lock(mu);
        expected[id] = e;
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  return expected;
}

void checkAllArrived(const Received& got, const std::map<std::string, Expected>& expected, const std::string& service) {
  CHECK(got.duplicates == 0);
  CHECK(got.spans.size() == expected.size());
  size_t matched = 0;
  for (const auto& [id, e] : expected) {
    const auto it = got.spans.find(id);
    if (it == got.spans.end()) {
      continue;
    }
    const ReceivedSpan& s = it->second;
    if (s.traceId == e.traceId && s.parentSpanId == e.parentSpanId && s.kind == 2 && s.service == service &&
        s.name == "GET /articles/{id}" && s.attributes.at("http.response.status_code") == "200" &&
        s.attributes.at("http.request.method") == "GET") {
      ++matched;
    }
  }
  CHECK(matched == expected.size());
}

template <class Pred>
bool waitFor(Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

}  // namespace

TEST_CASE("trace: exporter delivers 1000 spans to a real OTLP/HTTP receiver") {
  const uint16_t port = freePort();
  const std::string out = tempPath("all");
  Receiver receiver(port, out);
  ExportOptions o = fastOptions();
  o.maxBatch = 256;
  Tracer tracer(configFor(port, "gateway"), o);
  REQUIRE(tracer.exporting());

  const auto expected = produce(tracer, 4, 1000);
  REQUIRE(expected.size() == 1000);
  CHECK(tracer.shutdown(5000ms));

  const TracerStats st = tracer.stats();
  CHECK(st.exportedSpans == 1000);
  CHECK(st.droppedSpans() == 0);
  CHECK(st.exportFailures == 0);
  CHECK(st.exportRequests >= 4);  // batches of at most 256
  CHECK(st.exporterLoopClosed);
  CHECK_FALSE(st.exporterRunning);

  const Received got = readReceived(out);
  checkAllArrived(got, expected, "gateway");
  CHECK(got.requests == st.exportRequests);
  CHECK(got.paths == std::set<std::string>{"/v1/traces"});
  CHECK(got.contentTypes == std::set<std::string>{"application/json"});
}

TEST_CASE("trace: exporter retries until a receiver that starts late is up") {
  const uint16_t port = freePort();
  const std::string out = tempPath("late");
  ExportOptions o = fastOptions();
  o.maxAttempts = 1000;
  Tracer tracer(configFor(port, "upstream-app"), o);
  const auto expected = produce(tracer, 2, 300);
  REQUIRE(waitFor([&] { return tracer.stats().exportFailures >= 3; }, 5000ms));
  CHECK(tracer.stats().exportedSpans == 0);

  Receiver receiver(port, out);
  CHECK(tracer.shutdown(5000ms));
  const TracerStats st = tracer.stats();
  CHECK(st.exportedSpans == 300);
  CHECK(st.droppedSpans() == 0);
  CHECK(st.exporterLoopClosed);
  checkAllArrived(readReceived(out), expected, "upstream-app");
}

TEST_CASE("trace: exporter retries 429/503 answers, honouring Retry-After within its backoff cap") {
  for (const char* status : {"503", "429"}) {
    CAPTURE(status);
    const uint16_t port = freePort();
    const std::string out = tempPath("busy");
    Receiver receiver(port, out, {"--fail-first", "2", "--fail-status", status, "--retry-after", "1"});
    Tracer tracer(configFor(port), fastOptions());
    const auto expected = produce(tracer, 1, 50);
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(tracer.shutdown(5000ms));
    // Retry-After: 1 is capped by backoffMax (100 ms): two retries well under a second.
    CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
    const TracerStats st = tracer.stats();
    CHECK(st.exportFailures == 2);
    CHECK(st.exportedSpans == 50);
    CHECK(st.droppedSpans() == 0);
    checkAllArrived(readReceived(out), expected, "gateway");
  }
}

TEST_CASE("trace: exporter drops a batch the collector refuses with 400, without retrying") {
  const uint16_t port = freePort();
  const std::string out = tempPath("refused");
  Receiver receiver(port, out, {"--fail-first", "1", "--fail-status", "400"});
  Tracer tracer(configFor(port), fastOptions());
  produce(tracer, 1, 10);
  CHECK(tracer.shutdown(5000ms));  // nothing left queued: the refusal was an answer
  const TracerStats st = tracer.stats();
  CHECK(st.exportFailures == 1);
  CHECK(st.droppedExport == 10);
  CHECK(st.exportedSpans == 0);
  CHECK(readReceived(out).spans.empty());

  // The next batch goes through: the refusal did not stick.
  Tracer again(configFor(port), fastOptions());
  const auto expected = produce(again, 1, 5);
  CHECK(again.shutdown(5000ms));
  CHECK(again.stats().exportedSpans == 5);
  CHECK(readReceived(out).spans.size() == 5);
}

TEST_CASE("trace: exporter with a receiver that is always down gives batches up after maxAttempts") {
  const uint16_t port = freePort();  // nothing listens: connections are refused
  ExportOptions o = fastOptions();
  o.maxBatch = 100;
  o.maxAttempts = 3;
  o.backoffBase = 10ms;
  o.backoffMax = 40ms;
  Tracer tracer(configFor(port), o);
  produce(tracer, 2, 500);
  REQUIRE(waitFor([&] { return tracer.stats().droppedExport >= 100; }, 5000ms));

  const auto t0 = std::chrono::steady_clock::now();
  tracer.shutdown(300ms);  // true or false: depends on whether every batch was given up already
  CHECK(std::chrono::steady_clock::now() - t0 < 400ms);
  const TracerStats st = tracer.stats();
  CHECK(st.exportedSpans == 0);
  CHECK(st.exportRequests == 0);
  CHECK(st.exportFailures >= 3);
  CHECK(st.droppedSpans() == 500);
  CHECK(st.droppedExport % 100 == 0);  // whole batches given up after 3 tries each
  CHECK(st.exportFailures >= 3 * st.droppedExport / 100);
  CHECK(st.exporterLoopClosed);
}

TEST_CASE("trace: exporter with a receiver that is always down shuts down within its timeout") {
  const uint16_t port = freePort();
  ExportOptions o = fastOptions();
  o.maxAttempts = 1000000;  // never gives up on its own: only the shutdown deadline ends it
  Tracer tracer(configFor(port), o);
  produce(tracer, 2, 500);
  REQUIRE(waitFor([&] { return tracer.stats().exportFailures >= 2; }, 5000ms));

  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(tracer.shutdown(300ms));
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 350ms);
  CHECK(took > 200ms);  // it did keep trying until the deadline
  const TracerStats st = tracer.stats();
  CHECK(st.exportedSpans == 0);
  CHECK(st.droppedExport == 0);
  CHECK(st.droppedShutdown == 500);
  CHECK(st.exporterLoopClosed);
  CHECK_FALSE(st.exporterRunning);
}

TEST_CASE("trace: exporter flushes on the timer without waiting for a full batch") {
  const uint16_t port = freePort();
  const std::string out = tempPath("timer");
  Receiver receiver(port, out);
  ExportOptions o = fastOptions();
  o.maxBatch = 512;
  o.maxDelay = 100ms;
  Tracer tracer(configFor(port), o);
  const auto expected = produce(tracer, 1, 3);
  CHECK(waitFor([&] { return tracer.stats().exportedSpans == 3; }, 3000ms));
  checkAllArrived(readReceived(out), expected, "gateway");
  CHECK(tracer.shutdown(2000ms));
}
