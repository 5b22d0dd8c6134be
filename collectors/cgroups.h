// Per-cgroup CPU, memory, IO, PSI and pids figures from cgroupfs, for cgroup
// v2, v1 and the hybrid layout (v1 controllers plus v2 at `unified`).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "collectors/collector.h"

namespace nodeperf {

// One device's line of io.stat (v2) or of blkio's two files (v1).
struct CgroupDeviceIo {
  uint32_t major = 0, minor = 0;
  uint64_t read_bytes = 0, written_bytes = 0, reads = 0, writes = 0;
};

// "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" lines; nullopt if malformed.
std::optional<std::vector<CgroupDeviceIo>> parse_io_stat(std::string_view text);
// blkio.throttle.io_service_bytes_recursive and io_serviced_recursive
// ("8:0 Read 4096" lines and a closing "Total N"); nullopt if malformed.
std::optional<std::vector<CgroupDeviceIo>> parse_blkio(std::string_view bytes, std::string_view ios);

// A limit file (memory.max, pids.max, memory.limit_in_bytes): the limit, or
// nullopt for "no limit" ("max", or v1's page-counter maximum). Throws
// nothing; `bad` is set for anything else that is not a number.
std::optional<uint64_t> parse_cgroup_limit(std::string_view text, bool& bad);

extern const CollectorFactory kCgroupsCollector;

}  // namespace nodeperf
