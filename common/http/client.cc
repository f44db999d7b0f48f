#include "common/http/client.h"

#include <netdb.h>

#include <cstring>

namespace http {

const char* upstreamErrorName(UpstreamError e) {
  switch (e) {
    case UpstreamError::ConnectFailed: return "connect_failure";
    case UpstreamError::ConnectTimeout: return "connect_timeout";
    case UpstreamError::PoolTimeout: return "pool_timeout";
    case UpstreamError::ReadTimeout: return "read_timeout";
    case UpstreamError::WriteTimeout: return "write_timeout";
    case UpstreamError::Reset: return "reset";
    case UpstreamError::Protocol: return "protocol_error";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// ClientConnection

ClientConnection::ClientConnection(ConnectionPool& pool, uv_loop_t* loop)
    : pool_(pool),
      stream_(loop, this),
      parser_(HTTP_RESPONSE, this, pool.settings().maxResponseHeadBytes),
      timer_(loop, [this] { onTimer(); }) {}

void ClientConnection::connect() {
  state_ = State::Connecting;
  pool_.stats_->connecting.fetch_add(1, std::memory_order_relaxed);
  const int rc = stream_.connect(reinterpret_cast<const sockaddr*>(&pool_.settings().address));
  if (rc != 0) {
    // Report asynchronously-equivalent: fail now; the user expects a callback, not a return code.
    fail(UpstreamError::ConnectFailed);
    return;
  }
  timer_.start(pool_.settings().connectTimeoutMs);
}

void ClientConnection::onStreamConnected(int status) {
  if (state_ != State::Connecting) {
    return;
  }
  timer_.stop();
  if (status < 0) {
    fail(UpstreamError::ConnectFailed);
    return;
  }
  pool_.stats_->connecting.fetch_sub(1, std::memory_order_relaxed);
  pool_.stats_->opened.fetch_add(1, std::memory_order_relaxed);
  stream_.setNoDelay();
  stream_.readStart();
  if (user_ == nullptr) {
    // The exchange that asked for it went away while connecting: keep the warm connection.
    pool_.stats_->active.fetch_add(1, std::memory_order_relaxed);
    state_ = State::Busy;
    responseDone_ = true;
    release(true);
    return;
  }
  ClientUser* user = user_;
  user_ = nullptr;
  user->connecting_ = nullptr;
  pool_.stats_->active.fetch_add(1, std::memory_order_relaxed);
  assign(user);
  user->onUpstreamReady(*this);
}

void ClientConnection::assign(ClientUser* user) {
  user_ = user;
  state_ = State::Busy;
  ++uses_;
  responseBytes_ = 0;
  requestSent_ = false;
  responseDone_ = false;
  keepAlive_ = true;
  timer_.stop();
  if (readingPaused_) {
    readingPaused_ = false;
    stream_.readStart();
  }
}

void ClientConnection::send(std::string_view data) {
  stream_.write(data);
  armTimer();
}

void ClientConnection::requestSent() {
  requestSent_ = true;
  armTimer();
}

void ClientConnection::pauseReading() {
  readingPaused_ = true;
  stream_.readStop();
  timer_.stop();  // the client is slow, not the upstream
}

void ClientConnection::resumeReading() {
  if (!readingPaused_ || state_ != State::Busy) {
    return;
  }
  readingPaused_ = false;
  stream_.readStart();
  armTimer();
}

void ClientConnection::armTimer() {
  if (state_ != State::Busy || readingPaused_) {
    return;
  }
  if (stream_.bufferedBytes() > 0) {
    timer_.start(pool_.settings().writeTimeoutMs);
  } else if (requestSent_) {
    timer_.start(pool_.settings().readTimeoutMs);
  } else {
    timer_.stop();  // waiting for the downstream to send more of the request body
  }
}

void ClientConnection::onTimer() {
  switch (state_) {
    case State::Connecting:
      fail(UpstreamError::ConnectTimeout);
      break;
    case State::Busy:
      fail(stream_.bufferedBytes() > 0 ? UpstreamError::WriteTimeout : UpstreamError::ReadTimeout);
      break;
    case State::Idle:
      close();  // idle_timeout
      break;
    case State::Closing:
      break;
  }
}

void ClientConnection::onStreamData(const char* data, size_t len) {
  if (state_ != State::Busy || user_ == nullptr) {
    close();  // bytes on an idle connection: the upstream is confused; never reuse it
    return;
  }
  responseBytes_ += len;
  armTimer();
  while (len > 0) {
    size_t consumed = 0;
    const Parser::Status st = parser_.feed(data, len, consumed);
    if (st == Parser::Status::Error) {
      fail(UpstreamError::Protocol);
      return;
    }
    if (st == Parser::Status::Stopped || user_ == nullptr) {
      return;
    }
    if (st == Parser::Status::Ok) {
      return;
    }
    // Paused: a message ended. 1xx heads were skipped; continue with the final response.
    if (!responseDone_) {
      parser_.resume();
      data += consumed;
      len -= consumed;
      continue;
    }
    if (consumed < len) {
      keepAlive_ = false;  // bytes beyond the response: the stream is out of sync
    }
    break;
  }
  if (responseDone_) {
    timer_.stop();
    user_->onUpstreamComplete(*this);
  }
}

bool ClientConnection::onMessageHead(MessageHead& head) {
  lastStatus_ = head.status;
  if (head.status < 200) {
    return true;  // 100 Continue and friends are not forwarded
  }
  keepAlive_ = head.keepAlive;
  return user_->onUpstreamHead(*this, head);
}

bool ClientConnection::onMessageBody(const char* data, size_t len) { return user_->onUpstreamBody(*this, data, len); }

void ClientConnection::onMessageComplete() {
  // Called for every message, 1xx included: only a final status ends the exchange.
  if (lastStatus_ >= 200) {
    responseDone_ = true;
    if (parser_.sawTrailers()) {
      keepAlive_ = false;  // see Parser::onHeaderField: the connection's framing is suspect
    }
  }
}

void ClientConnection::onStreamEnd(int status) {
  if (state_ == State::Idle) {
    close();  // the upstream closed an idle keep-alive connection
    return;
  }
  if (state_ != State::Busy || user_ == nullptr) {
    close();
    return;
  }
  if (status == 0 && parser_.finish() == Parser::Status::Paused && responseDone_) {
    keepAlive_ = false;  // a read-until-close body just ended
    timer_.stop();
    user_->onUpstreamComplete(*this);
    return;
  }
  fail(UpstreamError::Reset);
}

void ClientConnection::onStreamDrained() {
  armTimer();
  if (state_ == State::Busy && user_ != nullptr) {
    user_->onUpstreamDrained(*this);
  }
}

void ClientConnection::fail(UpstreamError error) {
  ClientUser* user = user_;
  user_ = nullptr;
  if (user != nullptr && user->connecting_ == this) {
    user->connecting_ = nullptr;
  }
  close();
  if (user != nullptr) {
    user->onUpstreamError(this, error);
  }
}

void ClientConnection::release(bool reusable) {
  user_ = nullptr;
  if (state_ != State::Busy) {
    return;
  }
  if (!reusable || !keepAlive_ || !responseDone_ || pool_.closing_) {
    close();
    return;
  }
  pool_.stats_->active.fetch_sub(1, std::memory_order_relaxed);
  parser_.resume();
  state_ = State::Idle;
  pool_.pushIdle(this);
}

void ClientConnection::abandon() {
  user_ = nullptr;
  if (state_ == State::Connecting) {
    return;  // finishes connecting and joins the idle list
  }
  close();
}

void ClientConnection::close() {
  switch (state_) {
    case State::Closing:
      return;
    case State::Idle:
      pool_.removeIdle(this);
      break;
    case State::Connecting:
      pool_.stats_->connecting.fetch_sub(1, std::memory_order_relaxed);
      break;
    case State::Busy:
      pool_.stats_->active.fetch_sub(1, std::memory_order_relaxed);
      break;
  }
  state_ = State::Closing;
  timer_.stop();
  stream_.close();
}

void ClientConnection::onStreamClosed() {
  ConnectionPool& pool = pool_;
  delete this;
  pool.onConnectionClosed();
}

// ---------------------------------------------------------------------------------------------
// ConnectionPool

ConnectionPool::ConnectionPool(uv_loop_t* loop, PoolSettings settings, PoolStats* stats)
    : loop_(loop), settings_(std::move(settings)), stats_(stats), waitTimer_(loop, [this] { onWaitTimer(); }) {}

ConnectionPool::~ConnectionPool() = default;

bool ConnectionPool::reserveSlot() {
  if (settings_.sharedOpenConnections == nullptr) {
    return static_cast<int>(open_) < settings_.maxConnections;
  }
  const int now = settings_.sharedOpenConnections->fetch_add(1, std::memory_order_relaxed) + 1;
  if (now > settings_.maxConnections) {
    settings_.sharedOpenConnections->fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void ConnectionPool::releaseSlot() {
  if (settings_.sharedOpenConnections != nullptr) {
    settings_.sharedOpenConnections->fetch_sub(1, std::memory_order_relaxed);
  }
}

void ConnectionPool::acquire(ClientUser* user) {
  if (closing_) {
    user->onUpstreamError(nullptr, UpstreamError::ConnectFailed);
    return;
  }
  if (idleHead_ != nullptr) {
    ClientConnection* c = idleHead_;
    removeIdle(c);
    stats_->active.fetch_add(1, std::memory_order_relaxed);
    c->assign(user);
    user->onUpstreamReady(*c);
    return;
  }
  if (reserveSlot()) {
    openFor(user);
    return;
  }
  user->waiting_ = true;
  user->waitDeadlineMs_ = uv_now(loop_) + settings_.poolTimeoutMs;
  user->waitNext_ = nullptr;
  user->waitPrev_ = waitTail_;
  if (waitTail_ != nullptr) {
    waitTail_->waitNext_ = user;
  } else {
    waitHead_ = user;
  }
  waitTail_ = user;
  if (!waitTimer_.active()) {
    waitTimer_.start(settings_.poolTimeoutMs);
  }
}

void ConnectionPool::openFor(ClientUser* user) {
  ++open_;
  auto* c = new ClientConnection(*this, loop_);
  c->user_ = user;
  user->connecting_ = c;
  c->connect();  // may fail synchronously, which reports to the user and clears connecting_
}

void ConnectionPool::cancel(ClientUser* user) {
  if (user->connecting_ != nullptr) {
    user->connecting_->abandon();  // keeps connecting; joins the idle list when done
    user->connecting_ = nullptr;
  }
  unlinkWaiter(user);
}

void ConnectionPool::unlinkWaiter(ClientUser* user) {
  if (!user->waiting_) {
    return;
  }
  user->waiting_ = false;
  if (user->waitPrev_ != nullptr) {
    user->waitPrev_->waitNext_ = user->waitNext_;
  } else {
    waitHead_ = user->waitNext_;
  }
  if (user->waitNext_ != nullptr) {
    user->waitNext_->waitPrev_ = user->waitPrev_;
  } else {
    waitTail_ = user->waitPrev_;
  }
  user->waitNext_ = user->waitPrev_ = nullptr;
}

void ConnectionPool::onWaitTimer() {
  const uint64_t now = uv_now(loop_);
  while (waitHead_ != nullptr && waitHead_->waitDeadlineMs_ <= now) {
    ClientUser* u = waitHead_;
    unlinkWaiter(u);
    u->onUpstreamError(nullptr, UpstreamError::PoolTimeout);
  }
  if (waitHead_ != nullptr) {
    waitTimer_.start(waitHead_->waitDeadlineMs_ - now);
  }
}

void ConnectionPool::pushIdle(ClientConnection* c) {
  if (waitHead_ != nullptr) {
    ClientUser* u = waitHead_;
    unlinkWaiter(u);
    stats_->active.fetch_add(1, std::memory_order_relaxed);
    c->assign(u);
    u->onUpstreamReady(*c);
    return;
  }
  const int maxIdle = settings_.maxIdleConnections;
  if (closing_ || static_cast<int>(idleCount_) >= maxIdle) {
    c->close();
    return;
  }
  c->idlePrev_ = nullptr;
  c->idleNext_ = idleHead_;
  if (idleHead_ != nullptr) {
    idleHead_->idlePrev_ = c;
  }
  idleHead_ = c;
  ++idleCount_;
  stats_->idle.fetch_add(1, std::memory_order_relaxed);
  c->timer_.start(settings_.idleTimeoutMs);
}

void ConnectionPool::removeIdle(ClientConnection* c) {
  if (c->idlePrev_ != nullptr) {
    c->idlePrev_->idleNext_ = c->idleNext_;
  } else if (idleHead_ == c) {
    idleHead_ = c->idleNext_;
  } else {
    return;  // not linked
  }
  if (c->idleNext_ != nullptr) {
    c->idleNext_->idlePrev_ = c->idlePrev_;
  }
  c->idleNext_ = c->idlePrev_ = nullptr;
  --idleCount_;
  stats_->idle.fetch_sub(1, std::memory_order_relaxed);
}

void ConnectionPool::onConnectionClosed() {
  --open_;
  releaseSlot();
  serveWaiters();
}

void ConnectionPool::serveWaiters() {
  while (waitHead_ != nullptr && !closing_ && reserveSlot()) {
    ClientUser* u = waitHead_;
    unlinkWaiter(u);
    openFor(u);
  }
}

void ConnectionPool::closeIdle() {
  closing_ = true;
  while (idleHead_ != nullptr) {
    idleHead_->close();
  }
}

bool resolveAddress(const std::string& host, uint16_t port, sockaddr_storage& out, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string portStr = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), portStr.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    error = "cannot resolve " + host + ": " + gai_strerror(rc);
    return false;
  }
  std::memset(&out, 0, sizeof out);
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  return true;
}

}  // namespace http
