#include "common/redis/redis_url.h"

#include <charconv>

namespace redisx {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

bool percentDecode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      return false;
    }
    int hi = hexValue(in[i + 1]);
    int lo = hexValue(in[i + 2]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool parseNumber(std::string_view s, long long maxValue, long long& out) {
  if (s.empty()) {
    return false;
  }
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc() && ptr == end && out >= 0 && out <= maxValue;
}

// "db=N&password=P" of unix: URLs.
std::string parseUnixQuery(std::string_view query, RedisEndpoint& out) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (key == "db") {
      long long db = 0;
      if (!parseNumber(value, 1 << 20, db)) {
        return "db must be a non-negative integer, got \"" + std::string(value) + "\"";
      }
      out.db = static_cast<int>(db);
    } else if (key == "password") {
      if (!percentDecode(value, out.password)) {
        return "invalid percent-encoding in the password";
      }
    } else {
      return "unknown query parameter \"" + std::string(key) + "\" (known: db, password)";
    }
  }
  return "";
}

}  // namespace

std::string RedisEndpoint::describe() const {
  std::string where;
  if (!unixPath.empty()) {
    where = "unix:" + unixPath;
  } else if (host.find(':') != std::string::npos) {
    where = "[" + host + "]:" + std::to_string(port);
  } else {
    where = host + ":" + std::to_string(port);
  }
  return where + "/" + std::to_string(db);
}

std::string parseRedisUrl(std::string_view url, RedisEndpoint& out) {
  out = RedisEndpoint{};
  if (url.starts_with("rediss://")) {
    return "rediss:// (TLS) is not supported: this build's hiredis (0.14) has no TLS; use redis://";
  }
  if (url.starts_with("unix:")) {
    std::string_view rest = url.substr(5);
    if (rest.starts_with("//")) {
      rest.remove_prefix(2);
    }
    size_t q = rest.find('?');
    std::string_view path = rest.substr(0, q);
    if (path.empty() || path[0] != '/') {
      return "unix: URLs need an absolute socket path, e.g. unix:///run/redis/redis.sock";
    }
    out.unixPath = std::string(path);
    if (q != std::string_view::npos) {
      return parseUnixQuery(rest.substr(q + 1), out);
    }
    return "";
  }
  if (!url.starts_with("redis://")) {
    return "expected a redis:// or unix: URL";
  }
  std::string_view rest = url.substr(8);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (authority.find('?') != std::string_view::npos || path.find('?') != std::string_view::npos) {
    return "query parameters are not supported in redis:// URLs";
  }

  // The password may contain '@' only percent-encoded; the last '@' ends the userinfo.
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    std::string_view user = userinfo.substr(0, colon);
    std::string_view password = colon == std::string_view::npos ? std::string_view() : userinfo.substr(colon + 1);
    if (colon == std::string_view::npos) {
      // redis://secret@host is how many tools write a password without a user.
      password = user;
      user = std::string_view();
    }
    if (!percentDecode(user, out.username) || !percentDecode(password, out.password)) {
      return "invalid percent-encoding in the user or password";
    }
    if (!out.username.empty() && out.password.empty()) {
      return "a username needs a password (redis://user:password@host)";
    }
  }

  std::string_view portText;
  if (authority.starts_with("[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return "unterminated [ in the host";
    }
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return "expected :port after ]";
      }
      portText = after.substr(1);
      if (portText.empty()) {
        return "empty port";
      }
    }
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      portText = authority.substr(colon + 1);
      if (portText.empty()) {
        return "empty port";
      }
      if (out.host.find(':') != std::string::npos) {
        return "IPv6 addresses must be written in brackets, e.g. redis://[::1]:6379";
      }
    }
  }
  if (out.host.empty()) {
    return "missing host";
  }
  if (!portText.empty()) {
    long long port = 0;
    if (!parseNumber(portText, 65535, port) || port == 0) {
      return "port must be 1-65535, got \"" + std::string(portText) + "\"";
    }
    out.port = static_cast<uint16_t>(port);
  }
  if (!path.empty()) {
    long long db = 0;
    // Redis' `databases` defaults to 16, but servers may configure more; SELECT will say.
    if (!parseNumber(path, 1 << 20, db)) {
      return "the path must be a database number (redis://host:port/0), got \"/" + std::string(path) + "\"";
    }
    out.db = static_cast<int>(db);
  }
  return "";
}

}  // namespace redisx
