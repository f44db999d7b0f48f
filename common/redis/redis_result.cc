#include "common/redis/redis_result.h"

#include <hiredis/hiredis.h>

namespace redisx {

RedisReply RedisReply::fromHiredis(const redisReply* reply) {
  RedisReply out;
  if (reply == nullptr) {
    return out;
  }
  switch (reply->type) {
    case REDIS_REPLY_STATUS:
      out.type = ReplyType::Status;
      out.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_STRING:
      out.type = ReplyType::String;
      out.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = ReplyType::Error;
      out.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = ReplyType::Integer;
      out.integer = reply->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = ReplyType::Array;
      out.elements.reserve(reply->elements);
      for (size_t i = 0; i < reply->elements; ++i) {
        out.elements.push_back(fromHiredis(reply->element[i]));
      }
      break;
    default:
      out.type = ReplyType::Nil;
      break;
  }
  return out;
}

const char* errorKindName(RedisErrorKind kind) {
  switch (kind) {
    case RedisErrorKind::None:
      return "ok";
    case RedisErrorKind::Timeout:
      return "timeout";
    case RedisErrorKind::Disconnected:
      return "disconnected";
    case RedisErrorKind::ServerError:
      return "server error";
    case RedisErrorKind::Overloaded:
      return "overloaded";
    case RedisErrorKind::InvalidCommand:
      return "invalid command";
  }
  return "unknown";
}

RedisResult RedisResult::success(RedisReply reply) {
  RedisResult r;
  r.reply = std::move(reply);
  return r;
}

RedisResult RedisResult::failure(RedisErrorKind kind, std::string message, bool maybeExecuted) {
  RedisResult r;
  r.error = kind;
  r.errorMessage = std::move(message);
  r.maybeExecuted = maybeExecuted;
  return r;
}

}  // namespace redisx
