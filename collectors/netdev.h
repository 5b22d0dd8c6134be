// /proc/net/dev: per interface receive and transmit counters.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "collectors/collector.h"

namespace nodeperf {

struct NetDevStats {
  std::string device;
  std::array<uint64_t, 16> counters{};  // 8 receive, then 8 transmit columns
};

std::vector<NetDevStats> parse_netdev(std::string_view text, Problems& problems);

extern const CollectorFactory kNetdevCollector;

}  // namespace nodeperf
