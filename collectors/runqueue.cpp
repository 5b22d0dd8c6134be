#include "collectors/runqueue.h"

#include "agent/config.h"
#include "agent/histogram.h"
#include "agent/log.h"
#include "bpf/runqlat.h"
#include "bpf/runqlat.skel.h"
#include "collectors/bpf_probe.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_runqueue_latency_seconds", MetricType::histogram, "", "bpf: sched_switch",
     "Time tasks waited runnable before running: from wakeup, or from preemption, to running."},
    {"nodeperf_runqueue_latency_window_seconds", MetricType::summary, "", "bpf: sched_switch",
     "Run-queue latency p50, p95 and p99 over the sliding window (histogram.window)."},
    {"nodeperf_cgroup_runqueue_latency_window_seconds", MetricType::summary, "cgroup",
     "bpf: sched_switch", "Run-queue latency over the window, per v2 cgroup of the waiting task."},
};
constexpr LatencyFamilies kNodeFamilies{kMetrics[0], kMetrics[1]};

constexpr std::string_view kProbe = "runqueue";
static_assert(sizeof(np_runq_key) == 16 && offsetof(np_runq_key, bucket) == 8, "bpf/runqlat.h layout");

class RunqueueCollector final : public Collector {
 public:
  explicit RunqueueCollector(const Config& config)
      : layout_(config.histogram_schema),
        window_ticks_(window_ticks(config.histogram_window, config.tick)),
        node_(layout_, window_ticks_),
        by_cgroup_(layout_, window_ticks_, config.host_root) {
    probe_.start([this] { load(); });
  }

  void sample(unsigned one_in) override { probe_.sample(one_in); }

  Status collect(SampleSink& out) override {
    if (!probe_.running()) return Status::failed(probe_.error);
    const uint64_t scale = probe_.sample_one_in;
    drain_.drain(bpf_map__fd(probe_.skel->maps.runq_hist), [&](const np_runq_key& k, uint64_t n, uint64_t sum) {
      n *= scale;
      sum *= scale;
      node_.add(k.bucket, n, sum);
      by_cgroup_.add(k.cgroup_id, k.bucket, n, sum);
    });
    node_.end_tick();
    emit_latency(out, kNodeFamilies, {}, node_, layout_);
    by_cgroup_.emit(out, kMetrics[2]);
    drain_.prune_idle(bpf_map__fd(probe_.skel->maps.runq_hist), window_ticks_);
    probe_.attached->emit_stats(out);
    emit_map_drops(out, kProbe, bpf_map__fd(probe_.skel->maps.runq_drops), {"runq_hist"});
    return Status::ok();
  }

 private:
  void load() {
    // The probe reads the scheduler's own accounting (see bpf/runqlat.bpf.c).
    if (!kernel_struct_has("task_struct", "sched_info"))
      throw ProbeError("kernel without CONFIG_SCHED_INFO (task_struct.sched_info): needs TASK_DELAY_ACCT or SCHEDSTATS");
    probe_.skel.reset(runqlat_bpf__open());
    if (!probe_.skel) throw ProbeError("open", -errno);
    // tp_btf where the kernel's BTF describes the tracepoints, else raw_tp.
    bool btf = choose_programs(tracepoint_has_btf("sched_switch"), {probe_.skel->progs.btf_switch},
                               {probe_.skel->progs.raw_switch});
    if (btf) bpf_map__set_max_entries(probe_.skel->maps.seen_by_pid, 1);  // unused
    set_thresholds(probe_.skel->rodata->np_thresholds, layout_);
    if (int err = runqlat_bpf__load(probe_.skel.get())) throw ProbeError("load", err);
    probe_.attached.emplace(kProbe, probe_.skel->obj);
    log_info("runqueue: attached " + probe_.attached->names());
  }

  BucketLayout layout_;
  size_t window_ticks_;
  LatencyHistogram node_;
  CgroupWindows by_cgroup_;
  HistogramDrain<np_runq_key> drain_;
  Probe<runqlat_bpf> probe_{runqlat_bpf__destroy};
};

}  // namespace

const CollectorFactory kRunqueueCollector{
    "runqueue", "Run-queue latency histograms, per node and per cgroup (eBPF: sched tracepoints)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<RunqueueCollector>(c); }, true};

}  // namespace nodeperf
