#pragma once
// CONTRACT §4 Compression: br / gzip / zstd per Accept-Encoding, streamed as the body flows.
#include <memory>

#include "gateway/filters/compression/negotiate.h"
#include "gateway/filters/filter.h"

namespace gateway {

class CompressionFilterFactory : public FilterFactory {
 public:
  explicit CompressionFilterFactory(const cfg::CompressionConfig& config) : policy_(config) {}
  std::string_view name() const override { return "compression"; }
  std::unique_ptr<HttpFilter> createFilter(WorkerContext& ctx) const override;

 private:
  compression::CompressionPolicy policy_;
};

}  // namespace gateway
