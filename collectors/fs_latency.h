// The file-system latency probe (bpf/fslatency.bpf.c), for volumes without
// a block device (NFS, CIFS, FUSE): the time of each read, write and fsync
// system call on a watched file system, per super block and v2 cgroup of
// the caller. Its programs run on every system call of the node, so they are
// attached only while some file system is watched: a node without such
// volumes pays nothing (docs/volumes.md).
#pragma once

#include <linux/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "agent/histogram.h"
#include "agent/snapshot.h"
#include "bpf/fslatency.h"

namespace nodeperf {

class FsLatencyProbe {
 public:
  FsLatencyProbe(const BucketLayout& layout, size_t window_ticks);
  ~FsLatencyProbe();
  FsLatencyProbe(const FsLatencyProbe&) = delete;
  FsLatencyProbe& operator=(const FsLatencyProbe&) = delete;

  // Times calls on these file systems (s_dev, kernel encoding) from now on:
  // loads the probe and attaches it for the first non-empty set, detaches
  // it for an empty one. After a failure (kept in error()) it tries again
  // no sooner than a minute later.
  void watch(const std::set<uint32_t>& devices);
  bool attached() const;
  const std::string& error() const;

  using Visit = std::function<void(const np_fs_key& key, uint64_t count, uint64_t sum_ns)>;
  // What the calls added since the last drain.
  void drain(const Visit& visit);
  // The programs' run counts and times, and the map drops, while attached.
  void emit_stats(SampleSink& out) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace nodeperf
