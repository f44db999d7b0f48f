#pragma once

// The one configuration file shared by `gateway` and `upstream_app`
// (CONTRACT §3). The structs mirror the YAML exactly: a field is named like its
// key and starts at the contract's default, so a missing key (or an empty file)
// yields the documented behaviour. Loading is done once at startup by
// loadFile(); every problem in the file is collected and reported together as
// "FILE:LINE: key.path: message" and the process refuses to start.
//
// After a successful load the Config is immutable input for the rest of the
// program: it has already been checked for shape (known keys, types), meaning
// (ranges, enums, formats) and the cross-field rules, so consumers do not need
// to re-validate it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cfg {

using Duration = std::chrono::milliseconds;

// "host:port" or "[v6addr]:port". host may be a name, an IPv4 or an IPv6
// address (stored without brackets); port is 1-65535 once loaded.
struct HostPort {
  std::string host;
  uint16_t port = 0;
  // "host:port", with brackets around an IPv6 host.
  std::string str() const;
};

struct RedisConfig {
  // When the key is absent the loader resolves the contract default
  // ${REDIS_URL:-redis://127.0.0.1:6379/0}; this initialiser is the fallback.
  std::string url = "redis://127.0.0.1:6379/0";
  Duration connect_timeout{200};
  Duration command_timeout{50};
};

struct RetryConfig {
  int attempts = 3;  // total tries, first included; >= 1
  Duration backoff_base{200};
  Duration backoff_max{1000};  // >= backoff_base
  // Each entry is connect_failure | reset | timeout | 5xx | a 3-digit 5xx code
  // ("502"). Also accepted (with the same default) under shipping.retry.
  std::vector<std::string> retry_on{"connect_failure", "reset", "502", "503", "504"};
};

struct CircuitBreakerConfig {
  double failure_ratio = 0.5;  // (0, 1]
  int min_requests = 20;       // >= 1
  Duration window{10000};
  Duration open_duration{5000};
  int half_open_requests = 3;  // >= 1
};

struct UpstreamConfig {
  HostPort address{"127.0.0.1", 8000};
  int max_connections = 200;
  int max_idle_connections = 50;  // <= max_connections
  // Must be shorter than upstream_app.keep_alive_timeout (checked at load).
  Duration idle_timeout{60000};
  Duration connect_timeout{2000};
  Duration read_timeout{3000};
  Duration write_timeout{3000};
  Duration pool_timeout{2000};
  RetryConfig retry;
  CircuitBreakerConfig circuit_breaker;
  std::string health_path = "/readyz";  // starts with '/'
  Duration health_interval{1000};
};

// Both empty: plain HTTP. Both set: TLS on gateway.listen. One alone is an error.
struct TlsConfig {
  std::string cert_file;
  std::string key_file;
};

struct RequestIdConfig {
  std::string header = "X-Request-ID";
};

struct CorsConfig {
  // Exact origins, or "*" (rejected together with allow_credentials: true).
  std::vector<std::string> allow_origins{"https://example.com"};
  bool allow_credentials = true;
  std::vector<std::string> allow_methods{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  std::vector<std::string> allow_headers{"Authorization", "Content-Type", "X-Request-ID"};
  std::vector<std::string> expose_headers{"X-Request-ID"};
  Duration max_age{600000};
};

struct CompressionConfig {
  // Server preference order when q-values tie; each is br | gzip | zstd, no
  // duplicates. An empty list turns compression off.
  std::vector<std::string> algorithms{"br", "gzip"};
  uint64_t min_size = 1024;
  int gzip_level = 5;      // 1-9
  int brotli_quality = 4;  // 0-11
  // "type/subtype" or "type/*", matched case-insensitively, parameters ignored.
  std::vector<std::string> content_types{"application/json", "text/*", "application/javascript",
                                         "image/svg+xml"};
};

// Exactly one of path (exact match) / prefix is set and starts with '/'.
struct CacheRule {
  std::string path;
  std::string prefix;
  Duration ttl{60000};  // > 0
  // When the key is absent the loader sets "public, max-age=<ttl in seconds>".
  std::string cache_control;
};

struct CacheConfig {
  uint64_t max_bytes = 64ull * 1024 * 1024;
  uint64_t max_object_bytes = 1024 * 1024;  // <= max_bytes
  bool etag = true;
  // First matching rule wins. Absent key = the contract's single rule; an
  // explicit `rules: []` disables caching.
  std::vector<CacheRule> rules{{"", "/articles/", Duration{60000}, "public, max-age=60"}};
};

// name, limit and one of path/prefix are required in each item; the others
// take the defaults below.
struct RateLimitRule {
  std::string name;  // unique across gateway.rate_limits; used as metric label
  std::string path;
  std::string prefix;
  std::string algorithm = "token_bucket";  // token_bucket | sliding_window
  int limit = 0;                           // >= 1 once loaded
  Duration window{60000};                  // > 0
  std::string key = "client_ip";           // client_ip | header:NAME
  bool fail_open = true;
};

struct TracingConfig {
  bool enabled = true;
  double sample_ratio = 0.1;  // [0, 1]
  // Absent key: the loader resolves ${OTLP_ENDPOINT:-http://127.0.0.1:4318/v1/traces}.
  std::string otlp_endpoint = "http://127.0.0.1:4318/v1/traces";
  std::string service_name = "gateway";
};

struct LoggingConfig {
  std::string level = "info";  // debug | info | warn | error
  bool access_log = true;
};

struct GatewayConfig {
  HostPort listen{"0.0.0.0", 8080};
  HostPort admin_listen{"0.0.0.0", 9901};
  int workers = 0;  // 0 = auto (YAML `auto`); see resolvedWorkers()
  int backlog = 2048;
  int limit_concurrency = 1000;
  int max_connections = 10000;
  Duration keep_alive_timeout{5000};
  int max_requests_per_connection = 0;  // 0 = unlimited
  Duration header_timeout{10000};
  Duration request_timeout{60000};
  Duration graceful_timeout{30000};
  Duration drain_delay{5000};  // may be 0s
  uint64_t max_header_bytes = 16 * 1024;
  uint64_t max_body_bytes = 5 * 1024 * 1024;
  std::vector<std::string> trusted_proxies;  // validated CIDRs ("10.0.0.0/8", "fd00::/8")
  TlsConfig tls;
  UpstreamConfig upstream;
  RequestIdConfig request_id;
  CorsConfig cors;
  CompressionConfig compression;
  CacheConfig cache;
  std::vector<RateLimitRule> rate_limits{
      {"heavy", "/heavy", "", "token_bucket", 100, Duration{60000}, "client_ip", true}};
  TracingConfig tracing;
  LoggingConfig logging;
};

// Number of event-loop threads to start: `workers`, or the CPU count (at
// least 1) when it is 0 (auto).
int resolvedWorkers(const GatewayConfig& gateway);

struct DatabaseConfig {
  // Absent key: the loader resolves ${DB_URL:-postgresql://app@127.0.0.1:6432/app}.
  std::string url = "postgresql://app@127.0.0.1:6432/app";
  int pool_size = 20;     // >= 1
  int max_overflow = 20;  // >= 0
  Duration pool_timeout{10000};
  Duration recycle{1800000};
  bool pre_ping = true;
  Duration statement_timeout{5000};
  Duration slow_query_threshold{200};  // may be 0s (log every query)
};

struct ShippingConfig {
  // Absent key: the loader resolves ${SHIPPING_URL:-http://127.0.0.1:8090}.
  std::string base_url = "http://127.0.0.1:8090";
  int max_connections = 200;
  int max_idle_connections = 50;
  Duration connect_timeout{2000};
  Duration read_timeout{3000};
  Duration pool_timeout{2000};
  // retry_on is accepted here too (not in the contract's file); same default.
  RetryConfig retry;
  CircuitBreakerConfig circuit_breaker;
};

struct UpstreamAppConfig {
  HostPort listen{"127.0.0.1", 8000};
  int workers = 1;  // >= 1 (`auto` is accepted too and means 0 = CPU count)
  Duration keep_alive_timeout{90000};
  DatabaseConfig database;
  Duration cache_ttl{60000};
  ShippingConfig shipping;
  TracingConfig tracing{.service_name = "upstream-app"};
  LoggingConfig logging;
};

// Same rule as for the gateway: 0 (auto) resolves to the CPU count.
int resolvedWorkers(const UpstreamAppConfig& app);

struct Config {
  RedisConfig redis;
  GatewayConfig gateway;
  UpstreamAppConfig upstream_app;
};

// config is set only when errors is empty. Each error is one line
// "FILE:LINE: key.path: message" (or "FILE: message" when no line applies).
struct LoadResult {
  std::optional<Config> config;
  std::vector<std::string> errors;
};

// Returns the variable's value, or nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// Reads the file and loads it with the process environment (getenv).
LoadResult loadFile(const std::string& path);

// Loads YAML text; fileName is only used in error messages. ${VAR} and
// ${VAR:-default} are replaced through env before parsing (an empty value
// counts as unset, like the shell's `:-`); line numbers are preserved.
LoadResult loadString(std::string_view yamlText, const std::string& fileName, const EnvLookup& env);

// `--check-config FILE`: prints every error (one per line) to err and returns
// 2, or prints a short OK summary including
// "minimum terminationGracePeriodSeconds: N" (graceful_timeout + drain_delay,
// rounded up to whole seconds) to out and returns 0.
int checkConfigCommand(const std::string& path, std::ostream& out, std::ostream& err);

}  // namespace cfg
