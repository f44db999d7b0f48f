#include "common/uv/tcp_stream.h"

#include "common/uv/loop_state.h"
#include "common/uv/tls.h"

#include <algorithm>
#include <cassert>

namespace uvx {

LoopState& createLoopState(uv_loop_t* loop) {
  auto* state = new LoopState;
  loop->data = state;
  state->prepare = new uv_prepare_t{};
  uv_prepare_init(loop, state->prepare);
  state->prepare->data = state;
  // Unreferenced: it never keeps the loop alive on its own.
  uv_unref(reinterpret_cast<uv_handle_t*>(state->prepare));
  uv_prepare_start(state->prepare, [](uv_prepare_t* p) { TcpStream::flushAllCorked(*static_cast<LoopState*>(p->data)); });
  return *state;
}

void releaseLoopState(uv_loop_t* loop) {
  auto* state = static_cast<LoopState*>(loop->data);
  if (state == nullptr) {
    return;
  }
  loop->data = nullptr;
  state->prepare->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(state->prepare), [](uv_handle_t* h) { delete reinterpret_cast<uv_prepare_t*>(h); });
  delete state;
}

struct TcpStream::WriteRequest {
  uv_write_t req{};
  std::string data;
  TcpStream* stream = nullptr;
};

TcpStream::TcpStream(uv_loop_t* loop, Owner* owner) : loop_(loop), owner_(owner) {
  uv_tcp_init(loop_, &tcp_);
  tcp_.data = this;
  initialized_ = true;
}

TcpStream::~TcpStream() {
  // The handle must be closed (onStreamClosed delivered) before the stream is destroyed.
  assert(!initialized_ || closing_);
  if (flushScheduled_) {
    auto& corked = loopState(loop_).corked;
    corked.erase(std::remove(corked.begin(), corked.end(), this), corked.end());
  }
  for (WriteRequest* w : inFlight_) {
    w->stream = nullptr;
  }
}

void TcpStream::enableTls(std::shared_ptr<TlsContext> ctx) { tls_ = std::make_unique<TlsSession>(std::move(ctx)); }

void TcpStream::writeRaw(std::string_view data) {
  if (closing_ || data.empty()) {
    return;
  }
  corked_.append(data);
  scheduleFlush();
}

int TcpStream::accept(uv_stream_t* listener) {
  return uv_accept(listener, reinterpret_cast<uv_stream_t*>(&tcp_));
}

int TcpStream::connect(const sockaddr* addr) {
  if (!connectReq_) {
    connectReq_ = std::make_unique<uv_connect_t>();
  }
  connectReq_->data = this;
  return uv_tcp_connect(connectReq_.get(), &tcp_, addr, &TcpStream::onConnectDone);
}

void TcpStream::setNoDelay() { uv_tcp_nodelay(&tcp_, 1); }

int TcpStream::fd() const {
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd);
  return fd;
}

void TcpStream::readStart() {
  if (reading_ || closing_) {
    return;
  }
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &TcpStream::onAlloc, &TcpStream::onRead) == 0) {
    reading_ = true;
  }
}

void TcpStream::readStop() {
  if (!reading_) {
    return;
  }
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void TcpStream::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  LoopState& ts = loopState(h->loop);
  if (ts.readBufferInUse) {
    // A read callback re-entered the loop (not expected); fall back to a private buffer.
    buf->base = new char[LoopState::kReadBufferSize];
    buf->len = LoopState::kReadBufferSize;
    return;
  }
  ts.readBufferInUse = true;
  buf->base = ts.readBuffer;
  buf->len = LoopState::kReadBufferSize;
}

void TcpStream::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  LoopState& ts = loopState(s->loop);
  const bool shared = buf->base == ts.readBuffer;
  auto* self = static_cast<TcpStream*>(s->data);
  if (nread > 0 && self != nullptr && !self->closing_ && self->tls_) {
    self->onTlsRead(buf->base, static_cast<size_t>(nread), ts.tlsPlain);
  } else if (nread > 0 && self != nullptr && !self->closing_) {
    self->owner_->onStreamData(buf->base, static_cast<size_t>(nread));
  } else if (nread < 0 && self != nullptr && !self->closing_) {
    self->readStop();
    self->owner_->onStreamEnd(nread == UV_EOF ? 0 : static_cast<int>(nread));
  }
  if (shared) {
    ts.readBufferInUse = false;
  } else if (buf->base != nullptr) {
    delete[] buf->base;
  }
}

void TcpStream::onTlsRead(const char* data, size_t len, std::string& plain) {
  plain.clear();
  const TlsSession::Status st = tls_->receive(data, len, plain, corked_);
  if (!corked_.empty()) {
    scheduleFlush();  // handshake records and alerts
  }
  switch (st) {
    case TlsSession::Status::Ok:
      if (!plain.empty()) {
        owner_->onStreamData(plain.data(), plain.size());
      }
      return;
    case TlsSession::Status::Closed:
      readStop();
      owner_->onStreamEnd(0);
      return;
    case TlsSession::Status::NotTls:
      readStop();
      owner_->onStreamEnd(kStreamNotTls);
      return;
    case TlsSession::Status::Failed:
      readStop();
      owner_->onStreamEnd(UV_EPROTO);
      return;
  }
}

namespace {

constexpr size_t kMaxSpareWriteBuffers = 1024;
constexpr size_t kMaxSpareWriteBufferBytes = 64 * 1024;

// Called when `buffer` must grow: a spare buffer with room replaces it (keeping its bytes).
void borrowWriteBuffer(LoopState& state, std::string& buffer, size_t needed) {
  if (state.spareWriteBuffers.empty() || state.spareWriteBuffers.back().capacity() < needed) {
    return;
  }
  std::string& spare = state.spareWriteBuffers.back();
  spare.assign(buffer);
  buffer.swap(spare);
  state.spareWriteBuffers.pop_back();  // frees what `buffer` held, if anything was on the heap
}

void returnWriteBuffer(LoopState& state, std::string& buffer) {
  if (buffer.capacity() > 15 && buffer.capacity() <= kMaxSpareWriteBufferBytes &&
      state.spareWriteBuffers.size() < kMaxSpareWriteBuffers) {
    buffer.clear();
    state.spareWriteBuffers.push_back(std::move(buffer));
    buffer = std::string();
  } else {
    std::string().swap(buffer);  // too large to keep around (or nowhere to keep it): free it
  }
}

}  // namespace

void TcpStream::write(std::string_view data) {
  if (closing_ || data.empty()) {
    return;
  }
  std::string& buffer = tls_ ? plainCorked_ : corked_;
  if (buffer.size() + data.size() > buffer.capacity()) {
    borrowWriteBuffer(loopState(loop_), buffer, buffer.size() + data.size());
  }
  buffer.append(data);
  scheduleFlush();
}

void TcpStream::scheduleFlush() {
  if (flushScheduled_) {
    return;
  }
  flushScheduled_ = true;
  loopState(loop_).corked.push_back(this);
}

void TcpStream::flushAllCorked(LoopState& state) {
  // Work on a snapshot: flush() never calls back into owners, and streams are destroyed only
  // from close callbacks, which do not run during the prepare phase.
  std::vector<TcpStream*> streams;
  streams.swap(state.corked);
  for (TcpStream* s : streams) {
    s->flushScheduled_ = false;
  }
  for (TcpStream* s : streams) {
    s->flush();
  }
  if (state.corked.empty()) {
    state.corked.swap(streams);  // keep the capacity
    state.corked.clear();
  }
}

void TcpStream::flush() {
  if (flushScheduled_) {
    auto& corked = loopState(loop_).corked;
    corked.erase(std::remove(corked.begin(), corked.end(), this), corked.end());
    flushScheduled_ = false;
  }
  if (tls_ && !plainCorked_.empty() && !closing_) {
    // One encryption pass per flush: a response head and body become as few records as possible.
    if (corked_.capacity() < plainCorked_.size() + 64) {
      borrowWriteBuffer(loopState(loop_), corked_, plainCorked_.size() + 64);
    }
    if (!tls_->send(plainCorked_, corked_)) {
      corked_.clear();
    }
    returnWriteBuffer(loopState(loop_), plainCorked_);
  }
  if (corked_.empty() || closing_) {
    startShutdownIfReady();
    return;
  }
  if (inFlight_.empty()) {
    uv_buf_t buf = uv_buf_init(corked_.data(), static_cast<unsigned>(corked_.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    if (n == static_cast<int>(corked_.size())) {
      returnWriteBuffer(loopState(loop_), corked_);
      startShutdownIfReady();
      owner_->onStreamDrained();
      return;
    }
    if (n > 0) {
      corked_.erase(0, static_cast<size_t>(n));
    } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
      // The write failed for good (peer reset); reading reports the end to the owner.
      corked_.clear();
      if (closeAfterShutdown_) {
        close();
      }
      return;
    }
  }
  auto* w = new WriteRequest;
  w->data.swap(corked_);
  w->stream = this;
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  inFlightBytes_ += w->data.size();
  inFlight_.push_back(w);
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, &TcpStream::onWriteDone);
  if (rc != 0) {
    inFlight_.pop_back();
    inFlightBytes_ -= w->data.size();
    delete w;
  }
}

void TcpStream::onWriteDone(uv_write_t* req, int status) {
  auto* w = static_cast<WriteRequest*>(req->data);
  TcpStream* self = w->stream;
  if (self != nullptr) {
    self->inFlightBytes_ -= w->data.size();
    self->inFlight_.erase(std::remove(self->inFlight_.begin(), self->inFlight_.end(), w), self->inFlight_.end());
  }
  delete w;
  if (self == nullptr || self->closing_) {
    return;
  }
  if (status < 0) {
    self->corked_.clear();
    self->readStop();
    self->owner_->onStreamEnd(status);
    return;
  }
  if (self->bufferedBytes() == 0) {
    self->startShutdownIfReady();
    self->owner_->onStreamDrained();
  } else if (self->inFlight_.empty() && !self->corked_.empty()) {
    self->flush();
  }
}

void TcpStream::shutdownWrite() {
  shutdownWanted_ = true;
  flush();
}

void TcpStream::startShutdownIfReady() {
  if (!shutdownWanted_ || shutdownStarted_ || closing_ || bufferedBytes() != 0) {
    return;
  }
  shutdownStarted_ = true;
  auto* req = new uv_shutdown_t{};
  if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp_), &TcpStream::onShutdownDone) != 0) {
    delete req;
    if (closeAfterShutdown_) {
      close();
    }
  }
}

void TcpStream::closeAfterFlush() {
  closeAfterShutdown_ = true;
  shutdownWrite();
}

void TcpStream::onShutdownDone(uv_shutdown_t* req, int status) {
  auto* self = static_cast<TcpStream*>(req->handle->data);
  delete req;
  if (status != UV_ECANCELED && self != nullptr && self->closeAfterShutdown_) {
    self->close();
  }
}

void TcpStream::onConnectDone(uv_connect_t* req, int status) {
  auto* self = static_cast<TcpStream*>(req->data);
  if (status == UV_ECANCELED || self->closing_) {
    return;
  }
  self->owner_->onStreamConnected(status);
}

void TcpStream::close() {
  if (closing_) {
    return;
  }
  closing_ = true;
  reading_ = false;
  corked_.clear();
  plainCorked_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &TcpStream::onClosed);
}

void TcpStream::onClosed(uv_handle_t* h) {
  auto* self = static_cast<TcpStream*>(h->data);
  self->owner_->onStreamClosed();
}

}  // namespace uvx
