#include "collectors/collector.h"

#include "collectors/blockio.h"
#include "collectors/cgroups.h"
#include "collectors/cpu.h"
#include "collectors/diskstats.h"
#include "collectors/loadavg.h"
#include "collectors/meminfo.h"
#include "collectors/netdev.h"
#include "collectors/netstat.h"
#include "collectors/pressure.h"
#include "collectors/process.h"
#include "collectors/runqueue.h"
#include "collectors/tcp.h"
#include "collectors/vmstat.h"
#include "collectors/volumes.h"

namespace nodeperf {

std::span<const CollectorFactory> collector_factories() {
  static const CollectorFactory factories[] = {
      kBlockioCollector,
      kCgroupsCollector,
      kCpuCollector,
      kDiskstatsCollector,
      kLoadavgCollector,
      kMeminfoCollector,
      kNetdevCollector,
      kNetstatCollector,
      kPressureCollector,
      kProcessCollector,
      kRunqueueCollector,
      kTcpCollector,
      kVmstatCollector,
      kVolumesCollector,
  };
  return factories;
}

}  // namespace nodeperf
