// /proc/vmstat: page faults, paging and swapping, OOM kills.
#pragma once

#include <string_view>

#include "collectors/collector.h"

namespace nodeperf {

extern const CollectorFactory kVmstatCollector;

}  // namespace nodeperf
