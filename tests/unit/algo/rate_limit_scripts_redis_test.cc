// The Redis Lua rate-limit scripts (common/algo/rate_limit_scripts.h) against a real Redis: a
// private redis-server child started on a free port for this test process (no persistence),
// driven with hiredis' synchronous API (test code, no event loop). Skipped with a MESSAGE when
// redis-server is not installed.
#include <doctest/doctest.h>
#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/algo/clock.h"
#include "common/algo/keyed_limiter.h"
#include "common/algo/rate_limit.h"
#include "common/algo/rate_limit_scripts.h"
#include "common/algo/sliding_window.h"
#include "common/algo/token_bucket.h"

extern char** environ;

using namespace std::chrono_literals;

namespace {

std::optional<std::string> findInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  dirs += ":/usr/sbin:/usr/local/sbin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) {
      end = dirs.size();
    }
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    return 0;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

// One redis-server child for the whole test process; killed (SIGTERM, then SIGKILL) at exit.
class RedisChild {
 public:
  static RedisChild* get(std::string* whyNot) {
    static RedisChild instance;
    if (instance.port_ == 0) {
      *whyNot = instance.error_;
      return nullptr;
    }
    return &instance;
  }

  int port() const { return port_; }

  Context connect() const {
    timeval tv{1, 0};
    Context c(redisConnectWithTimeout("127.0.0.1", port_, tv));
    if (!c || c->err != 0) {
      return nullptr;
    }
    redisSetTimeout(c.get(), tv);
    return c;
  }

  ~RedisChild() { stop(); }

 private:
  RedisChild() {
    auto bin = findInPath("redis-server");
    if (!bin) {
      error_ = "redis-server is not installed";
      return;
    }
    for (int tries = 0; tries < 3 && port_ == 0; ++tries) {
      const int port = freePort();
      if (port == 0) {
        continue;
      }
      const std::string portStr = std::to_string(port);
      std::vector<std::string> args = {*bin,          "--port",       portStr,   "--bind",         "127.0.0.1",
                                       "--save",      "",             "--appendonly", "no",         "--daemonize",
                                       "no",          "--loglevel",   "warning", "--protected-mode", "no"};
      std::vector<char*> argv;
      for (auto& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
      posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
      pid_t pid = 0;
      const int rc = posix_spawn(&pid, bin->c_str(), &fa, nullptr, argv.data(), environ);
      posix_spawn_file_actions_destroy(&fa);
      if (rc != 0) {
        error_ = "posix_spawn redis-server failed";
        return;
      }
      pid_ = pid;
      port_ = port;
      if (waitReady()) {
        return;
      }
      stop();  // port taken in the meantime, or a slow start: try another port
      port_ = 0;
    }
    if (error_.empty()) {
      error_ = "redis-server did not answer PING";
    }
  }

  bool waitReady() {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return false;  // exited (e.g. the port was taken)
      }
      if (Context c = connect()) {
        Reply r(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
        if (r && r->type == REDIS_REPLY_STATUS) {
          return true;
        }
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  void stop() {
    if (pid_ <= 0) {
      return;
    }
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

  pid_t pid_ = 0;
  int port_ = 0;
  std::string error_;
};

Reply command(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data())));
}

std::string loadScript(redisContext* c, std::string_view script) {
  Reply r = command(c, {"SCRIPT", "LOAD", std::string(script)});
  REQUIRE(r);
  REQUIRE(r->type == REDIS_REPLY_STRING);
  return std::string(r->str, r->len);
}

std::array<int64_t, 4> parseScriptReply(const redisReply* r) {
  REQUIRE(r != nullptr);
  if (r->type == REDIS_REPLY_ERROR) {
    FAIL("script error: " << std::string(r->str, r->len));
  }
  REQUIRE(r->type == REDIS_REPLY_ARRAY);
  REQUIRE(r->elements == 4);
  std::array<int64_t, 4> out{};
  for (size_t i = 0; i < 4; ++i) {
    REQUIRE(r->element[i]->type == REDIS_REPLY_INTEGER);
    out[i] = r->element[i]->integer;
  }
  return out;
}

std::array<int64_t, 4> evalsha(redisContext* c, const std::string& sha, const std::string& key, int64_t limit,
                               int64_t windowMs) {
  Reply r = command(c, {"EVALSHA", sha, "1", key, std::to_string(limit), std::to_string(windowMs)});
  return parseScriptReply(r.get());
}

int64_t timeMsOf(const redisReply* r) {
  REQUIRE(r != nullptr);
  REQUIRE(r->type == REDIS_REPLY_ARRAY);
  REQUIRE(r->elements == 2);
  const int64_t sec = std::stoll(std::string(r->element[0]->str, r->element[0]->len));
  const int64_t usec = std::stoll(std::string(r->element[1]->str, r->element[1]->len));
  return sec * 1000 + usec / 1000;
}

int64_t serverMs(redisContext* c) {
  Reply r = command(c, {"TIME"});
  return timeMsOf(r.get());
}

// TIME, EVALSHA, TIME in one MULTI/EXEC, so nothing runs in between and the script's clock is
// bracketed by the two readings (usually the same millisecond).
struct Bracketed {
  int64_t before = 0;
  int64_t after = 0;
  std::array<int64_t, 4> reply{};
};

Bracketed evalBracketed(redisContext* c, const std::string& sha, const std::string& key, int64_t limit,
                        int64_t windowMs) {
  REQUIRE(command(c, {"MULTI"}));
  REQUIRE(command(c, {"TIME"}));
  REQUIRE(command(c, {"EVALSHA", sha, "1", key, std::to_string(limit), std::to_string(windowMs)}));
  REQUIRE(command(c, {"TIME"}));
  Reply exec = command(c, {"EXEC"});
  REQUIRE(exec);
  REQUIRE(exec->type == REDIS_REPLY_ARRAY);
  REQUIRE(exec->elements == 3);
  Bracketed b;
  b.before = timeMsOf(exec->element[0]);
  b.reply = parseScriptReply(exec->element[1]);
  b.after = timeMsOf(exec->element[2]);
  return b;
}

struct Algorithm {
  const char* name;
  std::string_view script;
};
const Algorithm kAlgorithms[] = {{"token_bucket", algo::kTokenBucketScript},
                                 {"sliding_window", algo::kSlidingWindowScript}};

#define REDIS_OR_SKIP(child)                                          \
  std::string whyNot_;                                                \
  RedisChild* child = RedisChild::get(&whyNot_);                      \
  if (child == nullptr) {                                             \
    MESSAGE("skipped: " << whyNot_);                                  \
    return;                                                           \
  }

}  // namespace

TEST_CASE("algo rate limit scripts (real Redis): limit 10 -> exactly 10 of a burst of 30, fields and expiry") {
  REDIS_OR_SKIP(redis);
  Context c = redis->connect();
  REQUIRE(c);
  for (const Algorithm& a : kAlgorithms) {
    CAPTURE(std::string(a.name));
    const std::string sha = loadScript(c.get(), a.script);
    const std::string key = std::string("rl:test:burst:") + a.name;
    command(c.get(), {"DEL", key});
    int allowed = 0;
    for (int i = 0; i < 30; ++i) {
      CAPTURE(i);
      const auto r = evalsha(c.get(), sha, key, 10, 60000);
      const auto d = algo::decisionFromScriptReply(10, r[0], r[1], r[2], r[3]);
      allowed += d.allowed ? 1 : 0;
      CHECK(d.allowed == (i < 10));
      if (i < 10) {
        CHECK(d.remaining == 9 - i);
        CHECK(r[3] == 0);
      } else {
        CHECK(d.remaining == 0);
        CHECK(d.retryAfterMs > 0);
      }
      if (std::string(a.name) == "token_bucket") {
        CHECK(d.resetAfterMs <= 60000);
        if (i >= 10) {
          CHECK(d.retryAfterMs <= 6000);  // one token every 6s
          CHECK(d.retryAfterMs > 5000);
        }
      } else {
        CHECK(d.resetAfterMs > 60000);  // counted requests weigh until the end of the next window
        CHECK(d.resetAfterMs <= 120000);
        if (i >= 10) {
          CHECK(d.retryAfterMs > 6000);
          CHECK(d.retryAfterMs <= 66000);
        }
      }
    }
    CHECK(allowed == 10);
    Reply ttl = command(c.get(), {"PTTL", key});
    REQUIRE(ttl);
    REQUIRE(ttl->type == REDIS_REPLY_INTEGER);
    CHECK(ttl->integer > 0);  // idle keys vanish by themselves
    CHECK(ttl->integer <= 120000);
  }
}

TEST_CASE("algo rate limit scripts (real Redis): idle keys expire once equivalent to a fresh key") {
  REDIS_OR_SKIP(redis);
  Context c = redis->connect();
  REQUIRE(c);
  for (const Algorithm& a : kAlgorithms) {
    CAPTURE(std::string(a.name));
    const std::string sha = loadScript(c.get(), a.script);
    const std::string key = std::string("rl:test:expiry:") + a.name;
    command(c.get(), {"DEL", key});
    evalsha(c.get(), sha, key, 2, 100);
    Reply exists = command(c.get(), {"EXISTS", key});
    CHECK(exists->integer == 1);
    std::this_thread::sleep_for(250ms);  // token bucket: full after 50ms; sliding: <= 2 windows
    exists = command(c.get(), {"EXISTS", key});
    CHECK(exists->integer == 0);
  }
}

TEST_CASE("algo rate limit scripts (real Redis): two clients sharing one Redis get one combined limit") {
  REDIS_OR_SKIP(redis);
  Context c1 = redis->connect();
  Context c2 = redis->connect();
  REQUIRE(c1);
  REQUIRE(c2);
  for (const Algorithm& a : kAlgorithms) {
    CAPTURE(std::string(a.name));
    const std::string sha = loadScript(c1.get(), a.script);
    const std::string key = std::string("rl:test:shared:") + a.name;
    command(c1.get(), {"DEL", key});
    int allowed = 0;
    for (int i = 0; i < 30; ++i) {
      redisContext* c = (i % 2 == 0) ? c1.get() : c2.get();  // two "replicas" interleaved
      allowed += evalsha(c, sha, key, 10, 60000)[0] != 0 ? 1 : 0;
    }
    CHECK(allowed == 10);
  }
}

namespace {

bool sameDecision(const algo::RateLimitDecision& a, const algo::RateLimitDecision& b) {
  return a.allowed == b.allowed && a.remaining == b.remaining && a.resetAfterMs == b.resetAfterMs &&
         a.retryAfterMs == b.retryAfterMs;
}

// Runs 80 requests with irregular gaps through the script and, on the same Redis timestamps,
// through the in-process core (Algo::decide) and the keyed in-process limiter.
template <class Algo>
void checkAgreement(redisContext* c, const char* name, std::string_view script) {
  CAPTURE(std::string(name));
  const algo::RateLimitRule rule{5, 500};
  const std::string sha = loadScript(c, script);
  const std::string key = std::string("rl:test:agree:") + name;
  command(c, {"DEL", key});
  typename Algo::State core;
  algo::ManualClock clock;
  auto keyed = algo::makeLocalRateLimiter(name, rule, 16, clock.fn());
  REQUIRE(keyed);

  uint32_t lcg = 12345;
  int redisAllowed = 0;
  int keyedAllowed = 0;
  int straddled = 0;
  for (int i = 0; i < 80; ++i) {
    CAPTURE(i);
    lcg = lcg * 1103515245u + 12345u;
    std::this_thread::sleep_for(std::chrono::milliseconds((lcg >> 16) % 40));
    const Bracketed b = evalBracketed(c, sha, key, rule.limit, rule.windowMs);
    CAPTURE(b.before);
    CAPTURE(b.after);
    REQUIRE(b.after >= b.before);
    REQUIRE(b.after - b.before <= 50);
    straddled += b.before != b.after ? 1 : 0;
    const auto theirs = algo::decisionFromScriptReply(rule.limit, b.reply[0], b.reply[1], b.reply[2], b.reply[3]);
    redisAllowed += theirs.allowed ? 1 : 0;

    // The script read TIME somewhere in [before, after]: one of those milliseconds must give the
    // identical decision, and that one carries the core's state forward.
    bool matched = false;
    for (int64_t t = b.before; t <= b.after && !matched; ++t) {
      typename Algo::State trial = core;
      if (sameDecision(Algo::decide(trial, rule, t), theirs)) {
        core = trial;
        matched = true;
      }
    }
    CHECK_MESSAGE(matched, "script reply {" << b.reply[0] << "," << b.reply[1] << "," << b.reply[2] << ","
                                            << b.reply[3] << "} not reproduced in-process");

    clock.set(algo::TimePoint{} + algo::Millis{b.before});
    keyedAllowed += keyed->check("client").allowed ? 1 : 0;
  }
  MESSAGE(std::string(name) << ": redis allowed " << redisAllowed << " of 80, keyed in-process " << keyedAllowed
               << "; brackets straddling a ms: " << straddled);
  CHECK(redisAllowed > 5);  // the sequence exercised refills, not only the first burst
  CHECK(redisAllowed < 80);
  // The keyed limiter used `before` for every request; it can only differ where the script's
  // clock was a later millisecond.
  CHECK(std::abs(redisAllowed - keyedAllowed) <= straddled);
}

}  // namespace

TEST_CASE("algo rate limit scripts (real Redis): the in-process limiter and the script agree") {
  REDIS_OR_SKIP(redis);
  Context c = redis->connect();
  REQUIRE(c);
  checkAgreement<algo::TokenBucket>(c.get(), "token_bucket", algo::kTokenBucketScript);
  checkAgreement<algo::SlidingWindow>(c.get(), "sliding_window", algo::kSlidingWindowScript);
}

TEST_CASE("algo rate limit scripts (real Redis): sliding window refuses the 2x burst at a window edge") {
  REDIS_OR_SKIP(redis);
  Context c = redis->connect();
  REQUIRE(c);
  const std::string sha = loadScript(c.get(), algo::kSlidingWindowScript);
  const int64_t limit = 10;
  const int64_t w = 1000;
  const std::string key = "rl:test:edge";
  command(c.get(), {"DEL", key});

  // Late in a fixed window (server time), a full burst.
  int64_t now = serverMs(c.get());
  std::this_thread::sleep_for(std::chrono::milliseconds((850 - now % w + w) % w));
  const int64_t firstStart = serverMs(c.get());
  int first = 0;
  for (int i = 0; i < limit; ++i) {
    first += evalsha(c.get(), sha, key, limit, w)[0] != 0 ? 1 : 0;
  }
  // Just after the edge, the same burst again: a fixed window would allow all of it.
  now = serverMs(c.get());
  std::this_thread::sleep_for(std::chrono::milliseconds((w - now % w) + 20));
  int second = 0;
  for (int i = 0; i < limit; ++i) {
    second += evalsha(c.get(), sha, key, limit, w)[0] != 0 ? 1 : 0;
  }
  const int64_t span = serverMs(c.get()) - firstStart + 1;
  MESSAGE("edge bursts: first " << first << ", second " << second << " within " << span << "ms");
  CHECK(first == limit);
  // Documented bound over an interval of length d: limit + limit*d/W.
  CHECK(static_cast<double>(first + second) <= static_cast<double>(limit) + static_cast<double>(limit * span) / w);
  CHECK(second <= 3);
}

TEST_CASE("algo rate limit scripts (real Redis): NOSCRIPT after a flush, reload works") {
  REDIS_OR_SKIP(redis);
  Context c = redis->connect();
  REQUIRE(c);
  const std::string sha = loadScript(c.get(), algo::kTokenBucketScript);
  REQUIRE(command(c.get(), {"SCRIPT", "FLUSH"}));
  Reply r = command(c.get(), {"EVALSHA", sha, "1", "rl:test:noscript", "10", "1000"});
  REQUIRE(r);
  REQUIRE(r->type == REDIS_REPLY_ERROR);
  CHECK(std::string(r->str, r->len).rfind("NOSCRIPT", 0) == 0);
  CHECK(loadScript(c.get(), algo::kTokenBucketScript) == sha);  // same text, same SHA1
  CHECK(evalsha(c.get(), sha, "rl:test:noscript", 10, 1000)[0] == 1);
  CHECK(algo::rateLimitScriptFor("token_bucket") == algo::kTokenBucketScript);
  CHECK(algo::rateLimitScriptFor("sliding_window") == algo::kSlidingWindowScript);
  CHECK(algo::rateLimitScriptFor("leaky").empty());
}
