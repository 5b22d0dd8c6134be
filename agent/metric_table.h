// Metric metadata. Every metric nodeperf exports is described by one
// MetricInfo in the table of the collector that emits it (or the agent's own
// table for self-metrics); all_metrics() is the union, and docs/metrics.md is
// checked against it by a test.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nodeperf {

enum class MetricType { counter, gauge, untyped, histogram, summary };

std::string_view type_name(MetricType type);  // as written in "# TYPE" (0.0.4)

struct MetricInfo {
  std::string_view name;    // full nodeperf name, e.g. "nodeperf_cpu_seconds_total"
  MetricType type;
  std::string_view labels;  // label keys in emission order, comma-separated
  std::string_view source;  // where the value comes from, for docs
  std::string_view help;
  // True where node_exporter exports the same thing under the same name with
  // "node_" in place of "nodeperf_"; --compat=node_exporter uses that name.
  bool node_exporter = false;
};

// The exposed name under the given compatibility mode.
std::string exposed_name(const MetricInfo& info, bool node_exporter_compat);

// Self-metrics of the agent (collector health, scrapes, build info).
std::span<const MetricInfo> agent_metrics();
namespace agent_metric {
enum : size_t {
  build_info,
  collector_up,
  collector_duration,
  collector_errors,
  scrapes,
  scrape_bytes,
  scrape_duration,
  http_requests,
  http_connections_open,
  http_connections_evicted,
  http_auth_failures,
  http_tls_handshake_failures,
  snapshot_series,
  bpf_program_attached,
  bpf_program_runs,
  bpf_program_run_seconds,
  bpf_map_drops,
  budget_cpu,
  budget_bpf_stats,
  budget_limit,
  budget_usage,
  budget_level,
  budget_sampling,
  budget_tick,
  budget_dropped,
  budget_changes,
  count
};
}

// Every metric of every collector and of the agent, for docs and tests.
std::vector<const MetricInfo*> all_metrics();

}  // namespace nodeperf
