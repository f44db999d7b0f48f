#pragma once
// TLS termination with OpenSSL memory BIOs: the socket stays a plain libuv stream; ciphertext goes
// through the BIOs, so nothing in OpenSSL ever blocks or touches a file descriptor.
#include <memory>
#include <string>
#include <string_view>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace uvx {

// A server context: TLS 1.2+ only, modern AEAD ciphers, ALPN http/1.1, no renegotiation.
// Immutable once loaded; connections keep the one they started with across reloads.
class TlsContext {
 public:
  // Loads and checks the certificate chain and key (blocking file I/O: call off the loops).
  static std::shared_ptr<TlsContext> loadServer(const std::string& certFile, const std::string& keyFile,
                                                std::string& error);
  ~TlsContext();
  SSL_CTX* get() const { return ctx_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

class TlsSession {
 public:
  enum class Status {
    Ok,         // go on
    Closed,     // the peer sent close_notify
    NotTls,     // the first bytes were not a TLS record (plain HTTP on a TLS port)
    Failed,     // handshake or record error (message in error())
  };

  explicit TlsSession(std::shared_ptr<TlsContext> ctx);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Feeds ciphertext from the socket; appends decrypted bytes to `plain` and bytes that must go
  // to the peer (handshake, alerts) to `out`.
  Status receive(const char* data, size_t len, std::string& plain, std::string& out);
  // Encrypts `plain` (one TLS record per 16 KiB) and appends the ciphertext to `out`. Before the
  // handshake is done the plaintext waits inside the session.
  bool send(std::string_view plain, std::string& out);
  bool established() const { return established_; }
  const std::string& error() const { return error_; }

 private:
  void drainOutput(std::string& out);
  bool flushPending(std::string& out);

  std::shared_ptr<TlsContext> ctx_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
  bool established_ = false;
  bool sawFirstByte_ = false;
  std::string pendingPlain_;
  std::string error_;
};

}  // namespace uvx
