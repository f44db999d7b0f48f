#pragma once
// redisx::RedisClient: one Redis connection (a hiredis async context) on a libuv loop, with a
// bounded connect, a timeout on every command, and reconnection with backoff. The context is
// attached to the loop with hooks equivalent to hiredis' adapters/libuv.h (see redis_client.cc
// for why not that header itself).
//
// States:
//   Disconnected  not connected: before start(), or waiting out the reconnect backoff after a
//                 failure. Commands fail at once with Disconnected (naming the last error); nothing
//                 is queued.
//   Connecting    resolving the host, TCP connect, then AUTH (when the URL has a password),
//                 SELECT (when db != 0) and a PING, all within `connectTimeout`. Commands issued
//                 now wait in a local queue (bounded by maxPending and by their own timeout) and
//                 are sent once the PING is answered.
//   Ready         the server answered the handshake; commands are written at once (pipelined).
//   Closed        close() was called; permanent.
//
// Callback contract (every callback runs on the loop thread):
//   - Each command's callback runs exactly once, unless the client is destroyed first.
//   - It never runs inside command(): failures detected there (not connected, overloaded, invalid)
//     are delivered on the next loop iteration. The one exception is after close(), see there.
//   - On timeout the callback gets Timeout; if the reply arrives later it is dropped.
//   - A callback may issue new commands, call close(), or destroy the client.
//   - Destroying the client drops every pending callback without calling it (the std::function
//     and its captures are destroyed). Owners that need an answer for each request call close()
//     first, which answers them with Disconnected.
//
// Not supported: SUBSCRIBE/PSUBSCRIBE/MONITOR (they change the reply protocol of the connection;
// use a dedicated client when pub/sub is needed). Single-threaded: use from the loop's thread only.
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/redis/redis_result.h"
#include "common/redis/redis_url.h"
#include "common/uv/handle.h"

struct redisAsyncContext;
struct redisReply;

namespace redisx {

struct RedisOptions {
  std::string url = "redis://127.0.0.1:6379/0";
  // Bounds name resolution + TCP connect + AUTH/SELECT/PING.
  std::chrono::milliseconds connectTimeout{200};
  // Default bound of each command, from the moment command() is called.
  std::chrono::milliseconds commandTimeout{50};
  // Reconnect delay after the n-th consecutive failure: a random value in [d/2, d] with
  // d = min(max, base * 2^n) ("equal jitter"), so replicas do not reconnect in lockstep.
  std::chrono::milliseconds reconnectBackoffBase{50};
  std::chrono::milliseconds reconnectBackoffMax{1000};
  // A connection on which some command has been waiting this long for its reply (long after its
  // own timeout) is considered wedged (e.g. a stopped server whose kernel still accepts) and is
  // replaced. 0 = max(1s, 10 * commandTimeout). Each command waits at least its own timeout.
  std::chrono::milliseconds stallTimeout{0};
  // Commands queued or awaiting a reply beyond this fail at once with Overloaded.
  size_t maxPending = 10000;
};

class RedisClient {
 public:
  enum class State { Disconnected, Connecting, Ready, Closed };
  using Callback = std::function<void(RedisResult)>;

  // Does not connect yet: call start(). The loop must outlive the client.
  RedisClient(uv_loop_t* loop, RedisOptions options);
  // Drops pending callbacks (see above) and closes every handle; the loop must run once more to
  // finish the close callbacks before uv_loop_close().
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Parses the URL and starts connecting. Returns false (and the reason in *error) when the URL is
  // unusable; the client then stays Disconnected for good and every command fails with that reason.
  bool start(std::string* error = nullptr);

  // Sends `args` (binary-safe: args[0] is the command name) and calls `cb` with the result. The
  // two-argument form uses options.commandTimeout.
  void command(std::vector<std::string> args, Callback cb);
  void command(std::vector<std::string> args, std::chrono::milliseconds timeout, Callback cb);
  // The same without owning the arguments (they are serialized before it returns): for hot paths
  // that would otherwise build a vector of strings per command.
  void commandViews(std::span<const std::string_view> args, std::chrono::milliseconds timeout, Callback cb);

  // Disconnects for good and closes every handle. Pending commands' callbacks (and any failure not
  // yet delivered) run with Disconnected before close() returns; commands issued after close()
  // get Disconnected before command() returns. Safe to call twice and from a callback.
  void close();

  State state() const { return state_; }
  static const char* stateName(State s);
  // Why the client is not Ready (last connect/connection error); empty if it never failed.
  const std::string& lastError() const { return lastError_; }
  const RedisEndpoint& endpoint() const { return endpoint_; }
  size_t pendingCount() const { return pending_.size(); }
  // Connections that reached Ready since construction (tests and metrics).
  uint64_t connectionsEstablished() const { return connectionsEstablished_; }

 private:
  struct Pending {
    Callback cb;
    uint64_t deadlineMs = 0;
    std::chrono::milliseconds timeout{0};
    std::string resp;  // the serialized command, kept until written
    bool sent = false;
  };
  // One in-flight getaddrinfo. Owned by itself: libuv calls back even after uv_cancel, so the
  // client only detaches (owner = nullptr) and the callback frees it.
  struct Resolve {
    uv_getaddrinfo_t req{};
    RedisClient* owner = nullptr;
  };

  static void onConnectThunk(const redisAsyncContext* ac, int status);
  static void onDisconnectThunk(const redisAsyncContext* ac, int status);
  static void onReplyThunk(redisAsyncContext* ac, void* reply, void* privdata);
  static void onResolvedThunk(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void onConnectTimerThunk(uv_timer_t* t);
  static void onDeadlineTimerThunk(uv_timer_t* t);
  static void onDeferTimerThunk(uv_timer_t* t);

  void startConnect();
  void connectTo(const std::string& address);
  // After a failed connect to one resolved address: tries the next one. False when none is left.
  bool connectNextAddress();
  void onConnected();
  void onHandshakeReply(uint64_t step, redisReply* reply);
  void becomeReady();
  void onReply(redisAsyncContext* ac, redisReply* reply, uint64_t id);
  // The context is being freed by hiredis (error, EOF): forget it, never free it ourselves.
  void contextGone(const redisAsyncContext* ac, const std::string& reason);
  // We free the context (timeout, handshake failure, close).
  void dropContext();
  void cancelResolve();
  void connectionFailed(const std::string& reason);
  void scheduleReconnect();
  bool writeCommand(uint64_t id, const std::string& resp, std::chrono::milliseconds timeout);
  void failAllPending(RedisErrorKind kind, const std::string& reason);
  void defer(Callback cb, RedisResult result);
  void onDeadlines();
  void armDeadlineTimer();
  void removeDeadline(uint64_t id, uint64_t deadlineMs);
  uint64_t now() const;
  std::chrono::milliseconds stallTimeout(std::chrono::milliseconds commandTimeout) const;

  uv_loop_t* loop_;
  RedisOptions options_;
  RedisEndpoint endpoint_;
  std::string urlError_;  // set by start() when the URL is unusable: never connect
  State state_ = State::Disconnected;
  bool started_ = false;
  redisAsyncContext* context_ = nullptr;
  Resolve* resolve_ = nullptr;
  std::vector<std::string> addresses_;  // resolved addresses of the host, tried in order
  size_t addressIndex_ = 0;
  uint64_t handshakeSteps_ = 0;  // handshake replies still expected
  std::string connectError_;     // a handshake failure found inside hiredis' connect callback

  uvx::OwnedHandle<uv_timer_t> connectTimer_;   // connect timeout while Connecting, backoff while Disconnected
  uvx::OwnedHandle<uv_timer_t> deadlineTimer_;  // earliest command deadline or stall check
  uint64_t armedForMs_ = 0;                     // when deadlineTimer_ fires, while it is active
  std::string scratch_;                         // a command being serialized (reused)
  uvx::OwnedHandle<uv_timer_t> deferTimer_;     // delivers failures found inside command()

  std::map<uint64_t, Pending> pending_;                // by id = issue order
  std::set<std::pair<uint64_t, uint64_t>> deadlines_;  // (deadlineMs, id)
  // Reply deadline for the stall check of every command written to the current connection whose
  // reply has not arrived (timed-out ones included); replies arrive in order, so it is a FIFO.
  std::deque<uint64_t> wireStallDeadlines_;
  std::vector<std::pair<Callback, RedisResult>> deferred_;

  uint64_t nextId_;
  int failedAttempts_ = 0;
  bool everFailed_ = false;
  std::string lastError_;
  uint64_t connectionsEstablished_ = 0;
  std::minstd_rand rng_;
  // Flips to false in the destructor; callbacks that may destroy the client check it before
  // touching members again.
  std::shared_ptr<bool> alive_;
};

}  // namespace redisx
