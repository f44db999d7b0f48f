#pragma once
// HTTP/1.1 client side: connections to one upstream address and the pool that shares them among
// the exchanges of one event loop. The connection count limit is shared by every loop's pool
// through one atomic, so `max_connections` holds for the whole process.
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/http/parser.h"
#include "common/uv/deadline_timer.h"
#include "common/uv/tcp_stream.h"
#include "common/uv/timer.h"

namespace http {

class ConnectionPool;
class ClientConnection;

// Why an upstream exchange failed. Decides the status code (in one place, the proxy) and
// whether a retry is safe.
enum class UpstreamError {
  ConnectFailed,   // refused, unreachable: nothing was sent
  ConnectTimeout,  // nothing was sent
  PoolTimeout,     // no connection within pool_timeout
  ReadTimeout,     // no response byte within read_timeout
  WriteTimeout,    // the upstream stopped reading the request
  Reset,           // closed or reset before the response was complete
  Protocol,        // the response could not be parsed
};

const char* upstreamErrorName(UpstreamError e);

// The exchange currently using a ClientConnection. Hooks run on the loop thread.
class ClientUser {
 public:
  virtual ~ClientUser() = default;
  // The connection is connected (fresh) or taken from the idle list (reused) and is the user's.
  virtual void onUpstreamReady(ClientConnection& conn) = 0;
  // A response head (1xx heads are consumed by the connection). Return false to stop reading.
  virtual bool onUpstreamHead(ClientConnection& conn, MessageHead& head) = 0;
  virtual bool onUpstreamBody(ClientConnection& conn, const char* data, size_t len) = 0;
  // The response is complete; the user must release() the connection.
  virtual void onUpstreamComplete(ClientConnection& conn) = 0;
  // The exchange failed; the connection is already gone from the user's hands (do not release).
  // `conn` is null for pool timeouts.
  virtual void onUpstreamError(ClientConnection* conn, UpstreamError error) = 0;
  // The request bytes queued to the upstream were all written (backpressure released).
  virtual void onUpstreamDrained(ClientConnection& /*conn*/) {}

  // Intrusive wait-queue links (owned by ConnectionPool).
  ClientUser* waitNext_ = nullptr;
  ClientUser* waitPrev_ = nullptr;
  uint64_t waitDeadlineMs_ = 0;
  bool waiting_ = false;
  // A connection being opened for this user (owned by ConnectionPool).
  ClientConnection* connecting_ = nullptr;
};

struct PoolSettings {
  sockaddr_storage address{};
  std::string hostHeader;  // "host:port" for health probes and logs
  int maxConnections = 200;
  int maxIdleConnections = 50;
  uint64_t idleTimeoutMs = 60'000;
  uint64_t connectTimeoutMs = 2'000;
  uint64_t readTimeoutMs = 3'000;
  uint64_t writeTimeoutMs = 3'000;
  uint64_t poolTimeoutMs = 2'000;
  size_t maxResponseHeadBytes = 64 * 1024;
  std::atomic<int>* sharedOpenConnections = nullptr;  // across the pools of all loops
};

struct PoolStats {
  std::atomic<int64_t> active{0};
  std::atomic<int64_t> idle{0};
  std::atomic<int64_t> connecting{0};
  std::atomic<uint64_t> opened{0};
};

class ClientConnection : public uvx::TcpStream::Owner, public Parser::Sink {
 public:
  ClientConnection(ConnectionPool& pool, uv_loop_t* loop);

  // Queues request bytes (head or body). Bytes leave when the loop is about to poll.
  void send(std::string_view data);
  // The request is fully queued: from now on, silence longer than read_timeout is an error.
  void requestSent();
  size_t bufferedBytes() const { return stream_.bufferedBytes(); }
  void pauseReading();
  void resumeReading();
  // For a HEAD request the response has no body whatever its headers say.
  void expectNoBody() { parser_.setNextResponseHasNoBody(true); }

  // Gives the connection back after onUpstreamComplete. Reusable only if the response allowed
  // keep-alive and the request was completely sent.
  void release(bool reusable);
  // Drops the connection (the downstream went away mid-exchange).
  void abandon();

  bool reused() const { return uses_ > 1; }
  bool responseStarted() const { return responseBytes_ > 0; }
  bool keepAlive() const { return keepAlive_; }

  // Intrusive idle-list links (owned by ConnectionPool).
  ClientConnection* idleNext_ = nullptr;
  ClientConnection* idlePrev_ = nullptr;

 private:
  friend class ConnectionPool;
  enum class State { Connecting, Busy, Idle, Closing };

  void connect();
  void assign(ClientUser* user);
  void fail(UpstreamError error);
  void close();
  void armTimer();
  void onTimer();

  void onStreamData(const char* data, size_t len) override;
  void onStreamEnd(int status) override;
  void onStreamDrained() override;
  void onStreamConnected(int status) override;
  void onStreamClosed() override;
  bool onMessageHead(MessageHead& head) override;
  bool onMessageBody(const char* data, size_t len) override;
  void onMessageComplete() override;

  ConnectionPool& pool_;
  uvx::TcpStream stream_;
  Parser parser_;
  uvx::DeadlineTimer timer_;
  ClientUser* user_ = nullptr;
  State state_ = State::Connecting;
  uint64_t uses_ = 0;
  uint64_t responseBytes_ = 0;
  int lastStatus_ = 0;
  bool requestSent_ = false;
  bool responseDone_ = false;
  bool keepAlive_ = true;
  bool readingPaused_ = false;
};

// Per-loop pool for one upstream. Not thread-safe: used only on its loop.
class ConnectionPool {
 public:
  ConnectionPool(uv_loop_t* loop, PoolSettings settings, PoolStats* stats);
  ~ConnectionPool();

  // Gets `user` a connection: an idle one at once (onUpstreamReady runs before this returns), a
  // new one when under the limit (onUpstreamReady after connect), or a place in the wait queue
  // (onUpstreamError(nullptr, PoolTimeout) after pool_timeout).
  void acquire(ClientUser* user);
  // Withdraws a user from the wait queue or from a connection being opened for it (the downstream
  // went away). No callback reaches the user afterwards.
  void cancel(ClientUser* user);
  // Closes idle connections and refuses new work (shutdown).
  void closeIdle();
  const PoolSettings& settings() const { return settings_; }
  // New limits and timeouts (a config reload); the address and shared counter stay.
  void updateSettings(const PoolSettings& s) {
    PoolSettings next = s;
    next.address = settings_.address;
    next.hostHeader = settings_.hostHeader;
    next.sharedOpenConnections = settings_.sharedOpenConnections;
    settings_ = std::move(next);
  }
  uv_loop_t* loop() const { return loop_; }
  size_t openConnections() const { return open_; }

 private:
  friend class ClientConnection;
  void pushIdle(ClientConnection* c);
  void removeIdle(ClientConnection* c);
  void onConnectionClosed();
  bool reserveSlot();
  void releaseSlot();
  void serveWaiters();
  void onWaitTimer();
  void unlinkWaiter(ClientUser* user);
  void openFor(ClientUser* user);

  uv_loop_t* loop_;
  PoolSettings settings_;
  PoolStats* stats_;
  uvx::Timer waitTimer_;
  ClientConnection* idleHead_ = nullptr;
  size_t idleCount_ = 0;
  size_t open_ = 0;
  ClientUser* waitHead_ = nullptr;
  ClientUser* waitTail_ = nullptr;
  bool closing_ = false;
};

// Resolves "host:port" once (getaddrinfo; call before loops start, never on a loop).
bool resolveAddress(const std::string& host, uint16_t port, sockaddr_storage& out, std::string& error);

}  // namespace http
