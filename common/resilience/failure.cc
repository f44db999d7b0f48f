#include "common/resilience/failure.h"

namespace resilience {

bool FailureSet::add(std::string_view entry) {
  if (entry == "connect_failure") {
    connectFailure_ = true;
    return true;
  }
  if (entry == "reset") {
    reset_ = true;
    return true;
  }
  if (entry == "timeout") {
    timeout_ = true;
    return true;
  }
  if (entry == "5xx") {
    statuses_.set();
    return true;
  }
  if (entry.size() == 3 && entry[0] == '5' && entry[1] >= '0' && entry[1] <= '9' && entry[2] >= '0' &&
      entry[2] <= '9') {
    statuses_.set(static_cast<size_t>((entry[1] - '0') * 10 + (entry[2] - '0')));
    return true;
  }
  return false;
}

std::optional<FailureSet> FailureSet::parse(const std::vector<std::string>& entries, std::string* bad) {
  FailureSet set;
  for (const auto& e : entries) {
    if (!set.add(e)) {
      if (bad != nullptr) {
        *bad = e;
      }
      return std::nullopt;
    }
  }
  return set;
}

FailureSet FailureSet::breakerDefault() {
  FailureSet set;
  set.connectFailure_ = true;
  set.reset_ = true;
  set.timeout_ = true;
  set.statuses_.set();
  return set;
}

bool FailureSet::matches(FailureKind kind, int status) const {
  switch (kind) {
    case FailureKind::ConnectFailure:
      return connectFailure_;
    case FailureKind::Reset:
      return reset_;
    case FailureKind::Timeout:
      return timeout_;
    case FailureKind::None:
      break;
  }
  if (status < 500 || status > 599) {
    return false;
  }
  return statuses_.test(static_cast<size_t>(status - 500));
}

bool isIdempotentMethod(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" || method == "DELETE";
}

bool retryAllowed(const FailureSet& retryOn, std::string_view method, FailureKind kind, int status,
                  bool downstreamStarted, bool requestReplayable) {
  if (downstreamStarted || !requestReplayable) {
    return false;
  }
  // A connect failure means the app never saw the request, so even a POST would be safe to resend;
  // the contract still restricts retries to idempotent methods, and we keep to it.
  if (!isIdempotentMethod(method)) {
    return false;
  }
  return retryOn.matches(kind, status);
}

}  // namespace resilience
