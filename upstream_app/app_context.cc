#include "upstream_app/app_context.h"

#include "common/obs/log.h"
#include "upstream_app/routes/articles.h"

namespace app {

AppShared::AppShared(const cfg::Config& config, int loops)
    : metrics(std::make_unique<AppMetrics>(loops)),
      shipping(std::make_unique<shipping::ShippingShared>(config.upstream_app.shipping)),
      tracer(std::make_unique<obs::trace::Tracer>(config.upstream_app.tracing)) {
  metrics->bindShipping(*shipping);
}

AppContext::AppContext(uv_loop_t* loop, const cfg::Config& config, AppShared& shared, int loopIndex)
    : loop_(loop), config_(config), shared_(&shared), loopGauges_(&shared.metrics->loop(loopIndex)) {
  init();
}

AppContext::AppContext(uv_loop_t* loop, const cfg::Config& config)
    : loop_(loop),
      config_(config),
      ownShared_(std::make_unique<AppShared>(config, 1)),
      shared_(ownShared_.get()),
      loopGauges_(&ownShared_->metrics->loop(0)) {
  init();
}

void AppContext::init() {
  const cfg::Config& config = config_;
  const cfg::UpstreamAppConfig& a = config.upstream_app;
  db::PoolSettings ps = db::PoolSettings::fromConfig(a.database);
  pool_ = std::make_unique<db::Pool>(loop_, ps);
  AppMetrics* m = shared_->metrics.get();
  pool_->setHooks(db::PoolHooks{
      [m](double seconds) { m->observePoolWait(seconds); },
      [m](const char* label, double seconds, bool) { m->observeQuery(label, seconds); },
  });
  shipping_ = std::make_unique<shipping::ShippingClient>(loop_, *shared_->shipping);

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

  gaugeTimer_ = std::make_unique<uvx::Timer>(loop_, [this] { refreshLoopGauges(*this); });
  gaugeTimer_->start(1000, 1000);

  articleCacheControl_ =
      "public, max-age=" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(a.cache_ttl).count());
}

AppContext::~AppContext() {
  // Users of the pool, Redis and timers first.
  gaugeTimer_.reset();
  shipping_.reset();
  idempotency_.reset();
  articles_.reset();
  timers_.reset();
  redis_.reset();
  pool_.reset();
}

void AppContext::close() {
  // The pool first: work that Redis failures would start (database fallbacks) then fails at once.
  pool_->close();
  shipping_->close();
  gaugeTimer_.reset();
  timers_->close();
  redis_->close();
}

}  // namespace app
