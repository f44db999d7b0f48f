#include "gateway/worker.h"

#include <algorithm>

#include "common/obs/log.h"
#include "common/obs/metrics.h"
#include "gateway/filters/ratelimit/rate_limit_filter.h"

namespace gateway {

http::ServerSettings clientServerSettings(const cfg::GatewayConfig& g, Runtime& rt) {
  http::ServerSettings s;
  s.maxHeaderBytes = g.max_header_bytes;
  s.maxBodyBytes = g.max_body_bytes;
  s.headerTimeoutMs = static_cast<uint64_t>(g.header_timeout.count());
  s.keepAliveTimeoutMs = static_cast<uint64_t>(g.keep_alive_timeout.count());
  s.maxRequestsPerConnection = static_cast<uint64_t>(g.max_requests_per_connection);
  s.requestIdHeader = g.request_id.header;
  s.maxConnections = g.max_connections;
  s.connectionCount = &rt.clientConnections;
  if (!g.tls.cert_file.empty()) {
    s.tlsContext = [&rt] { return rt.policy()->tls; };
  }
  return s;
}

http::PoolSettings upstreamPoolSettings(const cfg::GatewayConfig& g, int workers, http::PoolSettings base) {
  base.maxConnections = g.upstream.max_connections;
  // Idle connections are kept per loop; the process-wide bound is split among the loops.
  base.maxIdleConnections = std::max(1, (g.upstream.max_idle_connections + workers - 1) / workers);
  base.idleTimeoutMs = static_cast<uint64_t>(g.upstream.idle_timeout.count());
  base.connectTimeoutMs = static_cast<uint64_t>(g.upstream.connect_timeout.count());
  base.readTimeoutMs = static_cast<uint64_t>(g.upstream.read_timeout.count());
  base.writeTimeoutMs = static_cast<uint64_t>(g.upstream.write_timeout.count());
  base.poolTimeoutMs = static_cast<uint64_t>(g.upstream.pool_timeout.count());
  return base;
}

void Worker::applyPolicy(std::shared_ptr<const Policy> policy) {
  post([this, policy] {
    const cfg::GatewayConfig& g = policy->gateway();
    server_->updateSettings(clientServerSettings(g, rt_));
    pool_->updateSettings(upstreamPoolSettings(g, cfg::resolvedWorkers(rt_.gateway()), pool_->settings()));
  });
}

Worker::Worker(Runtime& rt, int index, std::function<void()> onExit)
    : rt_(rt), index_(index), onExit_(std::move(onExit)) {
  uv_loop_init(&loop_);
  pool_ = std::make_unique<http::ConnectionPool>(&loop_, rt_.upstreamPool, &rt_.upstreamPoolStats);
  if (rateLimitsNeedRedis(rt_.gateway())) {
    redisx::RedisOptions ro;
    ro.url = rt_.config.redis.url;
    ro.connectTimeout = rt_.config.redis.connect_timeout;
    ro.commandTimeout = rt_.config.redis.command_timeout;
    redis_ = std::make_unique<redisx::RedisClient>(&loop_, ro);
  }
  ctx_ = std::make_unique<WorkerContext>(
      WorkerContext{rt_, &loop_, *pool_, [this](std::function<void()> task) { post(std::move(task)); }});
  WorkerContext* ctx = ctx_.get();
  server_ = std::make_unique<http::Server>(&loop_, clientServerSettings(rt_.gateway(), rt_), [ctx] { return std::make_unique<ProxyHandler>(*ctx); });
  ctx_->redis = redis_.get();
  server_->setOnEmpty([this] { maybeExit(); });
  uv_async_init(&loop_, command_.get(), &Worker::onCommand);
  command_.markInitialized();
  command_.get()->data = this;
}

Worker::~Worker() {
  join();
  server_.reset();
  pool_.reset();
  redis_.reset();
  command_.close();
  uvx::releaseLoopState(&loop_);
  // Let close callbacks run so every handle's memory is released before the loop goes.
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

int Worker::bind(std::string& error) {
  const cfg::GatewayConfig& g = rt_.gateway();
  return server_->listen(g.listen.host, g.listen.port, g.backlog, error);
}

void Worker::start() {
  if (redis_) {
    std::string error;
    if (!redis_->start(&error)) {
      obs::warn("redis client not started; rate limits use their fallback", obs::LogFields().str("error", error));
    }
  }
  thread_ = std::thread([this] { run(); });
}

void Worker::run() {
  obs::setMetricsShard(static_cast<unsigned>(index_) + 1);  // shard 0 is the main thread's
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (onExit_) {
    onExit_();
  }
}

void Worker::drain() {
  drainRequested_ = true;
  wake();
}

void Worker::forceClose() {
  forceRequested_ = true;
  wake();
}

void Worker::wake() {
  std::lock_guard lock(tasksMu_);
  if (acceptingTasks_) {
    uv_async_send(command_.get());
  }
}

void Worker::join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Worker::post(std::function<void()> task) {
  {
    std::lock_guard lock(tasksMu_);
    if (!acceptingTasks_) {
      return;  // the loop is gone; whoever posted holds only weak references
    }
    tasks_.push_back(std::move(task));
  }
  wake();
}

void Worker::runPostedTasks() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(tasksMu_);
    tasks.swap(tasks_);
  }
  for (auto& task : tasks) {
    task();
  }
}

void Worker::onCommand(uv_async_t* a) {
  auto* self = static_cast<Worker*>(a->data);
  if (self == nullptr) {
    return;
  }
  self->runPostedTasks();
  if (self->forceRequested_.load()) {
    self->stopping_ = true;
    self->server_->stopListening();
    self->server_->closeAll();
    self->maybeExit();
    return;
  }
  if (self->drainRequested_.load() && !self->stopping_) {
    self->stopping_ = true;
    self->server_->beginDrain();
    self->server_->stopListening();  // calls maybeExit when already empty
  }
}

void Worker::maybeExit() {
  if (!stopping_ || server_->connectionCount() != 0) {
    return;
  }
  // Nothing left to serve: close what keeps the loop alive so uv_run returns.
  pool_->closeIdle();
  if (redis_) {
    redis_->close();
  }
  {
    std::lock_guard lock(tasksMu_);
    acceptingTasks_ = false;
    command_.close();
  }
}

}  // namespace gateway
