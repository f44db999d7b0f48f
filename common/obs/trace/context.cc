#include "common/obs/trace/context.h"

namespace obs::trace {
namespace {

bool isOws(char c) { return c == ' ' || c == '\t'; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isOws(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

bool isLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

int lowerHexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

bool isLcAlpha(char c) { return c >= 'a' && c <= 'z'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isKeyChar(char c) { return isLcAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '*' || c == '/'; }

// key = lcalpha 0*255(keychar)  /  (lcalpha / DIGIT) 0*240(keychar) "@" lcalpha 0*13(keychar)
bool validKey(std::string_view key) {
  const size_t at = key.find('@');
  if (at == std::string_view::npos) {
    if (key.empty() || key.size() > 256 || !isLcAlpha(key[0])) {
      return false;
    }
    for (char c : key.substr(1)) {
      if (!isKeyChar(c)) {
        return false;
      }
    }
    return true;
  }
  const std::string_view tenant = key.substr(0, at);
  const std::string_view system = key.substr(at + 1);
  if (tenant.empty() || tenant.size() > 241 || !(isLcAlpha(tenant[0]) || isDigit(tenant[0]))) {
    return false;
  }
  if (system.empty() || system.size() > 14 || !isLcAlpha(system[0])) {
    return false;
  }
  for (char c : tenant.substr(1)) {
    if (!isKeyChar(c)) {
      return false;
    }
  }
  for (char c : system.substr(1)) {
    if (!isKeyChar(c)) {  // also refuses a second '@'
      return false;
    }
  }
  return true;
}

// value = 0*255(chr) nblk-chr ; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E ; chr = %x20 / nblk-chr
bool validValue(std::string_view value) {
  if (value.empty() || value.size() > 256) {
    return false;
  }
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7E || c == ',' || c == '=') {
      return false;
    }
  }
  return value.back() != ' ';
}

}  // namespace

bool parseTraceparent(std::string_view value, SpanContext& out) {
  const std::string_view v = trimOws(value);
  if (v.size() < kTraceparentLength) {
    return false;
  }
  if (!isLowerHex(v[0]) || !isLowerHex(v[1])) {
    return false;
  }
  const int version = lowerHexValue(v[0]) * 16 + lowerHexValue(v[1]);
  if (version == 0xFF) {
    return false;  // forbidden version
  }
  if (version == 0 && v.size() != kTraceparentLength) {
    return false;  // version 00 has exactly four fields
  }
  if (version > 0 && v.size() > kTraceparentLength && v[kTraceparentLength] != '-') {
    return false;  // a future version's extra fields must start with '-'
  }
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') {
    return false;
  }
  SpanContext ctx;
  if (!parseHex(v.substr(3, 32), ctx.traceId) || !ctx.traceId.valid()) {
    return false;
  }
  if (!parseHex(v.substr(36, 16), ctx.spanId) || !ctx.spanId.valid()) {
    return false;
  }
  if (!isLowerHex(v[53]) || !isLowerHex(v[54])) {
    return false;
  }
  const int flags = lowerHexValue(v[53]) * 16 + lowerHexValue(v[54]);
  // Only the bits we understand travel on: for version 00 that is the sampled bit.
  ctx.flags = static_cast<uint8_t>(flags & kFlagSampled);
  out = ctx;
  return true;
}

TraceparentText formatTraceparent(const SpanContext& context) {
  TraceparentText t;
  char* p = t.text;
  p[0] = '0';
  p[1] = '0';
  p[2] = '-';
  writeHex(context.traceId, p + 3);
  p[35] = '-';
  writeHex(context.spanId, p + 36);
  p[52] = '-';
  p[53] = '0';
  p[54] = context.sampled() ? '1' : '0';
  p[55] = '\0';
  return t;
}

bool validTracestate(std::string_view value) {
  if (value.size() > kMaxTracestateLength) {
    return false;
  }
  std::string_view keys[kMaxTracestateMembers];
  size_t members = 0;
  std::string_view rest = value;
  for (;;) {
    const size_t comma = rest.find(',');
    const std::string_view member = trimOws(rest.substr(0, comma));
    if (!member.empty()) {
      const size_t eq = member.find('=');
      if (eq == std::string_view::npos || members == kMaxTracestateMembers) {
        return false;
      }
      const std::string_view key = member.substr(0, eq);
      if (!validKey(key) || !validValue(member.substr(eq + 1))) {
        return false;
      }
      for (size_t i = 0; i < members; ++i) {
        if (keys[i] == key) {
          return false;  // duplicate keys make the whole list invalid
        }
      }
      keys[members++] = key;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(comma + 1);
  }
  return true;
}

ParentContext extractParent(std::string_view traceparent, std::string_view tracestate) {
  ParentContext p;
  if (traceparent.empty() || !parseTraceparent(traceparent, p.span)) {
    return p;
  }
  const std::string_view ts = trimOws(tracestate);
  if (!ts.empty() && validTracestate(ts)) {
    p.tracestate = ts;
  }
  return p;
}

}  // namespace obs::trace
