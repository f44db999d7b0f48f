#pragma once
// What a Redis command gives back: a reply (copied out of hiredis, so it outlives the callback)
// or a failure of one of a few kinds that callers act on differently (fall back, fail open,
// retry, 503).
#include <string>
#include <vector>

struct redisReply;

namespace redisx {

enum class ReplyType {
  Nil,      // a nil bulk string or nil array
  Status,   // +OK, +PONG: text in `str`
  String,   // bulk string: bytes in `str`
  Integer,  // `integer`
  Array,    // `elements`
  Error,    // only inside arrays (e.g. EXEC); a top-level error reply is RedisErrorKind::ServerError
};

struct RedisReply {
  ReplyType type = ReplyType::Nil;
  std::string str;
  long long integer = 0;
  std::vector<RedisReply> elements;

  // Deep copy of a hiredis reply (null gives Nil).
  static RedisReply fromHiredis(const redisReply* reply);
};

enum class RedisErrorKind {
  None,            // success: `reply` holds the answer
  Timeout,         // no reply within the command timeout (the server may still execute it)
  Disconnected,    // no usable connection: not connected, connect failed, connection lost, closed
  ServerError,     // the server answered with an error reply (message = its text, e.g. "WRONGTYPE ...")
  Overloaded,      // too many commands pending on this client; nothing was sent
  InvalidCommand,  // refused locally (empty, or a command that changes the connection's protocol)
};

const char* errorKindName(RedisErrorKind kind);

struct RedisResult {
  RedisErrorKind error = RedisErrorKind::None;
  std::string errorMessage;
  RedisReply reply;
  // True when the command was written to a connection before it failed (Timeout, or Disconnected
  // after sending): the server may have executed it, so a non-idempotent command (INCR) must not
  // be blindly retried. False means it certainly did not run.
  bool maybeExecuted = false;

  bool ok() const { return error == RedisErrorKind::None; }

  static RedisResult success(RedisReply reply);
  static RedisResult failure(RedisErrorKind kind, std::string message, bool maybeExecuted);
};

}  // namespace redisx
