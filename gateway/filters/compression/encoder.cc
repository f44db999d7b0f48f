#include "gateway/filters/compression/encoder.h"

#include <brotli/encode.h>
#include <zlib.h>

#include <algorithm>
#include <climits>

#if defined(GATEWAY_HAVE_ZSTD) && __has_include(<zstd.h>)
#define GATEWAY_ZSTD_ENABLED 1
#include <zstd.h>
#else
#define GATEWAY_ZSTD_ENABLED 0
#endif

namespace gateway::compression {
namespace {

// Output is produced straight into the caller's string, grown by this much at a time.
constexpr size_t kOutputStep = 16 * 1024;

// Grows `out` by `step` bytes of writable space and returns where it starts.
char* growOutput(std::string& out, size_t step) {
  size_t used = out.size();
  out.resize(used + step);
  return out.data() + used;
}

class GzipEncoder final : public Encoder {
 public:
  ~GzipEncoder() override {
    if (initialized_) {
      deflateEnd(&stream_);
    }
  }

  bool init(int level) {
    // windowBits 15 + 16: a gzip wrapper (RFC 1952) rather than zlib's; memLevel 8 is zlib's
    // default.
    initialized_ = deflateInit2(&stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    return initialized_;
  }

  Encoding encoding() const override { return Encoding::Gzip; }

  bool write(std::string_view in, std::string& out) override { return run(in, Z_NO_FLUSH, out); }
  bool flush(std::string& out) override { return run({}, Z_SYNC_FLUSH, out); }
  bool finish(std::string& out) override {
    bool ok = run({}, Z_FINISH, out);
    done_ = true;
    return ok;
  }

 private:
  bool run(std::string_view in, int mode, std::string& out) {
    if (done_ || !initialized_) {
      return false;
    }
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    size_t pending = in.size();
    while (true) {
      // avail_in is 32-bit; feed larger inputs in slices.
      uInt slice = static_cast<uInt>(std::min<size_t>(pending, UINT_MAX));
      stream_.avail_in = slice;
      pending -= slice;
      bool sliceDone = false;
      while (!sliceDone) {
        char* space = growOutput(out, kOutputStep);
        stream_.next_out = reinterpret_cast<Bytef*>(space);
        stream_.avail_out = static_cast<uInt>(kOutputStep);
        int flushNow = pending == 0 ? mode : Z_NO_FLUSH;
        int rc = deflate(&stream_, flushNow);
        out.resize(out.size() - stream_.avail_out);
        if (rc == Z_STREAM_ERROR) {
          done_ = true;
          return false;
        }
        if (flushNow == Z_FINISH) {
          sliceDone = rc == Z_STREAM_END;
        } else {
          // Z_BUF_ERROR only says no progress was possible: all input taken, nothing to emit.
          sliceDone = stream_.avail_in == 0 && stream_.avail_out != 0;
        }
      }
      if (pending == 0) {
        return true;
      }
    }
  }

  z_stream stream_{};
  bool initialized_ = false;
  bool done_ = false;
};

class BrotliEncoder final : public Encoder {
 public:
  ~BrotliEncoder() override {
    if (state_ != nullptr) {
      BrotliEncoderDestroyInstance(state_);
    }
  }

  bool init(int quality, std::optional<uint64_t> sizeHint) {
    state_ = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
    if (state_ == nullptr) {
      return false;
    }
    if (!BrotliEncoderSetParameter(state_, BROTLI_PARAM_QUALITY, static_cast<uint32_t>(quality))) {
      return false;
    }
    if (sizeHint) {
      uint32_t hint = static_cast<uint32_t>(std::min<uint64_t>(*sizeHint, 1u << 30));
      BrotliEncoderSetParameter(state_, BROTLI_PARAM_SIZE_HINT, hint);
    }
    return true;
  }

  Encoding encoding() const override { return Encoding::Brotli; }

  bool write(std::string_view in, std::string& out) override {
    if (!run(in, BROTLI_OPERATION_PROCESS, out)) {
      return false;
    }
    // Left alone, brotli merges input into meta-blocks of up to 2^(lgwin+1) bytes (8 MiB at the
    // default window) before emitting anything, i.e. it would hold most bodies whole. Ending a
    // meta-block every kAutoFlushBytes keeps output flowing; measured at quality 4-5 on 2 MiB
    // bodies it costs ~0% on JSON-like data and ~2% on extremely repetitive text.
    unflushed_ += in.size();
    if (unflushed_ >= kAutoFlushBytes) {
      return flush(out);
    }
    return true;
  }
  bool flush(std::string& out) override {
    unflushed_ = 0;
    return run({}, BROTLI_OPERATION_FLUSH, out);
  }
  bool finish(std::string& out) override {
    bool ok = run({}, BROTLI_OPERATION_FINISH, out);
    done_ = true;
    return ok;
  }

 private:
  bool run(std::string_view in, BrotliEncoderOperation op, std::string& out) {
    if (done_ || state_ == nullptr) {
      return false;
    }
    const uint8_t* nextIn = reinterpret_cast<const uint8_t*>(in.data());
    size_t availableIn = in.size();
    while (true) {
      // No output buffer: the encoder keeps output internally and we copy it out with
      // TakeOutput, which saves sizing a buffer here.
      size_t availableOut = 0;
      if (!BrotliEncoderCompressStream(state_, op, &availableIn, &nextIn, &availableOut, nullptr, nullptr)) {
        done_ = true;
        return false;
      }
      bool produced = BrotliEncoderHasMoreOutput(state_);
      while (BrotliEncoderHasMoreOutput(state_)) {
        size_t size = 0;
        const uint8_t* data = BrotliEncoderTakeOutput(state_, &size);
        out.append(reinterpret_cast<const char*>(data), size);
      }
      if (availableIn != 0) {
        continue;
      }
      // Flush and finish are complete only once a call produced nothing more (encode.h).
      if (op == BROTLI_OPERATION_PROCESS || (op == BROTLI_OPERATION_FLUSH && !produced) ||
          (op == BROTLI_OPERATION_FINISH && BrotliEncoderIsFinished(state_))) {
        return true;
      }
    }
  }

  static constexpr size_t kAutoFlushBytes = 128 * 1024;

  BrotliEncoderState* state_ = nullptr;
  size_t unflushed_ = 0;
  bool done_ = false;
};

#if GATEWAY_ZSTD_ENABLED
class ZstdEncoder final : public Encoder {
 public:
  // Level 3's own window for a body of unknown size.
  static constexpr int kMaxWindowLog = 21;

  ~ZstdEncoder() override { ZSTD_freeCCtx(context_); }

  bool init(std::optional<uint64_t> sizeHint) {
    context_ = ZSTD_createCCtx();
    if (context_ == nullptr) {
      return false;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(context_, ZSTD_c_compressionLevel, kZstdLevel))) {
      return false;
    }
    if (sizeHint) {
      // A window larger than the body only costs memory. Not ZSTD_CCtx_setPledgedSrcSize: that
      // is a promise, and the stream would fail if the body turned out to differ.
      int windowLog = 10;  // ZSTD_WINDOWLOG_MIN, which zstd.h only exports to static linkers
      while (windowLog < kMaxWindowLog && (uint64_t{1} << windowLog) < *sizeHint) {
        ++windowLog;
      }
      ZSTD_CCtx_setParameter(context_, ZSTD_c_windowLog, windowLog);
    }
    return true;
  }

  Encoding encoding() const override { return Encoding::Zstd; }

  bool write(std::string_view in, std::string& out) override { return run(in, ZSTD_e_continue, out); }
  bool flush(std::string& out) override { return run({}, ZSTD_e_flush, out); }
  bool finish(std::string& out) override {
    bool ok = run({}, ZSTD_e_end, out);
    done_ = true;
    return ok;
  }

 private:
  bool run(std::string_view in, ZSTD_EndDirective mode, std::string& out) {
    if (done_ || context_ == nullptr) {
      return false;
    }
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    while (true) {
      char* space = growOutput(out, kOutputStep);
      ZSTD_outBuffer output{space, kOutputStep, 0};
      size_t remaining = ZSTD_compressStream2(context_, &output, &input, mode);
      out.resize(out.size() - kOutputStep + output.pos);
      if (ZSTD_isError(remaining)) {
        done_ = true;
        return false;
      }
      bool inputTaken = input.pos == input.size;
      // continue: done once the input is consumed; flush/end: done when nothing is left to emit.
      if (mode == ZSTD_e_continue ? inputTaken : (inputTaken && remaining == 0)) {
        return true;
      }
    }
  }

  ZSTD_CCtx* context_ = nullptr;
  bool done_ = false;
};
#endif

}  // namespace

bool encodingAvailable(Encoding encoding) {
  switch (encoding) {
    case Encoding::Identity:
    case Encoding::Gzip:
    case Encoding::Brotli:
      return true;
    case Encoding::Zstd:
      return GATEWAY_ZSTD_ENABLED != 0;
  }
  return false;
}

std::unique_ptr<Encoder> makeEncoder(Encoding encoding, const cfg::CompressionConfig& config,
                                     std::optional<uint64_t> sizeHint) {
  switch (encoding) {
    case Encoding::Identity:
      return nullptr;
    case Encoding::Gzip: {
      auto encoder = std::make_unique<GzipEncoder>();
      if (!encoder->init(std::clamp(config.gzip_level, 1, 9))) {
        return nullptr;
      }
      return encoder;
    }
    case Encoding::Brotli: {
      auto encoder = std::make_unique<BrotliEncoder>();
      if (!encoder->init(std::clamp(config.brotli_quality, BROTLI_MIN_QUALITY, BROTLI_MAX_QUALITY), sizeHint)) {
        return nullptr;
      }
      return encoder;
    }
    case Encoding::Zstd: {
#if GATEWAY_ZSTD_ENABLED
      auto encoder = std::make_unique<ZstdEncoder>();
      if (!encoder->init(sizeHint)) {
        return nullptr;
      }
      return encoder;
#else
      return nullptr;
#endif
    }
  }
  return nullptr;
}

std::unique_ptr<Encoder> makeEncoder(std::string_view name, const cfg::CompressionConfig& config,
                                     std::optional<uint64_t> sizeHint) {
  std::optional<Encoding> encoding = encodingFromName(name);
  if (!encoding) {
    return nullptr;
  }
  return makeEncoder(*encoding, config, sizeHint);
}

}  // namespace gateway::compression
