#include "common/http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/http/request_id.h"
#include "common/http/status.h"

namespace http {
namespace {

// Pipelined bytes buffered while a response is in progress before reading stops.
constexpr size_t kMaxPipelinedBytes = 64 * 1024;
// How long an idle keep-alive connection stays open once draining starts.
constexpr uint64_t kDrainIdleGraceMs = 1000;

std::string peerAddress(uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return {};
  }
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), buf, sizeof buf);
  }
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ServerConnection

ServerConnection::ServerConnection(Server& server, uv_loop_t* loop)
    : server_(server),
      stream_(loop, this),
      timer_(loop, [this] { onTimer(); }) {}

ServerConnection::~ServerConnection() {
  server_.unlink(this);
  if (counted_ && server_.settings().connectionCount != nullptr) {
    server_.settings().connectionCount->fetch_sub(1, std::memory_order_relaxed);
  }
}

void ServerConnection::start() {
  clientIp_ = peerAddress(stream_.handle());
  stream_.setNoDelay();
  stream_.readStart();
  armIdleTimer();
}

void ServerConnection::armIdleTimer() {
  // Before the first request the client gets header_timeout to send it; between requests, the
  // keep-alive timeout. Either way, expiry with no byte received closes silently.
  const auto& s = server_.settings();
  timer_.start(requestsServed_ == 0 ? s.headerTimeoutMs : s.keepAliveTimeoutMs);
}

void ServerConnection::onStreamData(const char* data, size_t len) {
  if (state_ == State::Closing) {
    return;  // lingering close: discard
  }
  if (parserPaused_ || (exchangeActive_ && requestDone_)) {
    pipelined_.append(data, len);
    if (pipelined_.size() > kMaxPipelinedBytes) {
      stream_.readStop();
    }
    return;
  }
  if (state_ == State::Idle) {
    state_ = State::ReadingHead;
    timer_.start(server_.settings().headerTimeoutMs);
  }
  feed(data, len);
  drive();
}

void ServerConnection::feed(const char* data, size_t len) {
  size_t consumed = 0;
  driving_ = true;  // hooks called from inside the parser must not re-enter it
  if (!parser_) {
    parser_ = server_.takeParser(this);
  }
  const Parser::Status st = parser_->feed(data, len, consumed);
  driving_ = false;
  switch (st) {
    case Parser::Status::Ok:
    case Parser::Status::Stopped:
      break;
    case Parser::Status::Paused:
      parserPaused_ = true;
      if (consumed < len) {
        pipelined_.append(data + consumed, len - consumed);
      }
      break;
    case Parser::Status::Error:
      failRequest(parser_->errorStatus(), parser_->errorReason());
      break;
  }
}

void ServerConnection::drive() {
  if (driving_) {
    return;
  }
  driving_ = true;
  while (state_ != State::Closing) {
    if (exchangeActive_ && responseDone_ && requestDone_) {
      finishExchange();
      continue;
    }
    if (!exchangeActive_ && parserPaused_) {
      parser_->resume();
      parserPaused_ = false;
      if (!pipelined_.empty()) {
        std::string buffered;
        buffered.swap(pipelined_);
        state_ = State::ReadingHead;
        timer_.start(server_.settings().headerTimeoutMs);
        driving_ = false;
        feed(buffered.data(), buffered.size());
        driving_ = true;
        if (pipelined_.empty() && !peerClosed_ && state_ != State::Closing) {
          stream_.readStart();
        }
        continue;
      }
      state_ = State::Idle;
      if (peerClosed_) {
        startClose(false);
        break;
      }
      if (handler_ && handler_->reusable()) {
        server_.recycleHandler(std::move(handler_));
      }
      head_ = nullptr;  // it lived in the parser
      server_.recycleParser(std::move(parser_));
      armIdleTimer();
      stream_.readStart();
      continue;
    }
    break;
  }
  driving_ = false;
}

bool ServerConnection::onMessageHead(MessageHead& head) {
  const ServerSettings& s = server_.settings();
  head_ = &head;
  exchangeActive_ = true;
  state_ = State::InExchange;
  timer_.stop();
  requestStart_ = std::chrono::steady_clock::now();
  ++requestsServed_;
  requestBodyBytes_ = 0;
  responseBodyBytes_ = 0;
  responseStatus_ = 0;
  responseStarted_ = false;
  responseDone_ = false;
  requestDone_ = false;
  closeAfterResponse_ = false;

  const std::string* incomingId = head.headers.find(s.requestIdHeader);
  if (incomingId != nullptr && isValidRequestId(*incomingId)) {
    requestId_ = *incomingId;
  } else {
    generateRequestId(requestId_);
  }
  if (!handler_) {
    handler_ = server_.makeHandler();
  }
  // A bodiless request is complete now, so a reply made from onRequestHead keeps the connection.
  requestDone_ = head.body == BodyKind::None;
  if (head.body == BodyKind::Length && head.contentLength > s.maxBodyBytes) {
    mayHaveUnreadInput_ = true;
    sendLocalError(413, "request body too large", {}, true);
    return false;
  }
  handler_->onRequestHead(*this);
  if (state_ == State::Closing) {
    return false;
  }
  if (head.expectContinue && head.body != BodyKind::None && !responseStarted_) {
    stream_.write("HTTP/1.1 100 Continue\r\n\r\n");
  }
  return true;
}

bool ServerConnection::onMessageBody(const char* data, size_t len) {
  if (state_ == State::Closing || !exchangeActive_) {
    return false;
  }
  requestBodyBytes_ += len;
  if (requestBodyBytes_ > server_.settings().maxBodyBytes) {
    failRequest(413, "request body too large");
    return false;
  }
  handler_->onRequestBody(*this, data, len);
  return state_ != State::Closing;
}

void ServerConnection::onMessageComplete() {
  requestDone_ = true;
  if (exchangeActive_ && state_ != State::Closing) {
    handler_->onRequestEnd(*this);
  }
}

void ServerConnection::failRequest(int status, std::string_view message) {
  if (state_ == State::Closing) {
    return;
  }
  if (exchangeActive_ && responseStarted_) {
    // Part of a response already went out; the only honest signal left is closing.
    abortResponse();
    return;
  }
  if (exchangeActive_) {
    abortExchange();
    exchangeActive_ = true;  // the local error below completes this exchange
  } else {
    head_ = nullptr;
    generateRequestId(requestId_);
    requestStart_ = std::chrono::steady_clock::now();
    exchangeActive_ = true;
    if (!handler_) {
      handler_ = server_.makeHandler();
    }
  }
  timer_.stop();
  mayHaveUnreadInput_ = true;
  sendLocalError(status, message, {}, true);
}

void ServerConnection::abortExchange() {
  if (!exchangeActive_) {
    return;
  }
  exchangeActive_ = false;
  if (handler_) {
    handler_->onExchangeAborted(*this);
  }
}

bool ServerConnection::shouldKeepAlive() const {
  const ServerSettings& s = server_.settings();
  if (head_ == nullptr || !head_->keepAlive || !requestDone_ || peerClosed_ || server_.draining()) {
    return false;
  }
  return s.maxRequestsPerConnection == 0 || requestsServed_ < s.maxRequestsPerConnection;
}

void ServerConnection::sendResponseHead(int status, std::string_view reason, std::string_view headers,
                                        BodyKind body, uint64_t contentLength) {
  if (responseStarted_ || state_ == State::Closing) {
    return;
  }
  responseStarted_ = true;
  responseStatus_ = status;
  const bool http10 = head_ != nullptr && head_->versionMinor == 0;
  if (body == BodyKind::Chunked && http10) {
    body = BodyKind::UntilClose;  // HTTP/1.0 clients cannot read chunked framing
  }
  responseBody_ = body;
  responseContentLength_ = contentLength;
  if (!closeAfterResponse_) {
    closeAfterResponse_ = !shouldKeepAlive() || body == BodyKind::UntilClose;
  }

  // Appended piecewise to the stream's corked buffer: no allocation once the buffer is warm.
  char number[24];
  stream_.write("HTTP/1.1 ");
  stream_.write({number, static_cast<size_t>(std::to_chars(number, number + sizeof number, status).ptr - number)});
  stream_.write(" ");
  stream_.write(reason.empty() ? reasonPhrase(status) : reason);
  stream_.write("\r\n");
  stream_.write(headers);
  stream_.write(server_.settings().requestIdHeader);
  stream_.write(": ");
  stream_.write(requestId_);
  stream_.write("\r\n");
  if (body == BodyKind::Length || (body == BodyKind::None && status != 204 && status != 304 && status >= 200)) {
    stream_.write("Content-Length: ");
    stream_.write(
        {number, static_cast<size_t>(std::to_chars(number, number + sizeof number, contentLength).ptr - number)});
    stream_.write("\r\n");
  } else if (body == BodyKind::Chunked) {
    stream_.write("Transfer-Encoding: chunked\r\n");
  }
  if (closeAfterResponse_) {
    stream_.write("Connection: close\r\n");
  } else if (http10) {
    stream_.write("Connection: keep-alive\r\n");
  }
  stream_.write("\r\n");
}

void ServerConnection::sendResponseBody(const char* data, size_t len) {
  if (!responseStarted_ || responseDone_ || state_ == State::Closing || len == 0) {
    return;
  }
  if ((head_ != nullptr && head_->method == HTTP_HEAD) || responseBody_ == BodyKind::None) {
    return;
  }
  responseBodyBytes_ += len;
  if (responseBody_ == BodyKind::Chunked) {
    char size[24];
    char* end = std::to_chars(size, size + sizeof size - 2, len, 16).ptr;
    *end++ = '\r';
    *end++ = '\n';
    stream_.write({size, static_cast<size_t>(end - size)});
    stream_.write({data, len});
    stream_.write("\r\n");
  } else {
    stream_.write({data, len});
  }
}

void ServerConnection::endResponse() {
  if (!responseStarted_ || responseDone_ || state_ == State::Closing) {
    return;
  }
  if (responseBody_ == BodyKind::Chunked && !(head_ != nullptr && head_->method == HTTP_HEAD)) {
    stream_.write("0\r\n\r\n");
  }
  responseDone_ = true;
  if (!requestDone_) {
    // Answered before the request body was read (an early error): the rest of the body would be
    // read as the next request, so this connection ends here.
    closeAfterResponse_ = true;
    mayHaveUnreadInput_ = true;
    if (handler_) {
      handler_->onExchangeComplete(*this);
    }
    exchangeActive_ = false;
    startClose(true);
    return;
  }
  drive();
}

void ServerConnection::sendResponse(int status, std::string_view contentType, std::string_view body,
                                    std::string_view extraHeaders) {
  std::string headers;
  headers.reserve(32 + contentType.size() + extraHeaders.size());
  if (!contentType.empty()) {
    headers.append("Content-Type: ");
    headers.append(contentType);
    headers.append("\r\n");
  }
  headers.append(extraHeaders);
  sendResponseHead(status, {}, headers, body.empty() ? BodyKind::None : BodyKind::Length, body.size());
  sendResponseBody(body.data(), body.size());
  endResponse();
}

void ServerConnection::sendLocalError(int status, std::string_view message, std::string_view extraHeaders, bool close) {
  if (close) {
    closeAfterResponse_ = true;
  }
  const std::string body = jsonErrorBody(message, requestId_);
  if (close) {
    // Framing of what follows is unknown or untrusted: finish this exchange and close.
    requestDone_ = true;
  }
  sendResponse(status, "application/json", body, extraHeaders);
}

void ServerConnection::abortResponse() {
  if (state_ == State::Closing) {
    return;
  }
  closeAfterResponse_ = true;
  abortExchange();
  startClose(false);
}

void ServerConnection::finishExchange() {
  exchangeActive_ = false;
  if (handler_) {
    handler_->onExchangeComplete(*this);
  }
  if (closeAfterResponse_) {
    startClose(true);
    return;
  }
  state_ = State::Idle;
}

void ServerConnection::pauseRequestBody() {
  bodyPaused_ = true;
  stream_.readStop();
}

void ServerConnection::resumeRequestBody() {
  bodyPaused_ = false;
  if (state_ != State::Closing && pipelined_.size() <= kMaxPipelinedBytes) {
    stream_.readStart();
  }
}

void ServerConnection::startClose(bool graceful) {
  if (state_ == State::Closing) {
    return;
  }
  if (exchangeActive_ && !responseDone_) {
    abortExchange();
  }
  state_ = State::Closing;
  timer_.stop();
  if (!graceful) {
    stream_.close();
    return;
  }
  if (!mayHaveUnreadInput_ || peerClosed_) {
    stream_.closeAfterFlush();
    timer_.start(server_.settings().lingerTimeoutMs);  // bounds a peer that stops reading
    return;
  }
  // Lingering close: send what is queued, then FIN, and keep reading (discarding) so that unread
  // request bytes do not turn our close into a RST that destroys the response in flight.
  stream_.shutdownWrite();
  stream_.readStart();
  timer_.start(server_.settings().lingerTimeoutMs);
}

void ServerConnection::closeIfIdle() {
  if (state_ != State::Idle || exchangeActive_ || !pipelined_.empty()) {
    return;
  }
  // A request may be in the socket buffer already; it is served (with Connection: close) rather
  // than lost to a close racing its arrival.
  char probe;
  const int fd = stream_.fd();
  if (fd >= 0 && ::recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
    return;
  }
  // A client that just got a response may be sending its next request right now; closing
  // under it would lose that request. Give busy clients a moment, then close.
  timer_.start(std::min<uint64_t>(kDrainIdleGraceMs, server_.settings().keepAliveTimeoutMs));
}

void ServerConnection::onStreamEnd(int status) {
  if (state_ == State::Closing) {
    stream_.close();
    return;
  }
  if (status == uvx::kStreamNotTls) {
    // Plain HTTP on the TLS port: say so in plaintext (the client cannot read TLS), then close.
    generateRequestId(requestId_);
    const std::string body = jsonErrorBody("plain HTTP request sent to the TLS port", requestId_);
    stream_.writeRaw("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    state_ = State::Closing;
    timer_.stop();
    stream_.closeAfterFlush();
    timer_.start(server_.settings().lingerTimeoutMs);
    return;
  }
  if (status < 0) {
    abortExchange();
    state_ = State::Closing;
    timer_.stop();
    if (status == UV_EPROTO) {
      stream_.closeAfterFlush();  // a TLS failure: let the alert reach the peer
      timer_.start(server_.settings().lingerTimeoutMs);
    } else {
      stream_.close();
    }
    return;
  }
  peerClosed_ = true;
  const bool waitingForResponse = exchangeActive_ && requestDone_ && !responseDone_;
  const bool responsePending = parserPaused_ && !pipelined_.empty();
  if (waitingForResponse || responsePending || (exchangeActive_ && responseDone_ && requestDone_)) {
    return;  // half-close: answer what was asked, then close
  }
  if (exchangeActive_ && !requestDone_ && !responseStarted_ && head_ != nullptr) {
    // The body was cut short; nothing sensible can be answered.
    abortExchange();
  }
  startClose(false);
}

void ServerConnection::onStreamDrained() {
  if (exchangeActive_ && handler_) {
    handler_->onDownstreamDrained(*this);
  }
}

void ServerConnection::onStreamClosed() { delete this; }

void ServerConnection::onTimer() {
  switch (state_) {
    case State::Idle:
      startClose(false);
      break;
    case State::ReadingHead:
      failRequest(408, "request header timeout");
      break;
    case State::Closing:
      stream_.close();
      break;
    case State::InExchange:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Server

Server::Server(uv_loop_t* loop, ServerSettings settings, HandlerFactory factory)
    : loop_(loop), settings_(std::move(settings)), factory_(std::move(factory)) {}

Server::~Server() { listener_.close(); }

std::unique_ptr<RequestHandler> Server::makeHandler() {
  if (spareHandlers_.empty()) {
    return factory_();
  }
  std::unique_ptr<RequestHandler> h = std::move(spareHandlers_.back());
  spareHandlers_.pop_back();
  return h;
}

std::unique_ptr<Parser> Server::takeParser(Parser::Sink* sink) {
  if (spareParsers_.empty()) {
    return std::make_unique<Parser>(HTTP_REQUEST, sink, settings_.maxHeaderBytes);
  }
  std::unique_ptr<Parser> p = std::move(spareParsers_.back());
  spareParsers_.pop_back();
  p->rebind(sink, settings_.maxHeaderBytes);
  return p;
}

void Server::recycleParser(std::unique_ptr<Parser> parser) {
  constexpr size_t kMaxSpareParsers = 1024;
  if (parser && spareParsers_.size() < kMaxSpareParsers) {
    spareParsers_.push_back(std::move(parser));
  }
}

void Server::recycleHandler(std::unique_ptr<RequestHandler> handler) {
  // Bounds what a past burst keeps allocated; more busy connections than this make new ones.
  constexpr size_t kMaxSpareHandlers = 1024;
  if (spareHandlers_.size() < kMaxSpareHandlers) {
    spareHandlers_.push_back(std::move(handler));
  }
}

int openReusePortSocket(const std::string& host, uint16_t port, std::string& error) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (host.find(':') != std::string::npos) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (uv_ip6_addr(host.c_str(), port, a6) != 0) {
      error = "invalid IPv6 address " + host;
      return -EINVAL;
    }
    len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    if (uv_ip4_addr(host.c_str(), port, a4) != 0) {
      error = "invalid IPv4 address " + host;
      return -EINVAL;
    }
    len = sizeof(sockaddr_in);
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -errno;
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const int err = errno;
    error = "bind " + host + ":" + std::to_string(port) + ": " + std::strerror(err);
    ::close(fd);
    return -err;
  }
  return fd;
}

int Server::listen(const std::string& host, uint16_t port, int backlog, std::string& error) {
  const int fd = openReusePortSocket(host, port, error);
  if (fd < 0) {
    return fd;
  }
  uv_tcp_init(loop_, listener_.get());
  listener_.markInitialized();
  listener_.get()->data = this;
  int rc = uv_tcp_open(listener_.get(), fd);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_.get()), backlog, &Server::onConnection);
  }
  if (rc != 0) {
    error = std::string("listen: ") + uv_strerror(rc);
    return rc;
  }
  sockaddr_storage ss{};
  int nameLen = sizeof ss;
  uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &nameLen);
  boundPort_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  listening_ = true;
  return 0;
}

void Server::stopListening() {
  listening_ = false;
  listener_.close();
  if (connections_ == 0 && onEmpty_) {
    onEmpty_();
  }
}

void Server::onConnection(uv_stream_t* listener, int status) {
  auto* self = static_cast<Server*>(listener->data);
  if (self == nullptr || status < 0) {
    return;
  }
  auto* conn = new ServerConnection(*self, self->loop_);
  if (conn->stream().accept(listener) != 0) {
    conn->stream().close();  // deletes conn from the close callback
    return;
  }
  self->link(conn);
  const ServerSettings& s = self->settings_;
  if (s.connectionCount != nullptr) {
    const int64_t open = s.connectionCount->fetch_add(1, std::memory_order_relaxed) + 1;
    // The counter is decremented when the connection object goes away.
    conn->counted_ = true;
    if (s.maxConnections > 0 && open > s.maxConnections) {
      conn->stream().close();
      return;
    }
  }
  if (s.tlsContext) {
    if (auto ctx = s.tlsContext()) {
      conn->stream().enableTls(std::move(ctx));
    }
  }
  conn->start();
}

void Server::link(ServerConnection* c) {
  c->next_ = head_;
  c->prev_ = nullptr;
  if (head_ != nullptr) {
    head_->prev_ = c;
  }
  head_ = c;
  ++connections_;
}

void Server::unlink(ServerConnection* c) {
  if (c->prev_ == nullptr && c->next_ == nullptr && head_ != c) {
    return;  // never linked
  }
  if (c->prev_ != nullptr) {
    c->prev_->next_ = c->next_;
  } else {
    head_ = c->next_;
  }
  if (c->next_ != nullptr) {
    c->next_->prev_ = c->prev_;
  }
  c->prev_ = c->next_ = nullptr;
  --connections_;
  if (connections_ == 0 && (draining_ || !listening_) && onEmpty_) {
    onEmpty_();
  }
}

void Server::beginDrain() {
  draining_ = true;
  for (ServerConnection* c = head_; c != nullptr;) {
    ServerConnection* next = c->next_;
    c->closeIfIdle();
    c = next;
  }
}

void Server::closeAll() {
  for (ServerConnection* c = head_; c != nullptr;) {
    ServerConnection* next = c->next_;
    c->abortResponse();
    c = next;
  }
}

}  // namespace http
