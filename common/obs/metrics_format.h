#pragma once
// Pieces of the Prometheus text exposition format 0.0.4 that the registry (common/obs/metrics.h)
// uses at scrape time: escaping, number formatting, name validation. Pure functions, no I/O.
#include <cstdint>
#include <string>
#include <string_view>

namespace obs {

// Appends `value` escaped for use inside a double-quoted label value: backslash, double quote
// and newline become \\, \" and \n. Bytes that are not valid UTF-8 become U+FFFD, because the
// Prometheus parser rejects the whole scrape on invalid UTF-8 and a label value can come from a
// request (a method token, a route name from config).
void appendEscapedLabelValue(std::string& out, std::string_view value);

// Appends `text` escaped for a `# HELP` line: backslash and newline become \\ and \n.
void appendEscapedHelp(std::string& out, std::string_view text);

// Appends a sample value the way Prometheus clients print it and Go's ParseFloat reads it:
// integral values without a fraction ("3", "-2"), others in the shortest form that reads back
// to the same double ("0.0005", "1.5e-07"), and "NaN", "+Inf", "-Inf".
void appendNumber(std::string& out, double value);
void appendNumber(std::string& out, uint64_t value);

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool isValidMetricName(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]* and not starting with "__" (reserved for Prometheus itself).
bool isValidLabelName(std::string_view name);

}  // namespace obs
