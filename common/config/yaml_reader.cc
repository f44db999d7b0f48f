#include "common/config/yaml_reader.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "common/util/units.h"

namespace cfg::detail {

// ---- ErrorSink -------------------------------------------------------------

void ErrorSink::error(int line, const std::string& path, const std::string& message) {
  failedPaths_.insert(path);
  if (line > 0 && suppressed_.count(line) != 0) {
    return;
  }
  // Keys, scalars quoted in messages and yaml-cpp's own texts come from the file and may hold
  // line breaks or terminal escapes ("bad\nkey" in a flow map); escaped, every error stays the
  // one line that operators and log parsers read as one error.
  std::string text = escapeControl(fileName_);
  if (line > 0) {
    text += ":" + std::to_string(line);
  }
  text += ": ";
  if (!path.empty()) {
    text += escapeControl(path) + ": ";
  }
  text += escapeControl(message);
  errors_.push_back({line, std::move(text)});
}

int ErrorSink::lineOf(std::initializer_list<std::string> paths) const {
  for (const std::string& path : paths) {
    auto it = lines_.find(path);
    if (it != lines_.end()) {
      return it->second;
    }
  }
  if (paths.size() == 0) {
    return 0;
  }
  std::string path = *paths.begin();
  while (!path.empty()) {
    size_t cut = path.find_last_of(".[");
    path = cut == std::string::npos ? std::string() : path.substr(0, cut);
    auto it = lines_.find(path);
    if (it != lines_.end()) {
      return it->second;
    }
  }
  return 0;
}

bool ErrorSink::failed(const std::string& path) const {
  for (auto it = failedPaths_.lower_bound(path); it != failedPaths_.end(); ++it) {
    if (it->compare(0, path.size(), path) != 0) {
      break;
    }
    if (it->size() == path.size() || (*it)[path.size()] == '.' || (*it)[path.size()] == '[') {
      return true;
    }
  }
  return false;
}

std::vector<std::string> ErrorSink::take() {
  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const Entry& a, const Entry& b) { return a.line < b.line; });
  std::vector<std::string> out;
  out.reserve(errors_.size());
  for (Entry& entry : errors_) {
    out.push_back(std::move(entry.text));
  }
  errors_.clear();
  return out;
}

// ---- helpers ---------------------------------------------------------------

std::string escapeControl(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

int lineOf(const YAML::Node& node) {
  YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "\"" + node.Scalar() + "\"";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "null";
}

namespace {

// Plain (unquoted, untagged) scalars are the only ones that can be numbers or
// booleans: a quoted "100" is a string in YAML, and we do not coerce it.
bool isPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

std::string describeForNumber(const YAML::Node& node) {
  if (node.IsScalar() && !isPlainScalar(node)) {
    return "the string " + describe(node) + " (remove the quotes)";
  }
  return describe(node);
}

bool parseInt(const std::string& text, int64_t& out) {
  if (text.empty()) {
    return false;
  }
  size_t i = (text[0] == '-' || text[0] == '+') ? 1 : 0;
  if (i == text.size()) {
    return false;
  }
  for (size_t j = i; j < text.size(); ++j) {
    if (text[j] < '0' || text[j] > '9') {
      return false;
    }
  }
  errno = 0;
  char* end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (errno == ERANGE || end != text.c_str() + text.size()) {
    return false;
  }
  out = value;
  return true;
}

bool parseDouble(const std::string& text, double& out) {
  if (text.empty() || text.find_first_not_of("0123456789.eE+-") != std::string::npos) {
    return false;  // no nan/inf/hex floats
  }
  errno = 0;
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (errno == ERANGE || end != text.c_str() + text.size() || !std::isfinite(value)) {
    return false;
  }
  out = value;
  return true;
}

std::string formatNumber(double value) {
  std::string text = std::to_string(value);
  while (text.size() > 1 && text.back() == '0') {
    text.pop_back();
  }
  if (!text.empty() && text.back() == '.') {
    text.pop_back();
  }
  return text;
}

size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

bool readString(ErrorSink& sink, const YAML::Node& node, const std::string& path, int line, std::string& out) {
  if (node.IsScalar()) {
    out = node.Scalar();
    return true;
  }
  std::string hint = node.IsNull() ? " (write \"\" for an empty value)" : "";
  sink.error(line, path, "expected a string, got " + describe(node) + hint);
  return false;
}

bool readStringList(ErrorSink& sink, const YAML::Node& node, const std::string& path, int line,
                    std::vector<std::string>& out) {
  if (!node.IsSequence()) {
    sink.error(line, path, "expected a list, got " + describe(node));
    return false;
  }
  std::vector<std::string> values;
  bool ok = true;
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    std::string itemPath = path + "[" + std::to_string(i) + "]";
    int itemLine = lineOf(item) > 0 ? lineOf(item) : line;
    sink.recordLine(itemPath, itemLine);
    std::string value;
    if (readString(sink, item, itemPath, itemLine, value)) {
      values.push_back(std::move(value));
    } else {
      ok = false;
    }
  }
  if (ok) {
    out = std::move(values);
  }
  return ok;
}

// ---- MapReader -------------------------------------------------------------

MapReader::MapReader(ErrorSink& sink, const YAML::Node* node, std::string path, int line)
    : sink_(sink), path_(std::move(path)), line_(line) {
  if (node == nullptr) {
    return;
  }
  present_ = true;
  if (node->IsNull()) {
    return;
  }
  if (!node->IsMap()) {
    std::string what = path_.empty() ? "expected a map with the sections redis, gateway and upstream_app"
                                     : "expected a map";
    sink_.error(line_, path_, what + ", got " + describe(*node));
    return;
  }
  for (auto it = node->begin(); it != node->end(); ++it) {
    // Copies, not references: yaml-cpp's iterator hands out a temporary pair.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    int keyLine = lineOf(key);
    if (!key.IsScalar()) {
      sink_.error(keyLine, path_, "keys must be plain strings, got " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (entries_.count(name) != 0) {
      int firstLine = lineOf(entries_[name].key);
      sink_.error(keyLine, childPath(name), "duplicate key (first written on line " + std::to_string(firstLine) + ")");
      continue;
    }
    entries_[name] = Entry{key, value, false};
    order_.push_back(name);
  }
}

MapReader::~MapReader() { finish(); }

MapReader MapReader::sub(const std::string& key) {
  const YAML::Node* node = take(key);
  return MapReader(sink_, node, childPath(key), lineOfKey(key));
}

const YAML::Node* MapReader::take(const std::string& key) {
  known_.push_back(key);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    return nullptr;
  }
  it->second.taken = true;
  sink_.recordLine(childPath(key), lineOfKey(key));
  return &it->second.value;
}

int MapReader::lineOfKey(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    return line_;
  }
  // A null value has no useful position (yaml-cpp points at the next token).
  if (it->second.value.IsNull() || lineOf(it->second.value) == 0) {
    return lineOf(it->second.key);
  }
  return lineOf(it->second.value);
}

void MapReader::finish() {
  if (finished_) {
    return;
  }
  finished_ = true;
  for (const std::string& name : order_) {
    const Entry& entry = entries_[name];
    if (entry.taken) {
      continue;
    }
    std::string message = "unknown key";
    std::string best;
    size_t bestDistance = 3;  // suggest only close matches
    for (const std::string& candidate : known_) {
      size_t distance = editDistance(name, candidate);
      if (distance < bestDistance) {
        bestDistance = distance;
        best = candidate;
      }
    }
    if (!best.empty()) {
      message += " (did you mean \"" + best + "\"?)";
    }
    sink_.error(lineOf(entry.key), childPath(name), message);
  }
}

void MapReader::str(const std::string& key, std::string& out) {
  if (const YAML::Node* node = take(key)) {
    readString(sink_, *node, childPath(key), lineOfKey(key), out);
  }
}

void MapReader::boolean(const std::string& key, bool& out) {
  const YAML::Node* node = take(key);
  if (node == nullptr) {
    return;
  }
  if (isPlainScalar(*node)) {
    const std::string& text = node->Scalar();
    if (text == "true" || text == "True" || text == "TRUE") {
      out = true;
      return;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      out = false;
      return;
    }
  }
  sink_.error(lineOfKey(key), childPath(key), "expected true or false, got " + describeForNumber(*node));
}

void MapReader::integer(const std::string& key, int& out, int64_t min, int64_t max) {
  const YAML::Node* node = take(key);
  if (node == nullptr) {
    return;
  }
  int64_t value = 0;
  if (!isPlainScalar(*node) || !parseInt(node->Scalar(), value)) {
    sink_.error(lineOfKey(key), childPath(key), "expected an integer, got " + describeForNumber(*node));
    return;
  }
  if (value < min || value > max) {
    std::string range = max >= INT32_MAX ? "at least " + std::to_string(min)
                                         : "between " + std::to_string(min) + " and " + std::to_string(max);
    sink_.error(lineOfKey(key), childPath(key), "must be " + range + ", got " + std::to_string(value));
    return;
  }
  out = static_cast<int>(value);
}

void MapReader::integerOrAuto(const std::string& key, int& out, int64_t min, int64_t max) {
  const YAML::Node* node = take(key);
  if (node == nullptr) {
    return;
  }
  if (isPlainScalar(*node) && node->Scalar() == "auto") {
    out = 0;
    return;
  }
  int64_t value = 0;
  if (!isPlainScalar(*node) || !parseInt(node->Scalar(), value) || value < min || value > max) {
    sink_.error(lineOfKey(key), childPath(key),
                "expected auto or an integer between " + std::to_string(min) + " and " + std::to_string(max) +
                    ", got " + describeForNumber(*node));
    return;
  }
  out = static_cast<int>(value);
}

void MapReader::number(const std::string& key, double& out, double min, double max, bool minExclusive) {
  const YAML::Node* node = take(key);
  if (node == nullptr) {
    return;
  }
  double value = 0;
  if (!isPlainScalar(*node) || !parseDouble(node->Scalar(), value)) {
    sink_.error(lineOfKey(key), childPath(key), "expected a number, got " + describeForNumber(*node));
    return;
  }
  if (value < min || value > max || (minExclusive && value == min)) {
    std::string low = minExclusive ? "greater than " + formatNumber(min) : "between " + formatNumber(min);
    std::string range = minExclusive ? low + " and at most " + formatNumber(max) : low + " and " + formatNumber(max);
    sink_.error(lineOfKey(key), childPath(key), "must be " + range + ", got " + node->Scalar());
    return;
  }
  out = value;
}

void MapReader::duration(const std::string& key, std::chrono::milliseconds& out, std::chrono::milliseconds min) {
  const YAML::Node* node = take(key);
  if (node == nullptr) {
    return;
  }
  std::optional<std::chrono::milliseconds> value;
  if (node->IsScalar()) {
    value = units::parseDuration(node->Scalar());
  }
  if (!value) {
    std::string hint;
    int64_t bare = 0;
    if (node->IsScalar() && parseInt(node->Scalar(), bare)) {
      hint = " (add a unit: ms, s, m or h)";
    }
    sink_.error(lineOfKey(key), childPath(key), "expected a duration like \"2s\", got " + describe(*node) + hint);
    return;
  }
  if (*value < min) {
    std::string bound = min.count() == 1 ? "greater than 0s" : "at least " + units::formatDuration(min);
    sink_.error(lineOfKey(key), childPath(key), "must be " + bound + ", got " + node->Scalar());
    return;
  }
  out = *value;
}

void MapReader::size(const std::string& key, uint64_t& out, uint64_t min) {
  const YAML::Node* node = take(key);
  if (node == nullptr) {
    return;
  }
  std::optional<uint64_t> value;
  if (node->IsScalar()) {
    value = units::parseSize(node->Scalar());
  }
  if (!value) {
    sink_.error(lineOfKey(key), childPath(key),
                "expected a size like \"16KiB\" (B, KiB, MiB, GiB, TiB or plain bytes), got " + describe(*node));
    return;
  }
  if (*value < min) {
    std::string bound = min == 1 ? "greater than 0" : "at least " + units::formatSize(min);
    sink_.error(lineOfKey(key), childPath(key), "must be " + bound + ", got " + node->Scalar());
    return;
  }
  out = *value;
}

void MapReader::stringList(const std::string& key, std::vector<std::string>& out) {
  if (const YAML::Node* node = take(key)) {
    readStringList(sink_, *node, childPath(key), lineOfKey(key), out);
  }
}

void MapReader::enumeration(const std::string& key, std::string& out, std::initializer_list<const char*> allowed) {
  std::string value;
  const YAML::Node* node = take(key);
  if (node == nullptr || !readString(sink_, *node, childPath(key), lineOfKey(key), value)) {
    return;
  }
  std::string list;
  for (const char* option : allowed) {
    if (value == option) {
      out = value;
      return;
    }
    list += list.empty() ? "" : ", ";
    list += option;
  }
  sink_.error(lineOfKey(key), childPath(key), "must be one of " + list + ", got \"" + value + "\"");
}

}  // namespace cfg::detail
