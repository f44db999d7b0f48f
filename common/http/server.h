#pragma once
// HTTP/1.1 server side: a listener per event loop and one ServerConnection per client.
// A connection handles one exchange at a time; pipelined requests wait (bounded) until the
// response before them is complete, so responses leave in request order.
#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/http/headers.h"
#include "common/http/parser.h"
#include "common/uv/handle.h"
#include "common/uv/deadline_timer.h"
#include "common/uv/tcp_stream.h"
#include "common/uv/timer.h"
#include "common/uv/tls.h"

namespace http {

class ServerConnection;
class Server;

struct ServerSettings {
  size_t maxHeaderBytes = 16 * 1024;
  uint64_t maxBodyBytes = 5 * 1024 * 1024;
  uint64_t headerTimeoutMs = 10'000;
  uint64_t keepAliveTimeoutMs = 5'000;
  uint64_t maxRequestsPerConnection = 0;  // 0 = unlimited
  uint64_t lingerTimeoutMs = 2'000;       // how long unread input is drained after a close decision
  std::string requestIdHeader = "X-Request-ID";
  // Open client connections allowed across every Server sharing `connectionCount` (0 = no limit).
  int64_t maxConnections = 0;
  std::atomic<int64_t>* connectionCount = nullptr;
  // Set: every accepted connection terminates TLS with the context it returns (read per
  // connection, so a reloaded certificate applies to new connections).
  std::function<std::shared_ptr<uvx::TlsContext>()> tlsContext;
};

// The application side of a connection; one instance per connection, created on the first request.
// Hooks run on the loop thread. Every exchange started by onRequestHead must end with the handler
// finishing a response (ServerConnection::endResponse or sendLocalReply), unless onExchangeAborted
// is called first, after which the handler must not touch the exchange.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // The request head is parsed and validated; c.request() and c.requestId() are set.
  virtual void onRequestHead(ServerConnection& c) = 0;
  // A piece of the (de-chunked) request body.
  virtual void onRequestBody(ServerConnection& /*c*/, const char* /*data*/, size_t /*len*/) {}
  // The whole request body has arrived.
  virtual void onRequestEnd(ServerConnection& /*c*/) {}
  // The client's output buffer emptied after the handler saw downstreamBuffered() grow.
  virtual void onDownstreamDrained(ServerConnection& /*c*/) {}
  // The exchange ended before the handler finished it: client closed or reset, body too large.
  virtual void onExchangeAborted(ServerConnection& /*c*/) {}
  // The response was fully written to the socket buffer and the request fully read: log/metrics.
  virtual void onExchangeComplete(ServerConnection& /*c*/) {}
  // True if, between exchanges, the handler keeps nothing of its connection and may serve another
  // one: an idle keep-alive connection then hands it back to its server, which keeps the memory
  // of idle connections to the connection itself (handlers exist only for busy ones).
  virtual bool reusable() const { return false; }
};

using HandlerFactory = std::function<std::unique_ptr<RequestHandler>()>;

class ServerConnection : public uvx::TcpStream::Owner, public Parser::Sink {
 public:
  ServerConnection(Server& server, uv_loop_t* loop);
  ~ServerConnection() override;

  // Valid when hasRequest(): false for a request refused before its head was parsed.
  bool hasRequest() const { return head_ != nullptr; }
  const MessageHead& request() const { return *head_; }
  const std::string& requestId() const { return requestId_; }
  const std::string& clientIp() const { return clientIp_; }
  std::chrono::steady_clock::time_point requestStart() const { return requestStart_; }
  uint64_t requestBodyBytes() const { return requestBodyBytes_; }
  bool requestComplete() const { return requestDone_; }

  // Response API (one response per exchange).
  // `headers` is a serialized block ("Name: value\r\n"...) without framing or Connection headers.
  void sendResponseHead(int status, std::string_view reason, std::string_view headers, BodyKind body,
                        uint64_t contentLength);
  void sendResponseBody(const char* data, size_t len);
  void endResponse();
  // A complete small response in one call.
  void sendResponse(int status, std::string_view contentType, std::string_view body, std::string_view extraHeaders = {});
  // The JSON error reply of CONTRACT §4; `close` forces Connection: close.
  void sendLocalError(int status, std::string_view message, std::string_view extraHeaders = {}, bool close = false);
  // The response cannot be completed (upstream died mid-body): close without ending it cleanly.
  void abortResponse();
  bool responseStarted() const { return responseStarted_; }
  int responseStatus() const { return responseStatus_; }
  uint64_t responseBodyBytes() const { return responseBodyBytes_; }

  // Backpressure in both directions.
  size_t downstreamBuffered() const { return stream_.bufferedBytes(); }
  void pauseRequestBody();
  void resumeRequestBody();

  uvx::TcpStream& stream() { return stream_; }
  Server& server() { return server_; }

  // Drain support: close now if no exchange is active and no request bytes are pending.
  void closeIfIdle();

  // Intrusive list links (owned by Server).
  ServerConnection* prev_ = nullptr;
  ServerConnection* next_ = nullptr;

  void start();

 private:
  friend class Server;
  enum class State { Idle, ReadingHead, InExchange, Closing };

  // TcpStream::Owner
  void onStreamData(const char* data, size_t len) override;
  void onStreamEnd(int status) override;
  void onStreamDrained() override;
  void onStreamClosed() override;
  // Parser::Sink
  bool onMessageHead(MessageHead& head) override;
  bool onMessageBody(const char* data, size_t len) override;
  void onMessageComplete() override;

  void feed(const char* data, size_t len);
  void drive();
  void finishExchange();
  void failRequest(int status, std::string_view message);
  void abortExchange();
  void startClose(bool graceful);
  void onTimer();
  void armIdleTimer();
  bool shouldKeepAlive() const;

  Server& server_;
  uvx::TcpStream stream_;
  // Only while a request is being read or served: an idle keep-alive connection hands it back to
  // the server (Server::spareParsers_), so idle connections cost little memory.
  std::unique_ptr<Parser> parser_;
  uvx::DeadlineTimer timer_;
  std::unique_ptr<RequestHandler> handler_;
  const MessageHead* head_ = nullptr;  // owned by parser_, valid until the next request starts
  std::string requestId_;
  std::string clientIp_;
  std::string pipelined_;  // bytes after a complete request, parsed once its response is done
  std::chrono::steady_clock::time_point requestStart_{};
  State state_ = State::Idle;
  uint64_t requestsServed_ = 0;
  uint64_t requestBodyBytes_ = 0;
  uint64_t responseBodyBytes_ = 0;
  uint64_t responseContentLength_ = 0;
  int responseStatus_ = 0;
  BodyKind responseBody_ = BodyKind::None;
  bool exchangeActive_ = false;
  bool parserPaused_ = false;
  bool requestDone_ = false;
  bool responseStarted_ = false;
  bool responseDone_ = false;
  bool closeAfterResponse_ = false;
  // Set when request bytes may still be unread when we close (an early or error reply).
  bool mayHaveUnreadInput_ = false;
  bool peerClosed_ = false;
  bool bodyPaused_ = false;
  bool driving_ = false;
  bool counted_ = false;
};

// A listening socket on one loop with its connections. Several Servers on different loops may
// bind the same address with SO_REUSEPORT; the kernel spreads connections among them.
class Server {
 public:
  Server(uv_loop_t* loop, ServerSettings settings, HandlerFactory factory);
  ~Server();

  // Binds and listens; returns 0 or a negative uv/errno code (message in `error`).
  int listen(const std::string& host, uint16_t port, int backlog, std::string& error);
  void stopListening();
  // Drain: from now on every response carries Connection: close; idle connections close now.
  void beginDrain();
  // Closes every connection at once (the drain deadline passed).
  void closeAll();
  bool draining() const { return draining_; }
  size_t connectionCount() const { return connections_; }
  uint16_t boundPort() const { return boundPort_; }
  const ServerSettings& settings() const { return settings_; }
  // New limits and timeouts (a config reload), used from the next request or connection on.
  void updateSettings(ServerSettings settings) {
    settings.connectionCount = settings_.connectionCount;
    settings_ = std::move(settings);
  }
  // Called whenever the last connection is gone while draining.
  void setOnEmpty(std::function<void()> cb) { onEmpty_ = std::move(cb); }

  std::unique_ptr<RequestHandler> makeHandler();
  // A reusable handler between exchanges: kept for the next connection that needs one.
  void recycleHandler(std::unique_ptr<RequestHandler> handler);
  // A request parser for `sink` (a spare one when there is one), and its return between requests.
  std::unique_ptr<Parser> takeParser(Parser::Sink* sink);
  void recycleParser(std::unique_ptr<Parser> parser);
  void link(ServerConnection* c);
  void unlink(ServerConnection* c);

 private:
  static void onConnection(uv_stream_t* listener, int status);

  uv_loop_t* loop_;
  ServerSettings settings_;
  HandlerFactory factory_;
  uvx::OwnedHandle<uv_tcp_t> listener_;
  bool listening_ = false;
  bool draining_ = false;
  uint16_t boundPort_ = 0;
  ServerConnection* head_ = nullptr;
  size_t connections_ = 0;
  std::function<void()> onEmpty_;
  // Spare handlers: as many as connections were busy at once, up to a cap.
  std::vector<std::unique_ptr<RequestHandler>> spareHandlers_;
  std::vector<std::unique_ptr<Parser>> spareParsers_;
};

// Creates a non-blocking listening socket with SO_REUSEADDR and SO_REUSEPORT (libuv 1.44 cannot
// set SO_REUSEPORT itself). Returns the fd or a negative errno.
int openReusePortSocket(const std::string& host, uint16_t port, std::string& error);

}  // namespace http
