// The block IO probe's counts of one tick, passed on to the collectors that
// attribute IO further (volumes). The blockio collector fills it on every
// tick it drains its map; collectors after it in collector_factories()
// order read it in the same tick.
#pragma once

#include <linux/types.h>

#include <cstdint>
#include <vector>

#include "bpf/blockio.h"

namespace nodeperf {

struct BlockIoCount {
  np_block_key key;  // cgroup of the submitter, device (partition or disk), op, kind, bucket
  uint64_t count = 0;
  uint64_t sum = 0;  // ns for latency and queue time, bytes for sizes
};

struct BlockFeed {
  uint64_t ticks = 0;                // ticks drained so far; `counts` are the latest one's
  std::vector<BlockIoCount> counts;  // what grew in that tick
};

}  // namespace nodeperf
