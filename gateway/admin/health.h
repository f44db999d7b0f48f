#pragma once
#include <string_view>

#include "common/http/server.h"
#include "gateway/runtime.h"

namespace gateway {

// Answers /healthz and /readyz (CONTRACT §4) when `path` is one of them; returns false otherwise.
// Both listeners use it; these requests are never forwarded, limited or counted as in flight.
bool serveHealth(std::string_view path, http::ServerConnection& c, const Runtime& rt);

}  // namespace gateway
