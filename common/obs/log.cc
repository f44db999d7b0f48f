#include "common/obs/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <thread>

#include "common/http/status.h"

namespace obs {
namespace {

constexpr size_t kMaxBufferedBytes = 8 * 1024 * 1024;
constexpr size_t kWakeWriterBytes = 64 * 1024;

std::atomic<int> gLevel{static_cast<int>(Level::Info)};
std::atomic<uint64_t> gDropped{0};

class Writer {
 public:
  Writer() : thread_([this] { run(); }) {}
  ~Writer() { stop(); }

  void append(std::string_view line) {
    std::unique_lock lock(mu_);
    if (stopped_) {
      lock.unlock();
      writeAll(line);
      return;
    }
    if (buffer_.size() + line.size() > kMaxBufferedBytes) {
      gDropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    buffer_.append(line);
    if (buffer_.size() >= kWakeWriterBytes) {
      cv_.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopped_) {
        return;
      }
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  static void writeAll(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(STDOUT_FILENO, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  void run() {
    std::string local;
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping_ || buffer_.size() >= kWakeWriterBytes; });
      local.swap(buffer_);
      const bool done = stopping_;
      if (done) {
        stopped_ = true;
      }
      lock.unlock();
      writeAll(local);
      local.clear();
      if (done) {
        return;
      }
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string buffer_;
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

Writer& writer() {
  static Writer w;
  return w;
}

const char* levelName(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "info";
}

// RFC 3339 UTC timestamp with milliseconds; the seconds part is cached per thread.
void appendTimestamp(std::string& out) {
  thread_local time_t cachedSecond = 0;
  thread_local char cached[32];
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const time_t sec = static_cast<time_t>(ms / 1000);
  if (sec != cachedSecond) {
    tm t{};
    gmtime_r(&sec, &t);
    std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &t);
    cachedSecond = sec;
  }
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms % 1000));
  out.append(cached);
  out.append(frac);
}

}  // namespace

bool parseLevel(std::string_view name, Level& out) {
  if (name == "debug") {
    out = Level::Debug;
  } else if (name == "info") {
    out = Level::Info;
  } else if (name == "warn") {
    out = Level::Warn;
  } else if (name == "error") {
    out = Level::Error;
  } else {
    return false;
  }
  return true;
}

void setLevel(Level level) { gLevel.store(static_cast<int>(level), std::memory_order_relaxed); }

bool enabled(Level level) { return static_cast<int>(level) >= gLevel.load(std::memory_order_relaxed); }

void LogFields::key(std::string_view k) {
  text_.append(",\"");
  text_.append(k);
  text_.append("\":");
}

LogFields& LogFields::str(std::string_view k, std::string_view value) {
  key(k);
  text_.push_back('"');
  http::appendJsonEscaped(text_, value);
  text_.push_back('"');
  return *this;
}

LogFields& LogFields::num(std::string_view k, int64_t value) {
  key(k);
  text_.append(std::to_string(value));
  return *this;
}

LogFields& LogFields::real(std::string_view k, double value, int decimals) {
  key(k);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  text_.append(buf);
  return *this;
}

LogFields& LogFields::boolean(std::string_view k, bool value) {
  key(k);
  text_.append(value ? "true" : "false");
  return *this;
}

void log(Level level, std::string_view msg, const LogFields& fields) {
  if (!enabled(level)) {
    return;
  }
  std::string line;
  line.reserve(64 + msg.size() + fields.text().size());
  line.append("{\"ts\":\"");
  appendTimestamp(line);
  line.append("\",\"level\":\"");
  line.append(levelName(level));
  line.append("\",\"msg\":\"");
  http::appendJsonEscaped(line, msg);
  line.push_back('"');
  line.append(fields.text());
  line.append("}\n");
  writer().append(line);
}

void shutdownLogging() { writer().stop(); }

uint64_t droppedLines() { return gDropped.load(std::memory_order_relaxed); }

}  // namespace obs
