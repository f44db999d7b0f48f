#include "common/obs/metrics.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

#include "common/obs/metrics_format.h"

namespace obs {
namespace {

constexpr unsigned kMaxShards = 1024;
constexpr uint32_t kMaxSeriesLimit = 1u << 20;

const char* typeName(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Histogram:
      return "histogram";
  }
  return "untyped";
}

[[noreturn]] void fail(std::string_view name, std::string_view why) {
  throw std::invalid_argument("metric " + std::string(name) + ": " + std::string(why));
}

// `name<suffix>{<labels>[,le="<le>"]} ` — everything of a sample line but the value.
void appendSampleName(std::string& out, std::string_view name, std::string_view suffix, const std::string& labels,
                      std::string_view le = {}) {
  out += name;
  out += suffix;
  if (!labels.empty() || !le.empty()) {
    out += '{';
    out += labels;
    if (!le.empty()) {
      if (!labels.empty()) {
        out += ',';
      }
      out += "le=\"";
      out += le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
}

uint32_t checkedMaxSeries(std::string_view name, const std::vector<std::string>& labelNames, uint32_t maxSeries) {
  if (labelNames.empty()) {
    return 1;
  }
  if (maxSeries < 1 || maxSeries > kMaxSeriesLimit) {
    fail(name, "maxSeries must be in [1, 1048576]");
  }
  return maxSeries;
}

std::vector<double> checkedBounds(std::string_view name, std::vector<double> bounds) {
  // A trailing +Inf is implicit; accept it so bucket lists copied from elsewhere work.
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) {
    bounds.pop_back();
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      fail(name, "bucket bounds must be finite");
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      fail(name, "bucket bounds must be strictly increasing");
    }
  }
  return bounds;
}

struct StatusLabels {
  char text[500][4];
  constexpr StatusLabels() : text{} {
    for (int i = 0; i < 500; ++i) {
      const int code = 100 + i;
      text[i][0] = static_cast<char>('0' + code / 100);
      text[i][1] = static_cast<char>('0' + code / 10 % 10);
      text[i][2] = static_cast<char>('0' + code % 10);
      text[i][3] = '\0';
    }
  }
};
constexpr StatusLabels kStatusLabels;

constexpr std::string_view kMethods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                         "OPTIONS", "CONNECT", "TRACE", "PATCH"};

}  // namespace

void setMetricsShard(unsigned shard) noexcept { metrics_detail::tlsShard = shard; }
unsigned metricsShard() noexcept { return metrics_detail::tlsShard; }

std::vector<double> defaultLatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> exponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    throw std::invalid_argument("exponentialBuckets: need start > 0, factor > 1, count >= 1");
  }
  std::vector<double> bounds;
  bounds.reserve(static_cast<size_t>(count));
  double b = start;
  for (int i = 0; i < count; ++i) {
    bounds.push_back(b);
    b *= factor;
  }
  return bounds;
}

std::string_view statusCodeLabel(int status) noexcept {
  if (status < 100 || status > 599) {
    return kOverflowLabelValue;
  }
  return std::string_view(kStatusLabels.text[status - 100], 3);
}

std::string_view methodLabel(std::string_view method) noexcept {
  for (std::string_view m : kMethods) {
    if (m == method) {
      return m;
    }
  }
  return kOverflowLabelValue;
}

// ---- handles ----

uint64_t Counter::value() const noexcept { return cells_ == nullptr ? 0 : cells_->sumU64(cell_); }

void Gauge::set(double value) const noexcept {
  if (cells_ != nullptr) {
    metrics_detail::storeF64(*base_, value - cells_->sumF64(cell_));
  }
}

double Gauge::value() const noexcept {
  return cells_ == nullptr ? 0.0 : metrics_detail::loadF64(*base_) + cells_->sumF64(cell_);
}

uint64_t Histogram::count() const noexcept { return cumulativeCount(boundCount_); }

double Histogram::sum() const noexcept {
  return cells_ == nullptr ? 0.0 : cells_->sumF64(firstCell_ + boundCount_ + 1);
}

uint64_t Histogram::cumulativeCount(size_t i) const noexcept {
  if (cells_ == nullptr) {
    return 0;
  }
  uint64_t total = 0;
  for (size_t b = 0; b <= i && b <= boundCount_; ++b) {
    total += cells_->sumU64(firstCell_ + b);
  }
  return total;
}

// ---- families ----

MetricFamily::MetricFamily(MetricType type, std::string name, std::string help, std::vector<std::string> labelNames)
    : type_(type), name_(std::move(name)), help_(std::move(help)), labelNames_(std::move(labelNames)) {
  if (!isValidMetricName(name_)) {
    fail(name_, "invalid metric name");
  }
  for (size_t i = 0; i < labelNames_.size(); ++i) {
    if (!isValidLabelName(labelNames_[i])) {
      fail(name_, "invalid label name '" + labelNames_[i] + "'");
    }
    if (std::find(labelNames_.begin(), labelNames_.begin() + static_cast<std::ptrdiff_t>(i), labelNames_[i]) !=
        labelNames_.begin() + static_cast<std::ptrdiff_t>(i)) {
      fail(name_, "duplicate label name '" + labelNames_[i] + "'");
    }
  }
}

void MetricFamily::render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  if (!help_.empty()) {
    out += ' ';
    appendEscapedHelp(out, help_);
  }
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += typeName(type_);
  out += '\n';
  renderSamples(out);
}

void MetricFamily::appendLabels(std::string& out, const std::vector<std::string>& values) const {
  for (size_t i = 0; i < labelNames_.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    out += labelNames_[i];
    out += "=\"";
    appendEscapedLabelValue(out, values[i]);
    out += '"';
  }
}

ShardedFamily::ShardedFamily(MetricType type, std::string name, std::string help, std::vector<std::string> labelNames,
                             uint32_t maxSeries, unsigned shardCount, uint32_t cellsPerSeries)
    : MetricFamily(type, std::move(name), std::move(help), std::move(labelNames)),
      maxSeries_(checkedMaxSeries(this->name(), this->labelNames(), maxSeries)),
      cellsPerSeries_(cellsPerSeries),
      // +1: the overflow series of a labeled family.
      cells_(shardCount, size_t{cellsPerSeries} * (maxSeries_ + 1)) {
  if (!this->labelNames().empty()) {
    table_ = std::make_unique<metrics_detail::SeriesTable>(this->labelNames().size(), maxSeries_);
  }
}

uint32_t ShardedFamily::resolve(std::span<const std::string_view> values) {
  if (table_ == nullptr) {
    return 0;
  }
  return table_->resolve(values);
}

uint32_t ShardedFamily::seriesCount() const { return table_ == nullptr ? 1 : table_->assignedSeries(); }

bool ShardedFamily::overflowUsed() const { return table_ != nullptr && table_->overflowUsed(); }

void ShardedFamily::renderSamples(std::string& out) const {
  std::string labels;
  if (table_ == nullptr) {
    renderSeries(out, labels, 0);
    return;
  }
  std::vector<metrics_detail::SeriesTable::SeriesRef> refs = table_->snapshot();
  std::sort(refs.begin(), refs.end(), [](const auto& a, const auto& b) { return *a.values < *b.values; });
  for (const auto& ref : refs) {
    labels.clear();
    appendLabels(labels, *ref.values);
    renderSeries(out, labels, ref.series);
  }
}

CounterFamily::CounterFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                             uint32_t maxSeries, unsigned shardCount)
    : ShardedFamily(MetricType::Counter, std::move(name), std::move(help), std::move(labelNames), maxSeries,
                    shardCount, 1) {}

Counter CounterFamily::labels(std::span<const std::string_view> values) { return Counter(&cells_, resolve(values)); }

void CounterFamily::renderSeries(std::string& out, const std::string& labels, uint32_t series) const {
  appendSampleName(out, name(), "", labels);
  appendNumber(out, cells_.sumU64(series));
  out += '\n';
}

GaugeFamily::GaugeFamily(std::string name, std::string help, std::vector<std::string> labelNames, uint32_t maxSeries,
                         unsigned shardCount)
    : ShardedFamily(MetricType::Gauge, std::move(name), std::move(help), std::move(labelNames), maxSeries,
                    shardCount, 1),
      base_(std::make_unique<std::atomic<uint64_t>[]>(maxSeries_ + 1)) {}

Gauge GaugeFamily::labels(std::span<const std::string_view> values) {
  const uint32_t series = resolve(values);
  return Gauge(&cells_, &base_[series], series);
}

void GaugeFamily::renderSeries(std::string& out, const std::string& labels, uint32_t series) const {
  appendSampleName(out, name(), "", labels);
  appendNumber(out, metrics_detail::loadF64(base_[series]) + cells_.sumF64(series));
  out += '\n';
}

HistogramFamily::HistogramFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                                 std::vector<double> bounds, uint32_t maxSeries, unsigned shardCount)
    : ShardedFamily(MetricType::Histogram, std::move(name), std::move(help), labelNames, maxSeries, shardCount,
                    // one cell per bound, +Inf, and the sum
                    static_cast<uint32_t>(bounds.size()) + 2),
      bounds_(std::move(bounds)) {
  if (std::find(labelNames.begin(), labelNames.end(), "le") != labelNames.end()) {
    fail(this->name(), "'le' is reserved for histogram buckets");
  }
  for (double b : bounds_) {
    std::string text;
    appendNumber(text, b);
    boundLabels_.push_back(std::move(text));
  }
}

Histogram HistogramFamily::labels(std::span<const std::string_view> values) {
  const uint32_t series = resolve(values);
  return Histogram(&cells_, bounds_.data(), static_cast<uint32_t>(bounds_.size()), series * cellsPerSeries_);
}

void HistogramFamily::renderSeries(std::string& out, const std::string& labels, uint32_t series) const {
  const size_t first = size_t{series} * cellsPerSeries_;
  uint64_t cumulative = 0;
  for (size_t b = 0; b <= bounds_.size(); ++b) {
    cumulative += cells_.sumU64(first + b);
    appendSampleName(out, name(), "_bucket", labels, b < bounds_.size() ? std::string_view(boundLabels_[b]) : "+Inf");
    appendNumber(out, cumulative);
    out += '\n';
  }
  appendSampleName(out, name(), "_sum", labels);
  appendNumber(out, cells_.sumF64(first + bounds_.size() + 1));
  out += '\n';
  appendSampleName(out, name(), "_count", labels);
  appendNumber(out, cumulative);
  out += '\n';
}

CallbackFamily::CallbackFamily(MetricType type, std::string name, std::string help, std::vector<std::string> labelNames)
    : MetricFamily(type, std::move(name), std::move(help), std::move(labelNames)) {}

void CallbackFamily::add(std::initializer_list<std::string_view> values, std::function<double()> fn) {
  if (values.size() != labelNames().size()) {
    fail(name(), "wrong number of label values");
  }
  std::vector<std::string> copy(values.begin(), values.end());
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Series& s : series_) {
    if (s.values == copy) {
      fail(name(), "duplicate label values");
    }
  }
  series_.push_back(Series{std::move(copy), std::move(fn)});
}

void CallbackFamily::renderSamples(std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<const Series*> sorted;
  sorted.reserve(series_.size());
  for (const Series& s : series_) {
    sorted.push_back(&s);
  }
  std::sort(sorted.begin(), sorted.end(), [](const Series* a, const Series* b) { return a->values < b->values; });
  std::string labels;
  for (const Series* s : sorted) {
    labels.clear();
    appendLabels(labels, s->values);
    appendSampleName(out, name(), "", labels);
    appendNumber(out, s->fn ? s->fn() : 0.0);
    out += '\n';
  }
}

// ---- registry ----

MetricsRegistry::MetricsRegistry(unsigned shardCount)
    : shardCount_(std::bit_ceil(std::clamp(shardCount, 1u, kMaxShards))) {}

void MetricsRegistry::insertLocked(std::unique_ptr<MetricFamily> family) {
  const std::string& name = family->name();
  const auto taken = [&](const std::string& n) { return families_.find(n) != families_.end(); };
  if (taken(name)) {
    fail(name, "declared twice");
  }
  static constexpr std::string_view kHistogramSuffixes[] = {"_bucket", "_sum", "_count"};
  for (std::string_view suffix : kHistogramSuffixes) {
    if (family->type() == MetricType::Histogram && taken(name + std::string(suffix))) {
      fail(name, "its " + std::string(suffix) + " samples clash with another metric");
    }
    if (name.ends_with(suffix)) {
      auto it = families_.find(std::string_view(name).substr(0, name.size() - suffix.size()));
      if (it != families_.end() && it->second->type() == MetricType::Histogram) {
        fail(name, "clashes with the samples of histogram " + it->first);
      }
    }
  }
  std::string key = name;
  families_.emplace(std::move(key), std::move(family));
}

CounterFamily& MetricsRegistry::counterFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                                              uint32_t maxSeries) {
  auto* family = new CounterFamily(std::move(name), std::move(help), std::move(labelNames), maxSeries, shardCount_);
  std::lock_guard<std::mutex> lock(mutex_);
  insertLocked(std::unique_ptr<MetricFamily>(family));
  return *family;
}

GaugeFamily& MetricsRegistry::gaugeFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                                          uint32_t maxSeries) {
  auto* family = new GaugeFamily(std::move(name), std::move(help), std::move(labelNames), maxSeries, shardCount_);
  std::lock_guard<std::mutex> lock(mutex_);
  insertLocked(std::unique_ptr<MetricFamily>(family));
  return *family;
}

HistogramFamily& MetricsRegistry::histogramFamily(std::string name, std::string help,
                                                  std::vector<std::string> labelNames, std::vector<double> buckets,
                                                  uint32_t maxSeries) {
  std::vector<double> bounds = checkedBounds(name, std::move(buckets));
  auto* family = new HistogramFamily(std::move(name), std::move(help), std::move(labelNames), std::move(bounds),
                                     maxSeries, shardCount_);
  std::lock_guard<std::mutex> lock(mutex_);
  insertLocked(std::unique_ptr<MetricFamily>(family));
  return *family;
}

CallbackFamily& MetricsRegistry::callbackGaugeFamily(std::string name, std::string help,
                                                     std::vector<std::string> labelNames) {
  auto* family = new CallbackFamily(MetricType::Gauge, std::move(name), std::move(help), std::move(labelNames));
  std::lock_guard<std::mutex> lock(mutex_);
  insertLocked(std::unique_ptr<MetricFamily>(family));
  return *family;
}

CallbackFamily& MetricsRegistry::callbackCounterFamily(std::string name, std::string help,
                                                       std::vector<std::string> labelNames) {
  auto* family = new CallbackFamily(MetricType::Counter, std::move(name), std::move(help), std::move(labelNames));
  std::lock_guard<std::mutex> lock(mutex_);
  insertLocked(std::unique_ptr<MetricFamily>(family));
  return *family;
}

Counter MetricsRegistry::counter(std::string name, std::string help) {
  return counterFamily(std::move(name), std::move(help), {}).series();
}

Gauge MetricsRegistry::gauge(std::string name, std::string help) {
  return gaugeFamily(std::move(name), std::move(help), {}).series();
}

Histogram MetricsRegistry::histogram(std::string name, std::string help, std::vector<double> buckets) {
  return histogramFamily(std::move(name), std::move(help), {}, std::move(buckets)).series();
}

void MetricsRegistry::callbackGauge(std::string name, std::string help, std::function<double()> fn) {
  callbackGaugeFamily(std::move(name), std::move(help), {}).add({}, std::move(fn));
}

void MetricsRegistry::callbackCounter(std::string name, std::string help, std::function<double()> fn) {
  callbackCounterFamily(std::move(name), std::move(help), {}).add({}, std::move(fn));
}

std::string MetricsRegistry::render() const {
  std::string out;
  render(out);
  return out;
}

void MetricsRegistry::render(std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [name, family] : families_) {
    family->render(out);
  }
}

const MetricFamily* MetricsRegistry::find(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = families_.find(name);
  return it == families_.end() ? nullptr : it->second.get();
}

}  // namespace obs
