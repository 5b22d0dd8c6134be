// The agent's own process: CPU, memory, file descriptors (the standard
// process_* metrics of Prometheus clients).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "collectors/collector.h"

namespace nodeperf {

struct ProcessStat {
  uint64_t utime_ticks = 0, stime_ticks = 0, start_ticks = 0;
  uint64_t vsize_bytes = 0, rss_pages = 0;
};

// /proc/<pid>/stat; the command name may hold spaces and parentheses.
std::optional<ProcessStat> parse_process_stat(std::string_view text);

extern const CollectorFactory kProcessCollector;

}  // namespace nodeperf
