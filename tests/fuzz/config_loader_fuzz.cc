// libFuzzer target: the config loader (cfg::loadString, common/config/app_config.h): ${VAR}
// substitution, YAML parsing (yaml-cpp), shape and meaning checks, cross-checks. Then, for a
// config that loads, the gateway::Policy the gateway builds from it at startup and on reload
// (filter chain with every filter's config object, route namer, retry, backoff, breaker).
//
// Properties besides "no crash, no sanitizer report, no exception escapes":
//  - exactly one of {config, errors} comes back;
//  - every error names the file ("fuzz.yaml:LINE: key.path: message" or "fuzz.yaml: ...") and
//    is a single line with no control character;
//  - a loaded config satisfies the ranges CONTRACT §3 promises, so consumers need no re-checks.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/config/app_config.h"
#include "common/resilience/failure.h"
#include "gateway/policy.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

std::optional<std::string> fakeEnv(const std::string& name) {
  // A fixed environment: some variables set (one to a value that is itself YAML-ish), the rest
  // unset, so both branches of ${VAR} and ${VAR:-default} are reachable.
  if (name == "REDIS_URL") {
    return std::string("redis://127.0.0.1:6380/1");
  }
  if (name == "DB_URL") {
    return std::string("postgresql://app:secret@127.0.0.1:6432/app");
  }
  if (name == "PORT") {
    return std::string("8081");
  }
  if (name == "WEIRD") {
    return std::string("{a: [1, 2], b: \"x\"}");
  }
  if (name == "EMPTY") {
    return std::string();
  }
  return std::nullopt;
}

// "fuzz.yaml:LINE: ..." with LINE a positive decimal number.
bool isLinePrefixed(std::string_view e) {
  constexpr std::string_view kFile = "fuzz.yaml:";
  if (e.rfind(kFile, 0) != 0) {
    return false;
  }
  size_t i = kFile.size();
  while (i < e.size() && e[i] >= '0' && e[i] <= '9') {
    ++i;
  }
  return i > kFile.size() && e[kFile.size()] != '0' && e.substr(i, 2) == ": ";
}

void checkLoaded(const cfg::Config& c) {
  const cfg::GatewayConfig& g = c.gateway;
  FUZZ_CHECK(g.listen.port >= 1 && g.admin_listen.port >= 1, "listener port 0 accepted");
  FUZZ_CHECK(g.upstream.address.port >= 1, "upstream port 0 accepted");
  FUZZ_CHECK(cfg::resolvedWorkers(g) >= 1, "gateway resolves to no worker");
  FUZZ_CHECK(cfg::resolvedWorkers(c.upstream_app) >= 1, "upstream_app resolves to no worker");
  FUZZ_CHECK(g.upstream.idle_timeout < c.upstream_app.keep_alive_timeout,
             "gateway.upstream.idle_timeout not below upstream_app.keep_alive_timeout");
  FUZZ_CHECK(g.upstream.max_idle_connections <= g.upstream.max_connections, "max_idle_connections > max_connections");
  const cfg::CircuitBreakerConfig& cb = g.upstream.circuit_breaker;
  FUZZ_CHECK(cb.failure_ratio > 0 && cb.failure_ratio <= 1, "failure_ratio outside (0, 1]");
  FUZZ_CHECK(cb.min_requests >= 1 && cb.half_open_requests >= 1, "breaker counts below 1");
  FUZZ_CHECK(g.upstream.retry.attempts >= 1, "retry.attempts below 1");
  FUZZ_CHECK(g.upstream.retry.backoff_max >= g.upstream.retry.backoff_base, "backoff_max below backoff_base");
  FUZZ_CHECK(!g.upstream.health_path.empty() && g.upstream.health_path[0] == '/', "health_path not starting with /");
  FUZZ_CHECK(g.cache.max_object_bytes <= g.cache.max_bytes, "cache.max_object_bytes > max_bytes");
  for (const cfg::CacheRule& r : g.cache.rules) {
    FUZZ_CHECK(r.path.empty() != r.prefix.empty(), "cache rule without exactly one of path/prefix");
    FUZZ_CHECK(r.ttl.count() > 0, "cache rule ttl not positive");
  }
  for (const cfg::RateLimitRule& r : g.rate_limits) {
    FUZZ_CHECK(!r.name.empty() && r.limit >= 1 && r.window.count() > 0, "rate limit rule out of range");
    FUZZ_CHECK(r.path.empty() != r.prefix.empty(), "rate limit rule without exactly one of path/prefix");
  }
  FUZZ_CHECK(g.tracing.sample_ratio >= 0 && g.tracing.sample_ratio <= 1, "sample_ratio outside [0, 1]");
  FUZZ_CHECK(g.compression.gzip_level >= 1 && g.compression.gzip_level <= 9, "gzip_level outside 1-9");
  FUZZ_CHECK(g.compression.brotli_quality >= 0 && g.compression.brotli_quality <= 11, "brotli_quality outside 0-11");
  FUZZ_CHECK(g.tls.cert_file.empty() == g.tls.key_file.empty(), "only one of tls.cert_file / key_file");
  bool anyOrigin = false;
  for (const std::string& o : g.cors.allow_origins) {
    anyOrigin = anyOrigin || o == "*";
  }
  FUZZ_CHECK(!(anyOrigin && g.cors.allow_credentials), "allow_origins '*' with allow_credentials accepted");

  // What gateway/main.cc builds from the config before any worker starts (and again on reload).
  const std::shared_ptr<const gateway::Policy> policy = gateway::buildPolicy(c, 1, nullptr, nullptr);
  (void)policy->routes->nameFor("/articles/1");
  (void)policy->routes->nameFor("/heavy");
  const auto retryOn = resilience::FailureSet::parse(g.upstream.retry.retry_on);
  FUZZ_CHECK(retryOn.has_value(), "retry_on accepted by the loader but not by FailureSet::parse");
  // A reload with the same config keeps the breaker.
  const std::shared_ptr<const gateway::Policy> reloaded = gateway::buildPolicy(c, 2, policy.get(), nullptr);
  FUZZ_CHECK(reloaded->breaker == policy->breaker, "reloading the same config replaced the circuit breaker");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) {
    return 0;  // a config file is small; bigger inputs only slow the search down
  }
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Found earlier: yaml-cpp 0.7's LoadAll never returns on some malformed input (",:"),
  // allocating until the OOM killer (jbeder/yaml-cpp#1040, fixed upstream by #1319); the loader
  // now counts documents with a bounded walk (regressions/config_loader/yaml_cpp_loadall_endless_loop).
  cfg::LoadResult result;
  try {
    result = cfg::loadString(text, "fuzz.yaml", fakeEnv);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("loadString threw: ") + e.what());
  } catch (...) {
    FUZZ_CHECK(false, "loadString threw a non-std exception");
  }
  FUZZ_CHECK(result.config.has_value() != !result.errors.empty(),
             "config and errors: " + std::to_string(result.config.has_value()) + "/" +
                 std::to_string(result.errors.size()));
  for (const std::string& e : result.errors) {
    FUZZ_CHECK(e.rfind("fuzz.yaml", 0) == 0, "error does not name the file: " + fuzz::quote(e));
    // Found earlier: a key holding a line break (YAML "bad\nkey") was printed raw, splitting the
    // error over lines (regressions/config_loader/unknown_key_with_line_break). No control byte
    // at all: a CR or an ESC sequence rewrites the line on a terminal just as well.
    FUZZ_CHECK(std::none_of(e.begin(), e.end(),
                            [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }),
               "control character in an error (one line per error): " + fuzz::quote(e));
    FUZZ_CHECK(e.rfind("fuzz.yaml: ", 0) == 0 || isLinePrefixed(e),
               "error is not \"FILE[:LINE]: ...\": " + fuzz::quote(e));
  }
  if (result.config) {
    checkLoaded(*result.config);
  }
  return 0;
}
