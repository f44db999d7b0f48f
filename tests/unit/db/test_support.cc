#include "tests/unit/db/test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string_view>
#include <vector>

namespace testsupport {

// ---- TestLoop ------------------------------------------------------------------------------

TestLoop::TestLoop() { uv_loop_init(&loop_); }

TestLoop::~TestLoop() {
  if (!finished_) {
    finish();
  }
}

uint64_t TestLoop::nowMs() {
  uv_update_time(&loop_);
  return uv_now(&loop_);
}

bool TestLoop::runUntil(const std::function<bool()>& done, uint64_t timeoutMs) {
  // A ticking timer makes UV_RUN_ONCE return regularly even when nothing else happens.
  auto* tick = new uv_timer_t;
  uv_timer_init(&loop_, tick);
  uv_timer_start(
      tick, [](uv_timer_t*) {}, 5, 5);
  uint64_t deadline = nowMs() + timeoutMs;
  bool ok = done();
  while (!ok && nowMs() < deadline) {
    uv_run(&loop_, UV_RUN_ONCE);
    ok = done();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(tick), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  uv_run(&loop_, UV_RUN_NOWAIT);
  return ok;
}

void TestLoop::runFor(uint64_t ms) {
  runUntil([] { return false; }, ms);
}

int TestLoop::finish() {
  finished_ = true;
  // Close callbacks and cancelled requests finish within a few iterations.
  for (int i = 0; i < 100 && uv_loop_alive(&loop_) != 0; ++i) {
    uv_run(&loop_, UV_RUN_NOWAIT);
    if (uv_loop_alive(&loop_) != 0) {
      usleep(1000);
    }
  }
  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          std::fprintf(stderr, "leftover handle: %s active=%d closing=%d\n", uv_handle_type_name(uv_handle_get_type(h)),
                       uv_is_active(h), uv_is_closing(h));
        },
        nullptr);
  }
  return rc;
}

// ---- sockets -------------------------------------------------------------------------------

namespace {

int boundSocket(int& port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

int closedPort() {
  int port = 0;
  int fd = boundSocket(port);
  if (fd >= 0) {
    ::close(fd);
  }
  return port;
}

SilentListener::SilentListener() {
  fd_ = boundSocket(port_);
  if (fd_ >= 0) {
    listen(fd_, 64);
  }
}

SilentListener::~SilentListener() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

// ---- the real stack ------------------------------------------------------------------------

namespace {

std::string repoRoot() {
  if (const char* env = std::getenv("SIDECAR_REPO_ROOT")) {
    return env;
  }
  std::string file = __FILE__;
  const std::string suffix = "tests/unit/db/test_support.cc";
  if (file.size() >= suffix.size() && file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0) {
    std::string root = file.substr(0, file.size() - suffix.size());
    return root.empty() ? "." : root;
  }
  return ".";
}

bool isExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

std::string tail(const std::string& path, size_t maxBytes) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  return text.size() > maxBytes ? text.substr(text.size() - maxBytes) : text;
}

class StackOwner {
 public:
  ~StackOwner() {
    if (!started_) {
      return;
    }
    run("stop");
    if (std::getenv("SIDECAR_KEEP_STACK") == nullptr) {
      std::string cmd = "rm -rf " + shellQuote(stack_.dir);
      (void)std::system(cmd.c_str());
    } else {
      std::fprintf(stderr, "kept test stack in %s\n", stack_.dir.c_str());
    }
  }

  const RealStack* get(std::string* whyNot) {
    if (!tried_) {
      tried_ = true;
      whyNot_ = start();
      if (!started_) {
        // doctest shows MESSAGE only with -s; say it once where a reader of the run sees it.
        std::fprintf(stderr, "[unit_tests] tests needing real PostgreSQL/PgBouncer/Redis are skipped: %s\n",
                     whyNot_.c_str());
      }
    }
    if (!started_ && whyNot != nullptr) {
      *whyNot = whyNot_;
    }
    return started_ ? &stack_ : nullptr;
  }

  int run(const std::string& action) const {
    std::string cmd = "STACK_FSYNC=off STACK_WAIT_SECONDS=30 " + shellQuote(script_) + " " + action + " " +
                      shellQuote(stack_.dir) + " " + std::to_string(stack_.pgPort) + " " +
                      std::to_string(stack_.pgbouncerPort) + " " + std::to_string(stack_.redisPort) + " >>" +
                      shellQuote(stack_.dir + "/stack-cmd.log") + " 2>&1";
    int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  }

  const RealStack& stack() const { return stack_; }

 private:
  std::string start() {
    if (const char* skip = std::getenv("SIDECAR_SKIP_REAL_STACK"); skip != nullptr && *skip != '\0' && *skip != '0') {
      return "SIDECAR_SKIP_REAL_STACK is set";
    }
    script_ = repoRoot() + "/scripts/stack.sh";
    if (!isExecutable(script_)) {
      return script_ + " is missing or not executable";
    }
    for (const char* bin : {"/usr/lib/postgresql/15/bin/initdb", "/usr/sbin/pgbouncer", "/usr/bin/redis-server"}) {
      if (!isExecutable(bin)) {
        return std::string(bin) + " is not installed (scripts/install-deps.sh installs it)";
      }
    }
    // Short: unix socket paths under DIR must stay below ~100 bytes.
    char tmpl[] = "/tmp/sidecar-unit-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return "mkdtemp failed";
    }
    stack_.dir = tmpl;
    std::string failures;
    for (int attempt = 1; attempt <= 3; ++attempt) {
      // Three distinct free ports, held together while choosing.
      std::vector<int> fds;
      std::vector<int> ports(3);
      for (int& p : ports) {
        fds.push_back(boundSocket(p));
      }
      for (int fd : fds) {
        if (fd >= 0) {
          ::close(fd);
        }
      }
      stack_.pgPort = ports[0];
      stack_.pgbouncerPort = ports[1];
      stack_.redisPort = ports[2];
      if (run("start") == 0) {
        started_ = true;
        return "";
      }
      failures += "attempt " + std::to_string(attempt) + ":\n" + tail(stack_.dir + "/stack-cmd.log", 3000) + "\n";
      run("stop");
    }
    return "scripts/stack.sh start failed in " + stack_.dir + ":\n" + failures;
  }

  RealStack stack_;
  std::string script_;
  bool tried_ = false;
  bool started_ = false;
  std::string whyNot_;
};

StackOwner& owner() {
  static StackOwner instance;
  return instance;
}

}  // namespace

const RealStack* realStack(std::string* whyNot) { return owner().get(whyNot); }

std::string RealStack::dbUrl() const { return "postgresql://app@127.0.0.1:" + std::to_string(pgbouncerPort) + "/app"; }

std::string RealStack::directDbUrl() const { return "postgresql://app@127.0.0.1:" + std::to_string(pgPort) + "/app"; }

std::string RealStack::redisUrl(int db) const {
  return "redis://127.0.0.1:" + std::to_string(redisPort) + "/" + std::to_string(db);
}

bool RealStack::stopRedis() const {
  std::ifstream in(dir + "/run/redis.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) {
    return false;
  }
  if (kill(static_cast<pid_t>(pid), SIGTERM) != 0) {
    return false;
  }
  for (int i = 0; i < 200; ++i) {
    if (kill(static_cast<pid_t>(pid), 0) != 0) {
      return true;
    }
    usleep(20 * 1000);
  }
  return false;
}

bool RealStack::restart() const { return owner().run("start") == 0; }

}  // namespace testsupport
