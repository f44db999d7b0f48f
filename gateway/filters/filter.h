#pragma once
// The gateway's policy chain. A policy (CORS, compression, cache, rate limit, ...) is one
// directory under gateway/filters/: a FilterFactory built once from config (owning its stats),
// and HttpFilter instances, one per client connection, reused for its exchanges in turn.
//
// Order: request hooks run first to last; response hooks run last to first (the filter closest
// to the upstream sees the response first), as in Envoy. Replies the gateway makes itself
// (errors, preflights, cache hits) pass through every filter's response hooks too, so e.g. CORS
// headers are on a 502 as well.
#include <uv.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/http/headers.h"
#include "common/http/parser.h"

namespace gateway {

struct WorkerContext;

// A response head on its way to the client, editable by filters.
struct ResponseHead {
  int status = 200;
  std::string reason;
  http::HeaderList headers;
  http::BodyKind body = http::BodyKind::None;
  uint64_t contentLength = 0;
  bool local = false;  // made by the gateway, not received from the upstream

  const std::string* find(std::string_view name) const { return headers.find(name); }
  void set(std::string_view name, std::string_view value) { headers.set(name, value); }
  void add(std::string_view name, std::string_view value) { headers.add(name, value); }
  void remove(std::string_view name) { headers.remove(name); }
};

// What a filter may ask of the exchange it is part of.
class FilterCallbacks {
 public:
  virtual ~FilterCallbacks() = default;
  virtual const http::MessageHead& request() const = 0;
  virtual std::string_view path() const = 0;
  virtual const std::string& clientIp() const = 0;
  virtual const std::string& requestId() const = 0;
  virtual uv_loop_t* loop() const = 0;
  // Answers the request instead of proxying it (before any response byte went out). The reply
  // passes through the response hooks of every filter.
  virtual void sendLocalReply(int status, std::string_view contentType, std::string_view body,
                              std::string_view extraHeaders = {}) = 0;
  // Answers with a complete response head and body (e.g. from the cache); same rules as above.
  virtual void sendLocalResponse(ResponseHead& head, std::string_view body) = 0;
  // The JSON error reply of CONTRACT §4 ({"error","request_id"}).
  virtual void sendLocalError(int status, std::string_view message, std::string_view extraHeaders = {}) = 0;
  // The response cache's verdict for the access log ("HIT", "MISS"; default "BYPASS").
  virtual void setCacheStatus(std::string_view status) = 0;
  // After onRequestHeaders returned Stop without replying: run the next filter.
  virtual void continueRequest() = 0;
};

class HttpFilter {
 public:
  enum class Status { Continue, Stop };
  virtual ~HttpFilter() = default;

  // The request head arrived. Continue, or Stop after sendLocalReply(), or Stop to finish later
  // with continueRequest() (asynchronous work: the filter must then call exactly one of the two).
  virtual Status onRequestHeaders(FilterCallbacks& /*cb*/) { return Status::Continue; }
  // The response head is about to be written; edit it here. Changing the body (compression)
  // also means setting head.body/contentLength and returning true from transformsBody().
  virtual void onResponseHeaders(FilterCallbacks& /*cb*/, ResponseHead& /*head*/) {}
  // True when onResponseData must see (and may rewrite) the body of the current response.
  virtual bool transformsBody() const { return false; }
  // A piece of response body; append what goes on to `out`. `end` is set exactly once, last.
  virtual void onResponseData(FilterCallbacks& /*cb*/, std::string_view in, bool /*end*/, std::string& out) {
    out.append(in);
  }
  // Non-zero: this filter must see the whole (transformed) response body before the head goes
  // out, e.g. to put a hash of it in an ETag. The proxy then holds the head and buffers up to
  // this many bytes; asked right after onResponseHeaders.
  virtual size_t wholeBodyLimit() const { return 0; }
  // The whole body is here (within the limit); the head may still be edited (ETag, 304).
  virtual void onWholeBody(FilterCallbacks& /*cb*/, ResponseHead& /*head*/, std::string_view /*body*/) {}
  // The body outgrew wholeBodyLimit(): the head goes out unchanged and the rest streams.
  virtual void onWholeBodyAbandoned() {}
  // The exchange is over (completed, replied locally or aborted): release per-exchange state.
  virtual void onComplete(FilterCallbacks& /*cb*/, bool /*aborted*/) {}
};

// One policy, configured once (immutable, shared by every worker, owns its stats).
class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  virtual std::string_view name() const = 0;
  virtual std::unique_ptr<HttpFilter> createFilter(WorkerContext& ctx) const = 0;
};

using FilterChain = std::vector<std::unique_ptr<FilterFactory>>;

}  // namespace gateway
