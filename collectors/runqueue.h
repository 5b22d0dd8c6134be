// Run-queue latency from the sched_wakeup, sched_wakeup_new and
// sched_switch tracepoints (bpf/runqlat.bpf.c): per node, and per cgroup.
#pragma once

#include "collectors/collector.h"

namespace nodeperf {

extern const CollectorFactory kRunqueueCollector;

}  // namespace nodeperf
