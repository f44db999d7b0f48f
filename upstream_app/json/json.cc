#include "upstream_app/json/json.h"

#include <charconv>

namespace app::json {

namespace {

char* twoDigits(char* p, int64_t v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
  return p + 2;
}

}  // namespace

size_t formatEpochMicros(int64_t micros, char* out) {
  constexpr int64_t kMicrosPerDay = 86'400'000'000;
  // Floor division: a time before 1970 belongs to the day before, at a positive time of day.
  int64_t days = micros / kMicrosPerDay;
  int64_t timeOfDay = micros % kMicrosPerDay;
  if (timeOfDay < 0) {
    timeOfDay += kMicrosPerDay;
    --days;
  }
  // Proleptic Gregorian civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible
  // Low-Level Date Algorithms"): exact over the whole int64 range used here.
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);

  char* p = out;
  int64_t absYear = year;
  if (year < 0) {
    *p++ = '-';
    absYear = -year;
  }
  if (absYear < 10000) {
    p = twoDigits(p, absYear / 100);
    p = twoDigits(p, absYear % 100);
  } else {
    p = std::to_chars(p, out + kTimestampMax, absYear).ptr;
  }
  *p++ = '-';
  p = twoDigits(p, month);
  *p++ = '-';
  p = twoDigits(p, day);
  *p++ = 'T';
  const int64_t seconds = timeOfDay / 1'000'000;
  const int64_t fraction = timeOfDay % 1'000'000;
  p = twoDigits(p, seconds / 3600);
  *p++ = ':';
  p = twoDigits(p, seconds / 60 % 60);
  *p++ = ':';
  p = twoDigits(p, seconds % 60);
  *p++ = '.';
  p = twoDigits(p, fraction / 10000);
  p = twoDigits(p, fraction / 100 % 100);
  p = twoDigits(p, fraction % 100);
  *p++ = 'Z';
  return static_cast<size_t>(p - out);
}

namespace {

// Formats `epochMicros` quoted into out (kTimestampMax + 2 bytes); 0 when it is not a number.
size_t quotedTimestamp(std::string_view epochMicros, char* out) {
  int64_t micros = 0;
  const char* end = epochMicros.data() + epochMicros.size();
  auto [ptr, ec] = std::from_chars(epochMicros.data(), end, micros);
  if (ec != std::errc() || ptr != end || epochMicros.empty()) {
    return 0;
  }
  out[0] = '"';
  const size_t n = formatEpochMicros(micros, out + 1);
  out[n + 1] = '"';
  return n + 2;
}

// rapidjson::Writer's table (writer.h): 'u' = \u00XX, another letter = that one-letter escape.
constexpr char kEscape[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',  // 00
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',  // 10
    0,   0,   '"', 0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,    // 20
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,    // 30
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,    // 40
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   '\\', 0, 0,   0,    // 50
};  // 60-FF: 0

}  // namespace

void timestampMicros(Writer& w, std::string_view epochMicros) {
  char quoted[kTimestampMax + 2];
  const size_t n = quotedTimestamp(epochMicros, quoted);
  if (n == 0) {
    string(w, epochMicros);
    return;
  }
  // The quotes go in the raw value: the text needs no escaping, so skip the escaping loop.
  w.RawValue(quoted, n, rapidjson::kStringType);
}

void Appender::timestampMicros(std::string_view epochMicros) {
  char quoted[kTimestampMax + 2];
  const size_t n = quotedTimestamp(epochMicros, quoted);
  if (n == 0) {
    string(epochMicros);
    return;
  }
  raw(std::string_view(quoted, n));
}

void Appender::string(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  // Room for the worst case (every byte as \u00XX), given back below.
  const size_t room = 2 + 6 * s.size();
  char* const start = b_.Push(room);
  char* p = start;
  *p++ = '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const char e = kEscape[c];
    if (e == 0) [[likely]] {
      *p++ = ch;
      continue;
    }
    *p++ = '\\';
    *p++ = e;
    if (e == 'u') {
      *p++ = '0';
      *p++ = '0';
      *p++ = kHex[c >> 4];
      *p++ = kHex[c & 0xF];
    }
  }
  *p++ = '"';
  b_.Pop(room - static_cast<size_t>(p - start));
}

std::string errorBody(std::string_view message, std::string_view requestId, std::string_view field) {
  Buffer buf;
  Writer w(buf);
  w.StartObject();
  key(w, "error");
  string(w, message);
  if (!field.empty()) {
    key(w, "field");
    string(w, field);
  }
  key(w, "request_id");
  string(w, requestId);
  w.EndObject();
  return std::string(view(buf));
}

}  // namespace app::json
