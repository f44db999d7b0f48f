#include "gateway/reload.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "common/obs/log.h"

namespace gateway {

struct ConfigReloader::Job {
  uv_work_t req{};
  std::weak_ptr<bool> alive;
  ConfigReloader* self = nullptr;
  std::string path;
  std::string trigger;
  std::string text;  // read on the thread pool
  cfg::LoadResult result;
  std::shared_ptr<uvx::TlsContext> tls;
};

namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Keys whose new values take effect only after a restart (listeners, threads, connections that
// were set up at startup).
std::vector<std::string> restartOnlyChanges(const cfg::Config& was, const cfg::Config& now) {
  std::vector<std::string> changed;
  const cfg::GatewayConfig& a = was.gateway;
  const cfg::GatewayConfig& b = now.gateway;
  auto check = [&](bool differs, const char* key) {
    if (differs) {
      changed.emplace_back(key);
    }
  };
  check(a.listen.str() != b.listen.str(), "gateway.listen");
  check(a.admin_listen.str() != b.admin_listen.str(), "gateway.admin_listen");
  check(a.workers != b.workers, "gateway.workers");
  check(a.backlog != b.backlog, "gateway.backlog");
  check(a.upstream.address.str() != b.upstream.address.str(), "gateway.upstream.address");
  check(a.upstream.health_path != b.upstream.health_path, "gateway.upstream.health_path");
  check(a.upstream.health_interval != b.upstream.health_interval, "gateway.upstream.health_interval");
  check(a.rate_limits.empty() != b.rate_limits.empty(), "gateway.rate_limits (Redis connections)");
  check(was.redis.url != now.redis.url || was.redis.connect_timeout != now.redis.connect_timeout ||
            was.redis.command_timeout != now.redis.command_timeout,
        "redis");
  check(a.tracing.enabled != b.tracing.enabled || a.tracing.otlp_endpoint != b.tracing.otlp_endpoint,
        "gateway.tracing");
  return changed;
}

}  // namespace

ConfigReloader::ConfigReloader(uv_loop_t* loop, Runtime& rt, std::string path, AppliedFn onApplied)
    : loop_(loop), rt_(rt), path_(std::move(path)), onApplied_(std::move(onApplied)), debounce_(loop, [this] {
        reload("file change");
      }) {
  const size_t slash = path_.rfind('/');
  dir_ = slash == std::string::npos ? "." : path_.substr(0, slash == 0 ? 1 : slash);
  base_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  lastText_ = readFile(path_);  // what startup loaded (startup already read it, off any loop)
}

ConfigReloader::~ConfigReloader() { stop(); }

void ConfigReloader::start() {
  uv_signal_init(loop_, sighup_.get());
  sighup_.markInitialized();
  sighup_.get()->data = this;
  uv_signal_start(sighup_.get(), [](uv_signal_t* s, int) { static_cast<ConfigReloader*>(s->data)->reload("SIGHUP"); },
                  SIGHUP);
  uv_fs_event_init(loop_, watch_.get());
  watch_.markInitialized();
  watch_.get()->data = this;
  const int rc = uv_fs_event_start(
      watch_.get(),
      [](uv_fs_event_t* h, const char* filename, int, int status) {
        auto* self = static_cast<ConfigReloader*>(h->data);
        if (self == nullptr || status < 0) {
          return;
        }
        // The file itself, or Kubernetes' "..data" symlink swap of a mounted ConfigMap.
        const std::string name = filename != nullptr ? filename : "";
        if (name.empty() || name == self->base_ || name == "..data") {
          self->debounce_.start(200);  // editors and kubelet write in several steps
        }
      },
      dir_.c_str(), 0);
  if (rc != 0) {
    obs::warn("config file not watched; SIGHUP still reloads",
              obs::LogFields().str("dir", dir_).str("error", uv_strerror(rc)));
  }
}

void ConfigReloader::stop() {
  stopped_ = true;
  debounce_.stop();
  sighup_.close();
  watch_.close();
}

void ConfigReloader::reload(const char* trigger) {
  if (stopped_) {
    return;
  }
  if (running_) {
    again_ = true;
    return;
  }
  running_ = true;
  auto* job = new Job;
  job->req.data = job;
  job->alive = alive_;
  job->self = this;
  job->path = path_;
  job->trigger = trigger;
  uv_queue_work(loop_, &job->req, &ConfigReloader::onWork, &ConfigReloader::onWorkDone);
}

void ConfigReloader::onWork(uv_work_t* req) {
  // Thread pool: file I/O and parsing stay off the event loop.
  auto* job = static_cast<Job*>(req->data);
  job->text = readFile(job->path);
  job->result = cfg::loadFile(job->path);
  std::string error;
  if (job->result.config && !loadTls(job->result.config->gateway, job->tls, error)) {
    job->result.errors.push_back(job->path + ": gateway.tls: " + error);
    job->result.config.reset();
  }
}

void ConfigReloader::onWorkDone(uv_work_t* req, int) {
  std::unique_ptr<Job> job(static_cast<Job*>(req->data));
  if (job->alive.expired()) {
    return;
  }
  job->self->finish(*job);
}

void ConfigReloader::finish(Job& job) {
  running_ = false;
  const bool manual = job.trigger == "SIGHUP";
  if (!manual && job.text == lastText_) {
    // A change event without a content change (touch, atomic rename of the same bytes).
  } else if (!job.result.config) {
    lastText_ = job.text;
    rt_.stats->configReloadFailure.inc();
    for (const std::string& e : job.result.errors) {
      obs::error("config reload rejected; keeping the running config",
                 obs::LogFields().str("trigger", job.trigger).str("error", e));
    }
  } else {
    lastText_ = job.text;
    const std::shared_ptr<const Policy> previous = rt_.policy();
    for (const std::string& key : restartOnlyChanges(rt_.config, *job.result.config)) {
      obs::warn("config reload: this change needs a restart", obs::LogFields().str("key", key));
    }
    obs::Level level = obs::Level::Info;
    if (obs::parseLevel(job.result.config->gateway.logging.level, level)) {
      obs::setLevel(level);
    }
    auto policy =
        buildPolicy(std::move(*job.result.config), previous->generation + 1, previous.get(), std::move(job.tls));
    rt_.publish(policy);
    rt_.stats->configReloadSuccess.inc();
    obs::info("config reloaded", obs::LogFields().str("trigger", job.trigger).num("generation", static_cast<int64_t>(policy->generation)));
    if (onApplied_) {
      onApplied_(policy);
    }
  }
  if (again_) {
    again_ = false;
    reload("coalesced change");
  }
}

}  // namespace gateway
