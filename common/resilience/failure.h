#pragma once
// What a failed upstream try was, and the two decisions taken from it: may it be retried
// (retry.retry_on + the idempotency and "no byte sent downstream yet" rules of CONTRACT §4), and
// does it count against the circuit breaker (connect errors, timeouts, resets, 5xx by default).
// Pure functions; no I/O.
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace resilience {

// How a try ended at the transport level. None = an HTTP response head arrived (look at status).
enum class FailureKind : uint8_t {
  None,
  ConnectFailure,  // refused, unreachable, connect timeout, DNS failure: nothing reached the app
  Reset,           // connection closed/reset before a complete response head
  Timeout,         // read_timeout / write_timeout while waiting for the response
};

// A set of failure conditions as written in retry.retry_on: connect_failure | reset | timeout |
// 5xx (any 500-599) | a 3-digit 5xx code such as "503".
class FailureSet {
 public:
  FailureSet() = default;

  // nullopt when an entry is not one of the above; *bad names it. The config loader has already
  // validated retry_on, so for loaded config this always succeeds.
  static std::optional<FailureSet> parse(const std::vector<std::string>& entries, std::string* bad = nullptr);

  // The circuit breaker's default notion of failure: connect_failure, reset, timeout, 5xx.
  static FailureSet breakerDefault();

  // kind != None: whether that transport failure is in the set; kind == None: whether `status` is.
  bool matches(FailureKind kind, int status) const;

  bool add(std::string_view entry);

 private:
  bool connectFailure_ = false;
  bool reset_ = false;
  bool timeout_ = false;
  std::bitset<100> statuses_;  // bit i = status 500 + i
};

// GET, HEAD, OPTIONS, PUT, DELETE (CONTRACT §4; case-sensitive, as methods are). TRACE is
// idempotent by RFC 9110 but never proxied with retries here.
bool isIdempotentMethod(std::string_view method);

// The whole retry rule for one failed try. `downstreamStarted`: some byte of the response already
// went to the client (then the client would see two responses spliced: never retry).
// `requestReplayable`: the request body (if any) is still held in full so it can be sent again.
bool retryAllowed(const FailureSet& retryOn, std::string_view method, FailureKind kind, int status,
                  bool downstreamStarted, bool requestReplayable);

}  // namespace resilience
