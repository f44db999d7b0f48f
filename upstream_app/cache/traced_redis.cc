#include "upstream_app/cache/traced_redis.h"

#include <algorithm>
#include <memory>

#include "common/obs/trace/log_context.h"
#include "common/obs/trace/semconv.h"

namespace app {

namespace tr = obs::trace;

namespace {

std::string upper(std::string_view s) {
  std::string out(s.substr(0, 32));
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    }
  }
  return out;
}

// What a command's callback needs once the reply is in: the span to end, the parent to re-enter
// and the caller's callback. Shared (std::function must be copyable; Span is move-only).
struct Pending {
  tr::SpanParent parent;
  tr::Span span;
  TracedRedis::Callback cb;
};

const char* failureType(redisx::RedisErrorKind kind) {
  switch (kind) {
    case redisx::RedisErrorKind::Timeout:
      return "timeout";
    case redisx::RedisErrorKind::Disconnected:
      return "disconnected";
    case redisx::RedisErrorKind::Overloaded:
      return "overloaded";
    case redisx::RedisErrorKind::InvalidCommand:
      return "invalid_command";
    case redisx::RedisErrorKind::ServerError:
    case redisx::RedisErrorKind::None:
      break;
  }
  return "server_error";
}

}  // namespace

std::string TracedRedis::queryText(const std::vector<std::string>& args) {
  if (args.empty()) {
    return {};
  }
  std::string out = upper(args[0]);
  const bool eval = out == "EVAL" || out == "EVAL_RO";
  const bool evalsha = out == "EVALSHA" || out == "EVALSHA_RO";
  for (size_t i = 1; i < args.size(); ++i) {
    out.push_back(' ');
    if ((eval || evalsha) && i == 1) {
      out.append(tr::truncateUtf8(args[i], 1024));  // the script (or its sha1): code, not data
    } else if ((eval || evalsha) && i == 2) {
      out.append(args[i].substr(0, 10));  // numkeys
    } else {
      out.push_back('?');
    }
  }
  return out;
}

void TracedRedis::describe(tr::Span& span, const redisx::RedisClient& client, const std::vector<std::string>& args) {
  if (!span.recording()) {
    return;
  }
  const redisx::RedisEndpoint& ep = client.endpoint();
  const std::string op = args.empty() ? std::string() : upper(args[0]);
  const std::string db = std::to_string(ep.db);
  span.setName(op.empty() ? "redis " + db : op + " " + db)
      .setString(tr::attr::kDbSystem, "redis")
      .setString(tr::attr::kDbOperationName, op)
      .setString(tr::attr::kDbQueryText, queryText(args))
      .setString(tr::attr::kDbNamespace, db);
  if (!ep.unixPath.empty()) {
    span.setString(tr::attr::kServerAddress, ep.unixPath);
  } else {
    span.setString(tr::attr::kServerAddress, ep.host).setInt(tr::attr::kServerPort, ep.port);
  }
}

void TracedRedis::recordResult(tr::Span& span, const redisx::RedisResult& result) {
  if (!span.recording() || result.ok()) {
    return;
  }
  if (result.error == redisx::RedisErrorKind::ServerError) {
    // An error reply starts with its kind ("WRONGTYPE Operation against a key..."); the rest may
    // quote data, so only the prefix is kept.
    std::string_view prefix = result.errorMessage;
    prefix = prefix.substr(0, std::min(prefix.find(' '), size_t{32}));
    const std::string_view type = prefix.empty() ? std::string_view("server_error") : prefix;
    span.setString(tr::attr::kDbResponseStatusCode, type).setString(tr::attr::kErrorType, type);
    span.setError(type);
    return;
  }
  tr::setSpanFailure(span, failureType(result.error));
}

void TracedRedis::command(std::vector<std::string> args, Callback cb) {
  send(std::move(args), std::chrono::milliseconds(0), std::move(cb));
}

void TracedRedis::command(std::vector<std::string> args, std::chrono::milliseconds timeout, Callback cb) {
  send(std::move(args), timeout, std::move(cb));
}

void TracedRedis::send(std::vector<std::string> args, std::chrono::milliseconds timeout, Callback cb) {
  tr::SpanParent parent = tr::SpanParent::current();
  auto issue = [this, timeout](std::vector<std::string> a, Callback c) {
    if (timeout.count() > 0) {
      client_->command(std::move(a), timeout, std::move(c));
    } else {
      client_->command(std::move(a), std::move(c));
    }
  };
  if (!parent.context().valid()) {
    issue(std::move(args), std::move(cb));
    return;
  }
  auto pending = std::make_shared<Pending>();
  if (parent.recording()) {
    pending->span = parent.startChild("redis", tr::SpanKind::Client);
    describe(pending->span, *client_, args);
  }
  pending->parent = std::move(parent);
  pending->cb = std::move(cb);
  issue(std::move(args), [pending](redisx::RedisResult r) {
    recordResult(pending->span, r);
    pending->span.end();
    Callback c = std::move(pending->cb);
    pending->cb = nullptr;
    if (c) {
      tr::CurrentSpanScope scope(pending->parent);
      c(std::move(r));
    }
  });
}

}  // namespace app
