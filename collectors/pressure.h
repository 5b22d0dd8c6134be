// /proc/pressure/{cpu,memory,io}: pressure stall information (PSI).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "collectors/collector.h"

namespace nodeperf {

struct PressureTotals {
  std::optional<uint64_t> some_us, full_us;  // total stall time, microseconds
};

// Returns nullopt when the text is not PSI format at all.
std::optional<PressureTotals> parse_pressure(std::string_view text);

extern const CollectorFactory kPressureCollector;

}  // namespace nodeperf
