#pragma once
// Config reload (SIGHUP, or the file changing: a Kubernetes ConfigMap update swaps a symlink in
// the file's directory, so the directory is watched). The file is read and validated off the
// loop; a valid file becomes a new Policy for new requests, an invalid one is logged and the old
// config kept. Settings that cannot change live (listeners, workers, the upstream address) are
// reported as needing a restart.
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "common/uv/handle.h"
#include "common/uv/timer.h"
#include "gateway/runtime.h"

namespace gateway {

class ConfigReloader {
 public:
  // `onApplied` runs on the main loop after a new policy was published (push settings to workers).
  using AppliedFn = std::function<void(const std::shared_ptr<const Policy>&)>;

  ConfigReloader(uv_loop_t* loop, Runtime& rt, std::string path, AppliedFn onApplied);
  ~ConfigReloader();
  void start();
  void stop();
  // Reloads now (a reload already running makes this one run right after it).
  void reload(const char* trigger);

 private:
  struct Job;
  static void onWork(uv_work_t* req);
  static void onWorkDone(uv_work_t* req, int status);
  void finish(Job& job);

  uv_loop_t* loop_;
  Runtime& rt_;
  std::string path_;
  std::string dir_;
  std::string base_;
  AppliedFn onApplied_;
  uvx::OwnedHandle<uv_signal_t> sighup_;
  uvx::OwnedHandle<uv_fs_event_t> watch_;
  uvx::Timer debounce_;
  std::string lastText_;  // the text last applied (or rejected): unchanged files are not reloaded
  bool running_ = false;
  bool again_ = false;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace gateway
