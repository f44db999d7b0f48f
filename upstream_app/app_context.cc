#include "upstream_app/app_context.h"

#include "common/obs/log.h"
#include "upstream_app/routes/articles.h"

namespace app {

AppContext::AppContext(uv_loop_t* loop, const cfg::Config& config) : loop_(loop), config_(config) {
  const cfg::UpstreamAppConfig& a = config.upstream_app;
  db::PoolSettings ps = db::PoolSettings::fromConfig(a.database);
  pool_ = std::make_unique<db::Pool>(loop_, ps);

  redisx::RedisOptions ro;
  ro.url = config.redis.url;
  ro.connectTimeout = config.redis.connect_timeout;
  ro.commandTimeout = config.redis.command_timeout;
  redis_ = std::make_unique<redisx::RedisClient>(loop_, ro);
  std::string redisError;
  if (!redis_->start(&redisError)) {
    // Validated at load, so unexpected; the app still serves from PostgreSQL.
    obs::error("redis url unusable; cache and idempotency disabled", obs::LogFields().str("error", redisError));
  }
  timers_ = std::make_unique<TimerQueue>(loop_);

  ArticleCacheSettings cs;
  cs.ttl = a.cache_ttl;
  articles_ = std::make_unique<ArticleCache>(*redis_, *timers_, cs, routes::articleLoader(*pool_));

  IdempotencySettings is;
  // Longer than the order transaction can take: the pool wait, then every try with its statement
  // bound and backoff, plus slack.
  is.pendingTtl = ps.poolTimeout * 2 + (ps.statementTimeout + std::chrono::milliseconds(1000)) * ps.maxAttempts +
                  std::chrono::milliseconds(10000);
  idempotency_ = std::make_unique<IdempotencyStore>(*redis_, *timers_, is);

  articleCacheControl_ =
      "public, max-age=" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(a.cache_ttl).count());
}

AppContext::~AppContext() {
  // Users of the pool, Redis and timers first.
  idempotency_.reset();
  articles_.reset();
  timers_.reset();
  redis_.reset();
  pool_.reset();
}

void AppContext::close() {
  // The pool first: work that Redis failures would start (database fallbacks) then fails at once.
  pool_->close();
  timers_->close();
  redis_->close();
}

}  // namespace app
