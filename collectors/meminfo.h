// /proc/meminfo: memory, swap, page cache, slab, huge pages.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "collectors/collector.h"

namespace nodeperf {

struct MeminfoField {
  std::string key;  // "Active_anon" for "Active(anon)"
  double value;     // bytes where the file says kB, else the plain number
  bool in_kb;       // the line had a kB unit
};

std::vector<MeminfoField> parse_meminfo(std::string_view text, Problems& problems);

extern const CollectorFactory kMeminfoCollector;

}  // namespace nodeperf
