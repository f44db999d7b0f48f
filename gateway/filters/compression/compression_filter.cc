#include "gateway/filters/compression/compression_filter.h"

#include <string>

#include "common/obs/log.h"
#include "gateway/filters/cache/cache_control.h"
#include "gateway/filters/compression/encoder.h"
#include "gateway/proxy/proxy_handler.h"

namespace gateway {
namespace {

class CompressionFilter : public HttpFilter {
 public:
  CompressionFilter(const compression::CompressionPolicy& policy, WorkerContext& ctx) : policy_(policy), ctx_(ctx) {}

  Status onRequestHeaders(FilterCallbacks& cb) override {
    const std::string* accept = cb.request().headers.find("accept-encoding");
    choice_ = policy_.negotiate(accept != nullptr ? std::string_view(*accept) : std::string_view());
    return Status::Continue;
  }

  void onResponseHeaders(FilterCallbacks& cb, ResponseHead& head) override {
    const std::string* contentType = head.find("content-type");
    const std::string* contentEncoding = head.find("content-encoding");
    compression::ResponseFacts facts;
    facts.requestMethod = cb.request().methodName();
    facts.status = head.status;
    if (head.body == http::BodyKind::Length || head.body == http::BodyKind::None) {
      facts.contentLength = head.contentLength;
    }
    facts.contentType = contentType != nullptr ? std::string_view(*contentType) : std::string_view();
    facts.contentEncoding = contentEncoding != nullptr ? std::string_view(*contentEncoding) : std::string_view();
    std::string cacheControlLines;  // used only when the response has several Cache-Control lines
    facts.cacheControl = cache::joinedField(head.headers, "cache-control", cacheControlLines);
    facts.hasContentRange = head.find("content-range") != nullptr;
    if (policy_.shouldCompress(facts, choice_) != compression::Decision::Compress) {
      return;
    }
    // Server-Sent Events must reach the client event by event; an encoder holds small writes
    // until a block fills, so an event stream is never compressed (text/* would match it).
    if (facts.contentType.substr(0, 17) == "text/event-stream") {
      return;
    }
    encoder_ = compression::makeEncoder(choice_.encoding, policy_.config(), facts.contentLength);
    if (!encoder_) {
      return;
    }
    const std::string_view name = compression::encodingName(choice_.encoding);
    head.set("Content-Encoding", name);
    std::string vary = head.find("vary") != nullptr ? *head.find("vary") : std::string();
    compression::mergeVary(vary, "Accept-Encoding");
    head.set("Vary", vary);
    if (const std::string* etag = head.find("etag"); etag != nullptr) {
      std::string weak = *etag;
      compression::weakenEtag(weak);
      head.set("ETag", weak);
    }
    head.body = http::BodyKind::Chunked;
    head.contentLength = 0;
    ctx_.runtime.stats->compressedResponses->labels({name}).inc();
  }

  bool transformsBody() const override { return encoder_ != nullptr; }

  void onResponseData(FilterCallbacks& cb, std::string_view in, bool end, std::string& out) override {
    bool ok = in.empty() || encoder_->write(in, out);
    if (end) {
      ok = encoder_->finish(out) && ok;
    }
    if (!ok && !failed_) {
      failed_ = true;  // the client gets a truncated stream; the decoder on its side will say so
      obs::error("compression failed", obs::LogFields().str("request_id", cb.requestId()));
    }
  }

  void onComplete(FilterCallbacks&, bool) override {
    encoder_.reset();
    failed_ = false;
    choice_ = {};
  }

 private:
  const compression::CompressionPolicy& policy_;
  WorkerContext& ctx_;
  compression::EncodingChoice choice_;
  std::unique_ptr<compression::Encoder> encoder_;
  bool failed_ = false;
};

}  // namespace

std::unique_ptr<HttpFilter> CompressionFilterFactory::createFilter(WorkerContext& ctx) const {
  return std::make_unique<CompressionFilter>(policy_, ctx);
}

}  // namespace gateway
