#pragma once
// Prometheus metrics: counters, gauges and histograms, each family declared once (name, help,
// label names) into a MetricsRegistry at startup and rendered in text format 0.0.4 at scrape.
//
// Why it is shaped like this: the gateway updates metrics ~100k times a second from N event-loop
// threads and is scraped every few seconds. So
//  - every series keeps one cell per shard; a thread names its shard once (setMetricsShard) and
//    its updates are relaxed atomic adds to cache lines no other shard writes; the scrape sums;
//  - a labeled series is resolved to a handle (Counter, Gauge, Histogram): once at startup for
//    fixed label values, or per request through a lock-free, allocation-free table for dynamic
//    ones (method x code x route). Each family holds at most `maxSeries` distinct label tuples;
//    later tuples all land in one series whose labels are all "other" (kOverflowLabelValue), so
//    a family never exposes more than maxSeries + 1 series whatever the traffic;
//  - the registry does no I/O; callback series (RSS, pool sizes) run their function at scrape.
//
// Memory per family: shardCount x (maxSeries + 1) x cellsPerSeries x 8 bytes, rounded up to
// cache lines per shard; cellsPerSeries is 1 for counters and gauges, buckets + 2 for histograms.
//
// Thread safety: declaring families and rendering may happen on any thread (one mutex); handle
// updates and labels() lookups are lock-free from any number of threads. Families and handles
// stay valid as long as the registry.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/obs/metrics_detail.h"

namespace obs {

inline constexpr std::string_view kOverflowLabelValue = metrics_detail::kOverflowValue;

// Binds the calling thread to a shard of every registry (shard index modulo the registry's shard
// count). Call it first thing on each worker thread, e.g. with workerIndex + 1, leaving shard 0
// to the main thread and any thread that never calls it. Sharing a shard is correct, only slower.
void setMetricsShard(unsigned shard) noexcept;
unsigned metricsShard() noexcept;

// 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 (seconds).
std::vector<double> defaultLatencyBuckets();
// start, start*factor, ... (`count` bounds).
std::vector<double> exponentialBuckets(double start, double factor, int count);

// Bounded label values for the usual HTTP labels, as static strings (no allocation):
// "100".."599", else "other"; and the standard methods, else "other".
std::string_view statusCodeLabel(int status) noexcept;
std::string_view methodLabel(std::string_view method) noexcept;

enum class MetricType { Counter, Gauge, Histogram };

// A monotonically increasing integer. A default-constructed handle is detached: it ignores
// updates, so a feature whose stats were not wired cannot crash the data path.
class Counter {
 public:
  Counter() = default;
  void inc(uint64_t n = 1) const noexcept {
    if (cells_ != nullptr) {
      cells_->local(cell_).fetch_add(n, std::memory_order_relaxed);
    }
  }
  // Sum over all shards; a scrape-time cost, meant for tests and callbacks.
  uint64_t value() const noexcept;

 private:
  friend class CounterFamily;
  Counter(const metrics_detail::ShardedCells* cells, uint32_t cell) : cells_(cells), cell_(cell) {}
  const metrics_detail::ShardedCells* cells_ = nullptr;
  uint32_t cell_ = 0;
};

// A value that goes up and down. add()/inc()/dec() are per-shard deltas (cheap, for in-flight
// counts and the like); set() stores an absolute value (one shared atomic, for values computed
// elsewhere) by offsetting the deltas seen at that moment, so set(5) then inc() reads 6. A set()
// racing with add() on another thread may lose that add; use one style per gauge.
class Gauge {
 public:
  Gauge() = default;
  void add(double delta) const noexcept {
    if (cells_ != nullptr) {
      metrics_detail::addF64(cells_->local(cell_), delta);
    }
  }
  void inc() const noexcept { add(1.0); }
  void dec() const noexcept { add(-1.0); }
  void set(double value) const noexcept;
  double value() const noexcept;

 private:
  friend class GaugeFamily;
  Gauge(const metrics_detail::ShardedCells* cells, std::atomic<uint64_t>* base, uint32_t cell)
      : cells_(cells), base_(base), cell_(cell) {}
  const metrics_detail::ShardedCells* cells_ = nullptr;
  std::atomic<uint64_t>* base_ = nullptr;
  uint32_t cell_ = 0;
};

// Counts observations into buckets with inclusive upper bounds (Prometheus `le`), and sums them.
// NaN observations are ignored. _count is rendered as the sum of the buckets, so it always
// equals the +Inf bucket even while workers are writing.
class Histogram {
 public:
  Histogram() = default;
  void observe(double v) const noexcept {
    if (cells_ == nullptr || v != v) {
      return;
    }
    // Bucket = number of bounds below v, i.e. the first bound with v <= bound (+Inf last).
    // Branch-free over a dozen or so bounds.
    uint32_t bucket = 0;
    for (uint32_t i = 0; i < boundCount_; ++i) {
      bucket += v > bounds_[i] ? 1 : 0;
    }
    cells_->local(firstCell_ + bucket).fetch_add(1, std::memory_order_relaxed);
    metrics_detail::addF64(cells_->local(firstCell_ + boundCount_ + 1), v);
  }
  uint64_t count() const noexcept;
  double sum() const noexcept;
  // Observations <= bounds[i] (cumulative, as exposed); i == bounds.size() means +Inf.
  uint64_t cumulativeCount(size_t i) const noexcept;

 private:
  friend class HistogramFamily;
  Histogram(const metrics_detail::ShardedCells* cells, const double* bounds, uint32_t boundCount, uint32_t firstCell)
      : cells_(cells), bounds_(bounds), boundCount_(boundCount), firstCell_(firstCell) {}
  const metrics_detail::ShardedCells* cells_ = nullptr;
  const double* bounds_ = nullptr;
  uint32_t boundCount_ = 0;
  uint32_t firstCell_ = 0;
};

// One metric name with its help, type and label names, and all its series.
class MetricFamily {
 public:
  virtual ~MetricFamily() = default;
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& labelNames() const { return labelNames_; }

  // Appends # HELP, # TYPE and the samples, series sorted by label values.
  void render(std::string& out) const;

 protected:
  MetricFamily(MetricType type, std::string name, std::string help, std::vector<std::string> labelNames);
  virtual void renderSamples(std::string& out) const = 0;
  // Appends `l1="v1",l2="v2"` (escaped), or nothing for an unlabeled family.
  void appendLabels(std::string& out, const std::vector<std::string>& values) const;

 private:
  MetricType type_;
  std::string name_;
  std::string help_;
  std::vector<std::string> labelNames_;
};

// A counter, gauge or histogram family whose values live in per-shard cells.
class ShardedFamily : public MetricFamily {
 public:
  // Distinct label tuples with a series of their own (the overflow series excluded); 1 for an
  // unlabeled family.
  uint32_t seriesCount() const;
  // True once some label tuple was sent to the overflow series because the family was full.
  bool overflowUsed() const;
  uint32_t maxSeries() const { return maxSeries_; }

 protected:
  ShardedFamily(MetricType type, std::string name, std::string help, std::vector<std::string> labelNames,
                uint32_t maxSeries, unsigned shardCount, uint32_t cellsPerSeries);
  // Series index of a label tuple: lock-free after the tuple's first use, never allocates then.
  uint32_t resolve(std::span<const std::string_view> values);
  void renderSamples(std::string& out) const override;
  // Appends the samples of one series; `labels` is the rendered `l1="v1",...` (maybe empty).
  virtual void renderSeries(std::string& out, const std::string& labels, uint32_t series) const = 0;

  uint32_t maxSeries_;
  uint32_t cellsPerSeries_;
  metrics_detail::ShardedCells cells_;
  std::unique_ptr<metrics_detail::SeriesTable> table_;  // null for an unlabeled family
};

class CounterFamily : public ShardedFamily {
 public:
  // The series for these label values, in the order of the family's label names.
  Counter labels(std::initializer_list<std::string_view> values) {
    return labels(std::span(values.begin(), values.size()));
  }
  Counter labels(std::span<const std::string_view> values);
  // The only series of an unlabeled family.
  Counter series() { return labels(std::span<const std::string_view>()); }

 private:
  friend class MetricsRegistry;
  CounterFamily(std::string name, std::string help, std::vector<std::string> labelNames, uint32_t maxSeries,
                unsigned shardCount);
  void renderSeries(std::string& out, const std::string& labels, uint32_t series) const override;
};

class GaugeFamily : public ShardedFamily {
 public:
  Gauge labels(std::initializer_list<std::string_view> values) {
    return labels(std::span(values.begin(), values.size()));
  }
  Gauge labels(std::span<const std::string_view> values);
  Gauge series() { return labels(std::span<const std::string_view>()); }

 private:
  friend class MetricsRegistry;
  GaugeFamily(std::string name, std::string help, std::vector<std::string> labelNames, uint32_t maxSeries,
              unsigned shardCount);
  void renderSeries(std::string& out, const std::string& labels, uint32_t series) const override;
  std::unique_ptr<std::atomic<uint64_t>[]> base_;  // set() values (double bits), one per series
};

class HistogramFamily : public ShardedFamily {
 public:
  Histogram labels(std::initializer_list<std::string_view> values) {
    return labels(std::span(values.begin(), values.size()));
  }
  Histogram labels(std::span<const std::string_view> values);
  Histogram series() { return labels(std::span<const std::string_view>()); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  friend class MetricsRegistry;
  // `bounds` already checked: finite, strictly increasing, without the implicit +Inf.
  HistogramFamily(std::string name, std::string help, std::vector<std::string> labelNames, std::vector<double> bounds,
                  uint32_t maxSeries, unsigned shardCount);
  void renderSeries(std::string& out, const std::string& labels, uint32_t series) const override;
  std::vector<double> bounds_;  // finite, strictly increasing; +Inf is implicit
  std::vector<std::string> boundLabels_;
};

// Series whose value is computed at scrape time by a function (RSS, pool sizes, breaker state).
// The function runs on the scraping thread with the registry mutex held: it must be thread-safe
// (read atomics) and must not declare metrics.
class CallbackFamily : public MetricFamily {
 public:
  // Adds a series. Throws std::invalid_argument on a wrong label count or a duplicate tuple.
  void add(std::initializer_list<std::string_view> values, std::function<double()> fn);

 private:
  friend class MetricsRegistry;
  CallbackFamily(MetricType type, std::string name, std::string help, std::vector<std::string> labelNames);
  void renderSamples(std::string& out) const override;
  struct Series {
    std::vector<std::string> values;
    std::function<double()> fn;
  };
  mutable std::mutex mutex_;
  std::vector<Series> series_;
};

// Owns every metric family of a process. Declaration errors (invalid or duplicate name, invalid
// label name, `le` on a histogram, unsorted buckets) throw std::invalid_argument: they are
// startup errors, like config errors.
class MetricsRegistry {
 public:
  static constexpr uint32_t kDefaultMaxSeries = 256;

  // `shardCount` is rounded up to a power of two; pass the number of threads that update
  // metrics (workers + 1 for the main thread).
  explicit MetricsRegistry(unsigned shardCount);
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  CounterFamily& counterFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                               uint32_t maxSeries = kDefaultMaxSeries);
  GaugeFamily& gaugeFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                           uint32_t maxSeries = kDefaultMaxSeries);
  HistogramFamily& histogramFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                                   std::vector<double> buckets = defaultLatencyBuckets(),
                                   uint32_t maxSeries = kDefaultMaxSeries);
  CallbackFamily& callbackGaugeFamily(std::string name, std::string help, std::vector<std::string> labelNames);
  CallbackFamily& callbackCounterFamily(std::string name, std::string help, std::vector<std::string> labelNames);

  // Unlabeled shortcuts.
  Counter counter(std::string name, std::string help);
  Gauge gauge(std::string name, std::string help);
  Histogram histogram(std::string name, std::string help, std::vector<double> buckets = defaultLatencyBuckets());
  void callbackGauge(std::string name, std::string help, std::function<double()> fn);
  void callbackCounter(std::string name, std::string help, std::function<double()> fn);

  // Text exposition 0.0.4 (Content-Type: text/plain; version=0.0.4; charset=utf-8) of every
  // family, sorted by name.
  std::string render() const;
  void render(std::string& out) const;

  unsigned shardCount() const { return shardCount_; }
  // The family with this name, or null.
  const MetricFamily* find(std::string_view name) const;

 private:
  // Checks the name against existing families (including a histogram's _bucket/_sum/_count
  // sample names) and inserts. Caller holds mutex_.
  void insertLocked(std::unique_ptr<MetricFamily> family);

  unsigned shardCount_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<MetricFamily>, std::less<>> families_;
};

inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace obs
