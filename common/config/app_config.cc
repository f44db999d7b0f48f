// The schema of conf/app.yaml: which keys exist, their types and ranges, and
// the cross-field rules. Generic typed reading lives in yaml_reader.cc, value
// formats in validators.cc, ${VAR} handling in env_subst.cc.

#include "common/config/app_config.h"

#include <sched.h>

#include <algorithm>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <thread>

#include "common/config/env_subst.h"
#include "common/config/validators.h"
#include "common/config/yaml_reader.h"
#include "common/util/units.h"

namespace cfg {

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

namespace {

// CPUs this process may really use: the affinity mask, capped by a cgroup v2 CPU quota (a
// Kubernetes CPU limit of 1 on a 64-core node must mean one worker, not 64).
int cpuCount() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    n = CPU_COUNT(&set);
  }
  std::ifstream cpuMax("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (cpuMax >> quota >> period && quota != "max" && period > 0) {
    const long long q = std::atoll(quota.c_str());
    if (q > 0) {
      n = std::min<int>(n, static_cast<int>((q + period - 1) / period));
    }
  }
  return n <= 0 ? 1 : n;
}

}  // namespace

int resolvedWorkers(const GatewayConfig& gateway) { return gateway.workers > 0 ? gateway.workers : cpuCount(); }

int resolvedWorkers(const UpstreamAppConfig& app) { return app.workers > 0 ? app.workers : cpuCount(); }

namespace {

// Counts documents (and where each starts) without building nodes.
struct DocumentCounter : YAML::EventHandler {
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

using detail::ErrorSink;
using detail::MapReader;

constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr std::chrono::milliseconds kZero{0};

// Reads the sections of the file into a Config. Each read* function takes the
// reader of its own map; values keep their defaults where absent or invalid.
class SchemaReader {
 public:
  SchemaReader(ErrorSink& sink, const EnvLookup& env) : sink_(sink), env_(env) {}

  void readRoot(MapReader& root, Config& config) {
    {
      MapReader redis = root.sub("redis");
      readRedis(redis, config.redis);
    }
    {
      MapReader gateway = root.sub("gateway");
      readGateway(gateway, config.gateway);
    }
    {
      MapReader app = root.sub("upstream_app");
      readUpstreamApp(app, config.upstream_app);
    }
    crossCheck(config);
  }

 private:
  // The contract's default for some keys is itself "${VAR:-fallback}"; an
  // absent key resolves the same expression so that an empty file behaves
  // like the shipped one.
  void envDefault(const MapReader& map, const std::string& key, const char* variable, std::string& out) {
    if (map.has(key)) {
      return;
    }
    std::optional<std::string> value = env_(variable);
    if (value && !value->empty()) {
      out = *value;
    }
  }

  void report(const std::string& path, const std::string& message) {
    sink_.error(sink_.lineOf({path}), path, message);
  }

  // Reports that the value at `lower` exceeds the one at `upper`, on the key
  // the user actually wrote (so the line points at the edit to make).
  void orderError(const std::string& lower, const std::string& upper, const std::string& lowerValue,
                  const std::string& upperValue) {
    if (sink_.failed(lower) || sink_.failed(upper)) {
      return;
    }
    if (sink_.wasWritten(lower) || !sink_.wasWritten(upper)) {
      sink_.error(sink_.lineOf({lower}), lower,
                  "must not exceed " + upper + " (" + lowerValue + " > " + upperValue + ")");
    } else {
      sink_.error(sink_.lineOf({upper}), upper,
                  "must be at least " + lower + " (" + upperValue + " < " + lowerValue + ")");
    }
  }

  void hostPort(MapReader& map, const std::string& key, HostPort& out) {
    const YAML::Node* node = map.take(key);
    std::string text;
    if (node == nullptr || !detail::readString(sink_, *node, map.childPath(key), map.lineOfKey(key), text)) {
      return;
    }
    std::optional<HostPort> parsed = detail::parseHostPort(text);
    if (!parsed) {
      sink_.error(map.lineOfKey(key), map.childPath(key),
                  "expected host:port like \"0.0.0.0:8080\" or \"[::1]:8080\" (port 1-65535), got \"" + text + "\"");
      return;
    }
    out = *parsed;
  }

  void url(MapReader& map, const std::string& key, std::string& out,
           std::initializer_list<std::string_view> schemes) {
    map.str(key, out);
    if (map.has(key) && !sink_.failed(map.childPath(key))) {
      std::string problem = detail::checkUrl(out, schemes);
      if (!problem.empty()) {
        report(map.childPath(key), problem);
      }
    }
  }

  // Validates each element of a string list that was read from `path`.
  template <typename Check>
  void checkEach(const std::string& path, const std::vector<std::string>& values, Check check) {
    if (sink_.failed(path)) {
      return;
    }
    for (size_t i = 0; i < values.size(); ++i) {
      std::string problem = check(values[i]);
      if (!problem.empty()) {
        std::string itemPath = path + "[" + std::to_string(i) + "]";
        sink_.error(sink_.lineOf({itemPath, path}), itemPath, problem);
      }
    }
  }

  void urlPath(MapReader& map, const std::string& key, std::string& out) {
    map.str(key, out);
    if (map.has(key) && !sink_.failed(map.childPath(key)) && (out.empty() || out[0] != '/')) {
      report(map.childPath(key), "must start with '/', got \"" + out + "\"");
    }
  }

  void readRedis(MapReader& map, RedisConfig& c) {
    envDefault(map, "url", "REDIS_URL", c.url);
    url(map, "url", c.url, {"redis", "rediss", "unix"});
    map.duration("connect_timeout", c.connect_timeout);
    map.duration("command_timeout", c.command_timeout);
  }

  void readRetry(MapReader& map, RetryConfig& c) {
    map.integer("attempts", c.attempts, 1, kIntMax);
    map.duration("backoff_base", c.backoff_base, kZero);
    map.duration("backoff_max", c.backoff_max, kZero);
    map.stringList("retry_on", c.retry_on);
    checkEach(map.childPath("retry_on"), c.retry_on, [](const std::string& v) -> std::string {
      if (v == "connect_failure" || v == "reset" || v == "timeout" || v == "5xx") {
        return "";
      }
      if (v.size() == 3 && v[0] == '5' && isdigit(static_cast<unsigned char>(v[1])) &&
          isdigit(static_cast<unsigned char>(v[2]))) {
        return "";
      }
      return "must be connect_failure, reset, timeout, 5xx or a 5xx status code like 503, got \"" + v + "\"";
    });
    if (c.backoff_base > c.backoff_max) {
      orderError(map.childPath("backoff_base"), map.childPath("backoff_max"),
                 units::formatDuration(c.backoff_base), units::formatDuration(c.backoff_max));
    }
  }

  void readBreaker(MapReader& map, CircuitBreakerConfig& c) {
    map.number("failure_ratio", c.failure_ratio, 0.0, 1.0, /*minExclusive=*/true);
    map.integer("min_requests", c.min_requests, 1, kIntMax);
    map.duration("window", c.window);
    map.duration("open_duration", c.open_duration);
    map.integer("half_open_requests", c.half_open_requests, 1, kIntMax);
  }

  // max_idle_connections may not exceed max_connections (gateway.upstream and
  // upstream_app.shipping share the rule).
  void checkIdleBound(MapReader& map, int maxConnections, int maxIdle) {
    if (maxIdle > maxConnections) {
      orderError(map.childPath("max_idle_connections"), map.childPath("max_connections"), std::to_string(maxIdle),
                 std::to_string(maxConnections));
    }
  }

  void readUpstream(MapReader& map, UpstreamConfig& c) {
    hostPort(map, "address", c.address);
    map.integer("max_connections", c.max_connections, 1, kIntMax);
    map.integer("max_idle_connections", c.max_idle_connections, 0, kIntMax);
    map.duration("idle_timeout", c.idle_timeout);
    map.duration("connect_timeout", c.connect_timeout);
    map.duration("read_timeout", c.read_timeout);
    map.duration("write_timeout", c.write_timeout);
    map.duration("pool_timeout", c.pool_timeout);
    {
      MapReader retry = map.sub("retry");
      readRetry(retry, c.retry);
    }
    {
      MapReader breaker = map.sub("circuit_breaker");
      readBreaker(breaker, c.circuit_breaker);
    }
    urlPath(map, "health_path", c.health_path);
    map.duration("health_interval", c.health_interval);
    checkIdleBound(map, c.max_connections, c.max_idle_connections);
  }

  void readTls(MapReader& map, TlsConfig& c) {
    map.str("cert_file", c.cert_file);
    map.str("key_file", c.key_file);
    if (c.cert_file.empty() != c.key_file.empty()) {
      const char* missing = c.cert_file.empty() ? "cert_file" : "key_file";
      const char* given = c.cert_file.empty() ? "key_file" : "cert_file";
      sink_.error(sink_.lineOf({map.childPath(given), map.path()}), map.path(),
                  std::string(given) + " is set but " + missing + " is empty (set both for TLS, or neither)");
    }
  }

  void readCors(MapReader& map, CorsConfig& c) {
    map.stringList("allow_origins", c.allow_origins);
    map.boolean("allow_credentials", c.allow_credentials);
    map.stringList("allow_methods", c.allow_methods);
    map.stringList("allow_headers", c.allow_headers);
    map.stringList("expose_headers", c.expose_headers);
    map.duration("max_age", c.max_age, kZero);
    checkEach(map.childPath("allow_origins"), c.allow_origins, [](const std::string& v) -> std::string {
      if (v == "*" || v == "null") {
        return "";
      }
      std::string problem = detail::checkUrl(v, {"http", "https"});
      if (!problem.empty()) {
        return "expected an origin like \"https://example.com\" or \"*\", got \"" + v + "\"";
      }
      if (v.back() == '/' || v.find('/', v.find("://") + 3) != std::string::npos) {
        return "an origin has no path (write \"" + v.substr(0, v.find('/', v.find("://") + 3)) + "\")";
      }
      return "";
    });
    auto token = [](const char* what) {
      return [what](const std::string& v) -> std::string {
        return detail::isToken(v) ? "" : std::string("expected ") + what + ", got \"" + v + "\"";
      };
    };
    checkEach(map.childPath("allow_methods"), c.allow_methods, token("an HTTP method"));
    checkEach(map.childPath("allow_headers"), c.allow_headers, token("a header name"));
    checkEach(map.childPath("expose_headers"), c.expose_headers, token("a header name"));
    const std::string origins = map.childPath("allow_origins");
    if (c.allow_credentials && !sink_.failed(origins)) {
      for (const std::string& origin : c.allow_origins) {
        if (origin == "*") {
          sink_.error(sink_.lineOf({origins, map.childPath("allow_credentials"), map.path()}), origins,
                      "\"*\" together with allow_credentials: true would let any site send credentialed "
                      "requests; list the origins");
          break;
        }
      }
    }
  }

  void readCompression(MapReader& map, CompressionConfig& c) {
    map.stringList("algorithms", c.algorithms);
    map.size("min_size", c.min_size);
    map.integer("gzip_level", c.gzip_level, 1, 9);
    map.integer("brotli_quality", c.brotli_quality, 0, 11);
    map.stringList("content_types", c.content_types);
    std::set<std::string> seen;
    checkEach(map.childPath("algorithms"), c.algorithms, [&seen](const std::string& v) -> std::string {
      if (v != "br" && v != "gzip" && v != "zstd") {
        return "must be one of br, gzip, zstd, got \"" + v + "\"";
      }
      if (!seen.insert(v).second) {
        return "\"" + v + "\" is listed twice";
      }
      return "";
    });
    checkEach(map.childPath("content_types"), c.content_types, [](const std::string& v) -> std::string {
      return detail::isMediaRange(v) ? "" : "expected a media type like \"application/json\" or \"text/*\", got \"" + v + "\"";
    });
  }

  // Exactly one of path/prefix, starting with '/'. Used by cache rules and
  // rate limits.
  void readMatch(MapReader& item, std::string& path, std::string& prefix) {
    item.str("path", path);
    item.str("prefix", prefix);
    bool hasPath = item.has("path");
    bool hasPrefix = item.has("prefix");
    if (hasPath && hasPrefix) {
      sink_.error(item.lineOfKey("prefix"), item.path(), "set either path or prefix, not both");
      return;
    }
    if (!hasPath && !hasPrefix) {
      sink_.error(item.line(), item.path(), "needs a path (exact match) or a prefix");
      return;
    }
    const char* key = hasPath ? "path" : "prefix";
    const std::string& value = hasPath ? path : prefix;
    if (!sink_.failed(item.childPath(key)) && (value.empty() || value[0] != '/')) {
      sink_.error(item.lineOfKey(key), item.childPath(key), "must start with '/', got \"" + value + "\"");
    }
  }

  // Calls readItem(MapReader&, T&) for each element of the list under key.
  template <typename T, typename ReadItem>
  void readList(MapReader& map, const std::string& key, std::vector<T>& out, ReadItem readItem) {
    const YAML::Node* node = map.take(key);
    if (node == nullptr) {
      return;
    }
    const std::string path = map.childPath(key);
    if (!node->IsSequence()) {
      sink_.error(map.lineOfKey(key), path, "expected a list, got " + detail::describe(*node));
      return;
    }
    std::vector<T> items;
    for (size_t i = 0; i < node->size(); ++i) {
      const YAML::Node element = (*node)[i];
      std::string itemPath = path + "[" + std::to_string(i) + "]";
      int line = detail::lineOf(element) > 0 && !element.IsNull() ? detail::lineOf(element) : map.lineOfKey(key);
      sink_.recordLine(itemPath, line);
      MapReader itemReader(sink_, &element, itemPath, line);
      T value;
      readItem(itemReader, value);
      items.push_back(std::move(value));
    }
    out = std::move(items);
  }

  void readCache(MapReader& map, CacheConfig& c) {
    map.size("max_bytes", c.max_bytes, 1);
    map.size("max_object_bytes", c.max_object_bytes, 1);
    map.boolean("etag", c.etag);
    readList(map, "rules", c.rules, [this](MapReader& item, CacheRule& rule) {
      readMatch(item, rule.path, rule.prefix);
      item.duration("ttl", rule.ttl);
      item.str("cache_control", rule.cache_control);
      if (!item.has("cache_control")) {
        rule.cache_control = "public, max-age=" + std::to_string(rule.ttl.count() / 1000);
      }
    });
    if (c.max_object_bytes > c.max_bytes) {
      orderError(map.childPath("max_object_bytes"), map.childPath("max_bytes"), units::formatSize(c.max_object_bytes),
                 units::formatSize(c.max_bytes));
    }
  }

  void readRateLimit(MapReader& item, RateLimitRule& rule) {
    if (!item.has("name")) {
      sink_.error(item.line(), item.path(), "missing required key \"name\"");
    }
    item.str("name", rule.name);
    if (item.has("name") && !sink_.failed(item.childPath("name"))) {
      bool ok = !rule.name.empty();
      for (char ch : rule.name) {
        ok = ok && (isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.');
      }
      if (!ok) {
        sink_.error(item.lineOfKey("name"), item.childPath("name"),
                    "expected a name of letters, digits, '_', '-' or '.', got \"" + rule.name + "\"");
      }
    }
    readMatch(item, rule.path, rule.prefix);
    item.enumeration("algorithm", rule.algorithm, {"token_bucket", "sliding_window"});
    if (!item.has("limit")) {
      sink_.error(item.line(), item.path(), "missing required key \"limit\"");
    }
    item.integer("limit", rule.limit, 1, kIntMax);
    item.duration("window", rule.window);
    item.str("key", rule.key);
    if (item.has("key") && !sink_.failed(item.childPath("key"))) {
      bool ok = rule.key == "client_ip" ||
                (rule.key.rfind("header:", 0) == 0 && detail::isToken(std::string_view(rule.key).substr(7)));
      if (!ok) {
        sink_.error(item.lineOfKey("key"), item.childPath("key"),
                    "must be client_ip or header:NAME, got \"" + rule.key + "\"");
      }
    }
    item.boolean("fail_open", rule.fail_open);
  }

  void readRateLimits(MapReader& map, std::vector<RateLimitRule>& rules) {
    readList(map, "rate_limits", rules, [this](MapReader& item, RateLimitRule& rule) { readRateLimit(item, rule); });
    std::map<std::string, size_t> firstIndex;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (rules[i].name.empty()) {
        continue;
      }
      auto [it, inserted] = firstIndex.emplace(rules[i].name, i);
      if (!inserted) {
        std::string path = map.childPath("rate_limits") + "[" + std::to_string(i) + "].name";
        std::string first = map.childPath("rate_limits") + "[" + std::to_string(it->second) + "]";
        sink_.error(sink_.lineOf({path}), path,
                    "duplicate rate limit name \"" + rules[i].name + "\" (also used by " + first + ")");
      }
    }
  }

  void readTracing(MapReader& map, TracingConfig& c) {
    map.boolean("enabled", c.enabled);
    map.number("sample_ratio", c.sample_ratio, 0.0, 1.0);
    envDefault(map, "otlp_endpoint", "OTLP_ENDPOINT", c.otlp_endpoint);
    url(map, "otlp_endpoint", c.otlp_endpoint, {"http", "https"});
    map.str("service_name", c.service_name);
    if (c.service_name.empty() && !sink_.failed(map.childPath("service_name"))) {
      report(map.childPath("service_name"), "must not be empty");
    }
  }

  void readLogging(MapReader& map, LoggingConfig& c) {
    map.enumeration("level", c.level, {"debug", "info", "warn", "error"});
    map.boolean("access_log", c.access_log);
  }

  void readGateway(MapReader& map, GatewayConfig& c) {
    hostPort(map, "listen", c.listen);
    hostPort(map, "admin_listen", c.admin_listen);
    map.integerOrAuto("workers", c.workers, 1, 1024);
    map.integer("backlog", c.backlog, 1, kIntMax);
    map.integer("limit_concurrency", c.limit_concurrency, 1, kIntMax);
    map.integer("max_connections", c.max_connections, 1, kIntMax);
    map.duration("keep_alive_timeout", c.keep_alive_timeout);
    map.integer("max_requests_per_connection", c.max_requests_per_connection, 0, kIntMax);
    map.duration("header_timeout", c.header_timeout);
    map.duration("request_timeout", c.request_timeout);
    map.duration("graceful_timeout", c.graceful_timeout);
    map.duration("drain_delay", c.drain_delay, kZero);
    map.size("max_header_bytes", c.max_header_bytes, 1);
    map.size("max_body_bytes", c.max_body_bytes);
    map.stringList("trusted_proxies", c.trusted_proxies);
    checkEach(map.childPath("trusted_proxies"), c.trusted_proxies,
              [](const std::string& v) { return detail::checkCidr(v); });
    {
      MapReader tls = map.sub("tls");
      readTls(tls, c.tls);
    }
    {
      MapReader upstream = map.sub("upstream");
      readUpstream(upstream, c.upstream);
    }
    {
      MapReader requestId = map.sub("request_id");
      requestId.str("header", c.request_id.header);
      if (!detail::isToken(c.request_id.header) && !sink_.failed(requestId.childPath("header"))) {
        report(requestId.childPath("header"), "expected a header name, got \"" + c.request_id.header + "\"");
      }
    }
    {
      MapReader cors = map.sub("cors");
      readCors(cors, c.cors);
    }
    {
      MapReader compression = map.sub("compression");
      readCompression(compression, c.compression);
    }
    {
      MapReader cache = map.sub("cache");
      readCache(cache, c.cache);
    }
    readRateLimits(map, c.rate_limits);
    {
      MapReader tracing = map.sub("tracing");
      readTracing(tracing, c.tracing);
    }
    {
      MapReader logging = map.sub("logging");
      readLogging(logging, c.logging);
    }
  }

  void readDatabase(MapReader& map, DatabaseConfig& c) {
    envDefault(map, "url", "DB_URL", c.url);
    map.str("url", c.url);
    // libpq takes a URI or a "key=value" connection string.
    if (map.has("url") && !sink_.failed(map.childPath("url")) && c.url.find('=') == std::string::npos) {
      std::string problem = detail::checkUrl(c.url, {"postgresql", "postgres"});
      if (!problem.empty()) {
        report(map.childPath("url"), problem + " (or a libpq \"host=... dbname=...\" string)");
      }
    }
    map.integer("pool_size", c.pool_size, 1, kIntMax);
    map.integer("max_overflow", c.max_overflow, 0, kIntMax);
    map.duration("pool_timeout", c.pool_timeout);
    map.duration("recycle", c.recycle);
    map.boolean("pre_ping", c.pre_ping);
    map.duration("statement_timeout", c.statement_timeout);
    map.duration("slow_query_threshold", c.slow_query_threshold, kZero);
  }

  void readShipping(MapReader& map, ShippingConfig& c) {
    envDefault(map, "base_url", "SHIPPING_URL", c.base_url);
    url(map, "base_url", c.base_url, {"http", "https"});
    map.integer("max_connections", c.max_connections, 1, kIntMax);
    map.integer("max_idle_connections", c.max_idle_connections, 0, kIntMax);
    map.duration("connect_timeout", c.connect_timeout);
    map.duration("read_timeout", c.read_timeout);
    map.duration("pool_timeout", c.pool_timeout);
    {
      MapReader retry = map.sub("retry");
      readRetry(retry, c.retry);
    }
    {
      MapReader breaker = map.sub("circuit_breaker");
      readBreaker(breaker, c.circuit_breaker);
    }
    checkIdleBound(map, c.max_connections, c.max_idle_connections);
  }

  void readUpstreamApp(MapReader& map, UpstreamAppConfig& c) {
    hostPort(map, "listen", c.listen);
    map.integerOrAuto("workers", c.workers, 1, 1024);
    map.duration("keep_alive_timeout", c.keep_alive_timeout);
    {
      MapReader database = map.sub("database");
      readDatabase(database, c.database);
    }
    map.duration("cache_ttl", c.cache_ttl);
    {
      MapReader shipping = map.sub("shipping");
      readShipping(shipping, c.shipping);
    }
    {
      MapReader tracing = map.sub("tracing");
      readTracing(tracing, c.tracing);
    }
    {
      MapReader logging = map.sub("logging");
      readLogging(logging, c.logging);
    }
  }

  // Rules that span sections (CONTRACT §3).
  void crossCheck(const Config& c) {
    // The keep-alive race: if the gateway keeps an idle upstream connection
    // longer than the app does, it will sometimes send a request on a socket
    // the app is closing and get a reset (an intermittent 502).
    const std::string idle = "gateway.upstream.idle_timeout";
    const std::string keepAlive = "upstream_app.keep_alive_timeout";
    if (c.gateway.upstream.idle_timeout >= c.upstream_app.keep_alive_timeout && !sink_.failed(idle) &&
        !sink_.failed(keepAlive)) {
      std::string idleText = units::formatDuration(c.gateway.upstream.idle_timeout);
      std::string keepAliveText = units::formatDuration(c.upstream_app.keep_alive_timeout);
      std::string why = ": the gateway would reuse upstream connections the app is already closing "
                        "(intermittent 502s)";
      if (sink_.wasWritten(idle) || !sink_.wasWritten(keepAlive)) {
        std::string where = sink_.wasWritten(keepAlive) ? " on line " + std::to_string(sink_.lineOf({keepAlive})) : "";
        sink_.error(sink_.lineOf({idle}), idle,
                    "must be shorter than " + keepAlive + where + " (" + idleText + " >= " + keepAliveText + ")" + why);
      } else {
        sink_.error(sink_.lineOf({keepAlive}), keepAlive,
                    "must be longer than " + idle + " (" + keepAliveText + " <= " + idleText + ")" + why);
      }
    }

    // Gateway and app share the pod's network namespace: their listeners
    // must not collide.
    struct Listener {
      const char* path;
      const HostPort* address;
    };
    const Listener listeners[] = {
        {"gateway.listen", &c.gateway.listen},
        {"gateway.admin_listen", &c.gateway.admin_listen},
        {"upstream_app.listen", &c.upstream_app.listen},
    };
    for (size_t i = 0; i < std::size(listeners); ++i) {
      for (size_t j = i + 1; j < std::size(listeners); ++j) {
        const Listener& a = listeners[i];
        const Listener& b = listeners[j];
        if (sink_.failed(a.path) || sink_.failed(b.path) ||
            !detail::listenersConflict(*a.address, *b.address)) {
          continue;
        }
        const Listener& at = sink_.wasWritten(b.path) ? b : a;
        const Listener& other = &at == &b ? a : b;
        sink_.error(sink_.lineOf({at.path, other.path}), at.path,
                    "port " + std::to_string(at.address->port) + " is also used by " + other.path + " (" +
                        other.address->str() + ")");
      }
    }
  }

  ErrorSink& sink_;
  const EnvLookup& env_;
};

std::optional<std::string> processEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) {
    return std::nullopt;
  }
  return std::string(value);
}

}  // namespace

LoadResult loadString(std::string_view yamlText, const std::string& fileName, const EnvLookup& env) {
  LoadResult result;
  ErrorSink sink(fileName);

  detail::SubstitutionResult substituted = detail::substituteEnv(yamlText, env);
  for (const detail::SubstitutionError& error : substituted.errors) {
    sink.error(error.line, "", error.message);
  }
  sink.suppressLines(substituted.failedLines);

  // Documents are counted with a bounded event walk before loading the first: yaml-cpp 0.7's
  // LoadAll never returns on some malformed input (e.g. ",:"; yaml-cpp issue 1040), and that
  // text can reach a running gateway through a reload. Found by the config_loader fuzzer.
  std::vector<YAML::Node> documents;
  try {
    std::istringstream in(substituted.text);
    YAML::Parser parser(in);
    DocumentCounter counter;
    while (counter.starts.size() < 2 && parser.HandleNextDocument(counter)) {
    }
    if (counter.starts.size() > 1) {
      sink.error(static_cast<int>(counter.starts[1].line) + 1, "", "expected one YAML document, found more");
    }
    documents.push_back(YAML::Load(substituted.text));
  } catch (const YAML::ParserException& e) {
    sink.error(e.mark.is_null() ? 0 : e.mark.line + 1, "", "yaml syntax error: " + e.msg);
    result.errors = sink.take();
    return result;
  } catch (const YAML::Exception& e) {
    sink.error(0, "", std::string("yaml error: ") + e.what());
    result.errors = sink.take();
    return result;
  }

  Config config;
  try {
    // An empty file (or one with only comments) has no document or a null
    // one: every key takes its default.
    YAML::Node root = documents.empty() ? YAML::Node() : documents[0];
    MapReader rootReader(sink, &root, "", 1);
    SchemaReader(sink, env).readRoot(rootReader, config);
  } catch (const YAML::Exception& e) {
    // yaml-cpp should not throw on the node accessors we use; if it does, say
    // so rather than crash the startup with an unexplained exception.
    sink.error(0, "", std::string("internal error while reading the file: ") + e.what());
  }

  result.errors = sink.take();
  if (result.errors.empty()) {
    result.config = std::move(config);
  }
  return result;
}

LoadResult loadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.errors.push_back(detail::escapeControl(path) + ": cannot open the file: " + std::strerror(errno));
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    LoadResult result;
    result.errors.push_back(detail::escapeControl(path) + ": cannot read the file: " + std::strerror(errno));
    return result;
  }
  return loadString(text.str(), path, processEnv);
}

int checkConfigCommand(const std::string& path, std::ostream& out, std::ostream& err) {
  LoadResult result = loadFile(path);
  if (!result.config) {
    for (const std::string& error : result.errors) {
      err << error << '\n';
    }
    err << path << ": " << result.errors.size() << (result.errors.size() == 1 ? " error" : " errors") << '\n';
    return 2;
  }
  const Config& c = *result.config;
  auto grace = std::chrono::ceil<std::chrono::seconds>(c.gateway.graceful_timeout + c.gateway.drain_delay);
  std::string gatewayWorkers = c.gateway.workers == 0 ? "auto (" + std::to_string(resolvedWorkers(c.gateway)) + ")"
                                                      : std::to_string(c.gateway.workers);
  out << path << ": OK\n"
      << "gateway: listen " << c.gateway.listen.str() << ", admin " << c.gateway.admin_listen.str() << ", workers "
      << gatewayWorkers << ", upstream " << c.gateway.upstream.address.str() << ", "
      << c.gateway.rate_limits.size() << " rate limit(s), " << c.gateway.cache.rules.size() << " cache rule(s)"
      << (c.gateway.tls.cert_file.empty() ? "" : ", TLS") << '\n'
      << "upstream_app: listen " << c.upstream_app.listen.str() << ", workers " << resolvedWorkers(c.upstream_app)
      << ", keep_alive_timeout " << units::formatDuration(c.upstream_app.keep_alive_timeout) << '\n'
      << "minimum terminationGracePeriodSeconds: " << grace.count() << '\n';
  return 0;
}

}  // namespace cfg
