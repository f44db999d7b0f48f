// redisx::RedisClient against a real Redis (the stack of scripts/stack.sh) and against local
// sockets that refuse or never answer. Every test ends with all handles closed.
#include "common/redis/redis_client.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/db/test_support.h"

using namespace std::chrono_literals;
using redisx::RedisClient;
using redisx::RedisErrorKind;
using redisx::RedisOptions;
using redisx::RedisResult;
using redisx::ReplyType;
using testsupport::TestLoop;

namespace {

RedisOptions optionsFor(const std::string& url) {
  RedisOptions o;
  o.url = url;
  o.connectTimeout = 500ms;
  o.commandTimeout = 500ms;
  o.reconnectBackoffBase = 20ms;
  o.reconnectBackoffMax = 200ms;
  return o;
}

// Collects the results of commands; counts calls so "exactly once" can be checked.
struct Results {
  std::vector<RedisResult> items;
  RedisClient::Callback add() {
    return [this](RedisResult r) { items.push_back(std::move(r)); };
  }
};

// A scripted peer on its own thread: accepts one connection, answers the handshake PING, then
// resets the connection (SO_LINGER 0) as soon as the next command arrives.
class ResettingRedis {
 public:
  ResettingRedis() {
    listenFd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listenFd_, 8);
    thread_ = std::thread([this] { serve(); });
  }
  ~ResettingRedis() {
    shutdown(listenFd_, SHUT_RDWR);
    thread_.join();
    ::close(listenFd_);
  }
  int port() const { return port_; }
  bool reset() const { return reset_.load(); }

 private:
  void serve() {
    int fd = accept(listenFd_, nullptr, nullptr);
    if (fd < 0) {
      return;
    }
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[256];
    if (read(fd, buf, sizeof(buf)) > 0) {  // the handshake PING
      (void)!write(fd, "+PONG\r\n", 7);
      if (read(fd, buf, sizeof(buf)) > 0) {  // the test's command: answer with a reset
        linger lg{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        reset_ = true;
      }
    }
    ::close(fd);
  }

  int listenFd_ = -1;
  int port_ = 0;
  std::atomic<bool> reset_{false};
  std::thread thread_;
};

bool waitReady(TestLoop& loop, RedisClient& client, uint64_t ms = 3000) {
  return loop.runUntil([&] { return client.state() == RedisClient::State::Ready; }, ms);
}

}  // namespace

TEST_SUITE("real-servers") {
  TEST_CASE("redis client (real Redis): PING, strings, integers, nil, arrays and server errors") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisClient client(loop.get(), optionsFor(stack->redisUrl()));
      std::string err;
      REQUIRE(client.start(&err));
      REQUIRE(waitReady(loop, client));

      Results r;
      std::string binary("a\0b\r\nc", 6);
      client.command({"PING"}, r.add());
      client.command({"SET", "unit:bin", binary}, r.add());
      client.command({"GET", "unit:bin"}, r.add());
      client.command({"DEL", "unit:n"}, r.add());
      client.command({"INCRBY", "unit:n", "41"}, r.add());
      client.command({"GET", "unit:missing"}, r.add());
      client.command({"DEL", "unit:list"}, r.add());
      client.command({"RPUSH", "unit:list", "x", "y"}, r.add());
      client.command({"LRANGE", "unit:list", "0", "-1"}, r.add());
      client.command({"INCR", "unit:bin"}, r.add());  // not an integer
      REQUIRE(loop.runUntil([&] { return r.items.size() == 10; }, 2000));

      CHECK(r.items[0].ok());
      CHECK(r.items[0].reply.type == ReplyType::Status);
      CHECK(r.items[0].reply.str == "PONG");
      CHECK(r.items[1].reply.str == "OK");
      CHECK(r.items[2].reply.type == ReplyType::String);
      CHECK(r.items[2].reply.str == binary);
      CHECK(r.items[4].reply.type == ReplyType::Integer);
      CHECK(r.items[4].reply.integer == 41);
      CHECK(r.items[5].ok());
      CHECK(r.items[5].reply.type == ReplyType::Nil);
      REQUIRE(r.items[8].reply.type == ReplyType::Array);
      REQUIRE(r.items[8].reply.elements.size() == 2);
      CHECK(r.items[8].reply.elements[1].str == "y");
      CHECK(r.items[9].error == RedisErrorKind::ServerError);
      CHECK(r.items[9].errorMessage.find("not an integer") != std::string::npos);
      CHECK(client.pendingCount() == 0);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): commands issued while connecting are sent once ready") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisClient client(loop.get(), optionsFor(stack->redisUrl()));
      REQUIRE(client.start());
      CHECK(client.state() == RedisClient::State::Connecting);
      Results r;
      client.command({"PING"}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 2000));
      CHECK(r.items[0].ok());
      CHECK(r.items[0].reply.str == "PONG");
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): SELECT db from the URL") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisClient db3(loop.get(), optionsFor(stack->redisUrl(3)));
      RedisClient db0(loop.get(), optionsFor(stack->redisUrl(0)));
      REQUIRE(db3.start());
      REQUIRE(db0.start());
      Results r;
      db3.command({"SET", "unit:in-db3", "v"}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 2000));
      Results from3;
      Results from0;
      db3.command({"GET", "unit:in-db3"}, from3.add());
      db0.command({"GET", "unit:in-db3"}, from0.add());
      REQUIRE(loop.runUntil([&] { return from3.items.size() == 1 && from0.items.size() == 1; }, 2000));
      CHECK(from3.items[0].reply.str == "v");
      CHECK(from0.items[0].reply.type == ReplyType::Nil);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): AUTH with the URL's password") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisClient admin(loop.get(), optionsFor(stack->redisUrl()));
      REQUIRE(admin.start());
      Results r;
      admin.command({"CONFIG", "SET", "requirepass", "unit-pw"}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 2000));
      REQUIRE(r.items[0].ok());

      std::string base = "redis://:unit-pw@127.0.0.1:" + std::to_string(stack->redisPort) + "/0";
      std::string wrong = "redis://:nope@127.0.0.1:" + std::to_string(stack->redisPort) + "/0";
      RedisClient good(loop.get(), optionsFor(base));
      RedisClient bad(loop.get(), optionsFor(wrong));
      REQUIRE(good.start());
      REQUIRE(bad.start());
      good.command({"PING"}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 2 && !bad.lastError().empty(); }, 2000));
      CHECK(r.items[1].ok());
      CHECK(bad.lastError().find("AUTH failed") != std::string::npos);
      CHECK(bad.lastError().find("nope") == std::string::npos);
      // Restore: the already-authenticated admin connection stays usable.
      good.command({"CONFIG", "SET", "requirepass", ""}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 3; }, 2000));
      CHECK(r.items[2].ok());
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): a command past its timeout fails once; the late reply is dropped") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisOptions o = optionsFor(stack->redisUrl());
      o.commandTimeout = 50ms;
      RedisClient client(loop.get(), o);
      REQUIRE(client.start());
      REQUIRE(waitReady(loop, client));

      Results r;
      uint64_t t0 = loop.nowMs();
      // The server answers (nil) after 300 ms.
      client.command({"BLPOP", "unit:never-filled", "0.3"}, r.add());
      REQUIRE(loop.runUntil([&] { return !r.items.empty(); }, 1000));
      uint64_t took = loop.nowMs() - t0;
      CHECK(took >= 45);
      CHECK(took < 250);
      CHECK(r.items[0].error == RedisErrorKind::Timeout);
      CHECK(r.items[0].maybeExecuted);

      loop.runFor(400);  // the late reply arrives and must be dropped
      CHECK(r.items.size() == 1);
      CHECK(client.state() == RedisClient::State::Ready);
      client.command({"PING"}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 2; }, 1000));
      CHECK(r.items[1].ok());
      CHECK(client.connectionsEstablished() == 1);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): a wedged connection is replaced after the stall timeout") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisOptions o = optionsFor(stack->redisUrl());
      o.commandTimeout = 50ms;
      o.stallTimeout = 200ms;
      RedisClient client(loop.get(), o);
      REQUIRE(client.start());
      REQUIRE(waitReady(loop, client));
      Results r;
      client.command({"BLPOP", "unit:never-filled", "2"}, r.add());
      REQUIRE(loop.runUntil([&] { return client.connectionsEstablished() == 2; }, 2000));
      CHECK(r.items.size() == 1);
      CHECK(r.items[0].error == RedisErrorKind::Timeout);
      client.command({"PING"}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 2; }, 1000));
      CHECK(r.items[1].ok());
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): a host name is resolved off the loop, every address tried") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      // localhost may resolve to ::1 first; Redis listens on 127.0.0.1 only.
      RedisClient client(loop.get(), optionsFor("redis://localhost:" + std::to_string(stack->redisPort) + "/0"));
      REQUIRE(client.start());
      CHECK(waitReady(loop, client));
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): destroyed with commands in flight, or from its own callback") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    int calls = 0;
    {
      auto client = std::make_unique<RedisClient>(loop.get(), optionsFor(stack->redisUrl()));
      REQUIRE(client->start());
      REQUIRE(waitReady(loop, *client));
      client->command({"BLPOP", "unit:never-filled", "1"}, [&](RedisResult) { ++calls; });
      client->command({"PING"}, [&](RedisResult) { ++calls; });
      client.reset();  // callbacks are dropped, not called
      loop.runFor(50);
      CHECK(calls == 0);

      auto self = std::make_unique<RedisClient>(loop.get(), optionsFor(stack->redisUrl()));
      REQUIRE(self->start());
      REQUIRE(waitReady(loop, *self));
      self->command({"PING"}, [&](RedisResult r) {
        CHECK(r.ok());
        ++calls;
        self.reset();
      });
      self->command({"PING"}, [&](RedisResult) { ++calls; });
      REQUIRE(loop.runUntil([&] { return self == nullptr; }, 1000));
      loop.runFor(50);
      CHECK(calls == 1);
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): close() answers pending commands with Disconnected") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisClient client(loop.get(), optionsFor(stack->redisUrl()));
      REQUIRE(client.start());
      REQUIRE(waitReady(loop, client));
      Results r;
      client.command({"BLPOP", "unit:never-filled", "1"}, r.add());
      client.command({"PING"}, r.add());
      client.close();
      REQUIRE(r.items.size() == 2);
      CHECK(r.items[0].error == RedisErrorKind::Disconnected);
      CHECK(r.items[0].maybeExecuted);
      CHECK(client.state() == RedisClient::State::Closed);
      client.command({"PING"}, r.add());  // answered before command() returns
      REQUIRE(r.items.size() == 3);
      CHECK(r.items[2].error == RedisErrorKind::Disconnected);
      client.close();  // twice is fine
    }
    CHECK(loop.finish() == 0);
  }

  TEST_CASE("redis client (real Redis): server stopped, commands fail at once, reconnects when it is back") {
    REQUIRE_REAL_STACK(stack);
    TestLoop loop;
    {
      RedisClient client(loop.get(), optionsFor(stack->redisUrl()));
      REQUIRE(client.start());
      REQUIRE(waitReady(loop, client));
      Results r;
      client.command({"BLPOP", "unit:never-filled", "5"}, 10000ms, r.add());
      loop.runFor(20);
      REQUIRE(stack->stopRedis());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 2000));
      CHECK(r.items[0].error == RedisErrorKind::Disconnected);
      CHECK(r.items[0].maybeExecuted);
      REQUIRE(loop.runUntil([&] { return client.state() == RedisClient::State::Disconnected; }, 1000));

      uint64_t t0 = loop.nowMs();
      client.command({"PING"}, r.add());
      CHECK(client.pendingCount() == 0);  // not queued
      REQUIRE(loop.runUntil([&] { return r.items.size() == 2; }, 1000));
      CHECK(loop.nowMs() - t0 < 100);
      CHECK(r.items[1].error == RedisErrorKind::Disconnected);
      CHECK(r.items[1].errorMessage.find("redis unavailable") != std::string::npos);
      CHECK_FALSE(r.items[1].maybeExecuted);

      REQUIRE(stack->restart());
      CHECK(waitReady(loop, client, 5000));
      CHECK(client.connectionsEstablished() == 2);
      client.command({"PING"}, r.add());
      REQUIRE(loop.runUntil([&] { return r.items.size() == 3; }, 1000));
      CHECK(r.items[2].ok());
    }
    CHECK(loop.finish() == 0);
  }
}

TEST_CASE("redis client: nothing listening, commands fail at once and are not queued") {
  TestLoop loop;
  {
    RedisClient client(loop.get(), optionsFor("redis://127.0.0.1:" + std::to_string(testsupport::closedPort()) + "/0"));
    REQUIRE(client.start());
    // Refused on loopback right away, or within a few iterations.
    REQUIRE(loop.runUntil([&] { return client.state() == RedisClient::State::Disconnected; }, 1000));
    CHECK(client.lastError().find("refused") != std::string::npos);
    Results r;
    client.command({"PING"}, r.add());
    CHECK(r.items.empty());  // never inside command()
    CHECK(client.pendingCount() == 0);
    REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 100));
    CHECK(r.items[0].error == RedisErrorKind::Disconnected);
    // It keeps trying in the background without piling anything up.
    loop.runFor(300);
    CHECK(client.state() != RedisClient::State::Ready);
  }
  CHECK(loop.finish() == 0);
}

TEST_CASE("redis client: a server that never answers hits the connect timeout") {
  TestLoop loop;
  testsupport::SilentListener silent;
  {
    RedisOptions o = optionsFor("redis://127.0.0.1:" + std::to_string(silent.port()) + "/0");
    o.connectTimeout = 100ms;
    o.commandTimeout = 1000ms;
    o.reconnectBackoffBase = 1000ms;
    RedisClient client(loop.get(), o);
    REQUIRE(client.start());
    Results r;
    client.command({"PING"}, r.add());  // queued while connecting
    uint64_t t0 = loop.nowMs();
    REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 2000));
    uint64_t took = loop.nowMs() - t0;
    CHECK(took >= 90);
    CHECK(took < 400);
    CHECK(r.items[0].error == RedisErrorKind::Disconnected);
    CHECK(r.items[0].errorMessage.find("timed out") != std::string::npos);
    CHECK(client.state() == RedisClient::State::Disconnected);
  }
  CHECK(loop.finish() == 0);
}

TEST_CASE("redis client: a command shorter than the connect wait times out while connecting") {
  TestLoop loop;
  testsupport::SilentListener silent;
  {
    RedisOptions o = optionsFor("redis://127.0.0.1:" + std::to_string(silent.port()) + "/0");
    o.connectTimeout = 1000ms;
    o.commandTimeout = 50ms;
    RedisClient client(loop.get(), o);
    REQUIRE(client.start());
    Results r;
    client.command({"PING"}, r.add());
    REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 500));
    CHECK(r.items[0].error == RedisErrorKind::Timeout);
    CHECK_FALSE(r.items[0].maybeExecuted);
    loop.runFor(100);
    CHECK(r.items.size() == 1);
  }
  CHECK(loop.finish() == 0);
}

TEST_CASE("redis client: local refusals (bad URL, empty, SUBSCRIBE, overload, not started)") {
  TestLoop loop;
  {
    RedisClient badUrl(loop.get(), optionsFor("rediss://127.0.0.1:6379/0"));
    std::string err;
    CHECK_FALSE(badUrl.start(&err));
    CHECK(err.find("TLS") != std::string::npos);

    RedisClient notStarted(loop.get(), optionsFor("redis://127.0.0.1:1/0"));

    testsupport::SilentListener silent;
    RedisOptions o = optionsFor("redis://127.0.0.1:" + std::to_string(silent.port()) + "/0");
    o.maxPending = 2;
    RedisClient connecting(loop.get(), o);
    REQUIRE(connecting.start());

    Results r;
    badUrl.command({"PING"}, r.add());
    notStarted.command({"PING"}, r.add());
    connecting.command({}, r.add());
    connecting.command({"subscribe", "ch"}, r.add());
    connecting.command({"PING"}, r.add());
    connecting.command({"PING"}, r.add());
    connecting.command({"PING"}, r.add());  // third pending: over maxPending
    CHECK(r.items.empty());
    REQUIRE(loop.runUntil([&] { return r.items.size() >= 5; }, 200));
    CHECK(r.items[0].error == RedisErrorKind::Disconnected);
    CHECK(r.items[0].errorMessage.find("TLS") != std::string::npos);
    CHECK(r.items[1].error == RedisErrorKind::Disconnected);
    CHECK(r.items[1].errorMessage.find("not started") != std::string::npos);
    CHECK(r.items[2].error == RedisErrorKind::InvalidCommand);
    CHECK(r.items[3].error == RedisErrorKind::InvalidCommand);
    CHECK(r.items[4].error == RedisErrorKind::Overloaded);
    connecting.close();
    CHECK(r.items.size() == 7);
  }
  CHECK(loop.finish() == 0);
}

TEST_CASE("redis client: a reset connection fails pending commands at once, not at their timeout") {
  TestLoop loop;
  ResettingRedis peer;
  {
    RedisOptions o = optionsFor("redis://127.0.0.1:" + std::to_string(peer.port()) + "/0");
    o.commandTimeout = 3000ms;
    o.reconnectBackoffBase = 5000ms;  // stay down: the peer serves one connection only
    o.reconnectBackoffMax = 5000ms;
    RedisClient client(loop.get(), o);
    REQUIRE(client.start());
    REQUIRE(waitReady(loop, client));
    Results r;
    uint64_t t0 = loop.nowMs();
    client.command({"GET", "k"}, r.add());
    REQUIRE(loop.runUntil([&] { return r.items.size() == 1; }, 4000));
    CHECK(peer.reset());
    CHECK(loop.nowMs() - t0 < 500);
    CHECK(r.items[0].error == RedisErrorKind::Disconnected);
    CHECK(r.items[0].maybeExecuted);
    CHECK(r.items[0].errorMessage.find("reset") != std::string::npos);
    CHECK(client.state() == RedisClient::State::Disconnected);
  }
  CHECK(loop.finish() == 0);
}
