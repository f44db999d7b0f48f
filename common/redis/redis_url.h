#pragma once
// Parsing of the `redis.url` setting into where and how to connect. I/O-free, so it is tested
// table-driven without a server.
//
// Accepted forms:
//   redis://[[username]:password@]host[:port][/db]     host may be [v6addr]; port defaults to 6379
//   unix:///path/to/redis.sock[?db=N&password=P]       (also unix:/path)
// `rediss://` (TLS) is recognised and refused: hiredis 0.14 (Debian 12) has no TLS support.
// Username and password may be percent-encoded.
#include <cstdint>
#include <string>
#include <string_view>

namespace redisx {

struct RedisEndpoint {
  std::string host;      // TCP host name or address (IPv6 without brackets); empty for unix sockets
  uint16_t port = 6379;  // TCP only
  std::string unixPath;  // set for unix: URLs
  std::string username;  // Redis 6 ACL user; empty = the default user (AUTH password)
  std::string password;  // empty = no AUTH
  int db = 0;            // SELECT db after connect when != 0

  // "host:port/db" or "unix:/path/db": for logs and error messages, never with credentials.
  std::string describe() const;
};

// Fills `out` and returns "" when `url` is usable, otherwise returns why not (one line, without
// the password).
std::string parseRedisUrl(std::string_view url, RedisEndpoint& out);

}  // namespace redisx
