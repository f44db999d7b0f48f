#pragma once
// One TCP connection on a libuv loop: reading into a loop-wide buffer, corked writes flushed once
// per loop iteration (so pipelined responses and a head + body go out in one syscall), write
// backpressure accounting, and a close that reports back through the owner's callback.
#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace uvx {

struct LoopState;
class TlsContext;
class TlsSession;

// onStreamEnd() status when a TLS stream received bytes that are not TLS (plain HTTP sent to
// the TLS port); the owner may still answer in plaintext with writeRaw().
constexpr int kStreamNotTls = -100001;

// Frees the per-loop state TcpStream keeps in loop->data (call once no stream is left, before the
// last uv_run that precedes uv_loop_close).
void releaseLoopState(uv_loop_t* loop);

class TcpStream {
 public:
  // Implemented by the object that owns the stream. All callbacks run on the loop thread.
  class Owner {
   public:
    virtual ~Owner() = default;
    // Bytes read; the pointer is valid only during the call (it points into a loop-wide buffer).
    virtual void onStreamData(const char* data, size_t len) = 0;
    // Peer closed its write side (EOF) or the connection failed (status < 0, a uv error code).
    virtual void onStreamEnd(int status) = 0;
    // Outgoing bytes fell to zero after having been above zero (write backpressure released).
    virtual void onStreamDrained() {}
    // uv_tcp_connect finished (status 0 or a uv error code).
    virtual void onStreamConnected(int /*status*/) {}
    // The handle is closed; the owner may delete itself (and this stream) now.
    virtual void onStreamClosed() = 0;
  };

  TcpStream(uv_loop_t* loop, Owner* owner);
  ~TcpStream();  // defined where TlsSession is complete
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  int accept(uv_stream_t* listener);
  // Terminates TLS on this (accepted) stream: reads deliver plaintext, writes are encrypted.
  void enableTls(std::shared_ptr<TlsContext> ctx);
  bool tls() const { return tls_ != nullptr; }
  // Bypasses TLS (for a plaintext error reply to a client that did not speak TLS).
  void writeRaw(std::string_view data);
  int connect(const sockaddr* addr);
  void setNoDelay();

  void readStart();
  void readStop();
  bool reading() const { return reading_; }

  // Appends to the outgoing buffer; bytes go out when the loop is about to poll (or on flush()).
  void write(std::string_view data);
  // Writes what is buffered now (uv_try_write first, uv_write for the rest).
  void flush();
  // Bytes accepted by write() but not yet handed to the kernel.
  size_t bufferedBytes() const { return corked_.size() + plainCorked_.size() + inFlightBytes_; }

  // Flushes, waits for in-flight writes, then shuts down the write side. Reading continues.
  void shutdownWrite();
  // Flushes, waits for in-flight writes, sends FIN, then closes (onStreamClosed() follows).
  void closeAfterFlush();
  // Closes the handle (pending writes are cancelled); onStreamClosed() follows. Idempotent.
  void close();
  bool closing() const { return closing_; }

  uv_loop_t* loop() const { return loop_; }
  int fd() const;
  uv_tcp_t* handle() { return &tcp_; }

  // Flushes every stream with corked output on a loop; called from its uv_prepare handle.
  static void flushAllCorked(LoopState& state);

 private:
  struct WriteRequest;
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWriteDone(uv_write_t* req, int status);
  static void onShutdownDone(uv_shutdown_t* req, int status);
  static void onConnectDone(uv_connect_t* req, int status);
  static void onClosed(uv_handle_t* h);
  void scheduleFlush();
  void onTlsRead(const char* data, size_t len, std::string& plain);
  void startShutdownIfReady();

  uv_loop_t* loop_;
  Owner* owner_;
  uv_tcp_t tcp_{};
  std::unique_ptr<uv_connect_t> connectReq_;  // client streams only: not part of an accepted one
  bool initialized_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool flushScheduled_ = false;
  bool shutdownWanted_ = false;
  bool shutdownStarted_ = false;
  bool closeAfterShutdown_ = false;
  std::string corked_;       // bytes for the socket (ciphertext when TLS is on)
  std::string plainCorked_;  // TLS only: plaintext waiting to be encrypted, one batch per flush
  std::unique_ptr<TlsSession> tls_;
  size_t inFlightBytes_ = 0;
  std::vector<WriteRequest*> inFlight_;
};

}  // namespace uvx
