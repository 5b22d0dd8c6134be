// Run-queue latency from the sched_switch tracepoint and the scheduler's
// own sched_info accounting (bpf/runqlat.bpf.c): per node, and per cgroup.
#pragma once

#include "collectors/collector.h"

namespace nodeperf {

extern const CollectorFactory kRunqueueCollector;

}  // namespace nodeperf
