#include "collectors/cgroups_cadvisor.h"

#include <stdexcept>

namespace nodeperf {
namespace {

// cAdvisor's base labels in the kubelet's /metrics/cadvisor, then the
// family's own (cpu, device). Names, types and units from google/cadvisor
// metrics/prometheus.go and the kubelet's containerPrometheusLabelsFunc.
constexpr std::string_view kLabels = "container,id,image,name,namespace,pod";
constexpr std::string_view kCpuLabels = "container,id,image,name,namespace,pod,cpu";
constexpr std::string_view kDeviceLabels = "container,id,image,name,namespace,pod,device";

// `source` is the nodeperf_cgroup_* family each one repeats: the mapping.
constexpr MetricInfo kMetrics[] = {
    {"container_cpu_usage_seconds_total", MetricType::counter, kCpuLabels, "nodeperf_cgroup_cpu_usage_seconds_total",
     "CPU time used, all CPUs together (cpu=\"total\", as cAdvisor without per-CPU figures)."},
    {"container_cpu_user_seconds_total", MetricType::counter, kLabels, "nodeperf_cgroup_cpu_user_seconds_total",
     "CPU time in user mode."},
    {"container_cpu_system_seconds_total", MetricType::counter, kLabels, "nodeperf_cgroup_cpu_system_seconds_total",
     "CPU time in kernel mode."},
    {"container_cpu_cfs_periods_total", MetricType::counter, kLabels, "nodeperf_cgroup_cpu_periods_total",
     "CFS bandwidth periods elapsed; only for cgroups that have run under a CPU quota."},
    {"container_cpu_cfs_throttled_periods_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_cpu_throttled_periods_total", "CFS periods in which the quota was used up and tasks throttled."},
    {"container_cpu_cfs_throttled_seconds_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_cpu_throttled_seconds_total", "Time runnable tasks were held back by the CPU quota."},
    {"container_memory_usage_bytes", MetricType::gauge, kLabels, "nodeperf_cgroup_memory_usage_bytes",
     "Memory charged to the cgroup, page cache included."},
    {"container_memory_working_set_bytes", MetricType::gauge, kLabels, "nodeperf_cgroup_memory_working_set_bytes",
     "Usage minus inactive page cache: what the kubelet evicts on and kubectl top shows."},
    {"container_memory_rss", MetricType::gauge, kLabels, "nodeperf_cgroup_memory_rss_bytes",
     "Anonymous memory, in bytes."},
    {"container_memory_cache", MetricType::gauge, kLabels, "nodeperf_cgroup_memory_cache_bytes",
     "Page cache, in bytes."},
    {"container_memory_swap", MetricType::gauge, kLabels, "nodeperf_cgroup_memory_swap_bytes",
     "Swap used, in bytes (only with swap accounting)."},
    {"container_spec_memory_limit_bytes", MetricType::gauge, kLabels, "nodeperf_cgroup_memory_limit_bytes",
     "Memory limit; 0 when unlimited, as in cAdvisor."},
    {"container_oom_events_total", MetricType::counter, kLabels, "nodeperf_cgroup_memory_oom_events_total",
     "Times the cgroup hit its memory limit and the OOM killer was invoked (v2 only)."},
    {"container_threads", MetricType::gauge, kLabels, "nodeperf_cgroup_pids_current",
     "Tasks (threads) in the cgroup."},
    {"container_threads_max", MetricType::gauge, kLabels, "nodeperf_cgroup_pids_limit",
     "Most tasks allowed; 0 when unlimited, as in cAdvisor."},
    {"container_pressure_cpu_waiting_seconds_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_pressure_cpu_waiting_seconds_total", "Time some tasks waited for a CPU (PSI some)."},
    {"container_pressure_cpu_stalled_seconds_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_pressure_cpu_stalled_seconds_total", "Time no task could run for want of a CPU (PSI full)."},
    {"container_pressure_memory_waiting_seconds_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_pressure_memory_waiting_seconds_total", "Time some tasks stalled on memory (PSI some)."},
    {"container_pressure_memory_stalled_seconds_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_pressure_memory_stalled_seconds_total", "Time all non-idle tasks stalled on memory (PSI full)."},
    {"container_pressure_io_waiting_seconds_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_pressure_io_waiting_seconds_total", "Time some tasks stalled on IO (PSI some)."},
    {"container_pressure_io_stalled_seconds_total", MetricType::counter, kLabels,
     "nodeperf_cgroup_pressure_io_stalled_seconds_total", "Time all non-idle tasks stalled on IO (PSI full)."},
    {"container_fs_reads_bytes_total", MetricType::counter, kDeviceLabels, "nodeperf_cgroup_io_read_bytes_total",
     "Bytes read from the block device."},
    {"container_fs_writes_bytes_total", MetricType::counter, kDeviceLabels, "nodeperf_cgroup_io_written_bytes_total",
     "Bytes written to the block device."},
    {"container_fs_reads_total", MetricType::counter, kDeviceLabels, "nodeperf_cgroup_io_reads_total",
     "Read requests issued to the block device."},
    {"container_fs_writes_total", MetricType::counter, kDeviceLabels, "nodeperf_cgroup_io_writes_total",
     "Write requests issued to the block device."},
};

// Indexes into kMetrics; one value per cgroup first, then per device.
enum : size_t {
  cpu_usage, cpu_user, cpu_system, cfs_periods, cfs_throttled_periods, cfs_throttled,
  memory_usage, memory_working_set, memory_rss, memory_cache, memory_swap, memory_limit, oom_events,
  threads, threads_max,
  psi_first,  // some/full for cpu, memory, io
  kScalars = psi_first + 6,
  io_first = kScalars,  // read bytes, written bytes, reads, writes
};
static_assert(io_first + 4 == std::size(kMetrics));

size_t index_of(std::span<const MetricInfo> table, std::string_view name) {
  for (size_t i = 0; i < table.size(); ++i) {
    if (table[i].name == name) return i;
  }
  throw std::logic_error("cAdvisor compat: the cgroups collector has no " + std::string(name));
}

std::optional<double> at(const CadvisorCgroup& c, size_t i) { return i < c.values.size() ? c.values[i] : std::nullopt; }

}  // namespace

std::span<const MetricInfo> cadvisor_metrics() { return kMetrics; }

std::optional<std::string> cadvisor_labels(std::string_view path, const KubernetesRef& ref, const PodNames* names) {
  // A pod's own cgroup sits under no pod; a container's own directly under its pod's.
  std::optional<KubernetesRef> parent = parse_kubernetes_cgroup(path.substr(0, path.rfind('/')));
  bool own = ref.container_id.empty() ? !parent : parent && parent->container_id.empty();
  if (!own) return std::nullopt;

  std::string_view namespace_name, pod, container, image;
  if (names) {
    namespace_name = names->namespace_name;
    pod = names->pod;
    if (auto it = names->containers.find(ref.container_id); it != names->containers.end()) {
      container = it->second.name;
      image = it->second.image;
    }
  }
  const Label labels[] = {{"container", container}, {"id", path}, {"image", image},
                          {"name", ref.container_id}, {"namespace", namespace_name}, {"pod", pod}};
  std::string out;
  append_labels(out, labels);
  return out;
}

CadvisorFamilies::CadvisorFamilies(std::span<const MetricInfo> cgroup_metrics)
    : periods_(index_of(cgroup_metrics, kMetrics[cfs_periods].source)),
      memory_usage_(index_of(cgroup_metrics, kMetrics[memory_usage].source)),
      pids_current_(index_of(cgroup_metrics, kMetrics[threads].source)) {
  for (size_t m = 0; m < kScalars; ++m) from_.push_back(index_of(cgroup_metrics, kMetrics[m].source));
}

void CadvisorFamilies::emit(SampleSink& out, std::span<const CadvisorCgroup> cgroups,
                            const DeviceNamer& device_name) const {
  for (size_t m = 0; m < kScalars; ++m) {
    for (const CadvisorCgroup& c : cgroups) {
      if (m >= cfs_periods && m <= cfs_throttled && at(c, periods_).value_or(0) <= 0) {
        continue;  // cAdvisor has these only under a CPU quota; without one no period ever ends
      }
      std::optional<double> v = at(c, from_[m]);
      if ((m == memory_limit || m == threads_max) && !v && at(c, m == memory_limit ? memory_usage_ : pids_current_)) {
        v = 0;  // the controller is there and sets no limit: cAdvisor says 0
      }
      if (!v) continue;
      std::string labels(c.labels);
      if (m == cpu_usage) labels += ",cpu=\"total\"";
      out.add_rendered(kMetrics[m], *v, std::move(labels));
    }
  }
  // cAdvisor names a device by its path, "/dev/sda". One without a kernel
  // name gets udev's /dev/block/MAJ:MIN rather than cAdvisor's "", which
  // would give two such devices the same labels.
  std::vector<std::string> io_labels;  // per (cgroup, device), rendered once for the four families
  for (const CadvisorCgroup& c : cgroups) {
    for (const CgroupDeviceIo& d : c.io) {
      const std::string& name = device_name(d.major, d.minor);
      std::string l = std::string(c.labels) + ",device=\"/dev/";
      if (name.find(':') != std::string::npos) l += "block/";
      append_escaped_label_value(l, name);
      io_labels.push_back(l + "\"");
    }
  }
  for (size_t m = 0; m < 4; ++m) {
    size_t k = 0;
    for (const CadvisorCgroup& c : cgroups) {
      for (const CgroupDeviceIo& d : c.io) {
        uint64_t v = m == 0 ? d.read_bytes : m == 1 ? d.written_bytes : m == 2 ? d.reads : d.writes;
        out.add_rendered(kMetrics[io_first + m], static_cast<double>(v), io_labels[k++]);
      }
    }
  }
}

}  // namespace nodeperf
