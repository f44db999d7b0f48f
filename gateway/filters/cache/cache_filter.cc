#include "gateway/filters/cache/cache_filter.h"

#include <chrono>
#include <ctime>

#include "gateway/filters/cache/cache_control.h"
#include "gateway/filters/cache/etag.h"
#include "gateway/proxy/proxy_handler.h"

namespace gateway {

bool FillRegistry::joinOrLead(const std::string& key, Wakeup wakeup) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = waiters_.try_emplace(key);
  if (inserted) {
    return true;
  }
  it->second.push_back(std::move(wakeup));
  return false;
}

void FillRegistry::finish(const std::string& key) {
  std::vector<Wakeup> woken;
  {
    std::lock_guard lock(mu_);
    auto it = waiters_.find(key);
    if (it == waiters_.end()) {
      return;
    }
    woken.swap(it->second);
    waiters_.erase(it);
  }
  for (Wakeup& w : woken) {
    w();
  }
}

CacheFilterFactory::CacheFilterFactory(const cfg::GatewayConfig& config)
    : config_(config.cache),
      encodings_(config.compression),
      store_(std::make_unique<algo::LruCache<CachedResponse>>(
          algo::LruCache<CachedResponse>::Options{config.cache.max_bytes, config.cache.max_object_bytes})),
      fills_(std::make_unique<FillRegistry>()) {}

namespace {

std::string_view headerOr(const http::HeaderList& h, std::string_view name) {
  const std::string* v = h.find(name);
  return v != nullptr ? std::string_view(*v) : std::string_view();
}

class CacheFilter : public HttpFilter {
 public:
  CacheFilter(const CacheFilterFactory& factory, WorkerContext& ctx) : factory_(factory), ctx_(ctx) {}
  ~CacheFilter() override { stopFilling(); }

  Status onRequestHeaders(FilterCallbacks& cb) override {
    const http::MessageHead& req = cb.request();
    rule_ = cache::matchRule(factory_.config().rules, cb.path());
    if (rule_ == nullptr) {
      return Status::Continue;
    }
    std::string ccLines;  // only when the request has several Cache-Control lines
    const std::string_view cc = cache::joinedField(req.headers, "cache-control", ccLines);
    if (!cache::isCacheableMethod(req.methodName()) || cache::parseCacheControl(cc).noStore) {
      count("bypass");
      rule_ = nullptr;
      return Status::Continue;
    }
    const std::string_view target = req.target;
    const size_t q = target.find('?');
    const compression::EncodingChoice choice = factory_.encodings().negotiate(headerOr(req.headers, "accept-encoding"));
    cache::buildCacheKey(key_, req.methodName(), headerOr(req.headers, "host"), cb.path(),
                         q == std::string_view::npos ? std::string_view() : target.substr(q + 1),
                         compression::encodingName(choice.encoding));
    if (serveFromCache(cb)) {
      return Status::Stop;
    }
    // A miss. The first request for a key fetches it; the others wait for that fetch (on any
    // worker) and then look again, so concurrent misses make one upstream request.
    auto token = alive_;
    FilterCallbacks* callbacks = &cb;
    auto post = ctx_.post;
    const bool leader = factory_.fills().joinOrLead(key_, [post, weak = std::weak_ptr<int>(token), this, callbacks] {
      post([weak, this, callbacks] {
        if (weak.lock()) {
          onFillFinished(*callbacks);
        }
      });
    });
    if (leader) {
      filling_ = true;
      count("miss");
      return Status::Continue;
    }
    waiting_ = true;
    return Status::Stop;
  }

  void onResponseHeaders(FilterCallbacks& cb, ResponseHead& head) override {
    if (rule_ == nullptr || servingHit_ || head.local) {
      return;
    }
    const http::MessageHead& req = cb.request();
    cache::ResponseFacts facts;
    facts.status = head.status;
    // Every line counts: "private" or "Vary: Cookie" on a second line must still stop storing.
    std::string ccLines, varyLines, requestCcLines;
    facts.cacheControl = cache::joinedField(head.headers, "cache-control", ccLines);
    facts.expires = headerOr(head.headers, "expires");
    facts.date = headerOr(head.headers, "date");
    facts.age = headerOr(head.headers, "age");
    facts.vary = cache::joinedField(head.headers, "vary", varyLines);
    facts.hasSetCookie = head.find("set-cookie") != nullptr;
    facts.requestHasAuthorization = req.headers.find("authorization") != nullptr;
    facts.requestCacheControl = cache::joinedField(req.headers, "cache-control", requestCcLines);
    const cache::Freshness fresh = cache::evaluateStorage(facts, rule_->ttl, std::time(nullptr));
    store_ = fresh.storable && filling_;
    ttl_ = fresh.ttl;
    if (facts.cacheControl.empty() && head.status == 200 && !rule_->cache_control.empty()) {
      head.set("Cache-Control", rule_->cache_control);
    }
    const std::string* etag = head.find("etag");
    addEtag_ = factory_.config().etag && head.status == 200 && etag == nullptr;
    if (etag != nullptr && head.status == 200) {
      const std::string* inm = req.headers.find("if-none-match");
      if (inm != nullptr && cache::ifNoneMatchMatches(*inm, *etag)) {
        notModified_ = true;
      }
    }
    if (store_) {
      // The stored head is what this filter sees: the upstream's response as compression left
      // it. Filters earlier in the chain (CORS, rate limits) decorate it per request later, on
      // misses and hits alike, so their headers must not be frozen into the entry.
      snapshot_.clear();
      for (const http::Header& h : head.headers) {
        snapshot_.emplace_back(h.name, h.value);
      }
    }
    head.set("X-Cache", "MISS");
    cb.setCacheStatus("MISS");
  }

  size_t wholeBodyLimit() const override {
    return (store_ || addEtag_ || notModified_) ? factory_.config().max_object_bytes : 0;
  }

  void onWholeBody(FilterCallbacks& cb, ResponseHead& head, std::string_view body) override {
    std::string etag = head.find("etag") != nullptr ? *head.find("etag") : std::string();
    if (addEtag_) {
      etag = cache::makeEtag(body);
      head.set("ETag", etag);
    }
    if (store_) {
      auto entry = std::make_shared<CachedResponse>();
      entry->status = head.status;
      entry->headers = std::move(snapshot_);
      if (addEtag_) {
        entry->headers.emplace_back("ETag", etag);
      }
      entry->body.assign(body);
      entry->etag = etag;
      const size_t bytes = entry->body.size() + 64 * entry->headers.size();
      factory_.store().putFor(key_, std::move(entry), bytes, ttl_);
    }
    const std::string* inm = cb.request().headers.find("if-none-match");
    if (!etag.empty() && inm != nullptr && cache::ifNoneMatchMatches(*inm, etag)) {
      head.status = 304;
    }
    stopFilling();
  }

  void onWholeBodyAbandoned() override {
    store_ = false;
    stopFilling();
  }

  void onComplete(FilterCallbacks&, bool) override {
    stopFilling();
    rule_ = nullptr;
    servingHit_ = false;
    waiting_ = false;
    store_ = false;
    addEtag_ = false;
    notModified_ = false;
    snapshot_.clear();
    alive_ = std::make_shared<int>(0);  // late wake-ups for this exchange are dropped
  }

 private:
  void count(std::string_view result) { ctx_.runtime.stats->cacheRequests->labels({result}).inc(); }

  bool serveFromCache(FilterCallbacks& cb) {
    const auto hit = factory_.store().find(key_);
    if (!hit) {
      return false;
    }
    count("hit");
    servingHit_ = true;
    cb.setCacheStatus("HIT");
    const CachedResponse& entry = *hit.value;
    ResponseHead head;
    head.status = entry.status;
    for (const auto& [name, value] : entry.headers) {
      head.headers.add(name, value);
    }
    const auto age = std::chrono::duration_cast<std::chrono::seconds>(algo::steadyNow()() - hit.storedAt).count();
    head.set("X-Cache", "HIT");
    head.set("Age", std::to_string(age < 0 ? 0 : age));
    const std::string* inm = cb.request().headers.find("if-none-match");
    if (!entry.etag.empty() && inm != nullptr && cache::ifNoneMatchMatches(*inm, entry.etag)) {
      head.status = 304;
      head.body = http::BodyKind::None;
      head.contentLength = 0;
      cb.sendLocalResponse(head, {});
      return true;
    }
    head.body = http::BodyKind::Length;
    head.contentLength = entry.body.size();
    // HEAD gets the GET entry's head; the server connection sends no body for HEAD.
    cb.sendLocalResponse(head, entry.body);
    return true;
  }

  void onFillFinished(FilterCallbacks& cb) {
    if (!waiting_) {
      return;
    }
    waiting_ = false;
    if (serveFromCache(cb)) {
      return;
    }
    // The leader's response was not stored (too big, private, error): fetch for ourselves.
    count("miss");
    cb.continueRequest();
  }

  void stopFilling() {
    if (filling_) {
      filling_ = false;
      factory_.fills().finish(key_);
    }
  }

  const CacheFilterFactory& factory_;
  WorkerContext& ctx_;
  const cfg::CacheRule* rule_ = nullptr;
  std::string key_;
  std::vector<std::pair<std::string, std::string>> snapshot_;  // the head to store
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::chrono::milliseconds ttl_{0};
  bool filling_ = false;
  bool waiting_ = false;
  bool servingHit_ = false;
  bool store_ = false;
  bool addEtag_ = false;
  bool notModified_ = false;
};

}  // namespace

std::unique_ptr<HttpFilter> CacheFilterFactory::createFilter(WorkerContext& ctx) const {
  return std::make_unique<CacheFilter>(*this, ctx);
}

}  // namespace gateway
