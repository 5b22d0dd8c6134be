#include "collectors/blockio.h"

#include <unistd.h>

#include <array>
#include <map>
#include <unordered_map>

#include "agent/config.h"
#include "agent/histogram.h"
#include "agent/log.h"
#include "bpf/blockio.h"
#include "bpf/blockio.skel.h"
#include "collectors/block_feed.h"
#include "collectors/bpf_probe.h"
#include "collectors/diskstats.h"
#include "collectors/proc_file.h"
#include "collectors/volumes.h"
#include "exporters/exposition.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_disk_io_latency_seconds", MetricType::histogram, "device,op", "bpf: block_rq_issue, block_rq_complete",
     "Time from a request's issue to the device to its completion."},
    {"nodeperf_disk_io_latency_window_seconds", MetricType::summary, "device,op",
     "bpf: block_rq_issue, block_rq_complete", "Disk IO latency p50, p95 and p99 over the sliding window."},
    {"nodeperf_disk_io_queue_seconds", MetricType::histogram, "device,op", "bpf: block_rq_insert, block_rq_issue",
     "Time a request waited in the IO scheduler, from insert to issue (requests issued directly are not counted)."},
    {"nodeperf_disk_io_queue_window_seconds", MetricType::summary, "device,op",
     "bpf: block_rq_insert, block_rq_issue", "Disk IO queue time p50, p95 and p99 over the sliding window."},
    {"nodeperf_disk_io_size_bytes", MetricType::histogram, "device,op", "bpf: block_rq_complete",
     "Bytes completed per request."},
    {"nodeperf_cgroup_disk_io_latency_window_seconds", MetricType::summary, "cgroup",
     "bpf: block_rq_issue, block_rq_complete",
     "Disk IO latency over the window, per v2 cgroup of the submitter, all disks and ops together."},
};
constexpr LatencyFamilies kLatency{kMetrics[0], kMetrics[1]};
constexpr LatencyFamilies kQueue{kMetrics[2], kMetrics[3]};
constexpr const MetricInfo& kSize = kMetrics[4];
constexpr const MetricInfo& kCgroupLatency = kMetrics[5];

constexpr std::string_view kProbe = "blockio";
constexpr std::string_view kOps[NP_OP_COUNT] = {"read", "write", "flush", "discard", "other"};
static_assert(sizeof(np_block_key) == 16 && offsetof(np_block_key, bucket) == 14, "bpf/blockio.h layout");

// Request sizes: bucket b holds (2^(b-1), 2^b] bytes; exposed from 512 B to 16 MiB.
struct SizeHistogram {
  std::array<uint64_t, NP_SIZE_BUCKETS> counts{};
  uint64_t count = 0, sum = 0;
};

struct Series {
  LatencyHistogram latency, queue;
  SizeHistogram size;
};

class BlockioCollector final : public Collector {
 public:
  explicit BlockioCollector(const Config& config)
      : layout_(config.histogram_schema),
        window_ticks_(window_ticks(config.histogram_window, config.tick)),
        host_root_(config.host_root),
        diskstats_(host_path(config.host_root, "proc/diskstats")),
        by_cgroup_(layout_, window_ticks_, config.host_root) {
    probe_.start([this] { load(); });
  }

  void use_block_feed(BlockFeed* feed) override { feed_ = feed; }
  void sample(unsigned one_in) override { probe_.sample(one_in); }

  Status collect(SampleSink& out) override {
    if (!probe_.running()) return Status::failed(probe_.error);
    if (feed_) feed_->counts.clear();
    const uint64_t scale = probe_.sample_one_in;  // every kind is counted at completion, sampled alike
    drain_.drain(bpf_map__fd(probe_.skel->maps.block_hist), [&](const np_block_key& k, uint64_t n, uint64_t sum) {
      n *= scale;
      sum *= scale;
      if (feed_) feed_->counts.push_back({k, n, sum});
      Series& s = series(disk_of(k.dev), k.op < NP_OP_COUNT ? k.op : static_cast<uint8_t>(NP_OP_OTHER));
      switch (k.kind) {
        case NP_BLOCK_LATENCY:
          s.latency.add(k.bucket, n, sum);
          by_cgroup_.add(k.cgroup_id, k.bucket, n, sum);
          break;
        case NP_BLOCK_QUEUE: s.queue.add(k.bucket, n, sum); break;
        case NP_BLOCK_SIZE:
          s.size.counts[std::min<size_t>(k.bucket, NP_SIZE_BUCKETS - 1)] += n;
          s.size.count += n;
          s.size.sum += sum;
          break;
        default: break;
      }
    });
    prune_gone_devices();
    for (auto& [key, s] : series_) {
      s.latency.end_tick();
      s.queue.end_tick();
      Label labels[] = {{"device", device_name(key.first)}, {"op", kOps[key.second]}};
      emit_latency(out, kLatency, labels, s.latency, layout_);
      emit_latency(out, kQueue, labels, s.queue, layout_);
      emit_size(out, labels, s.size);
    }
    by_cgroup_.emit(out, kCgroupLatency);
    if (feed_) ++feed_->ticks;
    drain_.prune_idle(bpf_map__fd(probe_.skel->maps.block_hist), window_ticks_);
    probe_.attached->emit_stats(out);
    emit_map_drops(out, kProbe, bpf_map__fd(probe_.skel->maps.block_drops), {"block_hist", "requests"});
    return Status::ok();
  }

 private:
  void load() {
    probe_.skel.reset(blockio_bpf__open());
    if (!probe_.skel) throw ProbeError("open", -errno);
    int issue_args = tracepoint_arg_count("block_rq_issue");
    bool btf = issue_args > 0 && tracepoints_have_btf({"block_rq_insert", "block_rq_complete"});
    choose_programs(btf, {probe_.skel->progs.btf_insert, probe_.skel->progs.btf_issue, probe_.skel->progs.btf_complete},
                    {probe_.skel->progs.raw_insert, probe_.skel->progs.raw_issue, probe_.skel->progs.raw_complete});
    // Before 5.11 these tracepoints passed (queue, request); since, (request).
    probe_.skel->rodata->rq_is_second_arg = issue_args == 2;
    // Since 5.11 request->part is the partition's block_device (before, an hd_struct).
    probe_.skel->rodata->part_is_bdev =
        kernel_struct_has("request", "part") && kernel_struct_has("block_device", "bd_dev") &&
        !kernel_struct_has("hd_struct", "partno");
    set_thresholds(probe_.skel->rodata->np_thresholds, layout_);
    if (int err = blockio_bpf__load(probe_.skel.get())) throw ProbeError("load", err);
    probe_.attached.emplace(kProbe, probe_.skel->obj);
    log_info("blockio: attached " + probe_.attached->names());
  }

  Series& series(uint32_t dev, uint8_t op) {
    auto key = std::make_pair(dev, op);
    auto it = series_.find(key);
    if (it == series_.end()) {
      it = series_.emplace(key, Series{LatencyHistogram(layout_, window_ticks_),
                                       LatencyHistogram(layout_, window_ticks_), {}}).first;
    }
    return it->second;
  }

  // A disk that is gone (a detached volume, a removed loop or dm device, a
  // hot-unplug) loses its series, as it leaves /proc/diskstats; without this
  // a node whose volumes come and go would keep every disk it ever saw. Its
  // keys in the BPF map go once idle for the window, like any. One access()
  // per disk with series a tick; nothing is dropped if sysfs is not there.
  void prune_gone_devices() {
    if (series_.empty() || ::access(host_path(host_root_, "sys/dev/block").c_str(), F_OK) != 0) return;
    uint32_t dev = 0;
    bool gone = false;
    for (auto it = series_.begin(); it != series_.end();) {
      if (it == series_.begin() || it->first.first != dev) {
        dev = it->first.first;
        gone = ::access(block_sysfs_dir(host_root_, dev >> 20, dev & ((1u << 20) - 1)).c_str(), F_OK) != 0;
        if (gone) {  // a new device may get its number: name and disk looked up again
          names_.erase(dev);
          std::erase_if(disks_, [&](const auto& kv) { return kv.first == dev || kv.second == dev; });
        }
      }
      it = gone ? series_.erase(it) : std::next(it);
    }
  }

  // The whole disk of a device the probe reports (a partition, or the disk
  // itself), kernel encoding, from sysfs; the device itself if sysfs does not
  // know it (gone already).
  uint32_t disk_of(uint32_t dev) {
    auto it = disks_.find(dev);
    if (it != disks_.end()) return it->second;
    auto d = resolve_block_device(host_root_, dev >> 20, dev & ((1u << 20) - 1));
    uint32_t disk = d ? kernel_dev(d->disk_dev) : dev;
    if (disks_.size() > 4096) disks_.clear();  // devices come and go (loop, dm): bound the cache
    return disks_.emplace(dev, disk).first->second;
  }

  // The disk's name as /proc/diskstats has it; "major:minor" if it has none.
  const std::string& device_name(uint32_t dev) {
    auto it = names_.find(dev);
    if (it != names_.end()) return it->second;
    if (auto text = diskstats_.read(nullptr)) {
      Problems ignored;
      for (const DiskStats& d : parse_diskstats(*text, ignored)) names_[(d.major << 20) | d.minor] = d.device;
    }
    it = names_.find(dev);
    if (it == names_.end()) {
      it = names_.emplace(dev, std::to_string(dev >> 20) + ":" + std::to_string(dev & ((1u << 20) - 1))).first;
    }
    return it->second;
  }

  void emit_size(SampleSink& out, std::span<const Label> labels, const SizeHistogram& h) {
    std::vector<Label> with(labels.begin(), labels.end());
    with.push_back({});
    uint64_t running = 0;
    std::string le;
    for (size_t b = 0; b <= 24; ++b) {
      running += h.counts[b];
      if (b < 9) continue;  // below 512 B: folded into le="512"
      le = std::to_string(1ull << b);
      with.back() = {"le", le};
      out.add(kSize, static_cast<double>(running), with, "_bucket");
    }
    with.back() = {"le", "+Inf"};
    out.add(kSize, static_cast<double>(h.count), with, "_bucket");
    out.add(kSize, static_cast<double>(h.sum), labels, "_sum");
    out.add(kSize, static_cast<double>(h.count), labels, "_count");
  }

  BucketLayout layout_;
  size_t window_ticks_;
  std::string host_root_;
  std::unordered_map<uint32_t, uint32_t> disks_;  // device -> its whole disk
  BlockFeed* feed_ = nullptr;
  ProcFile diskstats_;
  std::unordered_map<uint32_t, std::string> names_;
  std::map<std::pair<uint32_t, uint8_t>, Series> series_;  // ordered: stable exposition
  CgroupWindows by_cgroup_;
  HistogramDrain<np_block_key> drain_;
  Probe<blockio_bpf> probe_{blockio_bpf__destroy};
};

}  // namespace

const CollectorFactory kBlockioCollector{
    "blockio", "Disk IO latency, queue time and size histograms per device and op (eBPF: block tracepoints)",
    kMetrics, [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<BlockioCollector>(c); },
    true};

}  // namespace nodeperf
