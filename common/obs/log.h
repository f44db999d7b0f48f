#pragma once
// Structured JSON-lines logging to stdout. Event loops only append to an in-memory buffer; a
// background thread does the write(2), so a slow stdout reader never blocks a loop. When the
// buffer is full, lines are dropped and counted rather than waited for.
#include <cstdint>
#include <string>
#include <string_view>

namespace obs {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

bool parseLevel(std::string_view name, Level& out);
void setLevel(Level level);
bool enabled(Level level);

// Builds the members of one JSON log object, after the standard "ts","level","msg" members.
class LogFields {
 public:
  LogFields& str(std::string_view key, std::string_view value);
  LogFields& num(std::string_view key, int64_t value);
  LogFields& real(std::string_view key, double value, int decimals = 3);
  LogFields& boolean(std::string_view key, bool value);
  const std::string& text() const { return text_; }

 private:
  void key(std::string_view k);
  std::string text_;
};

void log(Level level, std::string_view msg, const LogFields& fields = LogFields());
inline void debug(std::string_view msg, const LogFields& f = LogFields()) { log(Level::Debug, msg, f); }
inline void info(std::string_view msg, const LogFields& f = LogFields()) { log(Level::Info, msg, f); }
inline void warn(std::string_view msg, const LogFields& f = LogFields()) { log(Level::Warn, msg, f); }
inline void error(std::string_view msg, const LogFields& f = LogFields()) { log(Level::Error, msg, f); }

// Writes everything buffered and stops the writer thread (at shutdown; safe to call twice).
void shutdownLogging();
// Lines dropped because the buffer was full.
uint64_t droppedLines();

}  // namespace obs
