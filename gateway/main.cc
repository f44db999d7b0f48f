// gateway: wiring only. Config -> workers -> admin listener, health probe, signals -> run.
#include <signal.h>
#include <uv.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/config/app_config.h"
#include "common/http/server.h"
#include "common/obs/log.h"
#include "common/obs/trace/tracer.h"
#include "common/uv/handle.h"
#include "common/uv/timer.h"
#include "gateway/admin/admin_handler.h"
#include "gateway/policy.h"
#include "gateway/reload.h"
#include "gateway/health_probe.h"
#include "gateway/runtime.h"
#include "gateway/worker.h"

namespace {

constexpr const char* kUsage =
    "usage: gateway --config FILE\n"
    "       gateway --check-config FILE\n"
    "       gateway --version\n";

// Main-loop side of the process: signals, drain timeline, admin server, health probe.
class Process {
 public:
  Process(gateway::Runtime& rt, std::string configPath) : rt_(rt), configPath_(std::move(configPath)) {
    uv_loop_init(&loop_);
  }

  int run() {
    const cfg::GatewayConfig& g = rt_.gateway();
    const int workers = cfg::resolvedWorkers(g);
    for (int i = 0; i < workers; ++i) {
      workers_.push_back(std::make_unique<gateway::Worker>(rt_, i, [this] {
        exitedCount_.fetch_add(1);
        uv_async_send(workerExited_.get());
      }));
      std::string error;
      if (workers_.back()->bind(error) != 0) {
        obs::error("cannot listen", obs::LogFields().str("listen", g.listen.str()).str("error", error));
        return 1;
      }
    }
    uv_async_init(&loop_, workerExited_.get(), [](uv_async_t* a) { static_cast<Process*>(a->data)->onWorkerExited(); });
    workerExited_.markInitialized();
    workerExited_.get()->data = this;

    http::ServerSettings adminSettings;
    adminSettings.headerTimeoutMs = static_cast<uint64_t>(g.header_timeout.count());
    adminSettings.keepAliveTimeoutMs = static_cast<uint64_t>(g.keep_alive_timeout.count());
    adminSettings.requestIdHeader = g.request_id.header;
    const gateway::Runtime* rt = &rt_;
    admin_ = std::make_unique<http::Server>(&loop_, adminSettings,
                                            [rt] { return std::make_unique<gateway::AdminHandler>(*rt); });
    std::string error;
    if (admin_->listen(g.admin_listen.host, g.admin_listen.port, g.backlog, error) != 0) {
      obs::error("cannot listen", obs::LogFields().str("admin_listen", g.admin_listen.str()).str("error", error));
      return 1;
    }
    probe_ = std::make_unique<gateway::HealthProbe>(&loop_, rt_);
    probe_->start();
    reloader_ = std::make_unique<gateway::ConfigReloader>(
        &loop_, rt_, configPath_, [this](const std::shared_ptr<const gateway::Policy>& policy) {
          for (auto& w : workers_) {
            w->applyPolicy(policy);
          }
        });
    reloader_->start();
    for (int signum : {SIGTERM, SIGINT}) {
      auto& sig = signals_.emplace_back(std::make_unique<uvx::OwnedHandle<uv_signal_t>>());
      uv_signal_init(&loop_, sig->get());
      sig->markInitialized();
      sig->get()->data = this;
      uv_signal_start(sig->get(), [](uv_signal_t* s, int n) { static_cast<Process*>(s->data)->onSignal(n); }, signum);
    }
    for (auto& w : workers_) {
      w->start();
    }
    obs::info("gateway started", obs::LogFields()
                                     .str("listen", g.listen.str())
                                     .str("admin_listen", g.admin_listen.str())
                                     .str("upstream", g.upstream.address.str())
                                     .num("workers", workers)
                                     .str("version", SIDECAR_VERSION));
    uv_run(&loop_, UV_RUN_DEFAULT);
    for (auto& w : workers_) {
      w->join();
    }
    workerExited_.close();  // no worker thread can be sending to it any more
    workers_.clear();
    probe_.reset();
    reloader_.reset();
    admin_.reset();
    uvx::releaseLoopState(&loop_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    const int closeRc = uv_loop_close(&loop_);
    if (closeRc != 0) {
      obs::warn("main loop closed with open handles", obs::LogFields().str("error", uv_strerror(closeRc)));
    }
    obs::info("gateway stopped", obs::LogFields().num("exit_code", 0));
    return 0;
  }

 private:
  void onSignal(int signum) {
    if (draining_) {
      if (!forced_) {
        obs::warn("second signal: closing every connection now");
        forceAll();
      }
      return;
    }
    draining_ = true;
    rt_.draining.store(true);  // /readyz answers 503 from now on
    const cfg::GatewayConfig& g = rt_.gateway();
    obs::info("draining", obs::LogFields()
                              .str("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT")
                              .num("drain_delay_ms", g.drain_delay.count())
                              .num("graceful_timeout_ms", g.graceful_timeout.count()));
    drainDelay_ = std::make_unique<uvx::Timer>(&loop_, [this] { onDrainDelayOver(); });
    drainDelay_->start(static_cast<uint64_t>(g.drain_delay.count()));
  }

  void onDrainDelayOver() {
    obs::info("listeners closing; finishing in-flight requests");
    for (auto& w : workers_) {
      w->drain();
    }
    graceDeadline_ = std::make_unique<uvx::Timer>(&loop_, [this] {
      obs::warn("graceful_timeout reached: closing remaining connections");
      forceAll();
    });
    graceDeadline_->start(static_cast<uint64_t>(rt_.gateway().graceful_timeout.count()));
  }

  void forceAll() {
    forced_ = true;
    for (auto& w : workers_) {
      w->forceClose();
    }
  }

  void onWorkerExited() {
    // uv_async coalesces sends, so the count comes from the atomic, not from the callbacks.
    if (allWorkersExited()) {
      shutdownMainLoop();
    }
  }

  bool allWorkersExited() { return exitedCount_.load() >= static_cast<int>(workers_.size()); }

  void shutdownMainLoop() {
    if (shutDown_) {
      return;  // a late coalesced wake-up from the last worker's send
    }
    shutDown_ = true;
    probe_->stop();
    reloader_->stop();
    admin_->stopListening();
    admin_->closeAll();
    drainDelay_.reset();
    graceDeadline_.reset();
    signals_.clear();
    // Not closed here: the last worker counts itself exited before its uv_async_send, so it may
    // still be inside that call (closing would free the handle under it; TSan saw the race).
    // Unreferenced, it no longer keeps the loop running; run() closes it after joining the workers.
    uv_unref(workerExited_.base());
  }

  gateway::Runtime& rt_;
  std::string configPath_;
  uv_loop_t loop_{};
  std::unique_ptr<gateway::ConfigReloader> reloader_;
  std::vector<std::unique_ptr<gateway::Worker>> workers_;
  std::unique_ptr<http::Server> admin_;
  std::unique_ptr<gateway::HealthProbe> probe_;
  std::vector<std::unique_ptr<uvx::OwnedHandle<uv_signal_t>>> signals_;
  uvx::OwnedHandle<uv_async_t> workerExited_;
  std::unique_ptr<uvx::Timer> drainDelay_;
  std::unique_ptr<uvx::Timer> graceDeadline_;
  std::atomic<int> exitedCount_{0};
  bool draining_ = false;
  bool forced_ = false;
  bool shutDown_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::string configPath;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--version") {
      std::cout << "gateway " << SIDECAR_VERSION << "\n";
      return 0;
    }
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if ((arg == "--check-config" || arg == "--config") && i + 1 < argc) {
      if (arg == "--check-config") {
        return cfg::checkConfigCommand(argv[i + 1], std::cout, std::cerr);
      }
      configPath = argv[++i];
      continue;
    }
    std::cerr << "gateway: unknown argument '" << arg << "'\n" << kUsage;
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
  signal(SIGPIPE, SIG_IGN);

  auto rt = std::make_unique<gateway::Runtime>();
  rt->config = std::move(*loaded.config);
  const cfg::GatewayConfig& g = rt->gateway();
  obs::Level level = obs::Level::Info;
  obs::parseLevel(g.logging.level, level);
  obs::setLevel(level);

  http::PoolSettings& pool = rt->upstreamPool;
  std::string error;
  if (!http::resolveAddress(g.upstream.address.host, g.upstream.address.port, pool.address, error)) {
    obs::error("cannot resolve upstream", obs::LogFields().str("upstream", g.upstream.address.str()).str("error", error));
    obs::shutdownLogging();
    return 1;
  }
  const int workers = cfg::resolvedWorkers(g);
  pool.hostHeader = g.upstream.address.str();
  pool.sharedOpenConnections = &rt->upstreamOpenConnections;
  pool = gateway::upstreamPoolSettings(g, workers, pool);
  std::shared_ptr<uvx::TlsContext> tls;
  if (!gateway::loadTls(g, tls, error)) {
    obs::error("cannot load TLS certificate", obs::LogFields().str("error", error));
    obs::shutdownLogging();
    return 1;
  }
  rt->publish(gateway::buildPolicy(rt->config, 1, nullptr, std::move(tls)));
  rt->tracer = std::make_unique<obs::trace::Tracer>(g.tracing);
  rt->stats = std::make_unique<gateway::GatewayStats>(static_cast<unsigned>(workers) + 1);
  rt->stats->bindRuntime(*rt);

  int rc = 0;
  {
    Process process(*rt, configPath);
    rc = process.run();
  }
  // Spans still queued get what is left of a short budget; the drain already waited for requests.
  rt->tracer->shutdown(std::chrono::seconds(2));
  obs::shutdownLogging();
  return rc;
}
