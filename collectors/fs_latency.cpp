#include "collectors/fs_latency.h"

#include <chrono>

#include "agent/log.h"
#include "bpf/fslatency.skel.h"
#include "collectors/bpf_probe.h"

namespace nodeperf {

static_assert(sizeof(np_fs_key) == 16 && offsetof(np_fs_key, bucket) == 14, "bpf/fslatency.h layout");

constexpr std::string_view kProbe = "fslatency";
constexpr auto kRetry = std::chrono::minutes(1);

struct FsLatencyProbe::State {
  State(const BucketLayout& l, size_t w) : layout(l), window_ticks(w) {}
  const BucketLayout& layout;
  size_t window_ticks;
  Probe<fslatency_bpf> probe{fslatency_bpf__destroy};
  HistogramDrain<np_fs_key> drain;
  std::set<uint32_t> watched;
  std::chrono::steady_clock::time_point failed_at{};
  bool failed = false;
  bool warned = false;

  void load() {
    probe.skel.reset(fslatency_bpf__open());
    if (!probe.skel) throw ProbeError("open", -errno);
    choose_programs(tracepoints_have_btf({"sys_enter", "sys_exit"}),
                    {probe.skel->progs.btf_sys_enter, probe.skel->progs.btf_sys_exit},
                    {probe.skel->progs.raw_sys_enter, probe.skel->progs.raw_sys_exit});
    set_thresholds(probe.skel->rodata->np_thresholds, layout);
    if (int err = fslatency_bpf__load(probe.skel.get())) throw ProbeError("load", err);
    release_kernel_btf();
  }
};

FsLatencyProbe::FsLatencyProbe(const BucketLayout& layout, size_t window_ticks)
    : s_(std::make_unique<State>(layout, window_ticks)) {}

FsLatencyProbe::~FsLatencyProbe() = default;

bool FsLatencyProbe::attached() const { return s_->probe.attached.has_value(); }
const std::string& FsLatencyProbe::error() const { return s_->probe.error; }

void FsLatencyProbe::watch(const std::set<uint32_t>& devices) {
  State& s = *s_;
  if (devices.empty()) {
    if (s.probe.attached) log_info("fslatency: no file system to time: detached");
    s.probe.attached.reset();
    s.failed = false;
  } else if (!s.probe.attached) {
    if (s.failed && std::chrono::steady_clock::now() - s.failed_at < kRetry) return;
    s.probe.error.clear();
    s.probe.start([&] {
      if (!s.probe.skel) {
        s.load();
        s.watched.clear();
      }
      s.probe.attached.emplace(kProbe, s.probe.skel->obj);
    });
    s.failed = !s.probe.attached;
    if (s.failed) {
      s.failed_at = std::chrono::steady_clock::now();
      // Once at warn; the retries (a minute apart) at debug.
      log(s.warned ? LogLevel::debug : LogLevel::warn, "fslatency: not timing network and FUSE volumes: " + s.probe.error);
      s.warned = true;
      return;
    }
    log_info("fslatency: attached " + s.probe.attached->names());
  }
  if (!s.probe.skel || devices == s.watched) return;
  int fd = bpf_map__fd(s.probe.skel->maps.watched);
  for (uint32_t dev : s.watched) {
    if (!devices.contains(dev)) bpf_map_delete_elem(fd, &dev);
  }
  uint8_t one = 1;
  for (uint32_t dev : devices) {
    if (!s.watched.contains(dev)) bpf_map_update_elem(fd, &dev, &one, BPF_ANY);
  }
  s.watched = devices;
}

void FsLatencyProbe::drain(const Visit& visit) {
  State& s = *s_;
  if (!s.probe.skel) return;
  int fd = bpf_map__fd(s.probe.skel->maps.fs_hist);
  s.drain.drain(fd, visit);
  s.drain.prune_idle(fd, s.window_ticks);
}

void FsLatencyProbe::emit_stats(SampleSink& out) const {
  const State& s = *s_;
  if (!s.probe.attached) return;
  s.probe.attached->emit_stats(out);
  emit_map_drops(out, kProbe, bpf_map__fd(s.probe.skel->maps.fs_drops), {"fs_hist"});
}

}  // namespace nodeperf
