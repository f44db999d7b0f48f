// upstream_app's shipping client (shipping/shipping_client.h) and shipment route helpers: the pure
// parts, then the client on a real libuv loop against a closed port and a scripted TCP server.
#include "upstream_app/shipping/shipping_client.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/uv/tcp_stream.h"
#include "upstream_app/routes/shipment.h"

using app::shipping::Outcome;
using app::shipping::parseBaseUrl;

TEST_CASE("app shipping: base_url parsing") {
  std::string err;
  auto u = parseBaseUrl("http://127.0.0.1:8090", &err);
  REQUIRE(u);
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == 8090);
  CHECK(u->pathPrefix.empty());
  u = parseBaseUrl("http://shipping.internal/v1/", &err);
  REQUIRE(u);
  CHECK(u->host == "shipping.internal");
  CHECK(u->port == 80);
  CHECK(u->pathPrefix == "/v1");
  u = parseBaseUrl("http://[::1]:9000/x", &err);
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->port == 9000);
  CHECK(u->pathPrefix == "/x");
  for (const char* bad : {"https://a:1", "ftp://a", "http://", "http://:80", "http://a:0", "http://a:70000",
                          "http://a:x", "http://a:", "http://u:p@a", "http://a/?q=1", "http://[::1", "a:80"}) {
    CAPTURE(bad);
    CHECK_FALSE(parseBaseUrl(bad, &err));
    CHECK_FALSE(err.empty());
  }
  CHECK_FALSE(parseBaseUrl("https://a", &err));
  CHECK(err.find("plain http") != std::string::npos);
}

TEST_CASE("app shipping: outcomes map to the contract's answers") {
  using app::shipping::answerFor;
  CHECK(answerFor(Outcome::Ok).status == 200);
  CHECK(answerFor(Outcome::CircuitOpen).status == 503);
  CHECK(std::string(answerFor(Outcome::CircuitOpen).error) == "shipping unavailable");
  CHECK(answerFor(Outcome::CircuitOpen).retryAfter);
  CHECK(answerFor(Outcome::Timeout).status == 504);
  CHECK(answerFor(Outcome::BadGateway).status == 502);
  CHECK(answerFor(Outcome::NotFound).status == 404);
  CHECK(answerFor(Outcome::PoolBusy).status == 503);
  CHECK(answerFor(Outcome::Unusable).status == 503);

  using app::shipping::TryOutcome;
  using resilience::FailureKind;
  CHECK(app::shipping::tryResultFor(http::UpstreamError::ConnectFailed).kind == FailureKind::ConnectFailure);
  CHECK(app::shipping::tryResultFor(http::UpstreamError::ConnectTimeout).kind == FailureKind::ConnectFailure);
  CHECK(app::shipping::tryResultFor(http::UpstreamError::ReadTimeout).kind == FailureKind::Timeout);
  CHECK(app::shipping::tryResultFor(http::UpstreamError::Reset).kind == FailureKind::Reset);
  CHECK(app::shipping::tryResultFor(http::UpstreamError::PoolTimeout).outcome == TryOutcome::PoolTimeout);
  for (int i = 0; i < static_cast<int>(TryOutcome::Count); ++i) {
    CHECK(std::string(app::shipping::tryOutcomeName(static_cast<TryOutcome>(i))) != "other");
  }
}

TEST_CASE("app shipping: body wrapping and cache key") {
  CHECK(app::routes::shipmentCacheKey(42) == "app:shipment:42");
  CHECK(app::routes::shipmentBody(7, R"({"id":7})") == R"({"order_id":7,"shipment":{"id":7}})");
}

namespace {

int closedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Answers each request (one per connection, Connection: close) with the next scripted response.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> responses) : responses_(std::move(responses)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  int requests() const { return requests_.load(); }
  std::string lastRequest() const { return last_; }

 private:
  void run() {
    for (const std::string& resp : responses_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) {
        return;
      }
      std::string req;
      char buf[1024];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) {
          break;
        }
        req.append(buf, static_cast<size_t>(n));
      }
      last_ = req;
      requests_.fetch_add(1);
      if (::write(c, resp.data(), resp.size()) < 0) {
        // the client went away; the count above is what the tests check
      }
      ::close(c);
    }
  }

  std::vector<std::string> responses_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> requests_{0};
  std::string last_;
  std::thread thread_;
};

std::string response(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

cfg::ShippingConfig smallConfig(int port) {
  cfg::ShippingConfig c;
  c.base_url = "http://127.0.0.1:" + std::to_string(port) + "/api";
  c.connect_timeout = std::chrono::milliseconds(300);
  c.read_timeout = std::chrono::milliseconds(300);
  c.pool_timeout = std::chrono::milliseconds(300);
  c.retry.attempts = 3;
  c.retry.backoff_base = std::chrono::milliseconds(5);
  c.retry.backoff_max = std::chrono::milliseconds(10);
  c.circuit_breaker.min_requests = 4;
  c.circuit_breaker.open_duration = std::chrono::milliseconds(60000);
  return c;
}

// Runs one fetch to completion on a private loop.
app::shipping::ShipmentResult fetchOnce(app::shipping::ShippingShared& shared, int64_t id) {
  uv_loop_t loop{};
  uv_loop_init(&loop);
  app::shipping::ShipmentResult out;
  {
    // Destroyed only after the loop ran the close callbacks of its connections (they call back
    // into its pool).
    auto client = std::make_unique<app::shipping::ShippingClient>(&loop, shared);
    bool done = false;
    bool insideFetch = true;
    client->fetch(id, [&](app::shipping::ShipmentResult r) {
      CHECK_FALSE(insideFetch);
      out = std::move(r);
      done = true;
    });
    insideFetch = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done && std::chrono::steady_clock::now() < deadline) {
      uv_run(&loop, UV_RUN_ONCE);
    }
    REQUIRE(done);
    client->close();
    uv_run(&loop, UV_RUN_DEFAULT);
    client.reset();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uvx::releaseLoopState(&loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  return out;
}

}  // namespace

TEST_CASE("app shipping client: refused port -> 502 after every attempt, then the breaker refuses") {
  app::shipping::ShippingShared shared(smallConfig(closedPort()));
  REQUIRE(shared.usable());
  auto r = fetchOnce(shared, 1);
  CHECK(r.outcome == Outcome::BadGateway);
  CHECK(r.tries == 3);
  CHECK(r.detail == "connect_failure");
  // 3 failures < min_requests 4: still closed. The 4th failed try opens it; its retry is refused.
  CHECK(shared.breaker().state() == resilience::CircuitBreaker::State::Closed);
  r = fetchOnce(shared, 2);
  CHECK(r.outcome == Outcome::CircuitOpen);
  CHECK(r.tries == 1);
  r = fetchOnce(shared, 3);
  CHECK(r.outcome == Outcome::CircuitOpen);
  CHECK(r.tries == 0);
}

TEST_CASE("app shipping client: 503 is retried, the 2nd try's JSON is returned") {
  ScriptedServer server({response(503, "{}"), response(200, R"({"id":5,"state":"shipped"})")});
  app::shipping::ShippingShared shared(smallConfig(server.port()));
  auto r = fetchOnce(shared, 5);
  CHECK(r.outcome == Outcome::Ok);
  CHECK(r.tries == 2);
  CHECK(r.body == R"({"id":5,"state":"shipped"})");
  CHECK(server.requests() == 2);
  CHECK(server.lastRequest().rfind("GET /api/shipments/5 HTTP/1.1\r\n", 0) == 0);
}

TEST_CASE("app shipping client: a 2xx that is not JSON is a 502; 404 is not retried") {
  ScriptedServer server({response(200, "not json"), response(200, "still not"), response(200, "nope"),
                         response(404, R"({"error":"x"})")});
  app::shipping::ShippingShared shared(smallConfig(server.port()));
  auto r = fetchOnce(shared, 6);
  CHECK(r.outcome == Outcome::BadGateway);
  CHECK(r.tries == 3);  // protocol errors count as resets: retried
  r = fetchOnce(shared, 6);
  CHECK(r.outcome == Outcome::NotFound);
  CHECK(r.tries == 1);
}

TEST_CASE("app shipping client: https base_url is unusable, answered without contact") {
  cfg::ShippingConfig c = smallConfig(closedPort());
  c.base_url = "https://127.0.0.1:1";
  app::shipping::ShippingShared shared(c);
  CHECK_FALSE(shared.usable());
  auto r = fetchOnce(shared, 1);
  CHECK(r.outcome == Outcome::Unusable);
  CHECK(r.tries == 0);
}
