// The cgroupfs parsers. The first byte picks the file, the rest is its text:
// 0 io.stat (v2), 1 blkio's io_service_bytes and io_serviced (v1: the two
// files, split at the first NUL), 2 a limit file (memory.max, pids.max,
// memory.limit_in_bytes). PSI files go through parse_pressure (fuzz_procfs).
#include <cstdint>
#include <string_view>

#include "collectors/cgroups.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: nodeperf::parse_io_stat(text); break;
    case 1: {
      size_t nul = text.find('\0');
      std::string_view bytes = text.substr(0, nul);
      std::string_view ios = nul == std::string_view::npos ? std::string_view() : text.substr(nul + 1);
      nodeperf::parse_blkio(bytes, ios);
      break;
    }
    case 2: {
      bool bad = false;
      nodeperf::parse_cgroup_limit(text, bad);
      break;
    }
  }
  return 0;
}
