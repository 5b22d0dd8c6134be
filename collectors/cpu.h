// /proc/stat: CPU time per cpu and mode, context switches, forks, processes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collectors/collector.h"

namespace nodeperf {

struct CpuTimes {
  std::string cpu;  // "0", "1", ...
  // user nice system idle iowait irq softirq steal guest guest_nice, in
  // USER_HZ ticks; older kernels have fewer columns.
  std::array<uint64_t, 10> ticks{};
  size_t columns = 0;
};

struct ProcStat {
  std::vector<CpuTimes> cpus;
  std::optional<uint64_t> intr, ctxt, btime, processes, procs_running, procs_blocked;
};

ProcStat parse_proc_stat(std::string_view text, Problems& problems);

extern const CollectorFactory kCpuCollector;

}  // namespace nodeperf
