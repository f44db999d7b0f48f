#include "gateway/filters/compression/negotiate.h"

#include "common/http/headers.h"
#include "gateway/filters/cache/cache_control.h"

namespace gateway::compression {
namespace {

constexpr int kQMax = 1000;  // q-values are kept in thousandths

// q for one coding as written in the header; seen=false when the coding is not listed.
struct Weight {
  bool seen = false;
  int q = 0;
};

// RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
std::optional<int> parseQValue(std::string_view text) {
  if (text.empty() || text.size() > 5 || (text[0] != '0' && text[0] != '1')) {
    return std::nullopt;
  }
  int whole = text[0] - '0';
  int thousandths = 0;
  if (text.size() > 1) {
    if (text[1] != '.') {
      return std::nullopt;
    }
    int scale = 100;
    for (char c : text.substr(2)) {
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      thousandths += (c - '0') * scale;
      scale /= 10;
    }
  }
  if (whole == 1 && thousandths != 0) {
    return std::nullopt;
  }
  return whole * kQMax + thousandths;
}

enum Slot { kIdentity, kGzip, kBrotli, kZstd, kStar, kSlotCount };

int slotOf(Encoding encoding) {
  switch (encoding) {
    case Encoding::Identity:
      return kIdentity;
    case Encoding::Gzip:
      return kGzip;
    case Encoding::Brotli:
      return kBrotli;
    case Encoding::Zstd:
      return kZstd;
  }
  return kIdentity;
}

std::optional<int> slotOfName(std::string_view coding) {
  if (coding == "*") {
    return kStar;
  }
  if (std::optional<Encoding> encoding = encodingFromName(coding)) {
    return slotOf(*encoding);
  }
  return std::nullopt;
}

// The q of one "coding;param;param" element; a malformed q refuses the coding (see header).
int elementWeight(std::string_view params) {
  while (!params.empty()) {
    size_t semi = params.find(';');
    std::string_view param = http::trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    size_t eq = param.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    if (http::iequals(http::trim(param.substr(0, eq)), "q")) {
      return parseQValue(http::trim(param.substr(eq + 1))).value_or(0);
    }
  }
  return kQMax;
}

}  // namespace

std::string_view encodingName(Encoding encoding) {
  switch (encoding) {
    case Encoding::Identity:
      return "identity";
    case Encoding::Gzip:
      return "gzip";
    case Encoding::Brotli:
      return "br";
    case Encoding::Zstd:
      return "zstd";
  }
  return "identity";
}

std::optional<Encoding> encodingFromName(std::string_view name) {
  if (http::iequals(name, "gzip") || http::iequals(name, "x-gzip")) {
    return Encoding::Gzip;
  }
  if (http::iequals(name, "br")) {
    return Encoding::Brotli;
  }
  if (http::iequals(name, "zstd")) {
    return Encoding::Zstd;
  }
  if (http::iequals(name, "identity")) {
    return Encoding::Identity;
  }
  return std::nullopt;
}

EncodingChoice negotiateEncoding(std::string_view acceptEncoding, std::span<const Encoding> offered) {
  std::array<Weight, kSlotCount> weights{};
  while (!acceptEncoding.empty()) {
    size_t comma = acceptEncoding.find(',');
    std::string_view element = acceptEncoding.substr(0, comma);
    acceptEncoding = comma == std::string_view::npos ? std::string_view() : acceptEncoding.substr(comma + 1);
    size_t semi = element.find(';');
    std::string_view coding = http::trim(element.substr(0, semi));
    std::optional<int> slot = slotOfName(coding);
    if (!slot || weights[*slot].seen) {
      continue;  // unknown coding, or a repeat (the first entry counts)
    }
    weights[*slot].seen = true;
    weights[*slot].q = semi == std::string_view::npos ? kQMax : elementWeight(element.substr(semi + 1));
  }

  const Weight& star = weights[kStar];
  auto weightOf = [&](int slot) { return weights[slot].seen ? weights[slot].q : (star.seen ? star.q : 0); };

  EncodingChoice choice;
  Encoding best = Encoding::Identity;
  int bestQ = 0;
  for (Encoding encoding : offered) {
    if (encoding == Encoding::Identity) {
      continue;
    }
    int q = weightOf(slotOf(encoding));
    if (q > bestQ) {  // strictly greater: earlier in `offered` wins ties
      best = encoding;
      bestQ = q;
    }
  }
  // Identity not mentioned at all stays acceptable, below every listed coding.
  bool identityMentioned = weights[kIdentity].seen || star.seen;
  int identityQ = identityMentioned ? weightOf(kIdentity) : 0;
  choice.identityAcceptable = !identityMentioned || identityQ > 0;
  if (bestQ > 0 && bestQ >= identityQ) {
    choice.encoding = best;
  }
  return choice;
}

bool compressibleType(std::string_view contentType, std::span<const std::string> patterns) {
  std::string_view media = http::trim(contentType.substr(0, contentType.find(';')));
  size_t slash = media.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == media.size()) {
    return false;
  }
  std::string_view type = media.substr(0, slash);
  for (const std::string& pattern : patterns) {
    if (pattern == "*/*") {
      return true;
    }
    if (pattern.size() >= 2 && pattern.ends_with("/*")) {
      if (http::iequals(type, std::string_view(pattern).substr(0, pattern.size() - 2))) {
        return true;
      }
    } else if (http::iequals(media, pattern)) {
      return true;
    }
  }
  return false;
}

std::string_view decisionName(Decision decision) {
  switch (decision) {
    case Decision::Compress:
      return "compress";
    case Decision::NotAccepted:
      return "not_accepted";
    case Decision::Method:
      return "method";
    case Decision::Status:
      return "status";
    case Decision::Range:
      return "range";
    case Decision::AlreadyEncoded:
      return "already_encoded";
    case Decision::NoTransform:
      return "no_transform";
    case Decision::TooSmall:
      return "too_small";
    case Decision::Type:
      return "type";
    case Decision::Disabled:
      return "disabled";
  }
  return "unknown";
}

CompressionPolicy::CompressionPolicy(const cfg::CompressionConfig& config) : config_(config) {
  for (const std::string& name : config.algorithms) {
    std::optional<Encoding> encoding = encodingFromName(name);
    if (encoding && *encoding != Encoding::Identity && encodingAvailable(*encoding)) {
      offered_.push_back(*encoding);
    }
  }
}

Decision CompressionPolicy::shouldCompress(const ResponseFacts& facts, const EncodingChoice& choice) const {
  if (offered_.empty()) {
    return Decision::Disabled;
  }
  if (facts.requestMethod == "HEAD") {
    return Decision::Method;
  }
  int status = facts.status;
  if (status < 200 || status == 204 || status == 205 || status == 206 || status == 304) {
    return Decision::Status;
  }
  if (facts.hasContentRange) {
    return Decision::Range;
  }
  std::string_view contentEncoding = http::trim(facts.contentEncoding);
  if (!contentEncoding.empty() && !http::iequals(contentEncoding, "identity")) {
    return Decision::AlreadyEncoded;
  }
  // The cache's parser, not one of our own: two readers of the same header disagreed on a stray
  // '"' (found by the accept_encoding fuzzer), so one filter honoured no-transform and the other
  // did not.
  if (cache::parseCacheControl(facts.cacheControl).noTransform) {
    return Decision::NoTransform;
  }
  // An empty body is never worth a coding header, whatever min_size says.
  uint64_t minSize = config_.min_size > 0 ? config_.min_size : 1;
  if (facts.contentLength && *facts.contentLength < minSize) {
    return Decision::TooSmall;
  }
  if (!compressibleType(facts.contentType, config_.content_types)) {
    return Decision::Type;
  }
  if (choice.encoding == Encoding::Identity) {
    return Decision::NotAccepted;
  }
  return Decision::Compress;
}

void mergeVary(std::string& vary, std::string_view token) {
  std::string_view current = http::trim(vary);
  if (current.empty()) {
    vary.assign(token);
    return;
  }
  if (http::headerListContains(current, token) || http::headerListContains(current, "*")) {
    return;
  }
  vary.append(", ");
  vary.append(token);
}

bool weakenEtag(std::string& etag) {
  std::string_view value = http::trim(etag);
  if (value.size() < 2 || value.front() != '"' || value.back() != '"') {
    return false;  // already weak (W/"..."), empty or not an entity-tag
  }
  std::string weak = "W/";
  weak.append(value);
  etag = std::move(weak);
  return true;
}

}  // namespace gateway::compression
