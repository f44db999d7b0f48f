#include "common/redis/redis_url.h"

#include <doctest/doctest.h>

#include <string>

using redisx::parseRedisUrl;
using redisx::RedisEndpoint;

TEST_CASE("redis url: accepted forms") {
  struct Case {
    const char* url;
    const char* host;
    int port;
    const char* unixPath;
    const char* username;
    const char* password;
    int db;
  };
  const Case cases[] = {
      {"redis://127.0.0.1:6379/0", "127.0.0.1", 6379, "", "", "", 0},
      {"redis://127.0.0.1", "127.0.0.1", 6379, "", "", "", 0},
      {"redis://cache.default.svc:6380/", "cache.default.svc", 6380, "", "", "", 0},
      {"redis://localhost:6379/15", "localhost", 6379, "", "", "", 15},
      {"redis://:s3cret@10.0.0.5:6379/2", "10.0.0.5", 6379, "", "", "s3cret", 2},
      {"redis://s3cret@10.0.0.5", "10.0.0.5", 6379, "", "", "s3cret", 0},
      {"redis://app:p%40ss%3Aw@h:1/1", "h", 1, "", "app", "p@ss:w", 1},
      {"redis://[::1]:6390/3", "::1", 6390, "", "", "", 3},
      {"redis://[::1]", "::1", 6379, "", "", "", 0},
      {"unix:///run/redis/redis.sock", "", 6379, "/run/redis/redis.sock", "", "", 0},
      {"unix:/tmp/r.sock?db=4&password=x%20y", "", 6379, "/tmp/r.sock", "", "x y", 4},
  };
  for (const Case& c : cases) {
    CAPTURE(c.url);
    RedisEndpoint ep;
    CHECK(parseRedisUrl(c.url, ep) == "");
    CHECK(ep.host == c.host);
    CHECK(ep.port == c.port);
    CHECK(ep.unixPath == c.unixPath);
    CHECK(ep.username == c.username);
    CHECK(ep.password == c.password);
    CHECK(ep.db == c.db);
  }
}

TEST_CASE("redis url: refused forms name the problem") {
  struct Case {
    const char* url;
    const char* messagePart;
  };
  const Case cases[] = {
      {"rediss://h:6379/0", "TLS"},
      {"http://h:6379", "redis://"},
      {"redis://:6379/0", "missing host"},
      {"redis://h:0/0", "port"},
      {"redis://h:70000/0", "port"},
      {"redis://h:/0", "empty port"},
      {"redis://h:6379/x", "database number"},
      {"redis://h:6379/-1", "database number"},
      {"redis://::1:6379/0", "brackets"},
      {"redis://[::1/0", "unterminated"},
      {"redis://h:6379/0?timeout=1", "query"},
      {"redis://:%zz@h/0", "percent"},
      {"redis://user:@h/0", "needs a password"},
      {"unix:relative.sock", "absolute"},
      {"unix:///s.sock?foo=1", "unknown query parameter"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.url);
    RedisEndpoint ep;
    std::string err = parseRedisUrl(c.url, ep);
    CHECK(err.find(c.messagePart) != std::string::npos);
  }
}

TEST_CASE("redis url: describe() never shows credentials") {
  RedisEndpoint ep;
  REQUIRE(parseRedisUrl("redis://user:topsecret@[::1]:7000/5", ep) == "");
  CHECK(ep.describe() == "[::1]:7000/5");
  REQUIRE(parseRedisUrl("unix:///var/run/r.sock?password=topsecret", ep) == "");
  CHECK(ep.describe() == "unix:/var/run/r.sock/0");
}
