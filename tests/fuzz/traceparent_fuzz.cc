// libFuzzer target: W3C Trace Context parsing (common/obs/trace/context.h): the `traceparent`
// and `tracestate` values of every incoming request.
//
// Input: two '\n'-separated fields: traceparent, tracestate.
//
// Properties:
//  - a rejected traceparent leaves the output untouched; an accepted one is valid (non-zero ids),
//    its version-00 fields are lowercase hex, and formatting it gives 55 chars that parse back to
//    the same trace id, span id and sampled bit;
//  - a tracestate is kept by extractParent only next to a valid traceparent and only when
//    validTracestate accepts it, and an accepted one is at most 512 chars and 32 members.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/http/headers.h"
#include "common/obs/trace/context.h"
#include "tests/fuzz/fuzz_support.h"

namespace tr = obs::trace;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4 * 1024) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view traceparent = fuzz::nextField(rest, '\n');
  const std::string_view tracestate = fuzz::nextField(rest, '\n');

  tr::SpanContext out;
  out.traceId = {0x1111, 0x2222};
  out.spanId = {0x3333};
  out.flags = 0x7e;
  const tr::SpanContext sentinel = out;
  const bool ok = tr::parseTraceparent(traceparent, out);
  const std::string what = "traceparent " + fuzz::quote(traceparent);
  if (!ok) {
    FUZZ_CHECK(out.traceId == sentinel.traceId && out.spanId == sentinel.spanId && out.flags == sentinel.flags,
               "a rejected traceparent changed the output: " + what);
  } else {
    FUZZ_CHECK(out.valid(), "accepted traceparent with a zero id: " + what);
    const std::string_view trimmed = http::trim(traceparent);
    FUZZ_CHECK(trimmed.size() >= tr::kTraceparentLength, "accepted a short traceparent: " + what);
    const std::string_view fields = trimmed.substr(0, tr::kTraceparentLength);
    FUZZ_CHECK(std::none_of(fields.begin(), fields.end(), [](char c) { return c >= 'A' && c <= 'F'; }),
               "accepted upper-case hex: " + what);
    FUZZ_CHECK(fields.substr(0, 2) != "ff", "accepted version ff: " + what);
    const tr::TraceparentText text = tr::formatTraceparent(out);
    tr::SpanContext back;
    FUZZ_CHECK(tr::parseTraceparent(text.view(), back), "formatted traceparent does not parse: " +
                                                            fuzz::quote(text.view()) + " from " + what);
    FUZZ_CHECK(back.traceId == out.traceId && back.spanId == out.spanId && back.sampled() == out.sampled(),
               "traceparent does not round-trip: " + what + " -> " + fuzz::quote(text.view()));
    FUZZ_CHECK(text.view().substr(0, 3) == "00-", "formatted a version other than 00: " + fuzz::quote(text.view()));
  }

  const bool stateOk = tr::validTracestate(tracestate);
  if (stateOk) {
    FUZZ_CHECK(tracestate.size() <= tr::kMaxTracestateLength, "accepted a tracestate over 512 chars");
    const size_t members = static_cast<size_t>(std::count(tracestate.begin(), tracestate.end(), ',')) + 1;
    size_t nonEmpty = 0;
    std::string_view list = tracestate;
    for (size_t i = 0; i < members; ++i) {
      if (!http::trim(fuzz::nextField(list, ',')).empty()) {
        ++nonEmpty;
      }
    }
    FUZZ_CHECK(nonEmpty <= tr::kMaxTracestateMembers, "accepted more than 32 tracestate members: " +
                                                          fuzz::quote(tracestate));
  }
  const tr::ParentContext parent = tr::extractParent(traceparent, tracestate);
  FUZZ_CHECK(parent.valid() == ok, "extractParent disagrees with parseTraceparent: " + what);
  if (!parent.tracestate.empty()) {
    FUZZ_CHECK(ok && stateOk, "tracestate kept without a valid traceparent or while invalid: " +
                                  fuzz::quote(tracestate));
  }
  return 0;
}
