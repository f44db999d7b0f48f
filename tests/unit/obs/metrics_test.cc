// Metrics registry (common/obs/metrics.h): shard sums under concurrent writers, label escaping,
// the cardinality bound, histogram buckets, the exact exposition text, and promtool's verdict.

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/obs/metrics.h"
#include "common/obs/metrics_format.h"
#include "common/obs/metrics_process.h"

namespace {

// Runs `body(threadIndex)` on `threads` threads, each bound to metrics shard threadIndex + 1.
template <class Body>
void runThreads(int threads, Body body) {
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([t, &body] {
      obs::setMetricsShard(static_cast<unsigned>(t) + 1);
      body(t);
    });
  }
  for (std::thread& th : pool) {
    th.join();
  }
}

// Lines of `text` that start with `prefix`.
std::vector<std::string> linesStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(prefix)) {
      out.push_back(line);
    }
  }
  return out;
}

std::string formatNumber(double v) {
  std::string s;
  obs::appendNumber(s, v);
  return s;
}

bool promtoolAvailable() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

// Writes `exposition` to a temp file and runs `promtool check metrics < file`. Returns its exit
// code; `output` gets what it printed.
int promtoolCheck(const std::string& exposition, std::string& output) {
  char path[] = "/tmp/metrics_test_XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  {
    std::ofstream file(path, std::ios::binary);
    file << exposition;
  }
  const std::string outPath = std::string(path) + ".out";
  const std::string command = "promtool check metrics < " + std::string(path) + " > " + outPath + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream result(outPath);
  std::stringstream buffer;
  buffer << result.rdbuf();
  output = buffer.str();
  std::remove(path);
  std::remove(outPath.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("metrics: counters written from many threads are summed over shards") {
  // 4 shards, 6 writer threads: two shards are shared, which must stay exact.
  obs::MetricsRegistry registry(4);
  REQUIRE(registry.shardCount() == 4);
  obs::Counter total = registry.counter("test_events_total", "Events.");
  obs::CounterFamily& byKind = registry.counterFamily("test_kind_total", "Events by kind.", {"kind"});
  const char* kinds[] = {"a", "b", "c"};

  constexpr int kThreads = 6;
  constexpr int kIterations = 100000;
  std::atomic<bool> writing{true};
  std::thread scraper([&] {
    // Scrapes racing with writers must be safe (values are merely a moment's snapshot).
    while (writing.load()) {
      std::string text = registry.render();
      REQUIRE(text.find("test_events_total") != std::string::npos);
    }
  });
  runThreads(kThreads, [&](int t) {
    for (int i = 0; i < kIterations; ++i) {
      total.inc();
      // Resolved per update, as the gateway does for dynamic labels.
      byKind.labels({kinds[(i + t) % 3]}).inc(2);
    }
  });
  writing = false;
  scraper.join();

  CHECK(total.value() == uint64_t{kThreads} * kIterations);
  uint64_t byKindSum = 0;
  for (const char* k : kinds) {
    byKindSum += byKind.labels({k}).value();
  }
  CHECK(byKindSum == uint64_t{2} * kThreads * kIterations);
  CHECK(byKind.labels({"a"}).value() == uint64_t{2} * kThreads * kIterations / 3);
  CHECK(byKind.seriesCount() == 3);
  CHECK_FALSE(byKind.overflowUsed());

  const std::string text = registry.render();
  CHECK(text.find("test_events_total 600000\n") != std::string::npos);
  CHECK(text.find("test_kind_total{kind=\"b\"} 400000\n") != std::string::npos);
}

TEST_CASE("metrics: gauges add per shard and set absolute values") {
  obs::MetricsRegistry registry(8);
  obs::Gauge inFlight = registry.gauge("test_in_flight", "In flight.");
  runThreads(5, [&](int) {
    for (int i = 0; i < 50000; ++i) {
      inFlight.inc();
      inFlight.dec();
    }
    inFlight.inc();
  });
  CHECK(inFlight.value() == 5.0);

  // set() is absolute even though other shards hold deltas.
  inFlight.set(2);
  CHECK(inFlight.value() == 2.0);
  inFlight.inc();
  inFlight.add(0.5);
  CHECK(inFlight.value() == 3.5);
  inFlight.set(-1.25);
  CHECK(inFlight.value() == -1.25);
  CHECK(registry.render().find("test_in_flight -1.25\n") != std::string::npos);

  obs::GaugeFamily& byState = registry.gaugeFamily("test_breaker_state", "Breaker state.", {"upstream"});
  byState.labels({"app"}).set(2);
  byState.labels({"shipping"}).set(0);
  CHECK(linesStartingWith(registry.render(), "test_breaker_state{") ==
        std::vector<std::string>{"test_breaker_state{upstream=\"app\"} 2",
                                 "test_breaker_state{upstream=\"shipping\"} 0"});
}

TEST_CASE("metrics: histogram buckets are cumulative with inclusive upper bounds") {
  obs::MetricsRegistry registry(2);
  obs::Histogram h = registry.histogram("test_size_bytes", "Sizes.", {1, 10, 100});
  // On a bound counts in that bucket (le is <=); NaN is dropped.
  for (double v : {0.5, 1.0, 5.0, 10.0, 10.5, 100.0, 1000.0, std::nan("")}) {
    h.observe(v);
  }
  CHECK(h.count() == 7);
  CHECK(h.sum() == 1127.0);
  CHECK(h.cumulativeCount(0) == 2);
  CHECK(h.cumulativeCount(1) == 4);
  CHECK(h.cumulativeCount(2) == 6);
  CHECK(h.cumulativeCount(3) == 7);
  CHECK(registry.render() ==
        "# HELP test_size_bytes Sizes.\n"
        "# TYPE test_size_bytes histogram\n"
        "test_size_bytes_bucket{le=\"1\"} 2\n"
        "test_size_bytes_bucket{le=\"10\"} 4\n"
        "test_size_bytes_bucket{le=\"100\"} 6\n"
        "test_size_bytes_bucket{le=\"+Inf\"} 7\n"
        "test_size_bytes_sum 1127\n"
        "test_size_bytes_count 7\n");
}

TEST_CASE("metrics: histogram observations from many threads are summed over shards") {
  obs::MetricsRegistry registry(4);
  obs::HistogramFamily& family = registry.histogramFamily("test_latency_seconds", "Latency.", {"route"});
  CHECK(family.bounds() == obs::defaultLatencyBuckets());
  constexpr int kThreads = 4;
  constexpr int kIterations = 50000;
  runThreads(kThreads, [&](int) {
    obs::Histogram h = family.labels({"articles"});
    for (int i = 0; i < kIterations; ++i) {
      h.observe((i % 2 == 0) ? 0.0009765625 : 0.5);  // 2^-10: exact sums
    }
  });
  obs::Histogram h = family.labels({"articles"});
  CHECK(h.count() == uint64_t{kThreads} * kIterations);
  CHECK(h.sum() == kThreads * (kIterations / 2) * (0.0009765625 + 0.5));
  const std::string text = registry.render();
  const auto buckets = linesStartingWith(text, "test_latency_seconds_bucket{");
  REQUIRE(buckets.size() == obs::defaultLatencyBuckets().size() + 1);
  CHECK(buckets.front() == "test_latency_seconds_bucket{route=\"articles\",le=\"0.0005\"} 0");
  CHECK(buckets[1] == "test_latency_seconds_bucket{route=\"articles\",le=\"0.001\"} 100000");
  CHECK(buckets[9] == "test_latency_seconds_bucket{route=\"articles\",le=\"0.5\"} 200000");
  CHECK(buckets.back() == "test_latency_seconds_bucket{route=\"articles\",le=\"+Inf\"} 200000");
  CHECK(text.find("test_latency_seconds_count{route=\"articles\"} 200000\n") != std::string::npos);
}

TEST_CASE("metrics: label values and help text are escaped") {
  obs::MetricsRegistry registry(1);
  obs::CounterFamily& family = registry.counterFamily("test_escape_total", "Back\\slash and\nnewline.", {"v"});
  family.labels({"a\\b\"c\nd"}).inc();
  family.labels({"bad\xff\xfe utf8 \xc3\xa9"}).inc();
  CHECK(registry.render() ==
        "# HELP test_escape_total Back\\\\slash and\\nnewline.\n"
        "# TYPE test_escape_total counter\n"
        "test_escape_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
        "test_escape_total{v=\"bad\xEF\xBF\xBD\xEF\xBF\xBD utf8 \xc3\xa9\"} 1\n");

  struct Case {
    std::string_view in;
    std::string_view out;
  };
  const Case cases[] = {
      {"plain", "plain"},
      {"\"", "\\\""},
      {"\\n", "\\\\n"},
      {"\xe2\x82\xac", "\xe2\x82\xac"},             // euro sign, valid
      {"\xed\xa0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},  // surrogate: invalid
      {"\xc0\xaf", "\xEF\xBF\xBD\xEF\xBF\xBD"},      // overlong '/'
      {"\xf0\x9f\x98", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},  // truncated 4-byte sequence
  };
  for (const Case& c : cases) {
    CAPTURE(c.in);
    std::string out;
    obs::appendEscapedLabelValue(out, c.in);
    CHECK(out == c.out);
  }
}

TEST_CASE("metrics: cardinality is bounded and extra label tuples fall back to other") {
  obs::MetricsRegistry registry(2);
  obs::CounterFamily& family =
      registry.counterFamily("test_requests_total", "Requests.", {"method", "route"}, /*maxSeries=*/2);
  CHECK(family.maxSeries() == 2);
  family.labels({"GET", "a"}).inc();
  family.labels({"GET", "b"}).inc();
  CHECK_FALSE(family.overflowUsed());
  // The family is full: new tuples share the overflow series, known ones keep theirs.
  family.labels({"GET", "c"}).inc();
  family.labels({"PUT", "d"}).inc(5);
  family.labels({"GET", "a"}).inc();
  // A caller that collapsed labels itself lands in the same series, not in a duplicate one.
  family.labels({"other", "other"}).inc(10);
  // A wrong number of values is a bug in the caller; it must not crash or make a new series.
  family.labels({"GET"}).inc(100);
  CHECK(family.seriesCount() == 2);
  CHECK(family.overflowUsed());
  CHECK(registry.render() ==
        "# HELP test_requests_total Requests.\n"
        "# TYPE test_requests_total counter\n"
        "test_requests_total{method=\"GET\",route=\"a\"} 2\n"
        "test_requests_total{method=\"GET\",route=\"b\"} 1\n"
        "test_requests_total{method=\"other\",route=\"other\"} 116\n");

  // Many distinct tuples: never more than maxSeries + 1 series.
  obs::CounterFamily& wide = registry.counterFamily("test_paths_total", "Paths.", {"path"}, 64);
  for (int i = 0; i < 10000; ++i) {
    wide.labels({std::to_string(i)}).inc();
  }
  CHECK(wide.seriesCount() == 64);
  CHECK(linesStartingWith(registry.render(), "test_paths_total{").size() == 65);
  CHECK(wide.labels({"other"}).value() == 10000 - 64);
}

TEST_CASE("metrics: a tuple first seen by many threads at once gets exactly one series") {
  obs::MetricsRegistry registry(4);
  obs::CounterFamily& family = registry.counterFamily("test_race_total", "Race.", {"key"}, 1000);
  constexpr int kThreads = 4;
  constexpr int kKeys = 200;
  std::vector<std::string> keys;
  for (int k = 0; k < kKeys; ++k) {
    keys.push_back("k" + std::to_string(k));
  }
  runThreads(kThreads, [&](int) {
    for (int round = 0; round < 50; ++round) {
      for (const std::string& key : keys) {
        family.labels({key}).inc();
      }
    }
  });
  CHECK(family.seriesCount() == kKeys);
  const auto lines = linesStartingWith(registry.render(), "test_race_total{");
  REQUIRE(lines.size() == kKeys);
  for (const std::string& line : lines) {
    CAPTURE(line);
    CHECK(line.ends_with("} 200"));
  }
}

TEST_CASE("metrics: exposition text of a small registry is exact and sorted by name") {
  obs::MetricsRegistry registry(2);
  obs::CounterFamily& requests =
      registry.counterFamily("test_requests_total", "Requests by method and code.", {"method", "code"});
  requests.labels({"POST", "201"}).inc();
  requests.labels({"GET", "404"}).inc(2);
  requests.labels({"GET", "200"}).inc(3);
  obs::Gauge inFlight = registry.gauge("test_in_flight", "In flight.");
  inFlight.inc();
  inFlight.inc();
  inFlight.dec();
  obs::Histogram latency = registry.histogram("test_latency_seconds", "Latency.", {0.01, 0.1});
  latency.observe(0.0078125);
  latency.observe(0.0625);
  latency.observe(0.25);
  registry.callbackGauge("test_rss_bytes", "RSS.", [] { return 1048576.0; });
  obs::CallbackFamily& pool = registry.callbackGaugeFamily("test_pool_connections", "Pool.", {"state"});
  pool.add({"idle"}, [] { return 3.0; });
  pool.add({"active"}, [] { return 1.0; });
  registry.counter("test_unused_total", "Declared, never incremented.");
  registry.counterFamily("test_unused_labeled_total", "Declared with labels, no series yet.", {"rule"});

  CHECK(registry.render() ==
        "# HELP test_in_flight In flight.\n"
        "# TYPE test_in_flight gauge\n"
        "test_in_flight 1\n"
        "# HELP test_latency_seconds Latency.\n"
        "# TYPE test_latency_seconds histogram\n"
        "test_latency_seconds_bucket{le=\"0.01\"} 1\n"
        "test_latency_seconds_bucket{le=\"0.1\"} 2\n"
        "test_latency_seconds_bucket{le=\"+Inf\"} 3\n"
        "test_latency_seconds_sum 0.3203125\n"
        "test_latency_seconds_count 3\n"
        "# HELP test_pool_connections Pool.\n"
        "# TYPE test_pool_connections gauge\n"
        "test_pool_connections{state=\"active\"} 1\n"
        "test_pool_connections{state=\"idle\"} 3\n"
        "# HELP test_requests_total Requests by method and code.\n"
        "# TYPE test_requests_total counter\n"
        "test_requests_total{method=\"GET\",code=\"200\"} 3\n"
        "test_requests_total{method=\"GET\",code=\"404\"} 2\n"
        "test_requests_total{method=\"POST\",code=\"201\"} 1\n"
        "# HELP test_rss_bytes RSS.\n"
        "# TYPE test_rss_bytes gauge\n"
        "test_rss_bytes 1048576\n"
        "# HELP test_unused_labeled_total Declared with labels, no series yet.\n"
        "# TYPE test_unused_labeled_total counter\n"
        "# HELP test_unused_total Declared, never incremented.\n"
        "# TYPE test_unused_total counter\n"
        "test_unused_total 0\n");
}

TEST_CASE("metrics: declaration errors are reported at startup") {
  obs::MetricsRegistry registry(1);
  registry.counter("test_taken_total", "Taken.");
  registry.histogram("test_hist_seconds", "Hist.");
  CHECK_THROWS_AS(registry.counter("test_taken_total", "Again."), std::invalid_argument);
  CHECK_THROWS_AS(registry.gauge("test_taken_total", "Other type."), std::invalid_argument);
  CHECK_THROWS_AS(registry.counter("9starts_with_digit", "x"), std::invalid_argument);
  CHECK_THROWS_AS(registry.counter("has-dash", "x"), std::invalid_argument);
  CHECK_THROWS_AS(registry.counter("", "x"), std::invalid_argument);
  CHECK_THROWS_AS(registry.counterFamily("test_a_total", "x", {"bad-label"}), std::invalid_argument);
  CHECK_THROWS_AS(registry.counterFamily("test_b_total", "x", {"__reserved"}), std::invalid_argument);
  CHECK_THROWS_AS(registry.counterFamily("test_c_total", "x", {"a", "a"}), std::invalid_argument);
  CHECK_THROWS_AS(registry.counterFamily("test_d_total", "x", {"a"}, 0), std::invalid_argument);
  CHECK_THROWS_AS(registry.histogramFamily("test_e_seconds", "x", {"le"}), std::invalid_argument);
  CHECK_THROWS_AS(registry.histogram("test_f_seconds", "x", {1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(registry.histogram("test_g_seconds", "x", {2, 1}), std::invalid_argument);
  CHECK_THROWS_AS(registry.histogram("test_h_seconds", "x", {1, std::nan("")}), std::invalid_argument);
  // Sample names of a histogram are taken too, both ways round.
  CHECK_THROWS_AS(registry.counter("test_hist_seconds_count", "x"), std::invalid_argument);
  registry.gauge("test_pre_sum", "x");
  CHECK_THROWS_AS(registry.histogram("test_pre", "x"), std::invalid_argument);
  obs::CallbackFamily& cb = registry.callbackGaugeFamily("test_cb", "x", {"state"});
  cb.add({"a"}, [] { return 1.0; });
  CHECK_THROWS_AS(cb.add({"a"}, [] { return 2.0; }), std::invalid_argument);
  CHECK_THROWS_AS(cb.add({"a", "b"}, [] { return 2.0; }), std::invalid_argument);
  CHECK_THROWS_AS(obs::exponentialBuckets(0, 2, 3), std::invalid_argument);
  // A failed declaration leaves nothing behind.
  CHECK(registry.find("test_a_total") == nullptr);
  CHECK(registry.find("test_taken_total") != nullptr);
  // A trailing +Inf bound is accepted and implicit.
  obs::Histogram h = registry.histogram("test_inf_seconds", "x", {1, std::numeric_limits<double>::infinity()});
  h.observe(5);
  CHECK(h.cumulativeCount(1) == 1);
  CHECK(obs::exponentialBuckets(0.001, 10, 3) == std::vector<double>{0.001, 0.01, 0.1});
}

TEST_CASE("metrics: detached handles and shard counts") {
  obs::Counter c;
  obs::Gauge g;
  obs::Histogram h;
  c.inc();
  g.set(3);
  g.inc();
  h.observe(1);
  CHECK(c.value() == 0);
  CHECK(g.value() == 0.0);
  CHECK(h.count() == 0);
  CHECK(obs::MetricsRegistry(0).shardCount() == 1);
  CHECK(obs::MetricsRegistry(3).shardCount() == 4);
  CHECK(obs::MetricsRegistry(9).shardCount() == 16);
}

TEST_CASE("metrics: numbers are formatted the way Prometheus parses them") {
  struct Case {
    double value;
    std::string_view text;
  };
  const Case cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-2, "-2"},
      {0.0005, "0.0005"},
      {2.5, "2.5"},
      {1e-7, "1e-07"},
      {123456789012.0, "123456789012"},
      {9007199254740992.0, "9007199254740992"},
      {1e300, "1e+300"},
      {std::numeric_limits<double>::infinity(), "+Inf"},
      {-std::numeric_limits<double>::infinity(), "-Inf"},
      {std::nan(""), "NaN"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    CHECK(formatNumber(c.value) == c.text);
  }
  std::string s;
  obs::appendNumber(s, uint64_t{18446744073709551615ull});
  CHECK(s == "18446744073709551615");
}

TEST_CASE("metrics: bounded status and method labels") {
  CHECK(obs::statusCodeLabel(200) == "200");
  CHECK(obs::statusCodeLabel(100) == "100");
  CHECK(obs::statusCodeLabel(599) == "599");
  CHECK(obs::statusCodeLabel(99) == "other");
  CHECK(obs::statusCodeLabel(600) == "other");
  CHECK(obs::statusCodeLabel(-1) == "other");
  CHECK(obs::methodLabel("GET") == "GET");
  CHECK(obs::methodLabel("PATCH") == "PATCH");
  CHECK(obs::methodLabel("get") == "other");
  CHECK(obs::methodLabel("PROPFIND") == "other");
}

TEST_CASE("metrics: process metrics read /proc") {
  CHECK(obs::processResidentMemoryBytes() > 0);
  CHECK(obs::processVirtualMemoryBytes() >= obs::processResidentMemoryBytes());
  CHECK(obs::processOpenFds() >= 3);
  CHECK(obs::processCpuSeconds() >= 0);
  const double start = obs::processStartTimeSeconds();
  const double now = static_cast<double>(std::time(nullptr));
  CHECK(start > now - 86400 * 365);
  CHECK(start <= now + 1);

  obs::MetricsRegistry registry(1);
  obs::registerProcessMetrics(registry);
  const std::string text = registry.render();
  const auto rss = linesStartingWith(text, "process_resident_memory_bytes ");
  REQUIRE(rss.size() == 1);
  CHECK(std::stod(rss[0].substr(rss[0].find(' ') + 1)) > 0);
  CHECK(text.find("# TYPE process_cpu_seconds_total counter\n") != std::string::npos);
}

TEST_CASE("metrics: promtool accepts the gateway and app metrics of the contract") {
  // Gateway: every name of CONTRACT §4 "Metrics", with the labels the contract gives.
  obs::MetricsRegistry gateway(4);
  obs::CounterFamily& requests =
      gateway.counterFamily("gateway_requests_total", "Requests answered, by method, status code and route.",
                            {"method", "code", "route"}, 1024);
  requests.labels({obs::methodLabel("GET"), obs::statusCodeLabel(200), "articles"}).inc(10);
  requests.labels({obs::methodLabel("POST"), obs::statusCodeLabel(503), "orders"}).inc();
  requests.labels({obs::methodLabel("BREW"), obs::statusCodeLabel(400), "unmatched"}).inc();
  requests.labels({"GET", "200", "route \"with\" \\odd\nchars"}).inc();
  obs::HistogramFamily& duration = gateway.histogramFamily(
      "gateway_request_duration_seconds", "Time from request head to last response byte.", {"route"});
  duration.labels({"articles"}).observe(0.0031);
  duration.labels({"articles"}).observe(12.0);
  duration.labels({"orders"}).observe(0.2);
  gateway.gauge("gateway_in_flight_requests", "Requests being handled now.").inc();
  gateway.gauge("gateway_connections_active", "Open client connections.").add(3);
  obs::CounterFamily& upstream = gateway.counterFamily(
      "gateway_upstream_requests_total", "Upstream attempts by outcome.", {"outcome"});
  for (std::string_view outcome : {"success", "connect_error", "timeout", "reset", "breaker_open", "pool_timeout"}) {
    upstream.labels({outcome});
  }
  upstream.labels({"success"}).inc(11);
  gateway.counter("gateway_upstream_retries_total", "Upstream attempts after the first.").inc(2);
  obs::CallbackFamily& pool =
      gateway.callbackGaugeFamily("gateway_upstream_pool_connections", "Upstream connections by state.", {"state"});
  pool.add({"active"}, [] { return 2.0; });
  pool.add({"idle"}, [] { return 6.0; });
  pool.add({"connecting"}, [] { return 0.0; });
  gateway.gaugeFamily("gateway_circuit_breaker_state", "0 closed, 1 half-open, 2 open.", {"upstream"})
      .labels({"app"})
      .set(0);
  gateway.counterFamily("gateway_rate_limited_total", "Requests refused by a rate limit rule.", {"rule"})
      .labels({"heavy"})
      .inc(4);
  obs::CounterFamily& cache =
      gateway.counterFamily("gateway_cache_requests_total", "Response cache lookups by result.", {"result"});
  cache.labels({"hit"}).inc(7);
  cache.labels({"miss"}).inc(3);
  cache.labels({"bypass"});
  gateway.counterFamily("gateway_compressed_responses_total", "Compressed responses by encoding.", {"encoding"})
      .labels({"br"})
      .inc();
  gateway.counter("gateway_concurrency_rejected_total", "Requests refused by limit_concurrency.");
  obs::registerProcessMetrics(gateway);

  // Upstream app: the names of CONTRACT §5 `/metrics`.
  obs::MetricsRegistry app(2);
  app.counterFamily("http_requests_total", "Requests answered, by method, status code and route.",
                    {"method", "code", "route"})
      .labels({"GET", "200", "articles_get"})
      .inc(5);
  app.histogramFamily("http_request_duration_seconds", "Request handling time.", {"route"})
      .labels({"articles_get"})
      .observe(0.004);
  obs::CallbackFamily& dbPool =
      app.callbackGaugeFamily("db_pool_connections", "Database connections by state.", {"state"});
  dbPool.add({"busy"}, [] { return 1.0; });
  dbPool.add({"idle"}, [] { return 3.0; });
  app.histogram("db_pool_wait_seconds", "Time spent waiting for a pooled database connection.").observe(0.0001);
  app.histogramFamily("db_query_duration_seconds", "Database statement time.", {"statement"})
      .labels({"article_by_id"})
      .observe(0.0012);
  obs::CounterFamily& appCache =
      app.counterFamily("cache_requests_total", "Redis cache lookups by result.", {"result"});
  appCache.labels({"hit"}).inc();
  appCache.labels({"miss"}).inc();
  appCache.labels({"error"});
  app.counterFamily("http_client_requests_total", "Shipping service calls by outcome.", {"outcome"})
      .labels({"success"})
      .inc();
  app.gaugeFamily("http_client_circuit_breaker_state", "0 closed, 1 half-open, 2 open.", {"upstream"})
      .labels({"shipping"})
      .set(2);
  obs::registerProcessMetrics(app);

  const std::string gatewayText = gateway.render();
  const std::string appText = app.render();
  for (const char* name :
       {"gateway_requests_total", "gateway_request_duration_seconds", "gateway_in_flight_requests",
        "gateway_connections_active", "gateway_upstream_requests_total", "gateway_upstream_retries_total",
        "gateway_upstream_pool_connections", "gateway_circuit_breaker_state", "gateway_rate_limited_total",
        "gateway_cache_requests_total", "gateway_compressed_responses_total", "gateway_concurrency_rejected_total",
        "process_resident_memory_bytes"}) {
    CAPTURE(name);
    CHECK(gatewayText.find("# TYPE " + std::string(name) + " ") != std::string::npos);
  }
  for (const char* name : {"db_pool_connections", "db_pool_wait_seconds", "db_query_duration_seconds",
                           "cache_requests_total", "http_client_requests_total"}) {
    CAPTURE(name);
    CHECK(appText.find("# TYPE " + std::string(name) + " ") != std::string::npos);
  }

  if (!promtoolAvailable()) {
    MESSAGE("promtool not found (apt-get install -y prometheus); skipping the promtool check");
    return;
  }
  // The harness itself must be able to fail: a counter without _total is a lint error.
  std::string lintOutput;
  CHECK(promtoolCheck("# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n", lintOutput) != 0);
  for (const std::string* text : {&gatewayText, &appText}) {
    std::string output;
    const int rc = promtoolCheck(*text, output);
    CAPTURE(output);
    CAPTURE(*text);
    CHECK(rc == 0);
    CHECK(output.empty());
  }
}
