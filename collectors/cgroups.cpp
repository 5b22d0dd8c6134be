#include "collectors/cgroups.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <unordered_map>

#include "agent/config.h"
#include "agent/k8s_paths.h"
#include "agent/kubelet.h"
#include "collectors/cgroup_tree.h"
#include "collectors/cgroups_cadvisor.h"
#include "collectors/parse.h"
#include "collectors/pressure.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

constexpr std::string_view kLabels = "cgroup";
constexpr std::string_view kIoLabels = "cgroup,device";

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_cgroup_cpu_usage_seconds_total", MetricType::counter, kLabels, "cpu.stat / cpuacct.usage",
     "CPU time used by the cgroup's tasks, descendants included."},
    {"nodeperf_cgroup_cpu_user_seconds_total", MetricType::counter, kLabels, "cpu.stat / cpuacct.stat",
     "CPU time in user mode."},
    {"nodeperf_cgroup_cpu_system_seconds_total", MetricType::counter, kLabels, "cpu.stat / cpuacct.stat",
     "CPU time in kernel mode."},
    {"nodeperf_cgroup_cpu_periods_total", MetricType::counter, kLabels, "cpu.stat",
     "CFS bandwidth periods in which the cgroup ran (only with a CPU quota)."},
    {"nodeperf_cgroup_cpu_throttled_periods_total", MetricType::counter, kLabels, "cpu.stat",
     "CFS periods in which the cgroup used up its quota and was throttled."},
    {"nodeperf_cgroup_cpu_throttled_seconds_total", MetricType::counter, kLabels, "cpu.stat",
     "Time the cgroup's runnable tasks were held back by its CPU quota."},
    {"nodeperf_cgroup_memory_usage_bytes", MetricType::gauge, kLabels, "memory.current / memory.usage_in_bytes",
     "Memory charged to the cgroup, page cache included."},
    {"nodeperf_cgroup_memory_working_set_bytes", MetricType::gauge, kLabels, "memory usage - inactive_file",
     "Usage minus inactive page cache: what the kubelet compares with the limit for eviction."},
    {"nodeperf_cgroup_memory_rss_bytes", MetricType::gauge, kLabels, "memory.stat anon / total_rss",
     "Anonymous memory (heap, stacks, tmpfs excluded)."},
    {"nodeperf_cgroup_memory_cache_bytes", MetricType::gauge, kLabels, "memory.stat file / total_cache",
     "Page cache charged to the cgroup."},
    {"nodeperf_cgroup_memory_swap_bytes", MetricType::gauge, kLabels, "memory.swap.current / total_swap",
     "Swap used (only with swap accounting)."},
    {"nodeperf_cgroup_memory_limit_bytes", MetricType::gauge, kLabels, "memory.max / memory.limit_in_bytes",
     "Memory limit; no series when unlimited."},
    {"nodeperf_cgroup_memory_oom_events_total", MetricType::counter, kLabels, "memory.events oom",
     "Times the cgroup hit its limit and the OOM killer was invoked (v2 only)."},
    {"nodeperf_cgroup_memory_oom_kills_total", MetricType::counter, kLabels, "memory.events / memory.oom_control",
     "Tasks killed by the OOM killer in the cgroup."},
    {"nodeperf_cgroup_pids_current", MetricType::gauge, kLabels, "pids.current", "Tasks in the cgroup."},
    {"nodeperf_cgroup_pids_limit", MetricType::gauge, kLabels, "pids.max",
     "Most tasks allowed; no series when unlimited."},
    {"nodeperf_cgroup_pressure_cpu_waiting_seconds_total", MetricType::counter, kLabels, "cpu.pressure (v2)",
     "Time at least one of the cgroup's tasks waited for a CPU (PSI some)."},
    {"nodeperf_cgroup_pressure_cpu_stalled_seconds_total", MetricType::counter, kLabels, "cpu.pressure (v2)",
     "Time all of the cgroup's non-idle tasks waited for a CPU (PSI full)."},
    {"nodeperf_cgroup_pressure_memory_waiting_seconds_total", MetricType::counter, kLabels, "memory.pressure (v2)",
     "Time at least one of the cgroup's tasks stalled on memory (PSI some)."},
    {"nodeperf_cgroup_pressure_memory_stalled_seconds_total", MetricType::counter, kLabels, "memory.pressure (v2)",
     "Time all of the cgroup's non-idle tasks stalled on memory (PSI full)."},
    {"nodeperf_cgroup_pressure_io_waiting_seconds_total", MetricType::counter, kLabels, "io.pressure (v2)",
     "Time at least one of the cgroup's tasks stalled on IO (PSI some)."},
    {"nodeperf_cgroup_pressure_io_stalled_seconds_total", MetricType::counter, kLabels, "io.pressure (v2)",
     "Time all of the cgroup's non-idle tasks stalled on IO (PSI full)."},
    {"nodeperf_cgroup_io_read_bytes_total", MetricType::counter, kIoLabels, "io.stat / blkio.throttle",
     "Bytes read from the device by the cgroup."},
    {"nodeperf_cgroup_io_written_bytes_total", MetricType::counter, kIoLabels, "io.stat / blkio.throttle",
     "Bytes written to the device by the cgroup."},
    {"nodeperf_cgroup_io_reads_total", MetricType::counter, kIoLabels, "io.stat / blkio.throttle",
     "Read requests issued to the device by the cgroup."},
    {"nodeperf_cgroup_io_writes_total", MetricType::counter, kIoLabels, "io.stat / blkio.throttle",
     "Write requests issued to the device by the cgroup."},
    {"nodeperf_cgroups_tracked", MetricType::gauge, "", "cgroupfs",
     "Cgroups whose figures are exported (at most --collector.cgroups.max)."},
    {"nodeperf_cgroups_untracked", MetricType::gauge, "", "cgroupfs",
     "Cgroups selected by the filters but left out because of --collector.cgroups.max."},
    {"nodeperf_cgroup_info", MetricType::gauge, kLabels, "cgroup path, kubelet",
     "1 per tracked cgroup, with its Kubernetes labels: join per-cgroup series that carry only `cgroup` (the eBPF "
     "ones) on it with group_left."},
};

// Indexes into kMetrics; the per-cgroup scalars come first.
enum : size_t {
  cpu_usage, cpu_user, cpu_system, cpu_periods, cpu_throttled_periods, cpu_throttled,
  mem_usage, mem_working_set, mem_rss, mem_cache, mem_swap, mem_limit, mem_oom, mem_oom_kill,
  pids_current, pids_limit,
  psi_first,  // some/full for cpu, memory, io
  kScalars = psi_first + 6,
  io_first = kScalars,  // read bytes, written bytes, reads, writes
  tracked_metric = io_first + 4,
  untracked_metric,
  info_metric,
  inactive_file = kScalars,  // a scratch slot after the scalars: working set = usage - inactive_file
  kSlots,
};
static_assert(info_metric + 1 == std::size(kMetrics));

struct CgroupStats {
  std::array<std::optional<double>, kSlots> v;
  std::vector<CgroupDeviceIo> io;
};

// Which hierarchy each group of figures is read from.
enum Source : size_t { src_cpuacct, src_cpu, src_memory, src_io, src_pids, src_psi, kSources };

// Reads small cgroup files into one reused buffer. A file that is missing
// (controller not enabled, no swap accounting) or whose cgroup went away
// is simply absent; other failures are problems.
class FileReader {
 public:
  std::optional<std::string_view> read(const std::string& path, Problems& problems) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno != ENOENT && errno != ENODEV && errno != ESRCH) problems.add(path + ": open: " + std::strerror(errno));
      return std::nullopt;
    }
    size_t total = 0;
    for (int i = 0; i < 16; ++i) {  // bounded: 16 x 64 KiB is far beyond any cgroup file
      if (total == buf_.size()) buf_.resize(buf_.size() * 2);
      ssize_t n = ::read(fd, buf_.data() + total, buf_.size() - total);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        if (err != ENODEV && err != ENOENT) problems.add(path + ": read: " + std::strerror(err));
        return std::nullopt;
      }
      if (n == 0) break;
      total += static_cast<size_t>(n);
    }
    ::close(fd);
    return std::string_view(buf_.data(), total);
  }

 private:
  std::string buf_ = std::string(8192, '\0');
};

struct KeyedSlot {
  std::string_view key;
  size_t slot;
  double scale;
};

// "key value" lines: fills the slots of the keys wanted, reports bad numbers.
void parse_keyed(std::string_view text, std::span<const KeyedSlot> wanted, CgroupStats& s, Problems& problems,
                 const std::string& path) {
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    Fields f(line);
    std::string_view key, value;
    if (!f.next(key) || !f.next(value)) continue;
    for (const KeyedSlot& w : wanted) {
      if (w.key != key) continue;
      auto v = parse_u64(value);
      if (!v) {
        problems.add(path + ": bad value for " + std::string(key) + ": '" + std::string(value.substr(0, 40)) + "'");
      } else {
        s.v[w.slot] = static_cast<double>(*v) * w.scale;
      }
    }
  }
}

void read_number(FileReader& r, const std::string& path, size_t slot, double scale, CgroupStats& s, Problems& p) {
  auto text = r.read(path, p);
  if (!text) return;
  auto v = parse_u64(trim(std::string_view(*text).substr(0, text->find('\n'))));
  if (!v) {
    p.add(path + ": not a number: '" + std::string(text->substr(0, 40)) + "'");
    return;
  }
  s.v[slot] = static_cast<double>(*v) * scale;
}

void read_limit(FileReader& r, const std::string& path, size_t slot, CgroupStats& s, Problems& p) {
  auto text = r.read(path, p);
  if (!text) return;
  bool bad = false;
  auto v = parse_cgroup_limit(*text, bad);
  if (bad) p.add(path + ": not a limit: '" + std::string(text->substr(0, 40)) + "'");
  if (v) s.v[slot] = static_cast<double>(*v);
}

void read_psi(FileReader& r, const std::string& dir, CgroupStats& s, Problems& p) {
  constexpr std::string_view files[] = {"/cpu.pressure", "/memory.pressure", "/io.pressure"};
  for (size_t i = 0; i < 3; ++i) {
    std::string path = dir + std::string(files[i]);
    auto text = r.read(path, p);
    if (!text) continue;
    auto t = parse_pressure(*text);
    if (!t) {
      p.add(path + ": malformed");
      continue;
    }
    if (t->some_us) s.v[psi_first + 2 * i] = static_cast<double>(*t->some_us) * 1e-6;
    if (t->full_us) s.v[psi_first + 2 * i + 1] = static_cast<double>(*t->full_us) * 1e-6;
  }
}

struct Entry {
  uint32_t present = 0;  // bit per hierarchy
  bool selected = false;  // passes include/exclude
  bool tracked = false;
  std::optional<KubernetesRef> k8s;  // from the path
  bool named = false;                // has the kubelet's names in `labels`
  std::string labels;  // rendered once: cgroup="...",pod_uid="..."[,namespace=...,pod=...,container=...]
  std::optional<std::string> cadvisor;  // with --compat=cadvisor, on pod and container cgroups: cAdvisor's labels
};

class CgroupsCollector final : public Collector {
 public:
  explicit CgroupsCollector(const Config& config)
      : max_(config.cgroups_max), host_root_(config.host_root), user_hz_(static_cast<double>(::sysconf(_SC_CLK_TCK))) {
    if (!config.cgroups_include.empty()) include_.emplace(config.cgroups_include, std::regex::ECMAScript);
    if (!config.cgroups_exclude.empty()) exclude_.emplace(config.cgroups_exclude, std::regex::ECMAScript);
    CgroupLayout l = detect_cgroup_layout(config.host_root);
    // Each figure from where it lives: a mounted v1 controller wins; v2 has
    // everything on a pure v2 host, and PSI only ever comes from v2.
    const std::string* from[kSources] = {&l.cpuacct, &l.cpu, &l.memory, &l.blkio, &l.pids, &l.v2};
    for (size_t s = 0; s < kSources; ++s) {
      const std::string& dir = from[s]->empty() ? l.v2 : *from[s];
      source_[s] = dir.empty() ? -1 : hierarchy(dir, config.cgroups_max_depth);
      is_v1_[s] = !from[s]->empty() && s != src_psi;
    }
    if (config.cadvisor_compat) cadvisor_.emplace(kMetrics);
  }

  Status collect(SampleSink& out) override {
    if (hierarchies_.empty()) return Status::failed(host_path(host_root_, "sys/fs/cgroup") + ": no cgroup hierarchy found");
    refresh();
    if (kubelet_) name_entries();
    Problems problems;
    std::vector<CgroupStats> stats(order_.size());
    for (size_t i = 0; i < order_.size(); ++i) read(order_[i]->first, order_[i]->second.present, stats[i], problems);
    emit(out, stats);
    return problems.status();
  }

 private:
  // One CgroupHierarchy per distinct directory (cpu and cpuacct are often
  // the same one).
  int hierarchy(const std::string& dir, unsigned depth) {
    char real[PATH_MAX];
    std::string key = ::realpath(dir.c_str(), real) ? std::string(real) : dir;
    for (size_t i = 0; i < hierarchies_.size(); ++i) {
      if (real_[i] == key) return static_cast<int>(i);
    }
    hierarchies_.push_back(std::make_unique<CgroupHierarchy>(dir, depth));
    seen_.push_back(~uint64_t{0});
    real_.push_back(key);
    return static_cast<int>(hierarchies_.size() - 1);
  }

  // Merges the hierarchies' paths into entries; a cgroup is in the union
  // (v1 hierarchies need not all have the same cgroups). Work is done only
  // when some hierarchy changed.
  void refresh() {
    bool changed = false;
    for (size_t i = 0; i < hierarchies_.size(); ++i) {
      hierarchies_[i]->refresh();
      changed = changed || hierarchies_[i]->generation() != seen_[i];
    }
    if (!changed) return;
    for (auto& [path, e] : entries_) e.present = 0;
    for (size_t i = 0; i < hierarchies_.size(); ++i) {
      seen_[i] = hierarchies_[i]->generation();
      for (const auto& [path, depth] : hierarchies_[i]->paths()) {
        auto it = entries_.find(path);
        if (it == entries_.end()) it = entries_.emplace(path, make_entry(path)).first;
        it->second.present |= 1u << i;
      }
    }
    std::erase_if(entries_, [](const auto& kv) { return kv.second.present == 0; });
    // The cap: a tracked cgroup stays tracked; free places go to the
    // others in path order, so the choice is stable from tick to tick.
    size_t tracked = 0;
    for (auto& [path, e] : entries_) tracked += e.tracked;
    untracked_ = 0;
    order_.clear();
    for (auto& kv : entries_) {
      Entry& e = kv.second;
      if (e.selected && !e.tracked && tracked < max_) {
        e.tracked = true;
        ++tracked;
      }
      if (e.tracked) order_.push_back(&kv);
      untracked_ += e.selected && !e.tracked;
    }
  }

  void use_kubelet(KubeletPods* kubelet) override {
    kubelet_ = kubelet;
    for (auto& [path, e] : entries_) {
      if (e.named) render(path, e, nullptr);  // names from a kubelet no longer asked
    }
  }

  Entry make_entry(const std::string& path) {
    Entry e;
    e.selected = (!include_ || std::regex_search(path, *include_)) && !(exclude_ && std::regex_search(path, *exclude_));
    e.k8s = parse_kubernetes_cgroup(path);
    render(path, e, nullptr);
    return e;
  }

  // The kubelet's names join a Kubernetes cgroup's labels once they are all
  // known (the pod's, and the container's for a container cgroup), so its
  // series change label set at most once: they never carry partial names.
  void name_entries() {
    for (auto* kv : order_) {
      Entry& e = kv->second;
      if (!e.k8s || e.named) continue;
      const PodNames* names = kubelet_->find(e.k8s->pod_uid);
      if (!names) continue;
      if (!e.k8s->container_id.empty() && !names->containers.contains(e.k8s->container_id)) continue;
      render(kv->first, e, names);
    }
  }

  void render(const std::string& path, Entry& e, const PodNames* names) const {
    std::vector<Label> labels = {{"cgroup", path}};
    if (e.k8s) {
      labels.push_back({"pod_uid", e.k8s->pod_uid});
      if (!e.k8s->container_id.empty()) labels.push_back({"container_id", e.k8s->container_id});
      labels.push_back({"qos", e.k8s->qos});
      if (names) {
        labels.push_back({"namespace", names->namespace_name});
        labels.push_back({"pod", names->pod});
        if (!e.k8s->container_id.empty()) labels.push_back({"container", names->containers.find(e.k8s->container_id)->second.name});
      }
    }
    e.labels.clear();
    append_labels(e.labels, labels);
    e.named = names != nullptr;
    if (cadvisor_ && e.k8s) e.cadvisor = cadvisor_labels(path, *e.k8s, names);
  }

  std::string dir(Source s, const std::string& path) const {
    const std::string& root = hierarchies_[static_cast<size_t>(source_[s])]->root();
    return path == "/" ? root : root + path;
  }
  bool has(Source s, uint32_t present) const { return source_[s] >= 0 && (present >> source_[s] & 1); }

  void read(const std::string& path, uint32_t present, CgroupStats& s, Problems& p) {
    if (has(src_cpuacct, present)) {
      std::string d = dir(src_cpuacct, path);
      if (is_v1_[src_cpuacct]) {
        read_number(reader_, d + "/cpuacct.usage", cpu_usage, 1e-9, s, p);
        if (auto t = reader_.read(d + "/cpuacct.stat", p)) {
          const KeyedSlot keys[] = {{"user", cpu_user, 1 / user_hz_}, {"system", cpu_system, 1 / user_hz_}};
          parse_keyed(*t, keys, s, p, d + "/cpuacct.stat");
        }
      } else if (auto t = reader_.read(d + "/cpu.stat", p)) {
        const KeyedSlot keys[] = {{"usage_usec", cpu_usage, 1e-6}, {"user_usec", cpu_user, 1e-6},
                                  {"system_usec", cpu_system, 1e-6}, {"nr_periods", cpu_periods, 1},
                                  {"nr_throttled", cpu_throttled_periods, 1}, {"throttled_usec", cpu_throttled, 1e-6}};
        parse_keyed(*t, keys, s, p, d + "/cpu.stat");
      }
    }
    if (has(src_cpu, present) && is_v1_[src_cpu]) {
      std::string d = dir(src_cpu, path);
      if (auto t = reader_.read(d + "/cpu.stat", p)) {
        const KeyedSlot keys[] = {{"nr_periods", cpu_periods, 1}, {"nr_throttled", cpu_throttled_periods, 1},
                                  {"throttled_time", cpu_throttled, 1e-9}};
        parse_keyed(*t, keys, s, p, d + "/cpu.stat");
      }
    }
    if (has(src_memory, present)) read_memory(dir(src_memory, path), is_v1_[src_memory], s, p);
    if (has(src_pids, present)) {
      std::string d = dir(src_pids, path);
      read_number(reader_, d + "/pids.current", pids_current, 1, s, p);
      read_limit(reader_, d + "/pids.max", pids_limit, s, p);
    }
    if (has(src_psi, present)) read_psi(reader_, dir(src_psi, path), s, p);
    if (has(src_io, present)) read_io(dir(src_io, path), is_v1_[src_io], s, p);
  }

  void read_memory(const std::string& d, bool v1, CgroupStats& s, Problems& p) {
    if (v1) {
      read_number(reader_, d + "/memory.usage_in_bytes", mem_usage, 1, s, p);
      read_limit(reader_, d + "/memory.limit_in_bytes", mem_limit, s, p);
      if (auto t = reader_.read(d + "/memory.stat", p)) {
        const KeyedSlot keys[] = {{"total_rss", mem_rss, 1}, {"total_cache", mem_cache, 1},
                                  {"total_swap", mem_swap, 1}, {"total_inactive_file", inactive_file, 1}};
        parse_keyed(*t, keys, s, p, d + "/memory.stat");
      }
      if (auto t = reader_.read(d + "/memory.oom_control", p)) {
        const KeyedSlot keys[] = {{"oom_kill", mem_oom_kill, 1}};
        parse_keyed(*t, keys, s, p, d + "/memory.oom_control");
      }
    } else {
      read_number(reader_, d + "/memory.current", mem_usage, 1, s, p);
      read_number(reader_, d + "/memory.swap.current", mem_swap, 1, s, p);
      read_limit(reader_, d + "/memory.max", mem_limit, s, p);
      if (auto t = reader_.read(d + "/memory.stat", p)) {
        const KeyedSlot keys[] = {{"anon", mem_rss, 1}, {"file", mem_cache, 1}, {"inactive_file", inactive_file, 1}};
        parse_keyed(*t, keys, s, p, d + "/memory.stat");
      }
      if (auto t = reader_.read(d + "/memory.events", p)) {
        const KeyedSlot keys[] = {{"oom", mem_oom, 1}, {"oom_kill", mem_oom_kill, 1}};
        parse_keyed(*t, keys, s, p, d + "/memory.events");
      }
    }
    if (s.v[mem_usage] && s.v[inactive_file]) {
      s.v[mem_working_set] = std::max(0.0, *s.v[mem_usage] - *s.v[inactive_file]);
    }
  }

  void read_io(const std::string& d, bool v1, CgroupStats& s, Problems& p) {
    std::optional<std::vector<CgroupDeviceIo>> io;
    if (v1) {
      std::string bytes_path = d + "/blkio.throttle.io_service_bytes_recursive";
      auto bytes = reader_.read(bytes_path, p);
      if (!bytes) return;
      std::string bytes_text(*bytes);  // the reader's buffer is reused for the second file
      auto ios = reader_.read(d + "/blkio.throttle.io_serviced_recursive", p);
      if (!ios) return;
      io = parse_blkio(bytes_text, *ios);
      if (!io) p.add(bytes_path + ": malformed");
    } else if (auto text = reader_.read(d + "/io.stat", p)) {
      io = parse_io_stat(*text);
      if (!io) p.add(d + "/io.stat: malformed");
    }
    if (io) s.io = std::move(*io);
  }

  // The kernel's name for a block device ("sda"), from /sys/dev/block.
  const std::string& device_name(uint32_t major, uint32_t minor) {
    uint64_t key = uint64_t{major} << 32 | minor;
    auto it = devices_.find(key);
    if (it != devices_.end()) return it->second;
    std::string numbers = std::to_string(major) + ":" + std::to_string(minor);
    char target[PATH_MAX];
    ssize_t n = ::readlink(host_path(host_root_, "sys/dev/block/" + numbers).c_str(), target, sizeof target - 1);
    std::string name = numbers;  // a device gone or unknown keeps its numbers
    if (n > 0) {
      std::string_view t(target, static_cast<size_t>(n));
      name = std::string(t.substr(t.rfind('/') + 1));
    }
    return devices_.emplace(key, std::move(name)).first->second;
  }

  // One family at a time, so the sink appends to the same family in a row.
  void emit(SampleSink& out, const std::vector<CgroupStats>& stats) {
    for (size_t m = 0; m < kScalars; ++m) {
      for (size_t i = 0; i < stats.size(); ++i) {
        if (stats[i].v[m]) out.add_rendered(kMetrics[m], *stats[i].v[m], order_[i]->second.labels);
      }
    }
    std::vector<std::string> io_labels;  // per (cgroup, device), rendered once for the four families
    for (size_t i = 0; i < stats.size(); ++i) {
      for (const CgroupDeviceIo& d : stats[i].io) {
        std::string l = order_[i]->second.labels + ",device=\"";
        append_escaped_label_value(l, device_name(d.major, d.minor));
        io_labels.push_back(l + "\"");
      }
    }
    for (size_t m = 0; m < 4; ++m) {
      size_t k = 0;
      for (const CgroupStats& s : stats) {
        for (const CgroupDeviceIo& d : s.io) {
          uint64_t v = m == 0 ? d.read_bytes : m == 1 ? d.written_bytes : m == 2 ? d.reads : d.writes;
          out.add_rendered(kMetrics[io_first + m], static_cast<double>(v), io_labels[k++]);
        }
      }
    }
    for (const auto* kv : order_) out.add_rendered(kMetrics[info_metric], 1, kv->second.labels);
    out.add(kMetrics[tracked_metric], static_cast<double>(order_.size()));
    out.add(kMetrics[untracked_metric], static_cast<double>(untracked_));
    if (cadvisor_) emit_cadvisor(out, stats);
  }

  void emit_cadvisor(SampleSink& out, const std::vector<CgroupStats>& stats) {
    std::vector<CadvisorCgroup> cgroups;
    for (size_t i = 0; i < stats.size(); ++i) {
      const Entry& e = order_[i]->second;
      if (e.cadvisor) cgroups.push_back({*e.cadvisor, std::span(stats[i].v).first(kScalars), stats[i].io});
    }
    cadvisor_->emit(out, cgroups, [this](uint32_t major, uint32_t minor) -> const std::string& {
      return device_name(major, minor);
    });
  }

  KubeletPods* kubelet_ = nullptr;
  std::optional<CadvisorFamilies> cadvisor_;  // --compat=cadvisor
  size_t max_;
  std::string host_root_;
  double user_hz_;
  std::optional<std::regex> include_, exclude_;
  std::vector<std::unique_ptr<CgroupHierarchy>> hierarchies_;
  std::vector<std::string> real_;
  std::vector<uint64_t> seen_;  // generation of each hierarchy at the last merge
  int source_[kSources] = {};
  bool is_v1_[kSources] = {};
  std::map<std::string, Entry, std::less<>> entries_;
  std::vector<std::pair<const std::string, Entry>*> order_;  // tracked entries, in path order
  size_t untracked_ = 0;
  FileReader reader_;
  std::unordered_map<uint64_t, std::string> devices_;
};

bool parse_device(std::string_view field, uint32_t& major, uint32_t& minor) {
  size_t colon = field.find(':');
  if (colon == std::string_view::npos) return false;
  auto ma = parse_u64(field.substr(0, colon)), mi = parse_u64(field.substr(colon + 1));
  if (!ma || !mi || *ma > UINT32_MAX || *mi > UINT32_MAX) return false;
  major = static_cast<uint32_t>(*ma);
  minor = static_cast<uint32_t>(*mi);
  return true;
}

CgroupDeviceIo& device(std::vector<CgroupDeviceIo>& all, uint32_t major, uint32_t minor) {
  for (CgroupDeviceIo& d : all) {
    if (d.major == major && d.minor == minor) return d;
  }
  return all.emplace_back(CgroupDeviceIo{major, minor});
}

// One blkio file's "MAJ:MIN Op N" lines into the read/write fields given.
bool parse_blkio_file(std::string_view text, std::vector<CgroupDeviceIo>& out, uint64_t CgroupDeviceIo::*read,
                      uint64_t CgroupDeviceIo::*write) {
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    Fields f(line);
    std::string_view dev, op, value;
    if (!f.next(dev)) continue;
    if (dev == "Total") continue;  // the closing sum over devices
    uint32_t major = 0, minor = 0;
    if (!parse_device(dev, major, minor) || !f.next(op) || !f.next(value)) return false;
    auto v = parse_u64(value);
    if (!v) return false;
    if (op == "Read") device(out, major, minor).*read = *v;
    if (op == "Write") device(out, major, minor).*write = *v;
  }
  return true;
}

}  // namespace

std::optional<std::vector<CgroupDeviceIo>> parse_io_stat(std::string_view text) {
  std::vector<CgroupDeviceIo> out;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    Fields f(line);
    std::string_view dev, kv;
    if (!f.next(dev)) continue;
    CgroupDeviceIo d;
    if (!parse_device(dev, d.major, d.minor)) return std::nullopt;
    while (f.next(kv)) {
      size_t eq = kv.find('=');
      if (eq == std::string_view::npos) return std::nullopt;
      std::string_view key = kv.substr(0, eq);
      auto v = parse_u64(kv.substr(eq + 1));
      if (!v) return std::nullopt;
      if (key == "rbytes") d.read_bytes = *v;
      if (key == "wbytes") d.written_bytes = *v;
      if (key == "rios") d.reads = *v;
      if (key == "wios") d.writes = *v;
    }
    out.push_back(d);
  }
  return out;
}

std::optional<std::vector<CgroupDeviceIo>> parse_blkio(std::string_view bytes, std::string_view ios) {
  std::vector<CgroupDeviceIo> out;
  if (!parse_blkio_file(bytes, out, &CgroupDeviceIo::read_bytes, &CgroupDeviceIo::written_bytes) ||
      !parse_blkio_file(ios, out, &CgroupDeviceIo::reads, &CgroupDeviceIo::writes)) {
    return std::nullopt;
  }
  return out;
}

std::optional<uint64_t> parse_cgroup_limit(std::string_view text, bool& bad) {
  bad = false;
  std::string_view t = trim(text.substr(0, text.find('\n')));
  if (t == "max") return std::nullopt;
  auto v = parse_u64(t);
  if (!v) {
    bad = true;
    return std::nullopt;
  }
  // v1 writes "no limit" as the page counter's maximum rounded to pages
  // (0x7ffffffffffff000 with 4 KiB pages); nothing real comes near 2^62.
  if (*v >= (uint64_t{1} << 62)) return std::nullopt;
  return v;
}

const CollectorFactory kCgroupsCollector{
    "cgroups", "Per cgroup CPU, memory, IO, PSI and pids figures (cgroupfs v1, v2 and hybrid)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<CgroupsCollector>(c); }};

}  // namespace nodeperf
