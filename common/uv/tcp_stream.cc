#include "common/uv/tcp_stream.h"

#include <algorithm>
#include <cassert>

namespace uvx {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;

// Per-thread state: one read buffer shared by all connections of the loop (data is consumed or
// copied before the next read), and the list of streams with corked output.
struct ThreadState {
  char readBuffer[kReadBufferSize];
  bool readBufferInUse = false;
  std::vector<TcpStream*> corked;
  uv_prepare_t* prepare = nullptr;
};

ThreadState& threadState() {
  thread_local ThreadState state;
  return state;
}

}  // namespace

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
  auto& corked = threadState().corked;
  if (flushScheduled_) {
    corked.erase(std::remove(corked.begin(), corked.end(), this), corked.end());
  }
  for (WriteRequest* w : inFlight_) {
    w->stream = nullptr;
  }
}

int TcpStream::accept(uv_stream_t* listener) {
  return uv_accept(listener, reinterpret_cast<uv_stream_t*>(&tcp_));
}

int TcpStream::connect(const sockaddr* addr) {
  connectReq_.data = this;
  return uv_tcp_connect(&connectReq_, &tcp_, addr, &TcpStream::onConnectDone);
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

void TcpStream::onAlloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  ThreadState& ts = threadState();
  if (ts.readBufferInUse) {
    // A read callback re-entered the loop (not expected); fall back to a private buffer.
    buf->base = new char[kReadBufferSize];
    buf->len = kReadBufferSize;
    return;
  }
  ts.readBufferInUse = true;
  buf->base = ts.readBuffer;
  buf->len = kReadBufferSize;
}

void TcpStream::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  ThreadState& ts = threadState();
  const bool shared = buf->base == ts.readBuffer;
  auto* self = static_cast<TcpStream*>(s->data);
  if (nread > 0 && self != nullptr && !self->closing_) {
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

void TcpStream::write(std::string_view data) {
  if (closing_ || data.empty()) {
    return;
  }
  corked_.append(data);
  scheduleFlush();
}

void TcpStream::scheduleFlush() {
  if (flushScheduled_) {
    return;
  }
  flushScheduled_ = true;
  ThreadState& ts = threadState();
  ts.corked.push_back(this);
  if (ts.prepare == nullptr) {
    // One prepare handle per loop thread, unreferenced so it never keeps the loop alive.
    ts.prepare = new uv_prepare_t{};
    uv_prepare_init(loop_, ts.prepare);
    uv_unref(reinterpret_cast<uv_handle_t*>(ts.prepare));
    uv_prepare_start(ts.prepare, [](uv_prepare_t*) { TcpStream::flushAllCorked(); });
  }
}

void TcpStream::flushAllCorked() {
  ThreadState& ts = threadState();
  // flush() may close streams, which edits the list; work on a snapshot.
  std::vector<TcpStream*> streams;
  streams.swap(ts.corked);
  for (TcpStream* s : streams) {
    s->flushScheduled_ = false;
  }
  for (TcpStream* s : streams) {
    // A stream destroyed during this loop removed itself from ts.corked, not from the snapshot,
    // so check membership via the flag protocol: destroyed streams were erased above only if
    // still scheduled. Streams are destroyed only from close callbacks, which run after prepare.
    s->flush();
  }
}

void TcpStream::flush() {
  if (flushScheduled_) {
    ThreadState& ts = threadState();
    ts.corked.erase(std::remove(ts.corked.begin(), ts.corked.end(), this), ts.corked.end());
    flushScheduled_ = false;
  }
  if (corked_.empty() || closing_) {
    startShutdownIfReady();
    return;
  }
  if (inFlight_.empty()) {
    uv_buf_t buf = uv_buf_init(corked_.data(), static_cast<unsigned>(corked_.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    if (n == static_cast<int>(corked_.size())) {
      corked_.clear();
      startShutdownIfReady();
      return;
    }
    if (n > 0) {
      corked_.erase(0, static_cast<size_t>(n));
    } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
      // The write failed for good (peer reset); reading reports the end to the owner.
      corked_.clear();
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
  }
}

void TcpStream::onShutdownDone(uv_shutdown_t* req, int) { delete req; }

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
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &TcpStream::onClosed);
}

void TcpStream::onClosed(uv_handle_t* h) {
  auto* self = static_cast<TcpStream*>(h->data);
  self->owner_->onStreamClosed();
}

}  // namespace uvx
