#pragma once
// app::TracedRedis: the app's way to send Redis commands on behalf of a request. A thin view over
// a redisx::RedisClient (same command() overloads and callback contract) that adds, per command:
//
//   - when the calling thread's current span (obs::trace::SpanParent::current(), set by the
//     request handler and re-entered by the pool and by this class) is sampled: a CLIENT span
//     from the call to the callback (OpenTelemetry database conventions):
//        name               "<command> <db index>", e.g. "GET 0"
//        db.system          "redis"
//        db.operation.name  the command, upper-cased ("GET", "EVAL")
//        db.query.text      the command with every argument as "?" -- keys and values are data --
//                           except EVAL's script and numkeys / EVALSHA's sha1, which are code
//        db.namespace       the database index ("0")
//        server.address/port from redis.url (unix: the socket path)
//        failures           status Error, error.type "timeout" / "disconnected" / "overloaded" /
//                           "invalid_command", or for an error reply its prefix ("WRONGTYPE",
//                           "NOSCRIPT", "ERR") also as db.response.status_code
//   - when tracing is on (the current context is valid, sampled or not): the callback runs inside
//     CurrentSpanScope(parent), so what it submits next (a database transaction, the shipping
//     call and its traceparent header) stays in the request's trace. This wrapping is the only
//     cost for an unsampled request (one small allocation per command).
//   - tracing disabled / no current span: the command goes straight to the client.
//
// Copyable, owns nothing: the client must outlive it and every callback. Loop thread only.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/obs/trace/span.h"
#include "common/redis/redis_client.h"

namespace app {

class TracedRedis {
 public:
  using Callback = redisx::RedisClient::Callback;

  explicit TracedRedis(redisx::RedisClient& client) : client_(&client) {}

  // redisx::RedisClient::command, traced (see above).
  void command(std::vector<std::string> args, Callback cb);
  void command(std::vector<std::string> args, std::chrono::milliseconds timeout, Callback cb);

  redisx::RedisClient& client() const { return *client_; }

  // db.query.text for `args` (see above); bounded by the span's value limit anyway.
  static std::string queryText(const std::vector<std::string>& args);
  // Fills a fresh span's name and attributes for `args` sent through `client`.
  static void describe(obs::trace::Span& span, const redisx::RedisClient& client, const std::vector<std::string>& args);
  // Marks the span failed according to `result` (nothing when it succeeded).
  static void recordResult(obs::trace::Span& span, const redisx::RedisResult& result);

 private:
  // timeout 0: the client's default (options.commandTimeout).
  void send(std::vector<std::string> args, std::chrono::milliseconds timeout, Callback cb);

  redisx::RedisClient* client_;
};

}  // namespace app
