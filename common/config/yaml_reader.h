#pragma once

// Typed reading of a yaml-cpp tree with error collection: the "shape" layer of
// the config loader. Nothing here throws; every problem becomes one
// "FILE:LINE: key.path: message" entry and reading continues, so that a single
// run reports everything that is wrong (STYLE.md rule 8).

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace cfg::detail {

// Collects errors and remembers where each key path was written.
class ErrorSink {
 public:
  explicit ErrorSink(std::string fileName) : fileName_(std::move(fileName)) {}

  // line <= 0 means "no line" (the key is absent from the file).
  void error(int line, const std::string& path, const std::string& message);
  // Errors on these lines are dropped (their cause was already reported).
  void suppressLines(std::set<int> lines) { suppressed_ = std::move(lines); }

  void recordLine(const std::string& path, int line) { lines_.emplace(path, line); }
  // Line of the first path written in the file; otherwise the line of the
  // nearest written ancestor of the first path; otherwise 0.
  int lineOf(std::initializer_list<std::string> paths) const;
  bool wasWritten(const std::string& path) const { return lines_.count(path) != 0; }
  // True when an error was reported for path or below it: cross-checks skip
  // values that already failed, instead of piling a second message on them.
  bool failed(const std::string& path) const;

  bool empty() const { return errors_.empty(); }
  // Errors ordered by line (stable), those without a line first.
  std::vector<std::string> take();
  const std::string& fileName() const { return fileName_; }

 private:
  struct Entry {
    int line;
    std::string text;
  };
  std::string fileName_;
  std::vector<Entry> errors_;
  std::map<std::string, int> lines_;
  std::set<int> suppressed_;
  std::set<std::string> failedPaths_;
};

// `text` with every ASCII control character written as an escape (\n, \r, \t, \xHH), so
// that an error message is one line whatever the file held. Other bytes (UTF-8 included) stay.
std::string escapeControl(std::string_view text);

// 1-based line of a node, or 0 when the node carries no position.
int lineOf(const YAML::Node& node);

// A human description of a node for "got ..." parts of messages: "a map",
// "a list", "null", or the quoted scalar text.
std::string describe(const YAML::Node& node);

// Reads one YAML map: each field is taken by name, and finish() reports every
// key nobody took as unknown (with a "did you mean" hint). An absent (nullptr)
// or null node reads as an empty map, so all fields keep their defaults.
class MapReader {
 public:
  // line: where the map's key was written (used for errors about the map).
  MapReader(ErrorSink& sink, const YAML::Node* node, std::string path, int line);
  ~MapReader();
  MapReader(const MapReader&) = delete;
  MapReader& operator=(const MapReader&) = delete;

  // True when the map (or the key) was written at all.
  bool present() const { return present_; }
  bool has(const std::string& key) const { return entries_.count(key) != 0; }

  // The nested map under key (absent -> empty reader).
  MapReader sub(const std::string& key);

  // Marks key as known; returns its value node, or nullptr when absent. The
  // pointer stays valid for the reader's lifetime.
  const YAML::Node* take(const std::string& key);
  std::string childPath(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  // Line of the key's value (or of the key when the value has no position).
  int lineOfKey(const std::string& key) const;
  int line() const { return line_; }
  const std::string& path() const { return path_; }
  ErrorSink& sink() { return sink_; }

  // Reports unknown keys. Called by the destructor if not called before.
  void finish();

  // Typed fields. Each leaves `out` unchanged when the key is absent or the
  // value is invalid (after reporting the error).
  void str(const std::string& key, std::string& out);
  void boolean(const std::string& key, bool& out);
  void integer(const std::string& key, int& out, int64_t min, int64_t max);
  // Like integer(), but the word `auto` is accepted and stored as 0.
  void integerOrAuto(const std::string& key, int& out, int64_t min, int64_t max);
  void number(const std::string& key, double& out, double min, double max, bool minExclusive = false);
  // min is inclusive; a zero minimum allows "0s".
  void duration(const std::string& key, std::chrono::milliseconds& out,
                std::chrono::milliseconds min = std::chrono::milliseconds{1});
  void size(const std::string& key, uint64_t& out, uint64_t min = 0);
  void stringList(const std::string& key, std::vector<std::string>& out);
  // One of `allowed`.
  void enumeration(const std::string& key, std::string& out, std::initializer_list<const char*> allowed);

 private:
  struct Entry {
    YAML::Node key;
    YAML::Node value;
    bool taken = false;
  };
  ErrorSink& sink_;
  std::string path_;
  int line_ = 0;
  bool present_ = false;
  bool finished_ = false;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> order_;  // keys in file order, for unknown-key reports
  std::vector<std::string> known_;  // keys asked for, for "did you mean"
};

// Value readers usable on any node (map fields, list items). They report an
// error and return false when the node does not have the expected form.
bool readString(ErrorSink& sink, const YAML::Node& node, const std::string& path, int line, std::string& out);
bool readStringList(ErrorSink& sink, const YAML::Node& node, const std::string& path, int line,
                    std::vector<std::string>& out);

}  // namespace cfg::detail
