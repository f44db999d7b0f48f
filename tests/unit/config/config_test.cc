// Unit tests for the one-file configuration (common/config, CONTRACT §3):
// every kind of error with its exact "FILE:LINE: key.path: message" text,
// defaults, ${VAR} substitution, the shipped conf/app.yaml and --check-config.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/config/app_config.h"

namespace {

using Env = std::map<std::string, std::string>;

cfg::LoadResult load(std::string_view yaml, const Env& env = {}) {
  return cfg::loadString(yaml, "t.yaml", [env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) {
      return std::nullopt;
    }
    return it->second;
  });
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) {
    out += line + "\n";
  }
  return out;
}

// conf/ is found from this source file's location (CMake compiles with
// absolute paths), so the test passes whether it runs from the repository root
// or the build directory; walking up from the working directory covers a
// compiler given relative paths.
std::filesystem::path repoPath(const std::string& relative) {
  std::filesystem::path fromSource =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path() / relative;
  if (std::filesystem::exists(fromSource)) {
    return fromSource;
  }
  for (std::filesystem::path dir = std::filesystem::current_path(); !dir.empty(); dir = dir.parent_path()) {
    if (std::filesystem::exists(dir / relative)) {
      return dir / relative;
    }
    if (dir == dir.parent_path()) {
      break;
    }
  }
  return fromSource;
}

struct ErrorCase {
  const char* name;
  const char* yaml;
  const char* expected;  // the one and only error
};

// One case per kind of mistake; each yields exactly one error.
const ErrorCase kErrorCases[] = {
    {"yaml syntax error", "gateway:\n  listen: [1,\n  backlog: 3\n",
     "t.yaml:4: yaml syntax error: end of sequence flow not found"},
    {"unknown key with suggestion", "gateway:\n  backlgo: 10\n",
     "t.yaml:2: gateway.backlgo: unknown key (did you mean \"backlog\"?)"},
    {"unknown top-level section", "gatway:\n  listen: 0.0.0.0:8080\n",
     "t.yaml:1: gatway: unknown key (did you mean \"gateway\"?)"},
    {"unknown key in a list item",
     "gateway:\n  rate_limits:\n    - {name: a, path: /a, limit: 1, burst: 2}\n",
     "t.yaml:3: gateway.rate_limits[0].burst: unknown key"},
    {"duplicate key", "redis:\n  command_timeout: 50ms\n  command_timeout: 60ms\n",
     "t.yaml:3: redis.command_timeout: duplicate key (first written on line 2)"},
    {"wrong type: string for integer", "gateway:\n  backlog: lots\n",
     "t.yaml:2: gateway.backlog: expected an integer, got \"lots\""},
    {"wrong type: quoted number", "gateway:\n  backlog: \"10\"\n",
     "t.yaml:2: gateway.backlog: expected an integer, got the string \"10\" (remove the quotes)"},
    {"wrong type: map for scalar", "gateway:\n  backlog: {a: 1}\n",
     "t.yaml:2: gateway.backlog: expected an integer, got a map"},
    {"wrong type: scalar for map", "gateway:\n  upstream: 127.0.0.1:8000\n",
     "t.yaml:2: gateway.upstream: expected a map, got \"127.0.0.1:8000\""},
    {"wrong type: scalar for list", "gateway:\n  trusted_proxies: 10.0.0.0/8\n",
     "t.yaml:2: gateway.trusted_proxies: expected a list, got \"10.0.0.0/8\""},
    {"wrong type: bool", "gateway:\n  cache:\n    etag: yes\n",
     "t.yaml:3: gateway.cache.etag: expected true or false, got \"yes\""},
    {"null string", "gateway:\n  tls:\n    cert_file:\n",
     "t.yaml:3: gateway.tls.cert_file: expected a string, got null (write \"\" for an empty value)"},
    {"top level not a map", "- redis\n",
     "t.yaml:1: expected a map with the sections redis, gateway and upstream_app, got a list"},
    {"bad duration", "gateway:\n  upstream:\n    connect_timeout: fast\n",
     "t.yaml:3: gateway.upstream.connect_timeout: expected a duration like \"2s\", got \"fast\""},
    {"duration without unit", "redis:\n  command_timeout: 50\n",
     "t.yaml:2: redis.command_timeout: expected a duration like \"2s\", got \"50\" (add a unit: ms, s, m or h)"},
    {"zero timeout", "redis:\n  connect_timeout: 0s\n",
     "t.yaml:2: redis.connect_timeout: must be greater than 0s, got 0s"},
    {"bad size", "gateway:\n  max_body_bytes: 5MB\n",
     "t.yaml:2: gateway.max_body_bytes: expected a size like \"16KiB\" (B, KiB, MiB, GiB, TiB or plain bytes), got "
     "\"5MB\""},
    {"zero size where positive needed", "gateway:\n  max_header_bytes: 0\n",
     "t.yaml:2: gateway.max_header_bytes: must be greater than 0, got 0"},
    {"out of range: gzip level", "gateway:\n  compression:\n    gzip_level: 12\n",
     "t.yaml:3: gateway.compression.gzip_level: must be between 1 and 9, got 12"},
    {"out of range: brotli quality", "gateway:\n  compression: {brotli_quality: -1}\n",
     "t.yaml:2: gateway.compression.brotli_quality: must be between 0 and 11, got -1"},
    {"out of range: port", "gateway:\n  listen: 0.0.0.0:70000\n",
     "t.yaml:2: gateway.listen: expected host:port like \"0.0.0.0:8080\" or \"[::1]:8080\" (port 1-65535), got "
     "\"0.0.0.0:70000\""},
    {"out of range: port zero", "gateway:\n  upstream: {address: \"127.0.0.1:0\"}\n",
     "t.yaml:2: gateway.upstream.address: expected host:port like \"0.0.0.0:8080\" or \"[::1]:8080\" (port "
     "1-65535), got \"127.0.0.1:0\""},
    {"out of range: sample ratio", "gateway:\n  tracing: {sample_ratio: 1.5}\n",
     "t.yaml:2: gateway.tracing.sample_ratio: must be between 0 and 1, got 1.5"},
    {"out of range: failure ratio", "gateway:\n  upstream:\n    circuit_breaker: {failure_ratio: 0}\n",
     "t.yaml:3: gateway.upstream.circuit_breaker.failure_ratio: must be greater than 0 and at most 1, got 0"},
    {"out of range: attempts", "upstream_app:\n  shipping:\n    retry: {attempts: 0}\n",
     "t.yaml:3: upstream_app.shipping.retry.attempts: must be at least 1, got 0"},
    {"workers zero", "gateway:\n  workers: 0\n",
     "t.yaml:2: gateway.workers: expected auto or an integer between 1 and 1024, got \"0\""},
    {"bad enum: log level", "gateway:\n  logging: {level: verbose}\n",
     "t.yaml:2: gateway.logging.level: must be one of debug, info, warn, error, got \"verbose\""},
    {"bad enum: algorithm",
     "gateway:\n  rate_limits:\n    - name: a\n      path: /a\n      limit: 1\n      algorithm: leaky_bucket\n",
     "t.yaml:6: gateway.rate_limits[0].algorithm: must be one of token_bucket, sliding_window, got "
     "\"leaky_bucket\""},
    {"bad rate-limit key", "gateway:\n  rate_limits: [{name: a, path: /a, limit: 1, key: cookie}]\n",
     "t.yaml:2: gateway.rate_limits[0].key: must be client_ip or header:NAME, got \"cookie\""},
    {"bad compression algorithm", "gateway:\n  compression:\n    algorithms: [br, lz4]\n",
     "t.yaml:3: gateway.compression.algorithms[1]: must be one of br, gzip, zstd, got \"lz4\""},
    {"bad retry_on", "gateway:\n  upstream:\n    retry:\n      retry_on: [reset, 404]\n",
     "t.yaml:4: gateway.upstream.retry.retry_on[1]: must be connect_failure, reset, timeout, 5xx or a 5xx "
     "status code like 503, got \"404\""},
    {"bad CIDR", "gateway:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - not-a-cidr\n",
     "t.yaml:4: gateway.trusted_proxies[1]: expected a CIDR like \"10.0.0.0/8\" or \"fd00::/8\", got "
     "\"not-a-cidr\""},
    {"CIDR prefix too long", "gateway:\n  trusted_proxies: [\"fd00::/129\"]\n",
     "t.yaml:2: gateway.trusted_proxies[0]: prefix length must be 0-128 in \"fd00::/129\""},
    {"CIDR host bits set", "gateway:\n  trusted_proxies: [10.1.0.0/8]\n",
     "t.yaml:2: gateway.trusted_proxies[0]: \"10.1.0.0/8\" has bits set beyond the /8 prefix (write the network "
     "address)"},
    {"rule with both path and prefix", "gateway:\n  cache:\n    rules:\n      - {path: /a, prefix: /b}\n",
     "t.yaml:4: gateway.cache.rules[0]: set either path or prefix, not both"},
    {"rule with neither path nor prefix", "gateway:\n  cache:\n    rules:\n      - ttl: 5s\n",
     "t.yaml:4: gateway.cache.rules[0]: needs a path (exact match) or a prefix"},
    {"rule path without slash", "gateway:\n  rate_limits: [{name: a, prefix: api, limit: 1}]\n",
     "t.yaml:2: gateway.rate_limits[0].prefix: must start with '/', got \"api\""},
    {"rate limit without limit", "gateway:\n  rate_limits:\n    - {name: a, path: /a}\n",
     "t.yaml:3: gateway.rate_limits[0]: missing required key \"limit\""},
    {"duplicate rate-limit name",
     "gateway:\n  rate_limits:\n    - {name: api, path: /a, limit: 1}\n    - {name: api, path: /b, limit: 2}\n",
     "t.yaml:4: gateway.rate_limits[1].name: duplicate rate limit name \"api\" (also used by "
     "gateway.rate_limits[0])"},
    {"tls half set", "gateway:\n  tls: {cert_file: /etc/tls/cert.pem}\n",
     "t.yaml:2: gateway.tls: cert_file is set but key_file is empty (set both for TLS, or neither)"},
    {"idle connections above max", "gateway:\n  upstream:\n    max_idle_connections: 300\n",
     "t.yaml:3: gateway.upstream.max_idle_connections: must not exceed gateway.upstream.max_connections (300 > "
     "200)"},
    {"backoff max below base", "gateway:\n  upstream:\n    retry: {backoff_max: 100ms}\n",
     "t.yaml:3: gateway.upstream.retry.backoff_max: must be at least gateway.upstream.retry.backoff_base (100ms < "
     "200ms)"},
    {"cors wildcard with credentials", "gateway:\n  cors:\n    allow_origins: [\"*\"]\n",
     "t.yaml:3: gateway.cors.allow_origins: \"*\" together with allow_credentials: true would let any site send "
     "credentialed requests; list the origins"},
    {"bad database url", "upstream_app:\n  database: {url: \"mysql://db/app\"}\n",
     "t.yaml:2: upstream_app.database.url: expected a URL starting with postgresql:// or postgres://, got "
     "\"mysql://db/app\" (or a libpq \"host=... dbname=...\" string)"},
    {"listener collision", "gateway:\n  admin_listen: 0.0.0.0:8080\n",
     "t.yaml:2: gateway.admin_listen: port 8080 is also used by gateway.listen (0.0.0.0:8080)"},
    {"missing env var", "redis:\n  url: ${REDIS_PASSWORDLESS_URL}\n",
     "t.yaml:2: environment variable REDIS_PASSWORDLESS_URL is not set"},
    {"malformed env reference", "redis:\n  url: ${1BAD}\n",
     "t.yaml:2: malformed environment reference \"${1BAD}\" (expected ${NAME} or ${NAME:-default})"},
    {"idle_timeout cross-check names both keys",
     "gateway:\n  upstream:\n    idle_timeout: 120s\nupstream_app:\n  keep_alive_timeout: 90s\n",
     "t.yaml:3: gateway.upstream.idle_timeout: must be shorter than upstream_app.keep_alive_timeout on line 5 "
     "(2m >= 90s): the gateway would reuse upstream connections the app is already closing (intermittent "
     "502s)"},
    {"idle_timeout cross-check when only keep_alive_timeout is written",
     "upstream_app:\n  keep_alive_timeout: 60s\n",
     "t.yaml:2: upstream_app.keep_alive_timeout: must be longer than gateway.upstream.idle_timeout (1m <= 1m): "
     "the gateway would reuse upstream connections the app is already closing (intermittent 502s)"},
};

}  // namespace

TEST_CASE("config errors: each kind is reported with file, line, key path and message") {
  for (const ErrorCase& c : kErrorCases) {
    CAPTURE(c.name);
    cfg::LoadResult result = load(c.yaml);
    CHECK_FALSE(result.config.has_value());
    CHECK(joined(result.errors) == std::string(c.expected) + "\n");
  }
}

TEST_CASE("config errors: several problems are reported at once, ordered by line") {
  const char* yaml =
      "redis:\n"                                 // 1
      "  connect_timeout: soon\n"                // 2
      "gateway:\n"                               // 3
      "  listen: 0.0.0.0:8080\n"                 // 4
      "  backlog: -5\n"                          // 5
      "  keep_alive_timout: 5s\n"                // 6
      "  upstream:\n"                            // 7
      "    read_timeout: 3\n"                    // 8
      "  rate_limits:\n"                         // 9
      "    - {name: a, path: /a, limit: 0}\n"    // 10
      "upstream_app:\n"                          // 11
      "  database:\n"                            // 12
      "    pool_size: many\n";                   // 13
  cfg::LoadResult result = load(yaml);
  REQUIRE_FALSE(result.config.has_value());
  std::vector<std::string> expected{
      "t.yaml:2: redis.connect_timeout: expected a duration like \"2s\", got \"soon\"",
      "t.yaml:5: gateway.backlog: must be at least 1, got -5",
      "t.yaml:6: gateway.keep_alive_timout: unknown key (did you mean \"keep_alive_timeout\"?)",
      "t.yaml:8: gateway.upstream.read_timeout: expected a duration like \"2s\", got \"3\" (add a unit: ms, s, m or "
      "h)",
      "t.yaml:10: gateway.rate_limits[0].limit: must be at least 1, got 0",
      "t.yaml:13: upstream_app.database.pool_size: expected an integer, got \"many\"",
  };
  CHECK(joined(result.errors) == joined(expected));
}

TEST_CASE("config errors: a failed ${VAR} is reported once, not again as a bad value") {
  cfg::LoadResult result = load("redis:\n  connect_timeout: ${TIMEOUT}\n  command_timeout: x\n");
  std::vector<std::string> expected{
      "t.yaml:2: environment variable TIMEOUT is not set",
      "t.yaml:3: redis.command_timeout: expected a duration like \"2s\", got \"x\"",
  };
  CHECK(joined(result.errors) == joined(expected));
}

TEST_CASE("config defaults: an empty file is valid and every key has the contract's default") {
  for (const char* text : {"", "# nothing here\n", "redis:\ngateway:\nupstream_app:\n"}) {
    CAPTURE(text);
    cfg::LoadResult result = load(text);
    REQUIRE_MESSAGE(result.config.has_value(), joined(result.errors));
    const cfg::Config& c = *result.config;
    CHECK(c.redis.url == "redis://127.0.0.1:6379/0");
    CHECK(c.redis.connect_timeout == std::chrono::milliseconds(200));
    CHECK(c.redis.command_timeout == std::chrono::milliseconds(50));
    CHECK(c.gateway.listen.str() == "0.0.0.0:8080");
    CHECK(c.gateway.admin_listen.str() == "0.0.0.0:9901");
    CHECK(c.gateway.workers == 0);
    CHECK(c.gateway.backlog == 2048);
    CHECK(c.gateway.limit_concurrency == 1000);
    CHECK(c.gateway.max_connections == 10000);
    CHECK(c.gateway.keep_alive_timeout == std::chrono::seconds(5));
    CHECK(c.gateway.max_requests_per_connection == 0);
    CHECK(c.gateway.header_timeout == std::chrono::seconds(10));
    CHECK(c.gateway.request_timeout == std::chrono::seconds(60));
    CHECK(c.gateway.graceful_timeout == std::chrono::seconds(30));
    CHECK(c.gateway.drain_delay == std::chrono::seconds(5));
    CHECK(c.gateway.max_header_bytes == 16 * 1024);
    CHECK(c.gateway.max_body_bytes == 5 * 1024 * 1024);
    CHECK(c.gateway.trusted_proxies.empty());
    CHECK(c.gateway.tls.cert_file.empty());
    CHECK(c.gateway.upstream.address.str() == "127.0.0.1:8000");
    CHECK(c.gateway.upstream.max_connections == 200);
    CHECK(c.gateway.upstream.max_idle_connections == 50);
    CHECK(c.gateway.upstream.idle_timeout == std::chrono::seconds(60));
    CHECK(c.gateway.upstream.pool_timeout == std::chrono::seconds(2));
    CHECK(c.gateway.upstream.retry.attempts == 3);
    CHECK(c.gateway.upstream.retry.retry_on ==
          std::vector<std::string>{"connect_failure", "reset", "502", "503", "504"});
    CHECK(c.gateway.upstream.circuit_breaker.failure_ratio == doctest::Approx(0.5));
    CHECK(c.gateway.upstream.circuit_breaker.half_open_requests == 3);
    CHECK(c.gateway.upstream.health_path == "/readyz");
    CHECK(c.gateway.request_id.header == "X-Request-ID");
    CHECK(c.gateway.cors.allow_origins == std::vector<std::string>{"https://example.com"});
    CHECK(c.gateway.cors.max_age == std::chrono::seconds(600));
    CHECK(c.gateway.compression.algorithms == std::vector<std::string>{"br", "gzip"});
    CHECK(c.gateway.compression.min_size == 1024);
    CHECK(c.gateway.cache.max_bytes == 64ull * 1024 * 1024);
    REQUIRE(c.gateway.cache.rules.size() == 1);
    CHECK(c.gateway.cache.rules[0].prefix == "/articles/");
    CHECK(c.gateway.cache.rules[0].cache_control == "public, max-age=60");
    REQUIRE(c.gateway.rate_limits.size() == 1);
    CHECK(c.gateway.rate_limits[0].name == "heavy");
    CHECK(c.gateway.rate_limits[0].path == "/heavy");
    CHECK(c.gateway.rate_limits[0].limit == 100);
    CHECK(c.gateway.tracing.sample_ratio == doctest::Approx(0.1));
    CHECK(c.gateway.tracing.service_name == "gateway");
    CHECK(c.gateway.logging.level == "info");
    CHECK(c.upstream_app.listen.str() == "127.0.0.1:8000");
    CHECK(c.upstream_app.workers == 1);
    CHECK(c.upstream_app.keep_alive_timeout == std::chrono::seconds(90));
    CHECK(c.upstream_app.database.url == "postgresql://app@127.0.0.1:6432/app");
    CHECK(c.upstream_app.database.recycle == std::chrono::minutes(30));
    CHECK(c.upstream_app.shipping.base_url == "http://127.0.0.1:8090");
    CHECK(c.upstream_app.shipping.retry.backoff_max == std::chrono::seconds(1));
    CHECK(c.upstream_app.tracing.service_name == "upstream-app");
  }
}

TEST_CASE("config defaults: keys left out of a written section keep their defaults") {
  cfg::LoadResult result = load(
      "gateway:\n  upstream:\n    connect_timeout: 500ms\n  rate_limits:\n    - {name: api, prefix: /api/, limit: "
      "5}\n  cache:\n    rules: [{path: /x, ttl: 2m}]\n");
  REQUIRE_MESSAGE(result.config.has_value(), joined(result.errors));
  const cfg::GatewayConfig& g = result.config->gateway;
  CHECK(g.upstream.connect_timeout == std::chrono::milliseconds(500));
  CHECK(g.upstream.read_timeout == std::chrono::seconds(3));
  REQUIRE(g.rate_limits.size() == 1);
  CHECK(g.rate_limits[0].algorithm == "token_bucket");
  CHECK(g.rate_limits[0].window == std::chrono::seconds(60));
  CHECK(g.rate_limits[0].key == "client_ip");
  CHECK(g.rate_limits[0].fail_open);
  REQUIRE(g.cache.rules.size() == 1);
  CHECK(g.cache.rules[0].path == "/x");
  CHECK(g.cache.rules[0].cache_control == "public, max-age=120");  // derived from ttl
}

TEST_CASE("config values: every accepted form is parsed") {
  cfg::LoadResult result = load(
      "gateway:\n"
      "  listen: \"[::]:8443\"\n"
      "  admin_listen: 127.0.0.1:9901\n"
      "  workers: 4\n"
      "  drain_delay: 0s\n"
      "  max_body_bytes: 1.5MiB\n"
      "  trusted_proxies: [10.0.0.0/8, \"fd00::/8\", 192.168.1.7]\n"
      "  tls: {cert_file: c.pem, key_file: k.pem}\n"
      "  upstream: {address: \"app.default.svc:8000\", retry: {retry_on: [timeout, 5xx, 599]}}\n"
      "  rate_limits:\n"
      "    - {name: by-key, path: /a, limit: 10, key: \"header:X-Api-Key\", algorithm: sliding_window}\n"
      "  cache: {rules: []}\n"
      "  compression: {algorithms: [zstd, br, gzip]}\n"
      "  tracing: {enabled: false, sample_ratio: 1}\n"
      "upstream_app:\n"
      "  listen: 127.0.0.1:8001\n"
      "  workers: auto\n"
      "  database: {url: \"host=/tmp dbname=app\"}\n");
  REQUIRE_MESSAGE(result.config.has_value(), joined(result.errors));
  const cfg::Config& c = *result.config;
  CHECK(c.gateway.listen.host == "::");
  CHECK(c.gateway.listen.port == 8443);
  CHECK(c.gateway.listen.str() == "[::]:8443");
  CHECK(c.gateway.workers == 4);
  CHECK(cfg::resolvedWorkers(c.gateway) == 4);
  CHECK(c.gateway.drain_delay == std::chrono::milliseconds(0));
  CHECK(c.gateway.max_body_bytes == 1572864);
  CHECK(c.gateway.trusted_proxies.size() == 3);
  CHECK(c.gateway.upstream.address.host == "app.default.svc");
  CHECK(c.gateway.rate_limits[0].key == "header:X-Api-Key");
  CHECK(c.gateway.cache.rules.empty());
  CHECK_FALSE(c.gateway.tracing.enabled);
  CHECK(c.upstream_app.workers == 0);
  CHECK(cfg::resolvedWorkers(c.upstream_app) >= 1);
}

TEST_CASE("config env: ${VAR} value, ${VAR:-default}, empty values and comments") {
  SUBCASE("the variable's value is used") {
    cfg::LoadResult result = load("redis:\n  url: ${R_URL}\n  command_timeout: ${CMD:-50ms}\n",
                                  {{"R_URL", "redis://cache:6380/1"}, {"CMD", "75ms"}});
    REQUIRE_MESSAGE(result.config.has_value(), joined(result.errors));
    CHECK(result.config->redis.url == "redis://cache:6380/1");
    CHECK(result.config->redis.command_timeout == std::chrono::milliseconds(75));
  }
  SUBCASE("the default is used when the variable is unset or empty") {
    cfg::LoadResult result =
        load("redis:\n  url: ${R_URL:-redis://fallback:6379/0}\n  command_timeout: ${CMD:-50ms}\n", {{"CMD", ""}});
    REQUIRE_MESSAGE(result.config.has_value(), joined(result.errors));
    CHECK(result.config->redis.url == "redis://fallback:6379/0");
    CHECK(result.config->redis.command_timeout == std::chrono::milliseconds(50));
  }
  SUBCASE("an absent key whose contract default is ${VAR:-...} reads the variable") {
    cfg::LoadResult result = load("", {{"DB_URL", "postgresql://u:p@db:6432/app"}, {"REDIS_URL", "redis://r:1/0"}});
    REQUIRE_MESSAGE(result.config.has_value(), joined(result.errors));
    CHECK(result.config->upstream_app.database.url == "postgresql://u:p@db:6432/app");
    CHECK(result.config->redis.url == "redis://r:1/0");
  }
  SUBCASE("references in comments are ignored, $${ is a literal") {
    cfg::LoadResult result = load("# url: ${UNSET_IN_COMMENT}\ngateway:\n  cache:\n    rules:\n"
                                  "      - {path: /x, cache_control: \"a$${b}\"}  # ${ALSO_UNSET}\n");
    REQUIRE_MESSAGE(result.config.has_value(), joined(result.errors));
    CHECK(result.config->gateway.cache.rules[0].cache_control == "a${b}");
  }
  SUBCASE("an empty value without default is an error") {
    cfg::LoadResult result = load("redis:\n  url: ${R_URL}\n", {{"R_URL", ""}});
    CHECK(joined(result.errors) == "t.yaml:2: environment variable R_URL is not set\n");
  }
  SUBCASE("a value with a line break is refused, line numbers stay right") {
    cfg::LoadResult result = load("redis:\n  url: ${R_URL}\ngateway:\n  backlog: x\n", {{"R_URL", "a\nb: c"}});
    std::vector<std::string> expected{"t.yaml:2: environment variable R_URL contains a line break",
                                      "t.yaml:4: gateway.backlog: expected an integer, got \"x\""};
    CHECK(joined(result.errors) == joined(expected));
  }
}

TEST_CASE("config file: the shipped conf/app.yaml loads with zero errors and states the defaults") {
  cfg::LoadResult shipped = cfg::loadFile(repoPath("conf/app.yaml").string());
  REQUIRE_MESSAGE(shipped.config.has_value(), joined(shipped.errors));
  cfg::LoadResult empty = load("");
  REQUIRE(empty.config.has_value());
  // Spot checks that the file and the struct defaults agree.
  const cfg::Config& a = *shipped.config;
  const cfg::Config& b = *empty.config;
  CHECK(a.gateway.listen.str() == b.gateway.listen.str());
  CHECK(a.gateway.workers == b.gateway.workers);
  CHECK(a.gateway.max_body_bytes == b.gateway.max_body_bytes);
  CHECK(a.gateway.upstream.retry.retry_on == b.gateway.upstream.retry.retry_on);
  CHECK(a.gateway.cors.allow_headers == b.gateway.cors.allow_headers);
  CHECK(a.gateway.compression.content_types == b.gateway.compression.content_types);
  CHECK(a.gateway.cache.rules[0].cache_control == b.gateway.cache.rules[0].cache_control);
  CHECK(a.gateway.rate_limits[0].window == b.gateway.rate_limits[0].window);
  CHECK(a.upstream_app.keep_alive_timeout == b.upstream_app.keep_alive_timeout);
  CHECK(a.upstream_app.shipping.circuit_breaker.min_requests == b.upstream_app.shipping.circuit_breaker.min_requests);
  CHECK(a.upstream_app.tracing.service_name == "upstream-app");
}

// Found by the config_loader fuzzer (tests/fuzz/regressions/config_loader/unknown_key_with_line_break):
// a key written as a YAML string may hold a line break, which split the one-line error.
TEST_CASE("config errors: control characters from the file are escaped, one line per error") {
  cfg::LoadResult result = load("gateway: {\"bad\\nkey\": 1}\n");
  CHECK_FALSE(result.config.has_value());
  CHECK(joined(result.errors) == "t.yaml:1: gateway.bad\\nkey: unknown key\n");

  // Quoted scalars in messages: CR, TAB, ESC and DEL too (a terminal acts on each of them).
  result = load("gateway:\n  workers: \"a\\rb\\tc\\ed\\x7f\"\n");
  REQUIRE(result.errors.size() == 1);
  const std::string& e = result.errors[0];
  CHECK(e.rfind("t.yaml:2: gateway.workers: ", 0) == 0);
  CHECK(e.find("\"a\\rb\\tc\\x1bd\\x7f\"") != std::string::npos);
  for (char c : e) {
    CHECK((static_cast<unsigned char>(c) >= 0x20 && c != 0x7f));
  }

  // yaml-cpp's own messages quote the input too; every error still fits on one line.
  result = load("gateway:\n  \"x\\ny\": [\n");
  REQUIRE_FALSE(result.errors.empty());
  for (const std::string& error : result.errors) {
    CHECK(error.find_first_of("\r\n") == std::string::npos);
  }

  // A file name with a line break (from the command line) is escaped as well.
  result = cfg::loadFile("/nonexistent/a\nb.yaml");
  CHECK(joined(result.errors) == "/nonexistent/a\\nb.yaml: cannot open the file: No such file or directory\n");
}

TEST_CASE("config file: a missing file is one clear error") {
  cfg::LoadResult result = cfg::loadFile("/nonexistent/app.yaml");
  CHECK_FALSE(result.config.has_value());
  CHECK(joined(result.errors) == "/nonexistent/app.yaml: cannot open the file: No such file or directory\n");
}

TEST_CASE("config check command: exit 0 with the grace period, exit 2 with every error") {
  SUBCASE("shipped file") {
    std::ostringstream out;
    std::ostringstream err;
    CHECK(cfg::checkConfigCommand(repoPath("conf/app.yaml").string(), out, err) == 0);
    CHECK(err.str().empty());
    CHECK(out.str().find(": OK\n") != std::string::npos);
    // graceful_timeout 30s + drain_delay 5s.
    CHECK(out.str().find("minimum terminationGracePeriodSeconds: 35\n") != std::string::npos);
  }
  SUBCASE("broken example: three distinct mistakes, all reported") {
    std::ostringstream out;
    std::ostringstream err;
    std::string path = repoPath("conf/examples/broken.yaml").string();
    CHECK(cfg::checkConfigCommand(path, out, err) == 2);
    CHECK(out.str().empty());
    std::string expected = path + ":9: gateway.backlog: expected an integer, got \"lots\"\n" + path +
                           ":10: gateway.keep_alive_timout: unknown key (did you mean \"keep_alive_timeout\"?)\n" +
                           path + ":12: gateway.compression.gzip_level: must be between 1 and 9, got 12\n" + path +
                           ": 3 errors\n";
    CHECK(err.str() == expected);
  }
  SUBCASE("grace period rounds up to whole seconds") {
    std::filesystem::path file = std::filesystem::temp_directory_path() / "config_test_grace.yaml";
    {
      std::ofstream f(file);
      f << "gateway:\n  graceful_timeout: 10s\n  drain_delay: 1500ms\n";
    }
    std::ostringstream out;
    std::ostringstream err;
    CHECK(cfg::checkConfigCommand(file.string(), out, err) == 0);
    CHECK(out.str().find("minimum terminationGracePeriodSeconds: 12\n") != std::string::npos);
    std::filesystem::remove(file);
  }
}
