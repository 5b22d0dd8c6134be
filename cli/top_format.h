// Units for `nodeperf top`: every formatter returns a string of a fixed
// width (right-aligned), so columns line up whatever the value. A missing
// value (NaN) prints as "-".
#pragma once

#include <string>

namespace nodeperf::top {

// 1536 -> "1.5K", 3e9 -> "2.8G" (powers of 1024).
std::string format_bytes(double bytes, int width = 6);
// Bytes per second, as format_bytes with no unit suffix beyond the prefix.
std::string format_byte_rate(double bytes_per_second, int width = 6);
// Events per second: 0.5 -> "0.5", 3 -> "3", 12345 -> "12.3k" (powers of 1000).
std::string format_rate(double per_second, int width = 6);
// A percentage with one decimal: 42.25 -> "42.3%"; 100 -> "100%".
std::string format_percent(double percent, int width = 6);
// Seconds in the best unit: 0.000012 -> "12us", 0.0034 -> "3.4ms", 2 -> "2.0s".
std::string format_duration(double seconds, int width = 6);
// A plain number with up to two decimals, trimmed to width.
std::string format_number(double value, int width = 6);
// "2025-11-28 21:00:00" in local time.
std::string format_clock(double unix_seconds);
// An age such as "5s", "2m05s", "1h02m".
std::string format_age(double seconds);

// Right-aligns (or left-aligns) s in width columns; longer strings are cut.
std::string pad_left(const std::string& s, int width);
std::string pad_right(const std::string& s, int width);

}  // namespace nodeperf::top
