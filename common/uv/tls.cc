#include "common/uv/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>

namespace uvx {
namespace {

std::string lastOpensslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) {
    return "unknown TLS error";
  }
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outLen, const unsigned char* in, unsigned int inLen,
               void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_select_next_proto(const_cast<unsigned char**>(out), outLen, kHttp11, sizeof kHttp11, in, inLen) ==
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;  // only HTTP/1.1 is spoken here
}

}  // namespace

std::shared_ptr<TlsContext> TlsContext::loadServer(const std::string& certFile, const std::string& keyFile,
                                                   std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    error = lastOpensslError();
    return nullptr;
  }
  auto fail = [&](const std::string& what) {
    error = what + ": " + lastOpensslError();
    SSL_CTX_free(ctx);
    return nullptr;
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2: forward-secret AEAD suites only (TLS 1.3 suites are all AEAD already).
  if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
    return fail("cipher list");
  }
  SSL_CTX_set_alpn_select_cb(ctx, &selectAlpn, nullptr);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, certFile.c_str()) != 1) {
    return fail("certificate " + certFile);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("private key " + keyFile);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return fail("key does not match certificate");
  }
  return std::shared_ptr<TlsContext>(new TlsContext(ctx));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

TlsSession::TlsSession(std::shared_ptr<TlsContext> ctx) : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->get());
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl_, rbio_, wbio_);  // the SSL owns both BIOs now
  SSL_set_accept_state(ssl_);
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

void TlsSession::drainOutput(std::string& out) {
  char buf[16 * 1024];
  int n = 0;
  while ((n = BIO_read(wbio_, buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
}

TlsSession::Status TlsSession::receive(const char* data, size_t len, std::string& plain, std::string& out) {
  if (!sawFirstByte_ && len > 0) {
    sawFirstByte_ = true;
    if (static_cast<unsigned char>(data[0]) != 0x16) {  // not a TLS handshake record
      error_ = "not a TLS handshake";
      return Status::NotTls;
    }
  }
  BIO_write(rbio_, data, static_cast<int>(len));
  if (!established_) {
    const int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      drainOutput(out);  // alerts go out too
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return Status::Ok;
      }
      error_ = "handshake: " + lastOpensslError();
      return Status::Failed;
    }
    established_ = true;
    if (!flushPending(out)) {
      return Status::Failed;
    }
  }
  char buf[16 * 1024];
  for (;;) {
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plain.append(buf, static_cast<size_t>(n));
      continue;
    }
    const int e = SSL_get_error(ssl_, n);
    drainOutput(out);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      return Status::Ok;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      return Status::Closed;
    }
    error_ = "read: " + lastOpensslError();
    return Status::Failed;
  }
}

bool TlsSession::flushPending(std::string& out) {
  if (pendingPlain_.empty()) {
    drainOutput(out);
    return true;
  }
  std::string pending;
  pending.swap(pendingPlain_);
  return send(pending, out);
}

bool TlsSession::send(std::string_view plain, std::string& out) {
  if (!established_) {
    pendingPlain_.append(plain);
    return true;
  }
  while (!plain.empty()) {
    const int chunk = static_cast<int>(std::min<size_t>(plain.size(), 16 * 1024));
    const int n = SSL_write(ssl_, plain.data(), chunk);
    if (n <= 0) {
      error_ = "write: " + lastOpensslError();
      return false;
    }
    plain.remove_prefix(static_cast<size_t>(n));
  }
  drainOutput(out);
  return true;
}

}  // namespace uvx
