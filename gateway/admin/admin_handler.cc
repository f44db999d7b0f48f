#include "gateway/admin/admin_handler.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "gateway/admin/health.h"

namespace gateway {
namespace {

int64_t residentMemoryBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0;
  int64_t resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

void metric(std::string& out, const char* name, const char* type, const char* help, const std::string& sample) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
  out += sample;
}

std::string sample(const std::string& nameAndLabels, int64_t v) { return nameAndLabels + " " + std::to_string(v) + "\n"; }

}  // namespace

std::string renderMetrics(const Runtime& rt) {
  std::string out;
  out.reserve(2048);
  metric(out, "gateway_in_flight_requests", "gauge", "Requests being proxied now.",
         sample("gateway_in_flight_requests", rt.inFlight.load()));
  metric(out, "gateway_connections_active", "gauge", "Open client connections.",
         sample("gateway_connections_active", rt.clientConnections.load()));
  metric(out, "gateway_concurrency_rejected_total", "counter", "Requests refused by limit_concurrency.",
         sample("gateway_concurrency_rejected_total", static_cast<int64_t>(rt.concurrencyRejected.load())));
  metric(out, "gateway_upstream_retries_total", "counter", "Upstream attempts after the first.",
         sample("gateway_upstream_retries_total", static_cast<int64_t>(rt.upstreamRetries.load())));
  metric(out, "gateway_upstream_pool_connections", "gauge", "Upstream connections by state.",
         sample("gateway_upstream_pool_connections{state=\"active\"}", rt.upstreamPoolStats.active.load()) +
             sample("gateway_upstream_pool_connections{state=\"idle\"}", rt.upstreamPoolStats.idle.load()) +
             sample("gateway_upstream_pool_connections{state=\"connecting\"}", rt.upstreamPoolStats.connecting.load()));
  metric(out, "gateway_upstream_connections_opened_total", "counter", "Upstream connections opened.",
         sample("gateway_upstream_connections_opened_total", static_cast<int64_t>(rt.upstreamPoolStats.opened.load())));
  metric(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         sample("process_resident_memory_bytes", residentMemoryBytes()));
  return out;
}

void AdminHandler::onRequestHead(http::ServerConnection& c) {
  std::string_view path = c.request().target;
  path = path.substr(0, path.find('?'));
  if (serveHealth(path, c, rt_)) {
    return;
  }
  if (path == "/metrics") {
    c.sendResponse(200, "text/plain; version=0.0.4; charset=utf-8", renderMetrics(rt_));
    return;
  }
  c.sendLocalError(404, "not found");
}

}  // namespace gateway
