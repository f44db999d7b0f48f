// gateway::compression encoders: byte-exact round trips through the reference decoders for
// random chunking, and the streaming / flush contract.
#include <doctest/doctest.h>

#include <brotli/decode.h>
#include <zlib.h>

#include <random>
#include <string>
#include <vector>

#include "common/config/app_config.h"
#include "gateway/filters/compression/encoder.h"

#if defined(GATEWAY_HAVE_ZSTD) && __has_include(<zstd.h>)
#define TEST_WITH_ZSTD 1
#include <zstd.h>
#else
#define TEST_WITH_ZSTD 0
#endif

using gateway::compression::Encoder;
using gateway::compression::Encoding;
using gateway::compression::makeEncoder;

namespace {

std::string randomBytes(size_t n, std::mt19937_64& rng) {
  std::string out(n, '\0');
  for (char& c : out) {
    c = static_cast<char>(rng() & 0xFF);
  }
  return out;
}

// Repetitive like an API response, with enough variation to exercise the matchers.
std::string jsonLike(size_t n, std::mt19937_64& rng) {
  static const char* const kNames[] = {"alice", "bob", "carol", "dave", "eve"};
  std::string out = "[";
  for (int id = 0; out.size() < n; ++id) {
    out += "{\"id\":" + std::to_string(id) + ",\"author\":\"" + kNames[rng() % 5] + "\",\"title\":\"Article " +
           std::to_string(rng() % 100000) + "\",\"tags\":[\"news\",\"tech\"],\"score\":" +
           std::to_string(static_cast<double>(rng() % 10000) / 100.0) + "},";
  }
  out.resize(n);
  return out;
}

// One-shot reference decoders; `expectedSize` sizes the output buffer.
std::string gunzip(const std::string& in, size_t expectedSize) {
  std::string out(expectedSize + 1, '\0');  // one spare byte detects output that is too long
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 15 + 16) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&zs, Z_FINISH);
  CHECK(rc == Z_STREAM_END);
  CHECK(zs.avail_in == 0);  // no trailing garbage
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

std::string unbrotli(const std::string& in, size_t expectedSize) {
  std::string out(expectedSize + 1, '\0');
  size_t size = out.size();
  BrotliDecoderResult rc = BrotliDecoderDecompress(in.size(), reinterpret_cast<const uint8_t*>(in.data()), &size,
                                                   reinterpret_cast<uint8_t*>(out.data()));
  CHECK(rc == BROTLI_DECODER_RESULT_SUCCESS);
  out.resize(size);
  return out;
}

#if TEST_WITH_ZSTD
std::string unzstd(const std::string& in, size_t expectedSize) {
  std::string out(expectedSize + 1, '\0');
  size_t size = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
  REQUIRE_FALSE(ZSTD_isError(size));
  out.resize(size);
  return out;
}
#endif

std::string decodeWhole(Encoding encoding, const std::string& in, size_t expectedSize) {
  switch (encoding) {
    case Encoding::Gzip:
      return gunzip(in, expectedSize);
    case Encoding::Brotli:
      return unbrotli(in, expectedSize);
    case Encoding::Zstd:
#if TEST_WITH_ZSTD
      return unzstd(in, expectedSize);
#else
      break;
#endif
    case Encoding::Identity:
      break;
  }
  FAIL("no decoder");
  return {};
}

// Streaming decoders, to check that flushed output is decodable before the stream ends.
class StreamDecoder {
 public:
  explicit StreamDecoder(Encoding encoding) : encoding_(encoding) {
    if (encoding == Encoding::Gzip) {
      REQUIRE(inflateInit2(&zs_, 15 + 16) == Z_OK);
    } else if (encoding == Encoding::Brotli) {
      brotli_ = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
      REQUIRE(brotli_ != nullptr);
    }
#if TEST_WITH_ZSTD
    if (encoding == Encoding::Zstd) {
      zstd_ = ZSTD_createDStream();
      REQUIRE(zstd_ != nullptr);
    }
#endif
  }
  ~StreamDecoder() {
    if (encoding_ == Encoding::Gzip) {
      inflateEnd(&zs_);
    }
    if (brotli_ != nullptr) {
      BrotliDecoderDestroyInstance(brotli_);
    }
#if TEST_WITH_ZSTD
    ZSTD_freeDStream(zstd_);
#endif
  }

  // Decodes `in` and returns everything it yields.
  std::string feed(const std::string& in) {
    std::string out;
    char buffer[16384];
    if (encoding_ == Encoding::Gzip) {
      zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      zs_.avail_in = static_cast<uInt>(in.size());
      do {
        zs_.next_out = reinterpret_cast<Bytef*>(buffer);
        zs_.avail_out = sizeof(buffer);
        int rc = inflate(&zs_, Z_SYNC_FLUSH);
        REQUIRE((rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR));
        out.append(buffer, sizeof(buffer) - zs_.avail_out);
      } while (zs_.avail_in > 0 || zs_.avail_out == 0);
    } else if (encoding_ == Encoding::Brotli) {
      const uint8_t* next = reinterpret_cast<const uint8_t*>(in.data());
      size_t available = in.size();
      while (true) {
        uint8_t* nextOut = reinterpret_cast<uint8_t*>(buffer);
        size_t availableOut = sizeof(buffer);
        BrotliDecoderResult rc =
            BrotliDecoderDecompressStream(brotli_, &available, &next, &availableOut, &nextOut, nullptr);
        REQUIRE(rc != BROTLI_DECODER_RESULT_ERROR);
        out.append(buffer, sizeof(buffer) - availableOut);
        if (rc != BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) {
          break;
        }
      }
    }
#if TEST_WITH_ZSTD
    if (encoding_ == Encoding::Zstd) {
      ZSTD_inBuffer input{in.data(), in.size(), 0};
      while (true) {
        ZSTD_outBuffer output{buffer, sizeof(buffer), 0};
        size_t rc = ZSTD_decompressStream(zstd_, &output, &input);
        REQUIRE_FALSE(ZSTD_isError(rc));
        out.append(buffer, output.pos);
        if (input.pos == input.size && output.pos < output.size) {
          break;
        }
      }
    }
#endif
    return out;
  }

 private:
  Encoding encoding_;
  z_stream zs_{};
  BrotliDecoderState* brotli_ = nullptr;
#if TEST_WITH_ZSTD
  ZSTD_DStream* zstd_ = nullptr;
#endif
};

std::vector<Encoding> availableEncodings() {
  std::vector<Encoding> out = {Encoding::Gzip, Encoding::Brotli};
  if (gateway::compression::encodingAvailable(Encoding::Zstd)) {
    out.push_back(Encoding::Zstd);
  }
  return out;
}

// Feeds `body` in random pieces (some empty), with occasional flushes when asked.
std::string compressInPieces(Encoder& encoder, const std::string& body, std::mt19937_64& rng, size_t maxPiece,
                             bool randomFlushes) {
  std::string out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t piece = std::min<size_t>(rng() % (maxPiece + 1), body.size() - pos);
    REQUIRE(encoder.write(std::string_view(body).substr(pos, piece), out));
    pos += piece;
    if (randomFlushes && rng() % 8 == 0) {
      REQUIRE(encoder.flush(out));
    }
  }
  REQUIRE(encoder.finish(out));
  return out;
}

}  // namespace

TEST_CASE("compression encoders round-trip random and JSON-like bodies in random chunks") {
  std::mt19937_64 rng(20240601);
  cfg::CompressionConfig config;
  const std::vector<std::string> bodies = {
      std::string(),
      std::string("x"),
      jsonLike(1000, rng),
      jsonLike(300 * 1024, rng),
      randomBytes(200 * 1024, rng),
      std::string(100 * 1024, 'a'),
  };
  for (Encoding encoding : availableEncodings()) {
    for (size_t b = 0; b < bodies.size(); ++b) {
      for (size_t maxPiece : {size_t{1}, size_t{7}, size_t{1000}, size_t{70000}}) {
        if (maxPiece == 1 && bodies[b].size() > 2000) {
          continue;  // byte-at-a-time on big bodies only costs test time
        }
        for (bool flushes : {false, true}) {
          CAPTURE(gateway::compression::encodingName(encoding));
          CAPTURE(b);
          CAPTURE(maxPiece);
          CAPTURE(flushes);
          std::unique_ptr<Encoder> encoder = makeEncoder(encoding, config);
          REQUIRE(encoder != nullptr);
          CHECK(encoder->encoding() == encoding);
          std::string compressed = compressInPieces(*encoder, bodies[b], rng, maxPiece, flushes);
          CHECK(decodeWhole(encoding, compressed, bodies[b].size()) == bodies[b]);
        }
      }
    }
  }
}

TEST_CASE("compression encoders honour levels and size hints") {
  std::mt19937_64 rng(7);
  std::string body = jsonLike(64 * 1024, rng);
  for (int level : {1, 9}) {
    cfg::CompressionConfig config;
    config.gzip_level = level;
    config.brotli_quality = level == 1 ? 0 : 11;
    for (Encoding encoding : availableEncodings()) {
      CAPTURE(gateway::compression::encodingName(encoding));
      for (std::optional<uint64_t> hint : {std::optional<uint64_t>(), std::optional<uint64_t>(body.size()),
                                           std::optional<uint64_t>(100)}) {  // a wrong hint is harmless
        std::unique_ptr<Encoder> encoder = makeEncoder(encoding, config, hint);
        REQUIRE(encoder != nullptr);
        std::string out;
        REQUIRE(encoder->write(body, out));
        REQUIRE(encoder->finish(out));
        CHECK(out.size() < body.size() / 3);
        CHECK(decodeWhole(encoding, out, body.size()) == body);
      }
    }
  }
}

TEST_CASE("compression encoders stream: output appears without the whole body, flush makes it decodable") {
  std::mt19937_64 rng(99);
  cfg::CompressionConfig config;
  const std::string body = jsonLike(2 * 1024 * 1024, rng) + randomBytes(256 * 1024, rng);
  for (Encoding encoding : availableEncodings()) {
    CAPTURE(gateway::compression::encodingName(encoding));
    // Without flushes, output still starts long before the end of a large body.
    {
      std::unique_ptr<Encoder> encoder = makeEncoder(encoding, config);
      REQUIRE(encoder != nullptr);
      std::string out;
      size_t pos = 0;
      while (pos < body.size() && out.empty()) {
        REQUIRE(encoder->write(std::string_view(body).substr(pos, 4096), out));
        pos += 4096;
      }
      CHECK_FALSE(out.empty());
      CHECK(pos < body.size());
    }
    // With a flush after each piece, what came out so far decodes to all the input so far.
    {
      std::unique_ptr<Encoder> encoder = makeEncoder(encoding, config);
      REQUIRE(encoder != nullptr);
      StreamDecoder decoder(encoding);
      std::string decoded;
      size_t pos = 0;
      for (int i = 0; i < 40; ++i) {
        size_t piece = 1 + rng() % 5000;
        std::string out;
        REQUIRE(encoder->write(std::string_view(body).substr(pos, piece), out));
        REQUIRE(encoder->flush(out));
        pos += piece;
        decoded += decoder.feed(out);
        REQUIRE(decoded.size() == pos);
      }
      CHECK(decoded == body.substr(0, pos));
      std::string tail;
      REQUIRE(encoder->finish(tail));
      decoded += decoder.feed(tail);
      CHECK(decoded == body.substr(0, pos));
    }
  }
}

TEST_CASE("compression encoders refuse use after finish, and the factory knows its names") {
  cfg::CompressionConfig config;
  for (Encoding encoding : availableEncodings()) {
    std::unique_ptr<Encoder> encoder = makeEncoder(encoding, config);
    REQUIRE(encoder != nullptr);
    std::string out;
    REQUIRE(encoder->write("hello", out));
    REQUIRE(encoder->finish(out));
    CHECK_FALSE(encoder->write("more", out));
    CHECK_FALSE(encoder->flush(out));
    CHECK_FALSE(encoder->finish(out));
    CHECK(decodeWhole(encoding, out, 5) == "hello");
  }
  CHECK(makeEncoder("gzip", config) != nullptr);
  CHECK(makeEncoder("br", config) != nullptr);
  CHECK(makeEncoder("identity", config) == nullptr);
  CHECK(makeEncoder("deflate", config) == nullptr);
  CHECK((makeEncoder("zstd", config) != nullptr) == gateway::compression::encodingAvailable(Encoding::Zstd));
  CHECK((TEST_WITH_ZSTD != 0) == gateway::compression::encodingAvailable(Encoding::Zstd));
}
