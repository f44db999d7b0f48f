#include "gateway/filters/cache/cache_control.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include "common/http/headers.h"

namespace gateway::cache {
namespace {

// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
constexpr int64_t kDeltaSecondsCap = int64_t{1} << 31;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// delta-seconds = 1*DIGIT. nullopt when malformed.
std::optional<int64_t> parseDeltaSeconds(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  int64_t value = 0;
  for (char c : text) {
    if (!isDigit(c)) {
      return std::nullopt;
    }
    value = value * 10 + (c - '0');
    if (value >= kDeltaSecondsCap) {
      value = kDeltaSecondsCap;  // keep consuming digits to validate, without overflowing
    }
  }
  return value;
}

// A malformed argument means the response is stale (RFC 9111 §4.2.1), hence 0.
void setSeconds(std::optional<int64_t>& field, std::string_view argument) {
  if (!field) {
    field = parseDeltaSeconds(argument).value_or(0);
  }
}

void applyDirective(std::string_view name, std::string_view argument, CacheControl& cc) {
  if (http::iequals(name, "no-store")) {
    cc.noStore = true;
  } else if (http::iequals(name, "no-cache")) {
    cc.noCache = true;
  } else if (http::iequals(name, "private")) {
    cc.isPrivate = true;
  } else if (http::iequals(name, "public")) {
    cc.isPublic = true;
  } else if (http::iequals(name, "no-transform")) {
    cc.noTransform = true;
  } else if (http::iequals(name, "must-revalidate") || http::iequals(name, "proxy-revalidate")) {
    cc.mustRevalidate = true;
  } else if (http::iequals(name, "max-age")) {
    setSeconds(cc.maxAge, argument);
  } else if (http::iequals(name, "s-maxage")) {
    setSeconds(cc.sMaxAge, argument);
  } else if (http::iequals(name, "stale-if-error")) {
    setSeconds(cc.staleIfError, argument);
  }
}

bool isOws(char c) { return c == ' ' || c == '\t'; }

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t year;
  unsigned month;
  unsigned day;
};

Civil civilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return Civil{static_cast<int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

bool isLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned daysInMonth(int64_t y, unsigned m) {
  constexpr std::array<unsigned, 12> kDaysIn = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && isLeap(y) ? 29 : kDaysIn[m - 1];
}

// A little cursor for the fixed date layouts.
class DateReader {
 public:
  explicit DateReader(std::string_view text) : text_(text) {}
  bool literal(std::string_view s) {
    if (text_.substr(pos_, s.size()) != s) {
      return false;
    }
    pos_ += s.size();
    return true;
  }
  // Exactly `n` digits.
  bool digits(size_t n, int& out) {
    if (pos_ + n > text_.size()) {
      return false;
    }
    out = 0;
    for (size_t i = 0; i < n; ++i) {
      char c = text_[pos_ + i];
      if (!isDigit(c)) {
        return false;
      }
      out = out * 10 + (c - '0');
    }
    pos_ += n;
    return true;
  }
  template <size_t N>
  bool oneOf(const std::array<std::string_view, N>& names, int& index) {
    for (size_t i = 0; i < N; ++i) {
      if (literal(names[i])) {
        index = static_cast<int>(i);
        return true;
      }
    }
    return false;
  }
  bool time(int& h, int& m, int& s) {
    return digits(2, h) && literal(":") && digits(2, m) && literal(":") && digits(2, s);
  }
  bool atEnd() const { return pos_ == text_.size(); }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

std::optional<int64_t> toUnix(int64_t year, int month0, int day, int h, int m, int s) {
  unsigned month = static_cast<unsigned>(month0 + 1);
  if (day < 1 || static_cast<unsigned>(day) > daysInMonth(year, month) || h > 23 || m > 59 || s > 60) {
    return std::nullopt;
  }
  if (s == 60) {
    s = 59;  // a leap second; POSIX time has none
  }
  return daysFromCivil(year, month, static_cast<unsigned>(day)) * 86400 + h * 3600 + m * 60 + s;
}

}  // namespace

void parseCacheControl(std::string_view value, CacheControl& into) {
  size_t i = 0;
  const size_t n = value.size();
  while (i < n) {
    while (i < n && (isOws(value[i]) || value[i] == ',')) {
      ++i;
    }
    size_t nameStart = i;
    while (i < n && value[i] != '=' && value[i] != ',') {
      ++i;
    }
    std::string_view name = http::trim(value.substr(nameStart, i - nameStart));
    std::string_view argument;
    if (i < n && value[i] == '=') {
      ++i;
      while (i < n && isOws(value[i])) {
        ++i;
      }
      if (i < n && value[i] == '"') {
        // quoted-string: may hold commas; a backslash escapes the next character.
        size_t argStart = ++i;
        while (i < n && value[i] != '"') {
          i += value[i] == '\\' ? 2 : 1;
        }
        argument = value.substr(argStart, std::min(i, n) - argStart);
        // Skip the closing quote and anything up to the next comma.
        while (i < n && value[i] != ',') {
          ++i;
        }
      } else {
        size_t argStart = i;
        while (i < n && value[i] != ',') {
          ++i;
        }
        argument = http::trim(value.substr(argStart, i - argStart));
      }
    }
    if (!name.empty()) {
      applyDirective(name, argument, into);
    }
  }
}

CacheControl parseCacheControl(std::string_view value) {
  CacheControl cc;
  parseCacheControl(value, cc);
  return cc;
}

std::string_view joinedField(const http::HeaderList& headers, std::string_view name, std::string& scratch) {
  const http::Header* first = nullptr;
  bool several = false;
  for (const http::Header& h : headers) {
    if (http::iequals(h.name, name)) {
      if (first == nullptr) {
        first = &h;
      } else {
        several = true;
        break;
      }
    }
  }
  if (first == nullptr) {
    return {};
  }
  if (!several) {
    return first->value;
  }
  scratch.clear();
  for (const http::Header& h : headers) {
    if (http::iequals(h.name, name)) {
      if (!scratch.empty()) {
        scratch += ", ";
      }
      scratch += h.value;
    }
  }
  return scratch;
}

std::optional<int64_t> parseHttpDate(std::string_view value) {
  value = http::trim(value);
  int weekday = 0;
  int day = 0;
  int month = 0;
  int year = 0;
  int h = 0;
  int m = 0;
  int s = 0;
  {
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    DateReader r(value);
    if (r.oneOf(kDays, weekday) && r.literal(", ") && r.digits(2, day) && r.literal(" ") && r.oneOf(kMonths, month) &&
        r.literal(" ") && r.digits(4, year) && r.literal(" ") && r.time(h, m, s) && r.literal(" GMT") && r.atEnd()) {
      return toUnix(year, month, day, h, m, s);
    }
  }
  {
    // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT. A two-digit year is taken as 1970-2069, a
    // simplification of RFC 9110's "not more than 50 years in the future".
    DateReader r(value);
    if (r.oneOf(kLongDays, weekday) && r.literal(", ") && r.digits(2, day) && r.literal("-") &&
        r.oneOf(kMonths, month) && r.literal("-") && r.digits(2, year) && r.literal(" ") && r.time(h, m, s) &&
        r.literal(" GMT") && r.atEnd()) {
      return toUnix(year < 70 ? 2000 + year : 1900 + year, month, day, h, m, s);
    }
  }
  {
    // asctime: Sun Nov  6 08:49:37 1994
    DateReader r(value);
    if (r.oneOf(kDays, weekday) && r.literal(" ") && r.oneOf(kMonths, month) && r.literal(" ") &&
        (r.literal(" ") ? r.digits(1, day) : r.digits(2, day)) && r.literal(" ") && r.time(h, m, s) &&
        r.literal(" ") && r.digits(4, year) && r.atEnd()) {
      return toUnix(year, month, day, h, m, s);
    }
  }
  return std::nullopt;
}

std::string formatHttpDate(int64_t unixSeconds) {
  int64_t days = unixSeconds >= 0 ? unixSeconds / 86400 : -((-unixSeconds + 86399) / 86400);
  int64_t secondOfDay = unixSeconds - days * 86400;
  Civil date = civilFromDays(days);
  int64_t weekday = (days % 7 + 7 + 4) % 7;  // 1970-01-01 was a Thursday
  char buffer[40];
  int len = std::snprintf(buffer, sizeof(buffer), "%s, %02u %s %04lld %02lld:%02lld:%02lld GMT",
                          kDays[static_cast<size_t>(weekday)].data(), date.day, kMonths[date.month - 1].data(),
                          static_cast<long long>(date.year), static_cast<long long>(secondOfDay / 3600),
                          static_cast<long long>(secondOfDay / 60 % 60), static_cast<long long>(secondOfDay % 60));
  return std::string(buffer, static_cast<size_t>(len > 0 ? len : 0));
}

std::string_view storeDecisionName(StoreDecision decision) {
  switch (decision) {
    case StoreDecision::Store:
      return "store";
    case StoreDecision::Status:
      return "status";
    case StoreDecision::NoStore:
      return "no_store";
    case StoreDecision::Private:
      return "private";
    case StoreDecision::NoCache:
      return "no_cache";
    case StoreDecision::SetCookie:
      return "set_cookie";
    case StoreDecision::Authorization:
      return "authorization";
    case StoreDecision::Vary:
      return "vary";
    case StoreDecision::Expired:
      return "expired";
  }
  return "unknown";
}

Freshness evaluateStorage(const ResponseFacts& facts, std::chrono::milliseconds ruleTtl, int64_t nowUnixSeconds) {
  Freshness result;
  auto refuse = [&result](StoreDecision decision) {
    result.decision = decision;
    return result;
  };
  if (facts.status != 200) {
    return refuse(StoreDecision::Status);
  }
  CacheControl cc = parseCacheControl(facts.cacheControl);
  if (cc.noStore || parseCacheControl(facts.requestCacheControl).noStore) {
    return refuse(StoreDecision::NoStore);
  }
  if (cc.isPrivate) {
    return refuse(StoreDecision::Private);
  }
  if (cc.noCache) {
    return refuse(StoreDecision::NoCache);
  }
  if (facts.hasSetCookie) {
    return refuse(StoreDecision::SetCookie);
  }
  if (facts.requestHasAuthorization && !cc.isPublic && !cc.sMaxAge) {
    return refuse(StoreDecision::Authorization);
  }
  std::string_view vary = facts.vary;
  while (!vary.empty()) {
    size_t comma = vary.find(',');
    std::string_view field = http::trim(vary.substr(0, comma));
    if (!field.empty() && !http::iequals(field, "Accept-Encoding")) {
      return refuse(StoreDecision::Vary);
    }
    vary = comma == std::string_view::npos ? std::string_view() : vary.substr(comma + 1);
  }

  int64_t lifetimeMs = 0;
  if (cc.sMaxAge) {
    lifetimeMs = *cc.sMaxAge * 1000;
  } else if (cc.maxAge) {
    lifetimeMs = *cc.maxAge * 1000;
  } else if (!http::trim(facts.expires).empty()) {
    // An invalid Expires ("0", "-1") means already expired (RFC 9111 §5.3).
    if (std::optional<int64_t> expires = parseHttpDate(facts.expires)) {
      int64_t date = parseHttpDate(facts.date).value_or(nowUnixSeconds);
      lifetimeMs = (*expires - date) * 1000;
    }
  } else {
    lifetimeMs = ruleTtl.count();
  }
  if (std::optional<int64_t> age = parseDeltaSeconds(http::trim(facts.age))) {
    lifetimeMs -= *age * 1000;
  }
  if (lifetimeMs <= 0) {
    return refuse(StoreDecision::Expired);
  }
  result.storable = true;
  result.decision = StoreDecision::Store;
  result.ttl = std::chrono::milliseconds(lifetimeMs);
  if (cc.staleIfError && !cc.mustRevalidate) {
    result.staleIfError = std::chrono::milliseconds(*cc.staleIfError * 1000);
  }
  return result;
}

const cfg::CacheRule* matchRule(std::span<const cfg::CacheRule> rules, std::string_view path) {
  for (const cfg::CacheRule& rule : rules) {
    if (!rule.path.empty() ? path == rule.path : (!rule.prefix.empty() && path.starts_with(rule.prefix))) {
      return &rule;
    }
  }
  return nullptr;
}

bool isCacheableMethod(std::string_view method) { return method == "GET" || method == "HEAD"; }

bool buildCacheKey(std::string& out, std::string_view method, std::string_view host, std::string_view path,
                   std::string_view query, std::string_view encoding) {
  out.clear();
  if (!isCacheableMethod(method)) {
    return false;
  }
  out.reserve(3 + host.size() + path.size() + query.size() + encoding.size() + 5);
  out.append("GET\n");
  for (char c : host) {
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  out.push_back('\n');
  out.append(path);
  if (!query.empty()) {
    out.push_back('?');
    out.append(query);
  }
  out.push_back('\n');
  out.append(encoding);
  return true;
}

std::string buildCacheKey(std::string_view method, std::string_view host, std::string_view path,
                          std::string_view query, std::string_view encoding) {
  std::string key;
  buildCacheKey(key, method, host, path, query, encoding);
  return key;
}

}  // namespace gateway::cache
