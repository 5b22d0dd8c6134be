// The model behind `nodeperf top`: a parsed JSON snapshot of the agent
// (docs/api.md), and what the screens show, computed from two snapshots.
// Rates come only from two snapshots and the time between them; a counter
// that went backwards (a reset) gives no rate rather than a garbage one.
// Nothing here does IO: the tests build models from fixture JSON.
#pragma once

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace nodeperf::top {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using Labels = std::map<std::string, std::string, std::less<>>;

struct RawSample {
  Labels labels;
  std::string suffix;  // "", "_bucket", "_sum" or "_count"
  double value = kNaN;  // JSON null is NaN
};

struct RawFamily {
  std::string name;
  std::string type;
  std::vector<RawSample> samples;
};

// One /api/v1/snapshot document.
struct Snapshot {
  double time = kNaN;
  double monotonic = kNaN;  // the agent's steady clock, seconds; NaN from agents without it
  double tick_seconds = 1;
  std::string hostname;
  std::map<std::string, RawFamily, std::less<>> families;

  const RawFamily* family(std::string_view name) const;
  // The first sample of `name` with this suffix whose labels include
  // `match`; NaN if there is none.
  double value(std::string_view name, const Labels& match = {}, std::string_view suffix = {}) const;
  // The values of every sample of `name` (no suffix) by the value of one label.
  std::map<std::string, double> by_label(std::string_view name, std::string_view label,
                                         const Labels& match = {}) const;
};

class ParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws ParseError on anything that is not the documented shape.
Snapshot parse_snapshot(std::string_view json);

// Seconds from `older` to `newer`: on the agent's steady clock when both
// have it, so that a step of the wall clock between them changes no rate;
// else by their wall-clock times.
double seconds_between(const Snapshot& older, const Snapshot& newer);

// /api/v1/history.
struct HistoryInfo {
  double oldest = kNaN;
  double newest = kNaN;
  size_t count = 0;
  double tick_seconds = 1;
};
HistoryInfo parse_history(std::string_view json);

// (after - before) / seconds; NaN if either is missing, the counter went
// backwards (reset) or no time passed.
double rate(double before, double after, double seconds);

struct Quantiles {
  double p50 = kNaN, p95 = kNaN, p99 = kNaN;
};
// The p50/p95/p99 samples of a summary series.
Quantiles summary_quantiles(const Snapshot& s, std::string_view name, const Labels& match);

// A histogram as per-bucket counts (not cumulative), over an interval.
struct Bucket {
  double le;     // upper bound; +inf for the last
  double count;  // events in (previous le, le]
};
struct Distribution {
  std::vector<Bucket> buckets;
  double count = 0;
  double sum = 0;
};
// The events of histogram `name` (labels including `match`, summed over the
// series that match) between `before` and `now`; with no `before`, since
// the agent started. Empty if the histogram is absent or was reset.
std::optional<Distribution> histogram_delta(const Snapshot& now, const Snapshot* before, std::string_view name,
                                            const Labels& match);
// As histogram_quantile(): linear inside the bucket holding rank q x count.
// NaN for an empty distribution.
double quantile(const Distribution& d, double q);

struct CpuUsage {
  std::string cpu;  // "all" for the node
  double busy = kNaN, user = kNaN, system = kNaN, iowait = kNaN, steal = kNaN;  // percent of that CPU
};

struct DiskRow {
  std::string device;
  double reads = kNaN, writes = kNaN;                   // per second
  double read_bytes = kNaN, written_bytes = kNaN;       // per second
  double utilisation = kNaN;                            // percent
  Quantiles read_latency, write_latency;                // over the agent's window
};

struct NetRow {
  std::string device;
  double rx_bytes = kNaN, tx_bytes = kNaN, rx_packets = kNaN, tx_packets = kNaN;  // per second
  double drops = kNaN, errors = kNaN;                                             // per second, rx + tx
};

// One cgroup (a container or pod on Kubernetes). Columns that no exported
// metric feeds yet stay NaN.
struct CgroupRow {
  std::string cgroup;  // the cgroup label: the key
  std::string name;    // namespace/pod/container when known, else the path
  double cpu = kNaN;         // percent of one CPU
  double throttled = kNaN;   // percent of the time
  double memory = kNaN;      // working set, bytes
  double io = kNaN;          // bytes per second, read + written
  double runqueue_p99 = kNaN, disk_p99 = kNaN, rtt_p99 = kNaN;
  double retransmits = kNaN;  // per second
};

// One Kubernetes volume (docs/volumes.md), keyed by (pod_uid, volume).
struct VolumeRow {
  std::string pod_uid, volume;  // the key
  std::string pod;     // namespace/pod when known, else the first 8 characters of pod_uid
  std::string name;    // the claim (persistentvolumeclaim) when known, else volume
  std::string device;  // "" for a volume without a block device
  std::string kind;    // "block", "raw" (a raw block volume), "fs" (no block device) or "mem" (tmpfs)
  std::string io;      // exclusive, cgroup, none; "" without an info series
  double capacity = kNaN, used = kNaN;  // bytes; a raw block volume has capacity only
  double used_percent = kNaN;
  double reads = kNaN, writes = kNaN;              // per second
  double read_bytes = kNaN, written_bytes = kNaN;  // per second
  // Block IO latency over the agent's window; for kind "fs", the latency of
  // read and write system calls on the volume's files instead.
  Quantiles read_latency, write_latency;
  double in_flight = kNaN;  // read + write requests; io=exclusive volumes only
  bool stale = false;       // statvfs hung: a hung mount
};

struct NodeFigures {
  CpuUsage total;
  std::vector<CpuUsage> cpus;
  double load1 = kNaN, load5 = kNaN, load15 = kNaN;
  double procs_running = kNaN, procs_blocked = kNaN, context_switches = kNaN;
  double mem_total = kNaN, mem_available = kNaN, mem_cache = kNaN, swap_total = kNaN, swap_free = kNaN;
  // PSI in percent of the time.
  double cpu_some = kNaN, cpu_full = kNaN, memory_some = kNaN, memory_full = kNaN, io_some = kNaN, io_full = kNaN;
  Quantiles runqueue, tcp_rtt, tcp_connect;
  double tcp_retransmits = kNaN, tcp_out_segments = kNaN, tcp_established = kNaN;
};

struct Model {
  std::string hostname;
  double time = kNaN;     // of the newer snapshot
  double elapsed = kNaN;  // seconds between the two snapshots
  double tick_seconds = 1;
  NodeFigures node;
  std::vector<DiskRow> disks;
  std::vector<NetRow> nets;
  std::vector<CgroupRow> cgroups;
  bool kubernetes = false;  // some cgroup carries pod labels
  std::vector<VolumeRow> volumes;  // ordered by (pod_uid, volume)
};

// `before` may be null (the first snapshot): rates are then NaN.
Model build_model(const Snapshot& now, const Snapshot* before);

// build_model's volume rows (cli/top_volumes.cpp): rates need `before`,
// else they are NaN.
std::vector<VolumeRow> volume_rows(const Snapshot& now, const Snapshot* before, double elapsed);

// Something whose latency the detail screen can draw.
struct LatencyTarget {
  std::string title;      // "disk vda read", "run queue", "cgroup /system.slice"
  std::string histogram;  // empty when only a summary exists (cgroups)
  std::string summary;
  Labels labels;
};
std::vector<LatencyTarget> latency_targets(const Snapshot& s);

}  // namespace nodeperf::top
