#pragma once
// CONTRACT §4 "ETag and response cache": one LRU shared by every worker, keyed by method, host,
// path, query and negotiated encoding; X-Cache and Age; 304 for a matching If-None-Match;
// generated strong ETags; concurrent misses for one key coalesced into one upstream request.
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/algo/lru_cache.h"
#include "gateway/filters/compression/negotiate.h"
#include "gateway/filters/filter.h"

namespace gateway {

struct CachedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // as the client gets them, minus X-Cache/Age
  std::string body;
  std::string etag;
};

// Keys with an upstream request in flight, and who waits for it (any worker).
class FillRegistry {
 public:
  using Wakeup = std::function<void()>;
  // True: the caller is now the key's filler. False: `wakeup` runs when the filler finishes.
  bool joinOrLead(const std::string& key, Wakeup wakeup);
  // The filler is done (stored or not): every waiter is woken once.
  void finish(const std::string& key);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<Wakeup>> waiters_;
};

class CacheFilterFactory : public FilterFactory {
 public:
  explicit CacheFilterFactory(const cfg::GatewayConfig& config);
  std::string_view name() const override { return "cache"; }
  std::unique_ptr<HttpFilter> createFilter(WorkerContext& ctx) const override;

  const cfg::CacheConfig& config() const { return config_; }
  const compression::CompressionPolicy& encodings() const { return encodings_; }
  algo::LruCache<CachedResponse>& store() const { return *store_; }
  FillRegistry& fills() const { return *fills_; }

 private:
  cfg::CacheConfig config_;
  compression::CompressionPolicy encodings_;  // the same negotiation as the compression filter
  std::unique_ptr<algo::LruCache<CachedResponse>> store_;
  std::unique_ptr<FillRegistry> fills_;
};

}  // namespace gateway
