// libFuzzer target: the gateway's whole request path, fed raw client bytes. In one process and
// on one libuv loop: the real listener (http::Server + ServerConnection: parser, limits,
// pipelining, request IDs, lingering close), the real ProxyHandler with the filter chain of the
// config (CORS, compression), the real upstream ConnectionPool, and an origin that is another
// http::Server on the same loop. The client is a plain loopback socket: each input is written
// (in up to three writes, split where the input's hash says), then the client half-closes and
// reads until the gateway closes. Loopback TCP keeps the code under test exactly the
// production code; it costs some speed (see tests/fuzz/README.md for execs/s).
//
// Properties besides "no crash, no sanitizer report":
//  1. No desync: the requests the origin receives complete are, in order, a subsequence of the
//     requests an independent http::Parser reads from the same bytes (same method, target and
//     body). Some are answered by the gateway itself (health, preflight, errors), none is
//     invented, reordered or altered.
//  2. The origin's strict parser accepts everything the gateway forwards (an origin 400 means
//     the gateway wrote a request the next hop reads differently).
//  3. Forwarded heads carry one X-Forwarded-For ending in the client address, one
//     X-Forwarded-Proto, one valid X-Request-ID and no hop-by-hop header.
//  4. The gateway closes the connection within 1 s of the client's FIN, and what it sent is
//     empty or starts with an HTTP/1.1 status line.
//  5. No leak of counted resources: after the exchange the connection count, the in-flight
//     count (limit_concurrency) and the open connection objects all return to zero.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/app_config.h"
#include "common/http/client.h"
#include "common/http/headers.h"
#include "common/http/parser.h"
#include "common/http/request_id.h"
#include "common/http/server.h"
#include "common/obs/log.h"
#include "gateway/policy.h"
#include "gateway/proxy/proxy_handler.h"
#include "gateway/runtime.h"
#include "gateway/stats.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using Clock = std::chrono::steady_clock;

// One request as a parser saw it: what must survive the trip through the gateway unchanged.
struct SeenRequest {
  std::string method;
  std::string target;
  std::string body;
  bool operator==(const SeenRequest&) const = default;
};

std::string describe(const std::vector<SeenRequest>& list) {
  std::string out;
  for (const SeenRequest& r : list) {
    out += "\n    " + r.method + " " + fuzz::quote(r.target, 120) + " body " + fuzz::quote(r.body, 60);
  }
  return out.empty() ? std::string(" (none)") : out;
}

// The reference reading of the client's bytes: complete requests only, in order.
struct ReferenceSink : http::Parser::Sink {
  std::vector<SeenRequest> requests;
  SeenRequest current;
  bool onMessageHead(http::MessageHead& head) override {
    current = SeenRequest{std::string(head.methodName()), head.target, {}};
    return true;
  }
  bool onMessageBody(const char* data, size_t len) override {
    current.body.append(data, len);
    return true;
  }
  void onMessageComplete() override { requests.push_back(current); }
};

ReferenceSink referenceParse(std::string_view input, size_t maxHead) {
  ReferenceSink sink;
  http::Parser parser(HTTP_REQUEST, &sink, maxHead);
  std::string queue(input);
  while (!queue.empty()) {
    size_t consumed = 0;
    const http::Parser::Status st = parser.feed(queue.data(), queue.size(), consumed);
    if (st != http::Parser::Status::Paused || consumed == 0) {
      break;
    }
    queue.erase(0, consumed);
    parser.resume();
  }
  return sink;
}

// The origin: checks what the gateway forwards, records it, answers per the target's last byte.
struct OriginState {
  std::vector<SeenRequest> received;
  int refused = 0;  // requests the origin's parser rejected
  std::string lastRefusal;
};

class OriginHandler : public http::RequestHandler {
 public:
  explicit OriginHandler(OriginState& state) : state_(state) {}

  void onRequestHead(http::ServerConnection& c) override {
    const http::MessageHead& h = c.request();
    current_ = SeenRequest{std::string(h.methodName()), h.target, {}};
    const http::HeaderList& hs = h.headers;
    std::string head;
    for (const http::Header& header : hs) {
      head += "\n    " + fuzz::quote(header.name) + ": " + fuzz::quote(header.value, 120);
    }
    const std::string what = "forwarded " + current_.method + " " + fuzz::quote(h.target) + head;
    FUZZ_CHECK(hs.count("x-forwarded-for") == 1, "not one X-Forwarded-For: " + what);
    const std::string_view xff = *hs.find("x-forwarded-for");
    FUZZ_CHECK(xff.size() >= 9 && xff.substr(xff.size() - 9) == "127.0.0.1",
               "X-Forwarded-For does not end with the client: " + what);
    FUZZ_CHECK(hs.count("x-forwarded-proto") == 1 && *hs.find("x-forwarded-proto") == "http",
               "X-Forwarded-Proto: " + what);
    FUZZ_CHECK(hs.count("x-forwarded-host") <= 1, "several X-Forwarded-Host: " + what);
    FUZZ_CHECK(hs.count("x-request-id") == 1 && http::isValidRequestId(*hs.find("x-request-id")),
               "not one valid X-Request-ID: " + what);
    for (std::string_view hop : {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
                                 "expect", "proxy-authorization", "proxy-authenticate"}) {
      FUZZ_CHECK(hs.count(hop) == 0, "hop-by-hop header " + std::string(hop) + " forwarded: " + what);
    }
  }
  void onRequestBody(http::ServerConnection&, const char* data, size_t len) override { current_.body.append(data, len); }
  void onRequestEnd(http::ServerConnection& c) override {
    state_.received.push_back(current_);
    const std::string_view target = current_.target;
    const char last = target.empty() ? '/' : target.back();
    static const std::string kJson = [] {
      std::string body = "{\"items\":[";
      for (int i = 0; i < 60; ++i) {
        body += "{\"id\":" + std::to_string(i) + ",\"name\":\"item number " + std::to_string(i) + "\"},";
      }
      body += "{}]}";
      return body;
    }();
    switch (last % 5) {
      case 0:
        c.sendResponse(200, "application/json", kJson, "ETag: \"abc\"\r\nCache-Control: max-age=60\r\n");
        break;
      case 1:
        c.sendResponseHead(200, {}, "Content-Type: text/plain\r\n", http::BodyKind::Chunked, 0);
        c.sendResponseBody(kJson.data(), 700);
        c.sendResponseBody(kJson.data() + 700, kJson.size() - 700);
        c.endResponse();
        break;
      case 2:
        c.sendResponse(204, {}, {});
        break;
      case 3:
        c.sendResponse(304, {}, {}, "ETag: \"abc\"\r\n");
        break;
      default:
        c.sendResponse(404, "text/plain", "not here", "Set-Cookie: a=b\r\nVary: Origin\r\n");
        break;
    }
  }
  void onExchangeComplete(http::ServerConnection& c) override {
    if (!c.hasRequest()) {
      ++state_.refused;
      state_.lastRefusal = "status " + std::to_string(c.responseStatus());
    }
  }

 private:
  OriginState& state_;
  SeenRequest current_;
};

constexpr size_t kMaxHeaderBytes = 4096;

const char* kConfigYaml = R"(
gateway:
  workers: 1
  max_header_bytes: 4KiB
  max_body_bytes: 2KiB
  header_timeout: 10s
  keep_alive_timeout: 5s
  limit_concurrency: 1000
  upstream:
    address: 127.0.0.1:ORIGIN_PORT
    read_timeout: 5s
    retry: {attempts: 2, backoff_base: 1ms, backoff_max: 2ms}
    circuit_breaker: {failure_ratio: 1.0, min_requests: 1000000, window: 1s, open_duration: 1s}
  rate_limits: []
  tracing: {enabled: false}
  logging: {level: error, access_log: false}
  cors:
    allow_origins: ["https://example.com", "null"]
    allow_credentials: true
)";

// Everything a gateway worker has, on this thread's loop (gateway/main.cc + gateway/worker.cc).
struct Harness {
  uv_loop_t loop{};
  OriginState origin;
  std::unique_ptr<http::Server> originServer;
  std::unique_ptr<gateway::Runtime> rt;
  std::unique_ptr<http::ConnectionPool> pool;
  std::unique_ptr<gateway::WorkerContext> ctx;
  std::unique_ptr<http::Server> server;
  uint16_t port = 0;
  std::vector<std::function<void()>> posted;

  Harness() {
    signal(SIGPIPE, SIG_IGN);
    obs::setLevel(obs::Level::Error);
    uv_loop_init(&loop);
    originServer = std::make_unique<http::Server>(&loop, http::ServerSettings{},
                                                  [this] { return std::make_unique<OriginHandler>(origin); });
    std::string error;
    FUZZ_CHECK(originServer->listen("127.0.0.1", 0, 128, error) == 0, "origin listen: " + error);

    std::string yaml = kConfigYaml;
    yaml.replace(yaml.find("ORIGIN_PORT"), 11, std::to_string(originServer->boundPort()));
    cfg::LoadResult loaded = cfg::loadString(yaml, "fuzz-gateway.yaml", [](const std::string&) {
      return std::optional<std::string>();
    });
    FUZZ_CHECK(loaded.config.has_value(), loaded.errors.empty() ? std::string() : loaded.errors[0]);
    rt = std::make_unique<gateway::Runtime>();
    rt->config = std::move(*loaded.config);
    const cfg::GatewayConfig& g = rt->gateway();
    http::PoolSettings& ps = rt->upstreamPool;
    FUZZ_CHECK(http::resolveAddress(g.upstream.address.host, g.upstream.address.port, ps.address, error), error);
    ps.hostHeader = g.upstream.address.str();
    ps.maxConnections = g.upstream.max_connections;
    ps.maxIdleConnections = g.upstream.max_idle_connections;
    ps.idleTimeoutMs = static_cast<uint64_t>(g.upstream.idle_timeout.count());
    ps.connectTimeoutMs = static_cast<uint64_t>(g.upstream.connect_timeout.count());
    ps.readTimeoutMs = static_cast<uint64_t>(g.upstream.read_timeout.count());
    ps.writeTimeoutMs = static_cast<uint64_t>(g.upstream.write_timeout.count());
    ps.poolTimeoutMs = static_cast<uint64_t>(g.upstream.pool_timeout.count());
    ps.sharedOpenConnections = &rt->upstreamOpenConnections;
    rt->publish(gateway::buildPolicy(rt->config, 1, nullptr, nullptr));
    rt->stats = std::make_unique<gateway::GatewayStats>(1);
    rt->stats->bindRuntime(*rt);
    rt->upstreamHealthy = true;

    pool = std::make_unique<http::ConnectionPool>(&loop, rt->upstreamPool, &rt->upstreamPoolStats);
    // Single-threaded here: a task "posted to the loop" runs on the next spin().
    ctx = std::make_unique<gateway::WorkerContext>(gateway::WorkerContext{
        *rt, &loop, *pool, [this](std::function<void()> task) { posted.push_back(std::move(task)); }});
    http::ServerSettings s;
    s.maxHeaderBytes = g.max_header_bytes;
    s.maxBodyBytes = g.max_body_bytes;
    s.headerTimeoutMs = static_cast<uint64_t>(g.header_timeout.count());
    s.keepAliveTimeoutMs = static_cast<uint64_t>(g.keep_alive_timeout.count());
    s.maxRequestsPerConnection = static_cast<uint64_t>(g.max_requests_per_connection);
    s.requestIdHeader = g.request_id.header;
    s.maxConnections = g.max_connections;
    s.connectionCount = &rt->clientConnections;
    gateway::WorkerContext* c = ctx.get();
    server = std::make_unique<http::Server>(&loop, s, [c] { return std::make_unique<gateway::ProxyHandler>(*c); });
    FUZZ_CHECK(server->listen("127.0.0.1", 0, 128, error) == 0, "gateway listen: " + error);
    port = server->boundPort();
    FUZZ_CHECK(kMaxHeaderBytes == g.max_header_bytes, "config and reference parser disagree on the head limit");
  }

  // Runs the loop and waits on `fd` (if >= 0) for up to `ms`.
  void spin(int fd, int ms) {
    while (!posted.empty()) {
      std::vector<std::function<void()>> tasks;
      tasks.swap(posted);
      for (auto& task : tasks) {
        task();
      }
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    pollfd fds[2] = {{uv_backend_fd(&loop), POLLIN, 0}, {fd, POLLIN, 0}};
    int timeout = uv_backend_timeout(&loop);
    timeout = timeout < 0 || timeout > ms ? ms : timeout;
    ::poll(fds, fd >= 0 ? 2 : 1, timeout);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
};

Harness& harness() {
  static Harness* h = new Harness();  // lives for the process: libFuzzer never returns from main
  return *h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) {
    return 0;
  }
  Harness& hx = harness();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const uint64_t h = fuzz::hashBytes(data, size);
  hx.origin.received.clear();
  hx.origin.refused = 0;

  // Non-blocking connect: libFuzzer's timers would interrupt a blocking one (EINTR). On loopback
  // the handshake completes in the kernel without the gateway's loop running.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  FUZZ_CHECK(fd >= 0, std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(hx.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    FUZZ_CHECK(errno == EINPROGRESS || errno == EINTR, std::string("connect: ") + std::strerror(errno));
    pollfd pfd{fd, POLLOUT, 0};
    while (::poll(&pfd, 1, 1000) < 0 && errno == EINTR) {
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    FUZZ_CHECK(err == 0, std::string("connect: ") + std::strerror(err));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  // Up to three writes, with the loop run in between so the gateway reads them separately.
  std::vector<size_t> cuts;
  if (size > 2) {
    cuts.push_back(1 + (h >> 8) % (size - 1));
    if ((h & 1) != 0) {
      cuts.push_back(1 + (h >> 32) % (size - 1));
    }
  }
  cuts.push_back(size);
  std::sort(cuts.begin(), cuts.end());
  std::string received;
  bool closedByGateway = false;
  auto drainClient = [&] {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        received.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        closedByGateway = true;  // FIN, or a reset
      }
      return;
    }
  };
  size_t sent = 0;
  for (size_t cut : cuts) {
    while (sent < cut && !closedByGateway) {
      const ssize_t n = ::send(fd, input.data() + sent, cut - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        closedByGateway = true;  // the gateway already closed (an early error reply)
      }
      hx.spin(fd, 1);
      drainClient();
    }
  }
  ::shutdown(fd, SHUT_WR);

  const auto deadline = Clock::now() + std::chrono::seconds(1);
  while (!closedByGateway && Clock::now() < deadline) {
    hx.spin(fd, 10);
    drainClient();
  }
  ::close(fd);
  FUZZ_CHECK(closedByGateway, "the gateway neither closed nor reset the connection within 1s of the client's FIN; "
                              "it sent " + fuzz::quote(received) + " for " + fuzz::quote(input));
  FUZZ_CHECK(received.empty() || received.rfind("HTTP/1.1 ", 0) == 0,
             "response bytes do not start with a status line: " + fuzz::quote(received));

  // Property 5: every counted resource is given back once both sides have closed.
  const auto settle = Clock::now() + std::chrono::seconds(1);
  while ((hx.server->connectionCount() != 0 || hx.rt->inFlight.load() != 0 || hx.rt->clientConnections.load() != 0) &&
         Clock::now() < settle) {
    hx.spin(-1, 5);
  }
  FUZZ_CHECK(hx.server->connectionCount() == 0 && hx.rt->clientConnections.load() == 0,
             "client connection still open 1s after both sides closed (count " +
                 std::to_string(hx.server->connectionCount()) + ", counter " +
                 std::to_string(hx.rt->clientConnections.load()) + ") for " + fuzz::quote(input));
  FUZZ_CHECK(hx.rt->inFlight.load() == 0, "in-flight count leaked (" + std::to_string(hx.rt->inFlight.load()) +
                                              ") for " + fuzz::quote(input));

  // Properties 1 and 2.
  FUZZ_CHECK(hx.origin.refused == 0, "the origin's parser refused what the gateway forwarded (" +
                                         hx.origin.lastRefusal + ") for " + fuzz::quote(input));
  const std::vector<SeenRequest> expected = referenceParse(input, kMaxHeaderBytes).requests;
  size_t j = 0;
  for (const SeenRequest& got : hx.origin.received) {
    while (j < expected.size() && !(expected[j] == got)) {
      ++j;
    }
    FUZZ_CHECK(j < expected.size(), "the origin received requests the client did not send (in this order):\n  client:" +
                                        describe(expected) + "\n  origin:" + describe(hx.origin.received) +
                                        "\n  input: " + fuzz::quote(input));
    ++j;
  }
  return 0;
}
