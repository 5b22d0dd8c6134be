// /proc/loadavg: 1, 5 and 15 minute load averages.
#pragma once

#include <array>
#include <optional>
#include <string_view>

#include "collectors/collector.h"

namespace nodeperf {

std::optional<std::array<double, 3>> parse_loadavg(std::string_view text);

extern const CollectorFactory kLoadavgCollector;

}  // namespace nodeperf
