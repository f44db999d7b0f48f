#pragma once
// The Redis side of the gateway's rate limits (CONTRACT §4): one Lua script per algorithm, each
// called once per request with EVALSHA, so a decision is one atomic round trip shared by every
// gateway replica.
//
// Calling convention (both scripts):
//   EVALSHA <sha1> 1 <key> <limit> <window_ms>
//     key        one Redis key per (rule, client), e.g. "rl:{rule name}:{client key}"; the script
//                keeps a small hash there and sets its expiry (PEXPIRE) to the moment the state
//                becomes equivalent to a missing key, so idle clients vanish by themselves.
//     limit      requests per window, >= 1
//     window_ms  the window in milliseconds, >= 1
//   reply: array of 4 integers {allowed (1|0), remaining, reset_ms, retry_after_ms}; turn it into
//   a RateLimitDecision with decisionFromScriptReply(limit, ...) (rate_limit.h).
//   Load once with SCRIPT LOAD (the reply is the SHA1 to use); on a NOSCRIPT error (Redis
//   restarted or SCRIPT FLUSH) load again and retry once.
//
// Time: `now` is redis.call('TIME') on the Redis server, never the caller's clock, so replicas with
// skewed clocks share one timeline. Scripts that read TIME before writing are replicated by
// effects (the default since Redis 5, the only mode in Redis 7); redis.replicate_commands() is
// called when present so Redis 3.2-4 also accept the write.
//
// The arithmetic is exactly that of TokenBucket::decide / SlidingWindow::decide (token_bucket.h,
// sliding_window.h) on integer milliseconds: Lua numbers are doubles, exact for integers below
// 2^53, hence the limit * window_ms < 2^53 requirement in rate_limit.h. Counters are stored with
// string.format('%d') so they stay plain integers in the hash. A script error (bad arguments,
// wrong key type) comes back as a Redis error reply: treat it like Redis being unavailable.
#include <string_view>

namespace algo {

// Hash fields: level (units: one token = window_ms units, capacity = limit * window_ms, each ms
// adds `limit` units) and ts (ms of the last refill).
inline constexpr std::string_view kTokenBucketScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local limit = math.max(1, math.floor(tonumber(ARGV[1])))
local window = math.max(1, math.floor(tonumber(ARGV[2])))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = limit * window
local s = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level = tonumber(s[1])
local last = tonumber(s[2])
if level == nil or last == nil then
  level = capacity
  last = now
end
if now > last then
  level = math.min(capacity, level + math.min(now - last, window) * limit)
  last = now
end
local allowed = 0
local retry = 0
if level >= window then
  allowed = 1
  level = level - window
else
  retry = math.ceil((window - level) / limit)
end
local reset = math.ceil((capacity - level) / limit)
redis.call('HSET', KEYS[1], 'level', string.format('%d', level), 'ts', string.format('%d', last))
redis.call('PEXPIRE', KEYS[1], math.max(1, reset))
return {allowed, math.floor(level / window), reset, retry}
)lua";

// Hash fields: w (index of the current fixed window, floor(ms / window_ms)), curr and prev (allowed
// requests in the current and previous fixed windows). See sliding_window.h for the estimate and
// its error bound.
inline constexpr std::string_view kSlidingWindowScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local limit = math.max(1, math.floor(tonumber(ARGV[1])))
local window = math.max(1, math.floor(tonumber(ARGV[2])))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = math.floor(now / window)
local s = redis.call('HMGET', KEYS[1], 'w', 'curr', 'prev')
local w = tonumber(s[1])
local curr = tonumber(s[2]) or 0
local prev = tonumber(s[3]) or 0
if w == nil then
  w = index
  curr = 0
  prev = 0
end
if index == w + 1 then
  prev = curr
  curr = 0
  w = index
elseif index > w + 1 then
  prev = 0
  curr = 0
  w = index
elseif index < w then
  index = w
  now = index * window
end
local left = window - (now - index * window)
local prevWeight = prev * left
local allowed = 0
local retry = 0
if prevWeight + (curr + 1) * window <= limit * window then
  allowed = 1
  curr = curr + 1
elseif curr + 1 <= limit then
  retry = math.ceil((prevWeight - (limit - curr - 1) * window) / prev)
else
  retry = left + math.ceil((curr * window - (limit - 1) * window) / curr)
end
local remaining = math.max(0, math.floor((limit * window - prevWeight - curr * window) / window))
local reset = 0
if curr > 0 then
  reset = left + window
elseif prev > 0 then
  reset = left
end
redis.call('HSET', KEYS[1], 'w', string.format('%d', w), 'curr', string.format('%d', curr), 'prev', string.format('%d', prev))
redis.call('PEXPIRE', KEYS[1], left + window)
return {allowed, remaining, reset, retry}
)lua";

// The script for a config `algorithm` value ("token_bucket" | "sliding_window"); empty otherwise.
inline std::string_view rateLimitScriptFor(std::string_view algorithm) {
  if (algorithm == "token_bucket") {
    return kTokenBucketScript;
  }
  if (algorithm == "sliding_window") {
    return kSlidingWindowScript;
  }
  return {};
}

}  // namespace algo
