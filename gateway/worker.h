#pragma once
// One event-loop thread: its own SO_REUSEPORT listener, client connections and upstream pool.
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "common/http/client.h"
#include "common/http/server.h"
#include "common/redis/redis_client.h"
#include "common/uv/handle.h"
#include "gateway/proxy/proxy_handler.h"
#include "gateway/runtime.h"

namespace gateway {

// Listener settings and upstream pool settings derived from the gateway config.
http::ServerSettings clientServerSettings(const cfg::GatewayConfig& g, Runtime& rt);
http::PoolSettings upstreamPoolSettings(const cfg::GatewayConfig& g, int workers, http::PoolSettings base);

class Worker {
 public:
  // `onExit` runs on the worker thread when its loop has nothing left (after drain or force).
  Worker(Runtime& rt, int index, std::function<void()> onExit);
  ~Worker();

  // Binds the listener (on the calling thread, so bind errors stop startup). 0 or an error.
  int bind(std::string& error);
  void start();
  // Thread-safe commands.
  void drain();       // stop accepting, Connection: close, close idle; exit when empty
  void forceClose();  // close every connection now
  void join();
  // A reload published `policy`: limits and timeouts of the listener and pool follow (new
  // connections and new requests; nothing in flight is disturbed). Thread-safe.
  void applyPolicy(std::shared_ptr<const Policy> policy);
  // Runs `task` on this worker's loop (thread-safe). Tasks posted after the loop ended are dropped.
  void post(std::function<void()> task);

 private:
  static void onCommand(uv_async_t* a);
  void run();
  void maybeExit();
  void runPostedTasks();
  void wake();

  Runtime& rt_;
  int index_;
  std::function<void()> onExit_;
  uv_loop_t loop_{};
  std::unique_ptr<http::ConnectionPool> pool_;
  std::unique_ptr<redisx::RedisClient> redis_;
  std::unique_ptr<WorkerContext> ctx_;
  std::unique_ptr<http::Server> server_;
  uvx::OwnedHandle<uv_async_t> command_;
  std::atomic<bool> drainRequested_{false};
  std::atomic<bool> forceRequested_{false};
  bool stopping_ = false;
  std::mutex tasksMu_;
  std::vector<std::function<void()>> tasks_;
  bool acceptingTasks_ = true;  // guarded by tasksMu_
  std::thread thread_;
};

}  // namespace gateway
