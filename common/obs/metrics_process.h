#pragma once
// Standard Prometheus process metrics for a MetricsRegistry, read from /proc at scrape time
// (callback series, so nothing runs on the request path).
#include "common/obs/metrics.h"

namespace obs {

// Resident set size in bytes (/proc/self/statm), 0 if unreadable.
double processResidentMemoryBytes();
// Virtual memory size in bytes (/proc/self/statm), 0 if unreadable.
double processVirtualMemoryBytes();
// Open file descriptors (entries of /proc/self/fd), -1 if unreadable.
double processOpenFds();
// Soft RLIMIT_NOFILE.
double processMaxFds();
// User + system CPU time of the process in seconds (getrusage).
double processCpuSeconds();
// Process start as Unix time in seconds (/proc/self/stat starttime + /proc/stat btime), 0 if
// unreadable.
double processStartTimeSeconds();

// Declares process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
// process_max_fds, process_cpu_seconds_total and process_start_time_seconds.
void registerProcessMetrics(MetricsRegistry& registry);

}  // namespace obs
