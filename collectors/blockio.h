// Block IO latency, queue time and size per disk and op, from the
// block_rq_insert, block_rq_issue and block_rq_complete tracepoints
// (bpf/blockio.bpf.c).
#pragma once

#include "collectors/collector.h"

namespace nodeperf {

extern const CollectorFactory kBlockioCollector;

}  // namespace nodeperf
