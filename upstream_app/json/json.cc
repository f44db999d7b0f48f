#include "upstream_app/json/json.h"

namespace app::json {

std::string errorBody(std::string_view message, std::string_view requestId, std::string_view field) {
  Buffer buf;
  Writer w(buf);
  w.StartObject();
  key(w, "error");
  string(w, message);
  if (!field.empty()) {
    key(w, "field");
    string(w, field);
  }
  key(w, "request_id");
  string(w, requestId);
  w.EndObject();
  return std::string(view(buf));
}

}  // namespace app::json
