// /proc/diskstats: per block device IO counters.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "collectors/collector.h"

namespace nodeperf {

struct DiskStats {
  uint32_t major = 0, minor = 0;
  std::string device;
  // The counters after the device name: 11 on every kernel, 15 with discards
  // (4.18+), 17 with flushes (5.5+).
  std::array<uint64_t, 17> stats{};
  size_t columns = 0;
};

std::vector<DiskStats> parse_diskstats(std::string_view text, Problems& problems);

extern const CollectorFactory kDiskstatsCollector;

// node_exporter's default (since 1.6, which adds zram): partitions, RAM
// disks and loop devices are left out.
inline constexpr std::string_view kDefaultDiskExclude = R"(^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$)";

}  // namespace nodeperf
