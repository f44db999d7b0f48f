// libFuzzer target: http::Parser reading responses (what an upstream sends the gateway's pool).
// Same driver and properties as http_parser_fuzz.cc; see there.
#define FUZZ_RESPONSES 1
#include "tests/fuzz/http_parser_fuzz.cc"
