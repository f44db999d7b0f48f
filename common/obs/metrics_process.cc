#include "common/obs/metrics_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace obs {
namespace {

// Reads a small /proc file whole; empty on error. /proc files report size 0, so read until EOF.
std::string readProcFile(const char* path) {
  std::string text;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return text;
  }
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// Field `index` (0-based) of /proc/self/statm, in bytes.
double statmBytes(int index) {
  const std::string text = readProcFile("/proc/self/statm");
  const char* p = text.c_str();
  char* end = nullptr;
  unsigned long long pages = 0;
  for (int i = 0; i <= index; ++i) {
    pages = std::strtoull(p, &end, 10);
    if (end == p) {
      return 0;
    }
    p = end;
  }
  return static_cast<double>(pages) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

double processResidentMemoryBytes() { return statmBytes(1); }

double processVirtualMemoryBytes() { return statmBytes(0); }

double processOpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    return -1;
  }
  int count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') {
      ++count;
    }
  }
  ::closedir(dir);
  // The directory stream's own descriptor was listed too.
  return count - 1;
}

double processMaxFds() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return -1;
  }
  return static_cast<double>(limit.rlim_cur);
}

double processCpuSeconds() {
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) {
    return 0;
  }
  const auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double processStartTimeSeconds() {
  // starttime is field 22 of /proc/self/stat, in clock ticks after boot; the command name
  // (field 2) may hold spaces and parentheses, so count fields after its last ')'.
  const std::string stat = readProcFile("/proc/self/stat");
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) {
    return 0;
  }
  const char* p = stat.c_str() + paren + 1;
  char* end = nullptr;
  unsigned long long startTicks = 0;
  for (int field = 3; field <= 22; ++field) {
    while (*p == ' ') {
      ++p;
    }
    if (field == 22) {
      startTicks = std::strtoull(p, &end, 10);
      if (end == p) {
        return 0;
      }
      break;
    }
    while (*p != ' ' && *p != '\0') {
      ++p;
    }
  }
  const std::string procStat = readProcFile("/proc/stat");
  const size_t at = procStat.find("\nbtime ");
  if (at == std::string::npos) {
    return 0;
  }
  const double bootTime = static_cast<double>(std::strtoull(procStat.c_str() + at + 7, nullptr, 10));
  return bootTime + static_cast<double>(startTicks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

void registerProcessMetrics(MetricsRegistry& registry) {
  registry.callbackGauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                         processResidentMemoryBytes);
  registry.callbackGauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", processVirtualMemoryBytes);
  registry.callbackGauge("process_open_fds", "Number of open file descriptors.", processOpenFds);
  registry.callbackGauge("process_max_fds", "Maximum number of open file descriptors.", processMaxFds);
  registry.callbackCounter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                           processCpuSeconds);
  // Read once: it does not change, and a scrape should not parse two /proc files for it.
  const double startTime = processStartTimeSeconds();
  registry.callbackGauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                         [startTime] { return startTime; });
}

}  // namespace obs
