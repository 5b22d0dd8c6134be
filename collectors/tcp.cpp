#include "collectors/tcp.h"

#include <map>
#include <utility>

#include "agent/cgroup_paths.h"
#include "agent/config.h"
#include "agent/histogram.h"
#include "agent/log.h"
#include "bpf/tcp.h"
#include "bpf/tcp.skel.h"
#include "collectors/bpf_probe.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_tcp_rtt_seconds", MetricType::histogram, "", "bpf: tcp_probe",
     "Smoothed round-trip time of the socket at each received segment (segment-weighted)."},
    {"nodeperf_tcp_rtt_window_seconds", MetricType::summary, "", "bpf: tcp_probe",
     "TCP smoothed RTT p50, p95 and p99 over the sliding window."},
    {"nodeperf_tcp_connect_latency_seconds", MetricType::histogram, "", "bpf: inet_sock_set_state",
     "Time from an active open's SYN to ESTABLISHED."},
    {"nodeperf_tcp_connect_latency_window_seconds", MetricType::summary, "", "bpf: inet_sock_set_state",
     "TCP connect latency p50, p95 and p99 over the sliding window."},
    {"nodeperf_cgroup_tcp_rtt_window_seconds", MetricType::summary, "cgroup", "bpf: tcp_probe",
     "TCP smoothed RTT over the window, per v2 cgroup of the socket's owner."},
    {"nodeperf_cgroup_tcp_retransmits_total", MetricType::counter, "cgroup", "bpf: tcp_retransmit_skb",
     "TCP segments retransmitted, per v2 cgroup of the socket's owner."},
    {"nodeperf_cgroup_tcp_resets_sent_total", MetricType::counter, "cgroup", "bpf: tcp_send_reset",
     "TCP resets sent on a socket, per v2 cgroup of its owner."},
    {"nodeperf_cgroup_tcp_resets_received_total", MetricType::counter, "cgroup", "bpf: tcp_receive_reset",
     "TCP resets received on a socket, per v2 cgroup of its owner."},
};
enum { kRttWindowCgroup = 4, kRetransmits, kResetsSent, kResetsReceived };
constexpr LatencyFamilies kRtt{kMetrics[0], kMetrics[1]};
constexpr LatencyFamilies kConnect{kMetrics[2], kMetrics[3]};

constexpr std::string_view kProbe = "tcp";
static_assert(sizeof(np_tcp_key) == 16 && offsetof(np_tcp_key, bucket) == 12, "bpf/tcp.h layout");

struct CgroupTcp {
  LatencyHistogram rtt;
  uint64_t counters[3] = {};  // retransmits, resets sent, resets received
  bool fresh = true;          // had events this tick: it existed, no need to look
};

class TcpCollector final : public Collector {
 public:
  explicit TcpCollector(const Config& config)
      : layout_(config.histogram_schema),
        window_ticks_(window_ticks(config.histogram_window, config.tick)),
        rtt_(layout_, window_ticks_),
        connect_(layout_, window_ticks_),
        paths_(config.host_root) {
    probe_.start([this] { load(); });
  }

  void sample(unsigned one_in) override { probe_.sample(one_in); }

  Status collect(SampleSink& out) override {
    if (!probe_.running()) return Status::failed(probe_.error);
    const uint64_t scale = probe_.sample_one_in;
    drain_.drain(bpf_map__fd(probe_.skel->maps.tcp_hist), [&](const np_tcp_key& k, uint64_t n, uint64_t sum) {
      switch (k.kind) {
        case NP_TCP_RTT:  // the only sampled kind
          n *= scale;
          sum *= scale;
          rtt_.add(k.bucket, n, sum);
          cgroup(k.cgroup_id).rtt.add(k.bucket, n, sum);
          break;
        case NP_TCP_CONNECT: connect_.add(k.bucket, n, sum); break;
        case NP_TCP_RETRANSMIT:
        case NP_TCP_RESET_SENT:
        case NP_TCP_RESET_RECEIVED: cgroup(k.cgroup_id).counters[k.kind - NP_TCP_RETRANSMIT] += n; break;
        default: break;
      }
    });
    rtt_.end_tick();
    connect_.end_tick();
    emit_latency(out, kRtt, {}, rtt_, layout_);
    emit_latency(out, kConnect, {}, connect_, layout_);
    for (auto it = by_cgroup_.begin(); it != by_cgroup_.end();) {
      it->second.rtt.end_tick();
      // Removed (series go at the next tick; a cgroup with events this tick
      // was there, so only the quiet ones cost a stat), or unknown and idle.
      bool fresh = std::exchange(it->second.fresh, false);
      if ((!fresh && paths_.gone(it->first)) || (it->second.rtt.idle_for_window() && paths_.path(it->first).empty())) {
        it = by_cgroup_.erase(it);  // the cgroup is gone: so are its series
        continue;
      }
      const std::string& path = paths_.path(it->first);
      if (!path.empty()) {
        Label labels[] = {{"cgroup", path}};
        emit_window_summary(out, kMetrics[kRttWindowCgroup], labels, it->second.rtt);
        for (int c = 0; c < 3; ++c) {
          out.add(kMetrics[kRetransmits + c], static_cast<double>(it->second.counters[c]), labels);
        }
      }
      ++it;
    }
    drain_.prune_idle(bpf_map__fd(probe_.skel->maps.tcp_hist), window_ticks_);
    probe_.attached->emit_stats(out);
    emit_map_drops(out, kProbe, bpf_map__fd(probe_.skel->maps.tcp_drops), {"tcp_hist", "connecting"});
    return Status::ok();
  }

 private:
  void load() {
    probe_.skel.reset(tcp_bpf__open());
    if (!probe_.skel) throw ProbeError("open", -errno);
    bool btf = tracepoints_have_btf(
        {"tcp_probe", "inet_sock_set_state", "tcp_retransmit_skb", "tcp_send_reset", "tcp_receive_reset"});
    choose_programs(btf,
                    {probe_.skel->progs.btf_tcp_probe, probe_.skel->progs.btf_set_state, probe_.skel->progs.btf_retransmit,
                     probe_.skel->progs.btf_send_reset, probe_.skel->progs.btf_receive_reset},
                    {probe_.skel->progs.raw_tcp_probe, probe_.skel->progs.raw_set_state, probe_.skel->progs.raw_retransmit,
                     probe_.skel->progs.raw_send_reset, probe_.skel->progs.raw_receive_reset});
    set_thresholds(probe_.skel->rodata->np_thresholds, layout_);
    if (int err = tcp_bpf__load(probe_.skel.get())) throw ProbeError("load", err);
    probe_.attached.emplace(kProbe, probe_.skel->obj);
    log_info("tcp: attached " + probe_.attached->names());
  }

  CgroupTcp& cgroup(uint64_t id) {
    auto it = by_cgroup_.find(id);
    if (it == by_cgroup_.end()) it = by_cgroup_.emplace(id, CgroupTcp{LatencyHistogram(layout_, window_ticks_)}).first;
    it->second.fresh = true;
    return it->second;
  }

  BucketLayout layout_;
  size_t window_ticks_;
  LatencyHistogram rtt_, connect_;
  std::map<uint64_t, CgroupTcp> by_cgroup_;
  CgroupPaths paths_;
  HistogramDrain<np_tcp_key> drain_;
  Probe<tcp_bpf> probe_{tcp_bpf__destroy};
};

}  // namespace

const CollectorFactory kTcpCollector{
    "tcp", "TCP RTT and connect latency histograms, retransmits and resets per cgroup (eBPF: tcp tracepoints)",
    kMetrics, [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<TcpCollector>(c); }, true};

}  // namespace nodeperf
