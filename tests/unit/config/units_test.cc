// Duration and size literals of the config file (common/util/units.h).

#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "common/util/units.h"

namespace {

struct DurationCase {
  const char* text;
  std::optional<int64_t> ms;  // nullopt = rejected
};

const DurationCase kDurations[] = {
    {"250ms", 250},  {"5s", 5000},       {"30m", 1800000}, {"1h", 3600000}, {"1.5s", 1500},
    {"0s", 0},       {"0.25m", 15000},   {"10.000s", 10000},
    {"5", std::nullopt},      // bare number: the unit is never guessed
    {"0", std::nullopt},      {"", std::nullopt},     {"fast", std::nullopt}, {"5 s", std::nullopt},
    {"-1s", std::nullopt},    {"1us", std::nullopt},  {"1d", std::nullopt},   {"0.5ms", std::nullopt},
    {"1.s", std::nullopt},    {".5s", std::nullopt},  {"5S", std::nullopt},   {"1e3ms", std::nullopt},
    {"99999999999999999999s", std::nullopt},
};

struct SizeCase {
  const char* text;
  std::optional<uint64_t> bytes;
};

const SizeCase kSizes[] = {
    {"512", 512},           {"512B", 512},           {"16KiB", 16384},         {"5MiB", 5242880},
    {"1GiB", 1073741824},   {"1.5MiB", 1572864},     {"0", 0},                 {"2TiB", 2199023255552ull},
    {"5MB", std::nullopt},  {"16KB", std::nullopt},  {"1k", std::nullopt},     {"1.1B", std::nullopt},
    {"-1", std::nullopt},   {"", std::nullopt},      {"KiB", std::nullopt},    {"16 KiB", std::nullopt},
    {"99999999999GiB", std::nullopt},
};

}  // namespace

TEST_CASE("config units: durations") {
  for (const DurationCase& c : kDurations) {
    CAPTURE(c.text);
    std::optional<units::Duration> parsed = units::parseDuration(c.text);
    REQUIRE(parsed.has_value() == c.ms.has_value());
    if (c.ms) {
      CHECK(parsed->count() == *c.ms);
    }
  }
}

TEST_CASE("config units: sizes") {
  for (const SizeCase& c : kSizes) {
    CAPTURE(c.text);
    std::optional<uint64_t> parsed = units::parseSize(c.text);
    REQUIRE(parsed.has_value() == c.bytes.has_value());
    if (c.bytes) {
      CHECK(*parsed == *c.bytes);
    }
  }
}

TEST_CASE("config units: formatting round-trips with the largest exact unit") {
  using units::Duration;
  CHECK(units::formatDuration(Duration{0}) == "0s");
  CHECK(units::formatDuration(Duration{250}) == "250ms");
  CHECK(units::formatDuration(Duration{1500}) == "1500ms");
  CHECK(units::formatDuration(Duration{90000}) == "90s");
  CHECK(units::formatDuration(Duration{1800000}) == "30m");
  CHECK(units::formatDuration(Duration{7200000}) == "2h");
  CHECK(units::formatDuration(Duration{-5000}) == "-5s");
  CHECK(units::formatSize(0) == "0");
  CHECK(units::formatSize(1000) == "1000");
  CHECK(units::formatSize(16384) == "16KiB");
  CHECK(units::formatSize(5242880) == "5MiB");
  for (int64_t ms : {1, 999, 1000, 61000, 3600000, 86400000}) {
    CHECK(units::parseDuration(units::formatDuration(Duration{ms}))->count() == ms);
  }
}
