// What every BPF collector shares: libbpf errors turned into one line with
// context, tp_btf probing, per-program statistics, and draining per-CPU
// histogram maps into deltas.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/cgroup_paths.h"
#include "agent/histogram.h"
#include "agent/snapshot.h"

namespace nodeperf {

// Thrown while a probe opens, loads or attaches; the collector turns it into
// "up 0" and one log line. Never thrown on the tick path.
class ProbeError : public std::runtime_error {
 public:
  // libbpf's negative errno, with the stage it failed at. The probe's name is
  // not repeated: the agent's log line and --probe.check put it in front.
  ProbeError(std::string_view stage, int err);
  // A reason of our own, found before loading.
  explicit ProbeError(const std::string& reason) : std::runtime_error(reason) {}
};

// Sends libbpf's own messages to our log at debug level: each probe that
// fails reports one line of its own, with the reason.
void route_libbpf_logs();

// Frees the kernel BTF parsed for tracepoint_has_btf(); call once the
// probes are loaded.
void release_kernel_btf();

// True if the running kernel's BTF describes this tracepoint, so a tp_btf
// program can attach to it; false means use the raw_tp program instead.
bool tracepoint_has_btf(const std::string& tracepoint);
// True if it does for every one of them.
bool tracepoints_have_btf(std::initializer_list<const char*> tracepoints);

// True if the running kernel's BTF has this struct with this member (false
// without BTF): for features a kernel config can leave out.
bool kernel_struct_has(const char* type, const char* member);

// The arguments of a tracepoint as its BTF declares them (without the
// leading context pointer), or -1 if the BTF does not describe it.
int tracepoint_arg_count(const std::string& tracepoint);

// Copies the bucket thresholds into a program's read-only data before load.
void set_thresholds(volatile __u64* table, const BucketLayout& layout);

// A skeleton, destroyed (programs unloaded, maps freed) with its owner.
template <typename Skel>
using SkeletonPtr = std::unique_ptr<Skel, void (*)(Skel*)>;

// Turns on the tp_btf programs if `use_btf`, else their raw_tp twins.
// Returns which it chose: tp_btf (true) unless NODEPERF_BPF_ATTACH=raw_tp.
bool choose_programs(bool use_btf, std::initializer_list<bpf_program*> tp_btf,
                     std::initializer_list<bpf_program*> raw_tp);

// The links of a loaded object: attaches every program whose autoload is on
// (throws ProbeError), detaches them all when destroyed. Declare it after
// the skeleton it came from, so it goes first.
class AttachedPrograms {
 public:
  AttachedPrograms(std::string_view probe, bpf_object* object);
  ~AttachedPrograms();
  AttachedPrograms(const AttachedPrograms&) = delete;
  AttachedPrograms& operator=(const AttachedPrograms&) = delete;

  // nodeperf_bpf_program_{attached,runs_total,run_seconds_total}.
  void emit_stats(SampleSink& out) const;
  std::string names() const;  // "btf_issue, btf_complete" for the log

 private:
  std::string probe_;
  std::vector<bpf_program*> programs_;
  std::vector<bpf_link*> links_;
};

// A probe collector's BPF side: the skeleton, its links, and why it is not
// running if it is not. The links go before the skeleton they came from.
template <typename Skel>
struct Probe {
  explicit Probe(void (*destroy)(Skel*)) : skel(nullptr, destroy) {}

  // Runs `load`; if a stage throws ProbeError, keeps its reason and drops
  // whatever was built, so the collector reports up 0 with that reason.
  template <typename Load>
  void start(Load&& load) {
    try {
      load();
    } catch (const ProbeError& e) {
      error = e.what();
      attached.reset();
      skel.reset();
    }
  }
  bool running() const { return attached.has_value(); }

  // For probes built with bpf/sampling.h: counts 1 sampled event in
  // `one_in` from now on. What is drained next is scaled by it: the events
  // counted between the last drain and this call are a tick's sliver.
  void sample(unsigned one_in) {
    sample_one_in = one_in;
    if (running()) skel->bss->np_sample_mask = one_in - 1;
  }
  unsigned sample_one_in = 1;

  SkeletonPtr<Skel> skel;
  std::optional<AttachedPrograms> attached;  // declared after skel: destroyed first
  std::string error;
};


// nodeperf_bpf_map_drops_total{probe,map} from a per-CPU array of u64
// drop counters, slot i counting the drops of maps[i].
void emit_map_drops(SampleSink& out, std::string_view probe, int drops_fd,
                    std::initializer_list<std::string_view> maps);

// Drains a per-CPU hash map whose values are np_hist_value: sums each key
// over CPUs and reports what grew since the last drain. The agent keeps the
// cumulative counts, so keys idle for long can leave the map (bounding it
// as cgroups come and go) without losing what they had counted.
// A latency summary per v2 cgroup, labelled with the cgroup's path: what the
// probes keep per cgroup id. A cgroup's series last as long as the cgroup:
// once its directory is gone and its window has emptied, they go too.
class CgroupWindows {
 public:
  CgroupWindows(const BucketLayout& layout, size_t window_ticks, const std::string& host_root)
      : layout_(&layout), window_ticks_(window_ticks), paths_(host_root) {}

  void add(uint64_t cgroup_id, uint32_t bucket, uint64_t count, uint64_t sum_ns);
  // Closes the tick and emits `summary`{cgroup} for every cgroup still known.
  void emit(SampleSink& out, const MetricInfo& summary);

 private:
  const BucketLayout* layout_;
  size_t window_ticks_;
  struct Entry {
    LatencyHistogram histogram;
    bool fresh = true;  // had events this tick: it existed, no need to look
  };
  std::unordered_map<uint64_t, Entry> by_id_;
  CgroupPaths paths_;
};

template <typename Key>
class HistogramDrain {
 public:
  using Visit = std::function<void(const Key& key, uint64_t count, uint64_t sum_ns)>;

  void drain(int map_fd, const Visit& visit) {
    ++tick_;
    if (!batch_unsupported_ && drain_batched(map_fd, visit)) return;
    batch_unsupported_ = true;
    drain_by_key(map_fd, visit);
  }

  // Deletes the keys unchanged for `idle_ticks` drains from the map. An
  // event landing between the last drain and the delete is lost.
  void prune_idle(int map_fd, uint64_t idle_ticks) {
    for (auto it = last_.begin(); it != last_.end();) {
      if (tick_ - it->second.changed_tick >= idle_ticks) {
        Key key;
        std::memcpy(&key, it->first.data(), sizeof key);
        bpf_map_delete_elem(map_fd, &key);
        it = last_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  // Sums one key's per-CPU values and reports its growth.
  void account(const Key& key, const np_hist_value* per_cpu, size_t cpus, const Visit& visit) {
    np_hist_value total{};
    for (size_t c = 0; c < cpus; ++c) {
      total.count += per_cpu[c].count;
      total.sum_ns += per_cpu[c].sum_ns;
    }
    Seen& last = last_[bytes(key)];
    if (total.count < last.total.count) last = {};  // the key was deleted and re-created
    if (total.count > last.total.count) {
      visit(key, total.count - last.total.count, total.sum_ns - last.total.sum_ns);
      last.changed_tick = tick_;
    }
    last.total = total;
  }

  // BPF_MAP_LOOKUP_BATCH (5.6+): a few syscalls per tick whatever the keys.
  // False if the kernel does not support it for this map.
  bool drain_batched(int map_fd, const Visit& visit) {
    const size_t cpus = static_cast<size_t>(libbpf_num_possible_cpus());
    uint32_t batch = 256;
    uint32_t in_batch = 0, out_batch = 0;
    bool first = true;
    for (;;) {
      keys_.resize(batch);
      values_.resize(batch * cpus);
      uint32_t count = batch;
      int err = bpf_map_lookup_batch(map_fd, first ? nullptr : &in_batch, &out_batch, keys_.data(), values_.data(),
                                     &count, nullptr);
      if (err && errno == ENOSPC && batch < (1u << 16)) {  // a hash bucket holds more than `batch` keys
        batch *= 4;
        continue;
      }
      // Unsupported on the first call: fall back for good. Failing later:
      // what was not read is read next tick (the counts are cumulative).
      if (err && errno != ENOENT) return !first;
      for (uint32_t i = 0; i < count; ++i) account(keys_[i], &values_[i * cpus], cpus, visit);
      if (err) return true;  // ENOENT: that was the last batch
      in_batch = out_batch;
      first = false;
    }
  }

  void drain_by_key(int map_fd, const Visit& visit) {
    const size_t cpus = static_cast<size_t>(libbpf_num_possible_cpus());
    values_.resize(cpus);
    Key key{}, next{};
    const Key* prev = nullptr;
    while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
      key = next;
      prev = &key;
      if (bpf_map_lookup_elem(map_fd, &key, values_.data()) != 0) continue;  // deleted meanwhile
      account(key, values_.data(), cpus, visit);
    }
  }

  static std::string bytes(const Key& k) { return std::string(reinterpret_cast<const char*>(&k), sizeof k); }
  struct Seen {
    np_hist_value total{};
    uint64_t changed_tick = 0;
  };
  std::vector<Key> keys_;
  std::vector<np_hist_value> values_;
  std::unordered_map<std::string, Seen> last_;
  uint64_t tick_ = 0;
  bool batch_unsupported_ = false;
};

}  // namespace nodeperf
