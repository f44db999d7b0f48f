// upstream_app: wiring only. CLI -> config -> one-shot commands or the HTTP server loops.
#include <signal.h>
#include <uv.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/config/app_config.h"
#include "common/http/server.h"
#include "common/obs/log.h"
#include "common/obs/metrics.h"
#include "common/uv/handle.h"
#include "upstream_app/app_context.h"
#include "upstream_app/app_handler.h"
#include "upstream_app/db/migrate.h"
#include "upstream_app/health/readiness.h"

namespace {

constexpr const char* kUsage =
    "usage: upstream_app --config FILE [--migrate | --seed-demo]\n"
    "       upstream_app --check-config FILE\n"
    "       upstream_app --version\n";

// One event loop with its own SO_REUSEPORT listener.
class AppWorker {
 public:
  AppWorker(const cfg::Config& config, app::AppShared& shared, int index, std::function<void()> onExit)
      : onExit_(std::move(onExit)), index_(index) {
    uv_loop_init(&loop_);
    ctx_ = std::make_unique<app::AppContext>(&loop_, config, shared, index);
    readiness_ = std::make_unique<app::ReadinessChecker>(&loop_, config);
    app::ReadinessChecker* checker = readiness_.get();
    ctx_->setReadinessProbe([checker](app::AppContext::ReadinessCallback cb) {
      checker->check([cb = std::move(cb)](bool dbOk, std::string dbError, bool cacheOk, std::string cacheError) {
        cb(dbOk, dbError, cacheOk, cacheError);
      });
    });
    const cfg::UpstreamAppConfig& a = config.upstream_app;
    http::ServerSettings s;
    s.keepAliveTimeoutMs = static_cast<uint64_t>(a.keep_alive_timeout.count());
    s.maxBodyBytes = 1024 * 1024;
    app::AppContext* ctx = ctx_.get();
    server_ = std::make_unique<http::Server>(&loop_, s, [ctx] { return std::make_unique<app::AppHandler>(*ctx); });
    server_->setOnEmpty([this] { maybeExit(); });
    uv_async_init(&loop_, command_.get(), [](uv_async_t* h) { static_cast<AppWorker*>(h->data)->onCommand(); });
    command_.markInitialized();
    command_.get()->data = this;
  }
  ~AppWorker() {
    if (thread_.joinable()) {
      thread_.join();
    }
    server_.reset();
    ctx_.reset();
    readiness_.reset();
    command_.close();
    uvx::releaseLoopState(&loop_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  int bind(const cfg::HostPort& listen, std::string& error) { return server_->listen(listen.host, listen.port, 1024, error); }
  void start() {
    thread_ = std::thread([this] {
      obs::setMetricsShard(static_cast<unsigned>(index_) + 1);  // shard 0 is the main thread's
      uv_run(&loop_, UV_RUN_DEFAULT);
      onExit_();
    });
  }
  void drain() {
    drain_ = true;
    uv_async_send(command_.get());
  }

 private:
  void onCommand() {
    if (drain_ && !stopping_) {
      stopping_ = true;
      server_->beginDrain();
      server_->stopListening();
    }
  }
  void maybeExit() {
    if (stopping_ && server_->connectionCount() == 0) {
      readiness_->close();  // its PostgreSQL and Redis handles would keep the loop running
      ctx_->close();        // so would the pool's, the cache's and the idempotency store's
      command_.close();
    }
  }

  std::function<void()> onExit_;
  int index_;
  uv_loop_t loop_{};
  std::unique_ptr<app::AppContext> ctx_;
  std::unique_ptr<app::ReadinessChecker> readiness_;
  std::unique_ptr<http::Server> server_;
  uvx::OwnedHandle<uv_async_t> command_;
  std::atomic<bool> drain_{false};
  bool stopping_ = false;
  std::thread thread_;
};

int serve(const cfg::Config& config) {
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop{};
  uv_loop_init(&loop);
  std::atomic<int> exited{0};
  uvx::OwnedHandle<uv_async_t> workerExited;
  uv_async_init(&loop, workerExited.get(), [](uv_async_t*) {});
  workerExited.markInitialized();

  const int count = cfg::resolvedWorkers(config.upstream_app);
  // Shared by every loop (metrics registry, shipping breaker); outlives the workers.
  app::AppShared shared(config, count);
  std::vector<std::unique_ptr<AppWorker>> workers;
  for (int i = 0; i < count; ++i) {
    workers.push_back(std::make_unique<AppWorker>(config, shared, i, [&] {
      exited.fetch_add(1);
      uv_async_send(workerExited.get());
    }));
    std::string error;
    if (workers.back()->bind(config.upstream_app.listen, error) != 0) {
      obs::error("cannot listen", obs::LogFields().str("listen", config.upstream_app.listen.str()).str("error", error));
      workers.clear();
      workerExited.close();
      uv_run(&loop, UV_RUN_DEFAULT);
      return 1;
    }
  }
  struct SignalState {
    std::vector<std::unique_ptr<AppWorker>>* workers;
    bool draining = false;
  } state{&workers};
  std::vector<std::unique_ptr<uvx::OwnedHandle<uv_signal_t>>> signals;
  for (int signum : {SIGTERM, SIGINT}) {
    auto& sig = signals.emplace_back(std::make_unique<uvx::OwnedHandle<uv_signal_t>>());
    uv_signal_init(&loop, sig->get());
    sig->markInitialized();
    sig->get()->data = &state;
    uv_signal_start(
        sig->get(),
        [](uv_signal_t* s, int) {
          auto* st = static_cast<SignalState*>(s->data);
          if (st->draining) {
            return;
          }
          st->draining = true;
          obs::info("draining");
          for (auto& w : *st->workers) {
            w->drain();
          }
        },
        signum);
  }
  for (auto& w : workers) {
    w->start();
  }
  obs::info("upstream_app started", obs::LogFields()
                                        .str("listen", config.upstream_app.listen.str())
                                        .num("workers", count)
                                        .str("version", SIDECAR_VERSION));
  // Signals and worker exits wake this loop; it runs until every worker has exited.
  while (exited.load() < count) {
    uv_run(&loop, UV_RUN_ONCE);
  }
  workers.clear();
  shared.tracer->shutdown(std::chrono::seconds(2));  // queued spans, bounded
  signals.clear();
  workerExited.close();
  uvx::releaseLoopState(&loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  obs::info("upstream_app stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string configPath;
  bool migrate = false;
  bool seed = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--version") {
      std::cout << "upstream_app " << SIDECAR_VERSION << "\n";
      return 0;
    }
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--check-config" && i + 1 < argc) {
      return cfg::checkConfigCommand(argv[i + 1], std::cout, std::cerr);
    }
    if (arg == "--config" && i + 1 < argc) {
      configPath = argv[++i];
      continue;
    }
    if (arg == "--migrate") {
      migrate = true;
      continue;
    }
    if (arg == "--seed-demo") {
      seed = true;
      continue;
    }
    std::cerr << "upstream_app: unknown argument '" << arg << "'\n" << kUsage;
    return 2;
  }
  if (configPath.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  cfg::LoadResult loaded = cfg::loadFile(configPath);
  if (!loaded.config) {
    for (const std::string& e : loaded.errors) {
      std::cerr << e << "\n";
    }
    return 2;
  }
  const cfg::Config& config = *loaded.config;
  if (migrate || seed) {
    int rc = 0;
    if (migrate) {
      rc = app::db::runMigrations(config.upstream_app.database.url, app::db::defaultMigrationsDir(argv[0]), std::cerr);
    }
    if (rc == 0 && seed) {
      rc = app::db::seedDemo(config.upstream_app.database.url, std::cerr);
    }
    return rc;
  }
  obs::Level level = obs::Level::Info;
  obs::parseLevel(config.upstream_app.logging.level, level);
  obs::setLevel(level);
  const int rc = serve(config);
  obs::shutdownLogging();
  return rc;
}
