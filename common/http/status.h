#pragma once
#include <string>
#include <string_view>

namespace http {

std::string_view reasonPhrase(int status);
// JSON error body used for every reply the proxy makes itself: {"error":"...","request_id":"..."}.
std::string jsonErrorBody(std::string_view message, std::string_view requestId);
// Appends `s` to `out` as the inside of a JSON string literal.
void appendJsonEscaped(std::string& out, std::string_view s);

}  // namespace http
