#include "common/http/headers.h"

namespace http {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

bool headerListContains(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    if (iequals(item, token)) {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    list.remove_prefix(comma + 1);
  }
  return false;
}

Header& HeaderList::appendEmpty() {
  if (size_ == items_.size()) {
    items_.emplace_back();
  }
  Header& h = items_[size_++];
  h.name.clear();
  h.value.clear();
  return h;
}

void HeaderList::add(std::string_view name, std::string_view value) {
  Header& h = appendEmpty();
  h.name.assign(name);
  h.value.assign(value);
}

void HeaderList::set(std::string_view name, std::string_view value) {
  remove(name);
  add(name, value);
}

void HeaderList::remove(std::string_view name) {
  size_t kept = 0;
  for (size_t i = 0; i < size_; ++i) {
    if (iequals(items_[i].name, name)) {
      continue;
    }
    if (kept != i) {
      std::swap(items_[kept], items_[i]);  // swaps keep every string's capacity for reuse
    }
    ++kept;
  }
  size_ = kept;
}

const std::string* HeaderList::find(std::string_view name) const {
  for (size_t i = 0; i < size_; ++i) {
    if (iequals(items_[i].name, name)) {
      return &items_[i].value;
    }
  }
  return nullptr;
}

size_t HeaderList::count(std::string_view name) const {
  size_t n = 0;
  for (size_t i = 0; i < size_; ++i) {
    if (iequals(items_[i].name, name)) {
      ++n;
    }
  }
  return n;
}

bool isHopByHop(std::string_view name, std::string_view connectionValue) {
  // Called for every forwarded header in both directions: dispatch on the length first so a
  // typical header is ruled out with one comparison instead of eleven.
  bool listed = false;
  switch (name.size()) {
    case 2: listed = iequals(name, "te"); break;
    case 6: listed = iequals(name, "expect"); break;
    case 7: listed = iequals(name, "trailer") || iequals(name, "upgrade"); break;
    case 10: listed = iequals(name, "connection") || iequals(name, "keep-alive"); break;
    case 14: listed = iequals(name, "content-length"); break;
    case 16: listed = iequals(name, "proxy-connection"); break;
    case 17: listed = iequals(name, "transfer-encoding"); break;
    case 18: listed = iequals(name, "proxy-authenticate"); break;
    case 19: listed = iequals(name, "proxy-authorization"); break;
    default: break;
  }
  return listed || (!connectionValue.empty() && headerListContains(connectionValue, name));
}

}  // namespace http
