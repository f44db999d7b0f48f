#pragma once

// Duration and size literals as written in conf/app.yaml (CONTRACT §3).
// Pure functions, no exceptions: a value that does not parse gives nullopt.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace units {

using Duration = std::chrono::milliseconds;

// "250ms", "5s", "30m", "1h", "1.5s", "0s". Units: ms, s, m, h. The number may
// have a decimal part but the result must be a whole number of milliseconds
// ("0.5ms" is rejected). A bare number ("5") is rejected on purpose: the unit
// is never guessed. Negative values, spaces and unknown units are rejected.
std::optional<Duration> parseDuration(std::string_view text);

// "512" (bytes), "512B", "16KiB", "5MiB", "1GiB", "1TiB", "1.5MiB". Suffixes
// are 1024-based only; decimal SI suffixes (KB, MB, k, M...) are rejected so
// that "1MB" can never silently mean 1000000 or 1048576 bytes. The result must
// be a whole number of bytes and fit in 64 bits.
std::optional<uint64_t> parseSize(std::string_view text);

// Inverse of parseDuration using the largest unit that divides the value
// exactly: 3600000ms -> "1h", 90000ms -> "90s", 1500ms -> "1500ms", 0 -> "0s".
std::string formatDuration(Duration d);

// Inverse of parseSize with the largest exact binary unit: 5242880 -> "5MiB",
// 1000 -> "1000".
std::string formatSize(uint64_t bytes);

}  // namespace units
