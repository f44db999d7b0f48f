#include "gateway/filters/ratelimit/rate_limit_filter.h"

#include <openssl/evp.h>

#include <charconv>
#include <cstdio>

#include "common/algo/rate_limit_scripts.h"
#include "common/obs/log.h"
#include "common/redis/redis_client.h"
#include "gateway/proxy/proxy_handler.h"
#include "gateway/route.h"

namespace gateway {
namespace {

std::string sha1Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha1(), nullptr);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

class RateLimitFilter : public HttpFilter {
 public:
  RateLimitFilter(const RateLimitFilterFactory& factory, WorkerContext& ctx) : factory_(factory), ctx_(ctx) {}

  Status onRequestHeaders(FilterCallbacks& cb) override {
    rule_ = nullptr;
    for (const auto& r : factory_.rules()) {
      if (ruleMatches(r->config.path, r->config.prefix, cb.path())) {
        rule_ = r.get();
        break;
      }
    }
    if (rule_ == nullptr) {
      return Status::Continue;
    }
    const http::HeaderList& headers = cb.request().headers;
    std::string_view key;
    if (rule_->headerName.empty()) {
      const std::string* xff = headers.find("x-forwarded-for");
      key = factory_.trustedProxies().clientIp(cb.clientIp(), xff != nullptr ? std::string_view(*xff) : "");
    } else {
      const std::string* v = headers.find(rule_->headerName);
      // A request without the header is limited as one shared "missing" client.
      key = v != nullptr ? std::string_view(*v) : std::string_view("\x01missing");
    }
    redisKey_.assign(rule_->keyPrefix).append(key);  // reuses the string's capacity

    redisx::RedisClient* redis = ctx_.redis;
    if (redis == nullptr || redis->state() != redisx::RedisClient::State::Ready) {
      return decideWithoutRedis(cb, "redis not connected");
    }
    evaluate(cb, /*useEvalsha=*/true);
    return Status::Stop;
  }

  void onResponseHeaders(FilterCallbacks&, ResponseHead& head) override {
    if (rule_ == nullptr || !haveDecision_) {
      return;
    }
    char number[24];
    const auto format = [&number](auto v) {
      return std::string_view(number, static_cast<size_t>(std::to_chars(number, number + sizeof number, v).ptr - number));
    };
    head.set("RateLimit-Limit", format(decision_.limit));
    head.set("RateLimit-Remaining", format(decision_.remaining));
    head.set("RateLimit-Reset", format(decision_.resetSeconds()));
  }

  void onComplete(FilterCallbacks&, bool) override {
    rule_ = nullptr;
    haveDecision_ = false;
    alive_ = std::make_shared<int>(0);  // a late Redis answer for this exchange is dropped
  }

 private:
  void evaluate(FilterCallbacks& cb, bool useEvalsha) {
    const std::string_view args[] = {useEvalsha ? "EVALSHA" : "EVAL", useEvalsha ? rule_->sha : rule_->script, "1",
                                     redisKey_, rule_->limitArg, rule_->windowArg};
    std::weak_ptr<int> weak = alive_;
    FilterCallbacks* callbacks = &cb;
    ctx_.redis->commandViews(args, factory_.commandTimeout(),
                        [this, weak, callbacks, useEvalsha](redisx::RedisResult r) {
                          if (!weak.lock()) {
                            return;  // the exchange is gone
                          }
                          onRedisResult(*callbacks, std::move(r), useEvalsha);
                        });
  }

  void onRedisResult(FilterCallbacks& cb, redisx::RedisResult r, bool usedEvalsha) {
    if (!r.ok()) {
      if (usedEvalsha && r.error == redisx::RedisErrorKind::ServerError && r.errorMessage.rfind("NOSCRIPT", 0) == 0) {
        evaluate(cb, /*useEvalsha=*/false);  // EVAL also caches the script for the next EVALSHA
        return;
      }
      finish(cb, decideWithoutRedis(cb, r.errorMessage.empty() ? redisx::errorKindName(r.error) : r.errorMessage));
      return;
    }
    const auto& e = r.reply.elements;
    if (r.reply.type != redisx::ReplyType::Array || e.size() < 4) {
      finish(cb, decideWithoutRedis(cb, "unexpected script reply"));
      return;
    }
    decision_ = algo::decisionFromScriptReply(rule_->config.limit, e[0].integer, e[1].integer, e[2].integer, e[3].integer);
    haveDecision_ = true;
    finish(cb, apply(cb));
  }

  // After a synchronous decision in onRequestHeaders the chain goes on by itself; after an
  // asynchronous one it must be told.
  void finish(FilterCallbacks& cb, Status s) {
    if (s == Status::Continue) {
      cb.continueRequest();
    }
  }

  Status decideWithoutRedis(FilterCallbacks& cb, std::string_view why) {
    if (!rule_->config.fail_open) {
      cb.sendLocalError(503, "rate limiter unavailable");
      return Status::Stop;
    }
    if (obs::enabled(obs::Level::Debug)) {
      obs::debug("rate limit: in-process fallback", obs::LogFields().str("rule", rule_->config.name).str("why", why));
    }
    decision_ = rule_->fallback->check(redisKey_);
    haveDecision_ = true;
    return apply(cb);
  }

  Status apply(FilterCallbacks& cb) {
    if (decision_.allowed) {
      return Status::Continue;
    }
    ctx_.runtime.stats->rateLimited->labels({rule_->config.name}).inc();
    const std::string retry = "Retry-After: " + std::to_string(decision_.retryAfterSeconds()) + "\r\n";
    cb.sendLocalError(429, "rate limit exceeded", retry);
    return Status::Stop;
  }

  const RateLimitFilterFactory& factory_;
  WorkerContext& ctx_;
  const RateLimitFilterFactory::Rule* rule_ = nullptr;
  std::string redisKey_;
  algo::RateLimitDecision decision_;
  bool haveDecision_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace

RateLimitFilterFactory::RateLimitFilterFactory(const cfg::GatewayConfig& gateway, const cfg::RedisConfig& redis)
    : trusted_(gateway.trusted_proxies), commandTimeout_(redis.command_timeout) {
  for (const cfg::RateLimitRule& c : gateway.rate_limits) {
    auto r = std::make_unique<Rule>();
    r->config = c;
    r->script = std::string(algo::rateLimitScriptFor(c.algorithm));
    r->sha = sha1Hex(r->script);
    r->keyPrefix = "rl:" + c.name + ":";
    r->limitArg = std::to_string(c.limit);
    r->windowArg = std::to_string(c.window.count());
    if (c.key.rfind("header:", 0) == 0) {
      r->headerName = c.key.substr(7);
    }
    r->fallback = algo::makeLocalRateLimiter(c.algorithm, algo::RateLimitRule{c.limit, c.window.count()});
    rules_.push_back(std::move(r));
  }
}

std::unique_ptr<HttpFilter> RateLimitFilterFactory::createFilter(WorkerContext& ctx) const {
  return std::make_unique<RateLimitFilter>(*this, ctx);
}

bool rateLimitsNeedRedis(const cfg::GatewayConfig& gateway) { return !gateway.rate_limits.empty(); }

}  // namespace gateway
