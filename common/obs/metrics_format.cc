#include "common/obs/metrics_format.h"

#include "common/util/utf8.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace obs {
namespace {

bool isNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

void appendEscapedLabelValue(std::string& out, std::string_view value) {
  size_t i = 0;
  while (i < value.size()) {
    const char c = value[i];
    if (c == '\\') {
      out += "\\\\";
      ++i;
    } else if (c == '"') {
      out += "\\\"";
      ++i;
    } else if (c == '\n') {
      out += "\\n";
      ++i;
    } else {
      const size_t len = util::utf8SequenceLength(value, i);
      if (len == 0) {
        out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
        ++i;
      } else {
        out.append(value.substr(i, len));
        i += len;
      }
    }
  }
}

void appendEscapedHelp(std::string& out, std::string_view text) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void appendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[64];
  // Integral values print without exponent or fraction up to 2^53, where doubles stop being
  // exact integers; beyond that the shortest round-trip form is both exact and accepted.
  if (value == std::trunc(value) && std::fabs(value) <= 9007199254740992.0) {
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(value));
    out.append(buf, end);
    return;
  }
  // Plain decimals for the usual magnitudes, as Go's 'g' format does ("0.0005", not the
  // shorter "5e-04" that to_chars would pick); exponent form only far from 1.
  auto [sciEnd, sciEc] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  const char* e = std::find(buf, sciEnd, 'e');
  int exponent = 0;
  std::from_chars(e + 1 + (e[1] == '+' ? 1 : 0), sciEnd, exponent);
  if (exponent < -4 || exponent >= 21) {
    out.append(buf, sciEnd);
    return;
  }
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::fixed);
  out.append(buf, end);
}

void appendNumber(std::string& out, uint64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, end);
}

bool isValidMetricName(std::string_view name) {
  if (name.empty() || !(isNameStart(name[0]) || name[0] == ':')) {
    return false;
  }
  for (char c : name) {
    if (!(isNameStart(c) || isDigit(c) || c == ':')) {
      return false;
    }
  }
  return true;
}

bool isValidLabelName(std::string_view name) {
  if (name.empty() || !isNameStart(name[0]) || name.starts_with("__")) {
    return false;
  }
  for (char c : name) {
    if (!(isNameStart(c) || isDigit(c))) {
      return false;
    }
  }
  return true;
}

}  // namespace obs
