#include "agent/metric_table.h"

#include "agent/kubelet.h"
#include "collectors/cgroups_cadvisor.h"
#include "collectors/collector.h"

namespace nodeperf {

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::counter: return "counter";
    case MetricType::gauge: return "gauge";
    case MetricType::untyped: return "untyped";
    case MetricType::histogram: return "histogram";
    case MetricType::summary: return "summary";
  }
  return "untyped";
}

std::string exposed_name(const MetricInfo& info, bool node_exporter_compat) {
  constexpr std::string_view ours = "nodeperf_";
  if (!node_exporter_compat || !info.node_exporter || !info.name.starts_with(ours)) {
    return std::string(info.name);
  }
  return "node_" + std::string(info.name.substr(ours.size()));
}

namespace {

constexpr MetricInfo kAgentMetrics[] = {
    {"nodeperf_build_info", MetricType::gauge, "version,revision,compiler", "build",
     "A constant 1, labelled with the version, git revision and compiler of this build."},
    {"nodeperf_collector_up", MetricType::gauge, "collector", "agent",
     "1 if the collector read its source on the last tick, 0 if it could not."},
    {"nodeperf_collector_duration_seconds", MetricType::gauge, "collector", "agent",
     "Wall time the collector took on the last tick."},
    {"nodeperf_collector_errors_total", MetricType::counter, "collector", "agent",
     "Ticks on which the collector met an error (a missing file, a malformed line)."},
    {"nodeperf_scrapes_total", MetricType::counter, "", "agent",
     "Requests served on /metrics."},
    {"nodeperf_scrape_response_bytes_total", MetricType::counter, "", "agent",
     "Body bytes sent on /metrics, after compression."},
    {"nodeperf_scrape_duration_seconds_total", MetricType::counter, "", "agent",
     "Time spent rendering and compressing /metrics responses; divide by "
     "nodeperf_scrapes_total for the mean."},
    {"nodeperf_http_requests_total", MetricType::counter, "code", "agent",
     "HTTP requests answered, by status code."},
    {"nodeperf_http_connections", MetricType::gauge, "", "agent",
     "HTTP connections open now."},
    {"nodeperf_http_connections_evicted_total", MetricType::counter, "", "agent",
     "Idle (or stalled, not reading) HTTP connections closed to make room under web.max_connections."},
    {"nodeperf_http_auth_failures_total", MetricType::counter, "reason", "agent",
     "HTTP requests refused by the web config's authentication, by reason: missing (no usable credentials), "
     "bad_credentials, token_rejected (TokenReview), forbidden (SubjectAccessReview; 403), unavailable (API server not reachable or too slow), busy "
     "(too many checks waiting; 503)."},
    {"nodeperf_http_tls_handshake_failures_total", MetricType::counter, "", "agent",
     "TLS handshakes that failed or did not finish within web.idle_timeout (plain HTTP to the TLS port, "
     "a refused client certificate, a stalled client)."},
    {"nodeperf_snapshot_series", MetricType::gauge, "", "agent",
     "Series in the last snapshot (before the self-metrics of the agent)."},
    {"nodeperf_bpf_program_attached", MetricType::gauge, "probe,program", "agent",
     "1 if the BPF program is attached, 0 if it is loaded but not attached."},
    {"nodeperf_bpf_program_runs_total", MetricType::counter, "probe,program", "bpf_prog_info",
     "Times the BPF program ran (counted only while kernel.bpf_stats_enabled=1)."},
    {"nodeperf_bpf_program_run_seconds_total", MetricType::counter, "probe,program", "bpf_prog_info",
     "Time spent in the BPF program (counted only while kernel.bpf_stats_enabled=1)."},
    {"nodeperf_bpf_map_drops_total", MetricType::counter, "probe,map", "BPF map",
     "Events a probe could not record because its map was full."},
    {"nodeperf_budget_cpu_seconds_total", MetricType::counter, "source", "clock_gettime, bpf_prog_info",
     "CPU time the agent used: source=process for its threads, source=bpf for its BPF programs (counted only "
     "while BPF stats are on, see nodeperf_budget_bpf_stats_enabled)."},
    {"nodeperf_budget_bpf_stats_enabled", MetricType::gauge, "", "/proc/sys/kernel/bpf_stats_enabled, bpf_prog_info",
     "1 if BPF run time is counted: kernel.bpf_stats_enabled=1, or the agent's programs' run counts grew on the "
     "last tick (another process holds BPF_ENABLE_STATS); 0 if it is unknown and the budget counts process CPU "
     "only."},
    {"nodeperf_budget_limit_ratio", MetricType::gauge, "", "budget.cpu",
     "The overhead budget in CPU seconds per second (0.05 = 5% of one core); 0 when the budget is off."},
    {"nodeperf_budget_usage_ratio", MetricType::gauge, "", "agent",
     "CPU seconds per second the budget counts (process, plus BPF when counted), averaged over budget.window."},
    {"nodeperf_budget_level", MetricType::gauge, "", "agent",
     "Degrade level: 0 none, 1 high-rate probe events sampled 1 in 8, 2 tick x2 too, 3 tick x4, "
     "4 high-rate probes (runqueue, tcp) stopped too, 5 cgroups collector stopped too."},
    {"nodeperf_budget_sampling_ratio", MetricType::gauge, "", "agent",
     "Share of the high-rate probes' events counted (runqueue, tcp RTT, blockio): 1 counts every event; "
     "0.125 counts 1 in 8 at random and scales their counts and sums by 8, so those series are estimates."},
    {"nodeperf_budget_tick_seconds", MetricType::gauge, "", "agent",
     "The tick in use: the tick option times the degrade level's factor."},
    {"nodeperf_budget_collector_dropped", MetricType::gauge, "collector", "agent",
     "1 if the overhead budget has stopped this enabled collector, 0 if it runs."},
    {"nodeperf_budget_changes_total", MetricType::counter, "direction", "agent",
     "Degrade level changes, direction=up (degraded) or down (restored)."},
};
static_assert(std::size(kAgentMetrics) == agent_metric::count);

}  // namespace

std::span<const MetricInfo> agent_metrics() { return kAgentMetrics; }

std::vector<const MetricInfo*> all_metrics() {
  std::vector<const MetricInfo*> out;
  for (const MetricInfo& m : agent_metrics()) out.push_back(&m);
  for (const MetricInfo& m : kubelet_metrics()) out.push_back(&m);
  for (const MetricInfo& m : cadvisor_metrics()) out.push_back(&m);
  for (const CollectorFactory& f : collector_factories()) {
    for (const MetricInfo& m : f.metrics) out.push_back(&m);
  }
  return out;
}

}  // namespace nodeperf
