#include "common/util/units.h"

#include <array>
#include <limits>

namespace units {
namespace {

// A non-negative decimal number split into its integer part and its fraction
// (as digits / 10^fractionDigits), so that scaling by a unit stays exact.
struct Decimal {
  uint64_t integer = 0;
  uint64_t fraction = 0;
  uint64_t fractionScale = 1;  // 10^(number of fraction digits)
};

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Parses "123" or "1.25" at the start of text; returns the number of characters
// consumed, or 0 when there is no well-formed number.
size_t parseDecimal(std::string_view text, Decimal& out) {
  size_t i = 0;
  size_t intDigits = 0;
  while (i < text.size() && isDigit(text[i])) {
    if (__builtin_mul_overflow(out.integer, 10u, &out.integer) ||
        __builtin_add_overflow(out.integer, static_cast<uint64_t>(text[i] - '0'), &out.integer)) {
      return 0;
    }
    ++i;
    ++intDigits;
  }
  if (intDigits == 0) {
    return 0;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t fracDigits = 0;
    while (i < text.size() && isDigit(text[i])) {
      // 18 fraction digits keep fraction * unit (unit < 2^41) far from overflow
      // once trailing zeros are stripped below; more precision is meaningless.
      if (fracDigits == 18) {
        return 0;
      }
      out.fraction = out.fraction * 10 + static_cast<uint64_t>(text[i] - '0');
      out.fractionScale *= 10;
      ++i;
      ++fracDigits;
    }
    if (fracDigits == 0) {
      return 0;  // "1." is not a number we accept
    }
    while (out.fractionScale > 1 && out.fraction % 10 == 0) {
      out.fraction /= 10;
      out.fractionScale /= 10;
    }
  }
  return i;
}

// value * unit, exactly; nullopt on overflow or when the fraction does not
// resolve to a whole number of base units.
std::optional<uint64_t> scale(const Decimal& value, uint64_t unit) {
  uint64_t whole = 0;
  if (__builtin_mul_overflow(value.integer, unit, &whole)) {
    return std::nullopt;
  }
  unsigned __int128 frac = static_cast<unsigned __int128>(value.fraction) * unit;
  if (frac % value.fractionScale != 0) {
    return std::nullopt;
  }
  uint64_t fracUnits = static_cast<uint64_t>(frac / value.fractionScale);
  uint64_t total = 0;
  if (__builtin_add_overflow(whole, fracUnits, &total)) {
    return std::nullopt;
  }
  return total;
}

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

constexpr std::array<Unit, 4> kDurationUnits{{
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
}};

constexpr std::array<Unit, 6> kSizeUnits{{
    {"", 1},
    {"B", 1},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
}};

template <size_t N>
std::optional<uint64_t> parseWithUnits(std::string_view text, const std::array<Unit, N>& table) {
  Decimal value;
  size_t used = parseDecimal(text, value);
  if (used == 0) {
    return std::nullopt;
  }
  std::string_view suffix = text.substr(used);
  for (const Unit& unit : table) {
    if (suffix == unit.suffix) {
      return scale(value, unit.factor);
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
  if (text.empty() || isDigit(text.back())) {
    return std::nullopt;  // a bare number has no unit: refuse to guess one
  }
  std::optional<uint64_t> ms = parseWithUnits(text, kDurationUnits);
  if (!ms || *ms > static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max())) {
    return std::nullopt;
  }
  return Duration{static_cast<Duration::rep>(*ms)};
}

std::optional<uint64_t> parseSize(std::string_view text) { return parseWithUnits(text, kSizeUnits); }

std::string formatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) {
    return "0s";
  }
  std::string sign;
  uint64_t magnitude = 0;
  if (ms < 0) {
    sign = "-";
    magnitude = static_cast<uint64_t>(-(ms + 1)) + 1;  // no overflow at INT64_MIN
  } else {
    magnitude = static_cast<uint64_t>(ms);
  }
  for (auto it = kDurationUnits.rbegin(); it != kDurationUnits.rend(); ++it) {
    if (magnitude % it->factor == 0) {
      return sign + std::to_string(magnitude / it->factor) + std::string(it->suffix);
    }
  }
  return sign + std::to_string(magnitude) + "ms";
}

std::string formatSize(uint64_t bytes) {
  if (bytes == 0) {
    return "0";
  }
  for (auto it = kSizeUnits.rbegin(); it != kSizeUnits.rend(); ++it) {
    if (it->factor > 1 && bytes % it->factor == 0) {
      return std::to_string(bytes / it->factor) + std::string(it->suffix);
    }
  }
  return std::to_string(bytes);
}

}  // namespace units
