// The span queue (common/obs/trace/span_queue.h) and the tracer's drop accounting: a full queue
// refuses and the tracer counts, concurrent producers lose nothing and duplicate nothing, and a
// collector that never answers cannot block producers or shutdown.

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "common/config/app_config.h"
#include "common/obs/trace/span_queue.h"
#include "common/obs/trace/tracer.h"

using namespace obs::trace;

TEST_CASE("trace: queue is FIFO, bounded, and rounds capacity up to a power of two") {
  BoundedQueue<int> q(3);
  CHECK(q.capacity() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(q.tryPush(i));
  }
  CHECK_FALSE(q.tryPush(99));
  CHECK(q.sizeApprox() == 4);
  int v = -1;
  for (int i = 0; i < 4; ++i) {
    REQUIRE(q.tryPop(v));
    CHECK(v == i);
  }
  CHECK_FALSE(q.tryPop(v));
  CHECK(q.sizeApprox() == 0);
  // Wrap around many laps.
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(q.tryPush(i));
    REQUIRE(q.tryPop(v));
    CHECK(v == i);
  }
  CHECK(BoundedQueue<int>(2048).capacity() == 2048);
  CHECK(BoundedQueue<int>(0).capacity() == 2);
}

TEST_CASE("trace: queue with concurrent producers and no consumer accepts exactly its capacity") {
  BoundedQueue<uint64_t> q(1024);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1000;
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (q.tryPush(static_cast<uint64_t>(t) * 1000000 + static_cast<uint64_t>(i) + 1)) {
          accepted.fetch_add(1);
        } else {
          refused.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  CHECK(accepted.load() == 1024);
  CHECK(refused.load() == kThreads * kPerThread - 1024);
  std::vector<uint64_t> got;
  uint64_t v = 0;
  while (q.tryPop(v)) {
    got.push_back(v);
  }
  CHECK(got.size() == 1024);
  std::sort(got.begin(), got.end());
  CHECK(std::adjacent_find(got.begin(), got.end()) == got.end());
}

TEST_CASE("trace: queue with concurrent producers and a consumer delivers everything once") {
  BoundedQueue<uint64_t> q(256);
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 50000;
  std::atomic<bool> producing{true};
  std::vector<uint8_t> seen(kThreads * kPerThread, 0);
  uint64_t received = 0;
  std::thread consumer([&] {
    uint64_t v = 0;
    for (;;) {
      if (q.tryPop(v)) {
        ++seen[v];
        ++received;
      } else if (!producing.load()) {
        if (!q.tryPop(v)) {
          break;
        }
        ++seen[v];
        ++received;
      }
    }
  });
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) {
        while (!q.tryPush(static_cast<uint64_t>(t) * kPerThread + i)) {
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& th : producers) {
    th.join();
  }
  producing.store(false);
  consumer.join();
  CHECK(received == kThreads * kPerThread);
  CHECK(std::all_of(seen.begin(), seen.end(), [](uint8_t c) { return c == 1; }));
}

namespace {

// A TCP listener that never accepts: connections complete in the kernel backlog, the request is
// written, and no answer ever comes (a hung collector).
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("trace: a full queue drops and counts, producers never block, shutdown keeps its timeout") {
  SilentListener hung;
  cfg::TracingConfig c;
  c.enabled = true;
  c.sample_ratio = 1.0;
  c.otlp_endpoint = "http://127.0.0.1:" + std::to_string(hung.port()) + "/v1/traces";
  c.service_name = "queue-test";
  ExportOptions o;
  o.queueCapacity = 64;
  o.maxBatch = 16;
  o.maxDelay = std::chrono::milliseconds(20);
  o.requestTimeout = std::chrono::milliseconds(60000);  // the POST hangs for the whole test
  Tracer tracer(c, o);
  REQUIRE(tracer.exporting());

  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        Span s = tracer.startServerSpan("GET", ParentContext{});
        s.setInt("i", i);
        s.end();
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  const auto produceTime = std::chrono::steady_clock::now() - start;
  CHECK(produceTime < std::chrono::seconds(5));  // never waited for the hung collector

  // One batch may be stuck in the hung POST, the rest of what got in is still queued.
  TracerStats st = tracer.stats();
  CHECK(st.exportedSpans == 0);
  CHECK(st.droppedQueueFull >= static_cast<uint64_t>(kThreads * kPerThread) - 64 - 16 * 2);
  CHECK(tracer.droppedSpans() == st.droppedSpans());

  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(tracer.shutdown(std::chrono::milliseconds(300)));
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < std::chrono::milliseconds(400));
  st = tracer.stats();
  CHECK(st.exportedSpans == 0);
  CHECK(st.droppedQueueFull + st.droppedShutdown + st.droppedExport == static_cast<uint64_t>(kThreads * kPerThread));
  CHECK(st.queuedSpans == 0);
  CHECK_FALSE(st.exporterRunning);
  CHECK(st.exporterLoopClosed);

  // After shutdown: spans are neither recorded nor queued.
  Span late = tracer.startServerSpan("GET", ParentContext{});
  CHECK(late.context().valid());
  CHECK_FALSE(late.recording());
}
