#include "collectors/cgroups.h"

#include <fcntl.h>
#include <sys/resource.h>
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
     "Cgroups with series of their own (at most --collector.cgroups.max)."},
    {"nodeperf_cgroups_folded", MetricType::gauge, "", "cgroupfs",
     "Cgroups over --collector.cgroups.max: their figures are summed into the cgroup=\"other\" series."},
    {"nodeperf_cgroups_rank_swaps_total", MetricType::counter, "", "cgroupfs",
     "Times a busier folded cgroup took the own series of a quieter tracked one (ranked every minute by CPU)."},
    {"nodeperf_cgroups_io_folded", MetricType::gauge, "", "cgroupfs",
     "Tracked cgroups whose IO series are summed into cgroup=\"other\" (over --collector.cgroups.max-io-series)."},
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
  folded_metric,
  swaps_metric,
  io_folded_metric,
  info_metric,
  inactive_file = kScalars,  // a scratch slot after the scalars: working set = usage - inactive_file
  kSlots,
};
static_assert(info_metric + 1 == std::size(kMetrics));

struct CgroupStats {
  std::array<std::optional<double>, kSlots> v;
  std::vector<CgroupDeviceIo> io;
  bool read = false;  // false until the first read
};

// Which hierarchy each group of figures is read from.
enum Source : size_t { src_cpuacct, src_cpu, src_memory, src_io, src_pids, src_psi, kSources };

// What is read when. Every tick: CPU usage and throttling, memory usage and
// IO per device, what `nodeperf top` shows. Every kDetailEvery ticks:
// memory.stat (the costliest file: ~13 us of kernel time), swap, PSI, tasks
// and v1's user/system split (v2 has it in cpu.stat, read every tick).
// Every kSlowEvery ticks: limits and OOM events, which change seldom.
// Each cgroup has its own phase, so the reads spread evenly over the ticks;
// a figure keeps its last value between reads. Opening a cgroup file costs
// ~3 us however small it is, so files read are what the collector costs.
constexpr unsigned kDetailEvery = 5, kSlowEvery = 10;
enum class Tier { tick, detail, slow };
constexpr Tier tier(size_t slot) {
  if (slot == mem_limit || slot == pids_limit || slot == mem_oom || slot == mem_oom_kill) return Tier::slow;
  if (slot == cpu_user || slot == cpu_system || slot == mem_working_set || slot == mem_rss || slot == mem_cache ||
      slot == mem_swap || slot == inactive_file || slot == pids_current || (slot >= psi_first && slot < psi_first + 6)) {
    return Tier::detail;
  }
  return Tier::tick;
}

// Past the budget, the cgroups are re-ranked by CPU time used every
// kRankEvery ticks; a folded cgroup takes a tracked one's place only when
// it used more than twice as much (and over a millisecond), so series do
// not flap between a cgroup and `other`.
constexpr unsigned kRankEvery = 60;

// Where a cgroup's files are in one hierarchy: an O_PATH descriptor of its
// directory, and the directory's path for messages and for opening by full
// path when there is no descriptor.
struct DirRef {
  int fd;
  const std::string& root;  // the hierarchy's
  const std::string& path;  // the cgroup's, "/" for the root
  std::string dir() const { return path == "/" ? root : root + path; }
  std::string file(const char* name) const { return dir() + "/" + name; }
};

// Reads small cgroup files into one reused buffer. A file that is missing
// (controller not enabled, no swap accounting) or whose cgroup went away
// is simply absent; other failures are problems.
class FileReader {
 public:
  std::optional<std::string_view> read(const DirRef& dir, const char* name, Problems& problems) {
    int fd = dir.fd >= 0 ? ::openat(dir.fd, name, O_RDONLY | O_CLOEXEC)
                         : ::open(dir.file(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno != ENOENT && errno != ENODEV && errno != ESRCH) {
        problems.add(dir.file(name) + ": open: " + std::strerror(errno));
      }
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
        if (err != ENODEV && err != ENOENT) problems.add(dir.file(name) + ": read: " + std::strerror(err));
        return std::nullopt;
      }
      if (n == 0) break;
      total += static_cast<size_t>(n);
      // kernfs hands over a cgroup file's whole text in one read when the
      // buffer holds it: a short read is the end, no second call needed.
      if (total < buf_.size()) break;
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
                 const DirRef& dir, const char* name) {
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
        problems.add(dir.file(name) + ": bad value for " + std::string(key) + ": '" +
                     std::string(value.substr(0, 40)) + "'");
      } else {
        s.v[w.slot] = static_cast<double>(*v) * w.scale;
      }
    }
  }
}

void read_keyed(FileReader& r, const DirRef& dir, const char* name, std::span<const KeyedSlot> wanted, CgroupStats& s,
                Problems& p) {
  if (auto text = r.read(dir, name, p)) parse_keyed(*text, wanted, s, p, dir, name);
}

void read_number(FileReader& r, const DirRef& dir, const char* name, size_t slot, double scale, CgroupStats& s,
                 Problems& p) {
  auto text = r.read(dir, name, p);
  if (!text) return;
  auto v = parse_u64(trim(std::string_view(*text).substr(0, text->find('\n'))));
  if (!v) {
    p.add(dir.file(name) + ": not a number: '" + std::string(text->substr(0, 40)) + "'");
    return;
  }
  s.v[slot] = static_cast<double>(*v) * scale;
}

void read_limit(FileReader& r, const DirRef& dir, const char* name, size_t slot, CgroupStats& s, Problems& p) {
  auto text = r.read(dir, name, p);
  if (!text) return;
  bool bad = false;
  auto v = parse_cgroup_limit(*text, bad);
  if (bad) p.add(dir.file(name) + ": not a limit: '" + std::string(text->substr(0, 40)) + "'");
  if (v) s.v[slot] = static_cast<double>(*v);
}

void read_psi(FileReader& r, const DirRef& dir, CgroupStats& s, Problems& p) {
  constexpr const char* files[] = {"cpu.pressure", "memory.pressure", "io.pressure"};
  for (size_t i = 0; i < 3; ++i) {
    auto text = r.read(dir, files[i], p);
    if (!text) continue;
    auto t = parse_pressure(*text);
    if (!t) {
      p.add(dir.file(files[i]) + ": malformed");
      continue;
    }
    if (t->some_us) s.v[psi_first + 2 * i] = static_cast<double>(*t->some_us) * 1e-6;
    if (t->full_us) s.v[psi_first + 2 * i + 1] = static_cast<double>(*t->full_us) * 1e-6;
  }
}

// How many directory descriptors the collector may hold: all the agent's
// descriptors but a reserve for sockets, BPF objects and the files it reads,
// so a node with more cgroups than descriptors slows the collector down
// (full paths) instead of starving the HTTP server.
struct DirFdBudget {
  size_t open = 0, max = 0;
};

// O_PATH descriptors of one cgroup's directory in each hierarchy, opened
// on first use and kept while the cgroup lives: a file is then opened with
// one path component to walk instead of the whole path, which was a third
// of the collector's CPU. Past the budget, or when a descriptor cannot be
// had, that cgroup's files are opened by full path.
class DirFds {
 public:
  explicit DirFds(DirFdBudget& budget) : budget_(&budget) { fd_.fill(-1); }
  ~DirFds() {
    for (int& fd : fd_) close(fd);
  }
  DirFds(DirFds&& o) noexcept : budget_(o.budget_), fd_(o.fd_), born_(o.born_) { o.fd_.fill(-1); }
  DirFds& operator=(DirFds&&) = delete;

  // `born` tells a cgroup made again under the same path from the one
  // whose (now dead) directory the descriptor holds.
  int get(size_t h, const DirRef& dir, uint64_t born) {
    if (born_[h] == born) return fd_[h];
    close(fd_[h]);
    born_[h] = born;
    if (budget_->open >= budget_->max) return -1;
    fd_[h] = ::open(dir.dir().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    budget_->open += fd_[h] >= 0;
    return fd_[h];
  }

 private:
  void close(int& fd) {
    if (fd < 0) return;
    ::close(fd);
    fd = -1;
    --budget_->open;
  }
  DirFdBudget* budget_;
  std::array<int, kSources> fd_;
  std::array<uint64_t, kSources> born_{};
};

struct Entry {
  explicit Entry(DirFdBudget& budget) : dirs(budget) {}
  uint32_t present = 0;  // bit per hierarchy
  std::array<uint64_t, kSources> born{};  // per hierarchy, from CgroupHierarchy
  bool selected = false;  // passes include/exclude
  bool tracked = false;   // has its own series; selected and not tracked: folded into `other`
  unsigned phase = 0;     // its tick for the slow files
  std::optional<KubernetesRef> k8s;  // from the path
  bool named = false;                // has the kubelet's names in `labels`
  std::string labels;  // rendered once: cgroup="...",pod_uid="..."[,namespace=...,pod=...,container=...]
  std::optional<std::string> cadvisor;  // with --compat=cadvisor, on pod and container cgroups: cAdvisor's labels
  DirFds dirs;
  CgroupStats stats, prev;  // this tick's figures and the last tick's
  double rank_base = 0;     // CPU seconds at the last ranking
  bool own_io = false;      // tracked with IO series of its own (see grant_io)
};

class CgroupsCollector final : public Collector {
 public:
  explicit CgroupsCollector(const Config& config)
      : max_(config.cgroups_max),
        max_io_series_(config.cgroups_max_io_series),
        host_root_(config.host_root), user_hz_(static_cast<double>(::sysconf(_SC_CLK_TCK))) {
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
    rlimit files{};
    constexpr rlim_t kReserve = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur > 2 * kReserve) {
      dir_fds_.max = files.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<size_t>(files.rlim_cur - kReserve);
    }
  }

  Status collect(SampleSink& out) override {
    if (hierarchies_.empty()) return Status::failed(host_path(host_root_, "sys/fs/cgroup") + ": no cgroup hierarchy found");
    refresh();
    if (!folded_.empty() && ++ticks_since_rank_ >= kRankEvery) rank();
    if (kubelet_) name_entries();
    Problems problems;
    for (auto* group : {&order_, &folded_}) {
      for (auto* kv : *group) {
        Entry& e = kv->second;
        read(kv->first, e, problems);
      }
    }
    ++tick_;
    grant_io();
    fold();
    emit(out);
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
      for (const auto& [path, dir] : hierarchies_[i]->paths()) {
        auto it = entries_.find(path);
        if (it == entries_.end()) it = entries_.emplace(path, make_entry(path)).first;
        it->second.present |= 1u << i;
        it->second.born[i] = dir.born;
      }
    }
    std::erase_if(entries_, [](const auto& kv) { return kv.second.present == 0; });
    // The budget: a tracked cgroup stays tracked; free places go to the
    // others in path order, so the choice is stable from tick to tick.
    size_t tracked = 0;
    for (auto& [path, e] : entries_) tracked += e.tracked;
    for (auto& [path, e] : entries_) {
      if (e.selected && !e.tracked && tracked < max_) {
        e.tracked = true;
        ++tracked;
      }
    }
    reorder();
  }

  void reorder() {
    order_.clear();
    folded_.clear();
    for (auto& kv : entries_) {
      if (kv.second.tracked) order_.push_back(&kv);
      else if (kv.second.selected) folded_.push_back(&kv);
    }
  }

  // The busiest folded cgroups take the places of the quietest tracked ones.
  void rank() {
    ticks_since_rank_ = 0;
    auto used = [](const Entry& e) {
      return e.stats.v[cpu_usage] ? *e.stats.v[cpu_usage] - e.rank_base : 0.0;
    };
    auto busier = [&](auto* a, auto* b) { return used(a->second) > used(b->second); };
    std::vector<std::pair<const std::string, Entry>*> in = order_, out = folded_;
    std::sort(out.begin(), out.end(), busier);
    std::sort(in.begin(), in.end(), [&](auto* a, auto* b) { return busier(b, a); });
    bool swapped = false;
    for (size_t i = 0; i < out.size() && i < in.size(); ++i) {
      if (used(out[i]->second) <= 2 * used(in[i]->second) + 1e-3) break;
      out[i]->second.tracked = true;
      in[i]->second.tracked = false;
      in[i]->second.own_io = false;
      ++swaps_;
      swapped = true;
    }
    for (auto* group : {&order_, &folded_}) {
      for (auto* kv : *group) kv->second.rank_base = kv->second.stats.v[cpu_usage].value_or(0);
    }
    if (swapped) reorder();
  }

  void use_kubelet(KubeletPods* kubelet) override {
    kubelet_ = kubelet;
    for (auto& [path, e] : entries_) {
      if (e.named) render(path, e, nullptr);  // names from a kubelet no longer asked
    }
  }

  Entry make_entry(const std::string& path) {
    Entry e(dir_fds_);
    e.selected = (!include_ || std::regex_search(path, *include_)) && !(exclude_ && std::regex_search(path, *exclude_));
    e.phase = static_cast<unsigned>(std::hash<std::string>{}(path) % kSlowEvery);
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

  // The cgroup's directory for a group of figures, or nullopt when that
  // hierarchy does not have it.
  std::optional<DirRef> dir(Source s, const std::string& path, Entry& e) {
    if (source_[s] < 0) return std::nullopt;
    auto h = static_cast<size_t>(source_[s]);
    if (!(e.present >> h & 1)) return std::nullopt;
    DirRef ref{-1, hierarchies_[h]->root(), path};
    ref.fd = e.dirs.get(h, ref, e.born[h]);  // the directory's path is built only to open it
    return ref;
  }

  // This tick's figures into e.stats, the last tick's kept in e.prev;
  // figures not due this tick are carried over.
  void read(const std::string& path, Entry& e, Problems& p) {
    bool first = !e.stats.read;
    bool detail = first || (tick_ + e.phase) % kDetailEvery == 0;
    bool slow = first || (tick_ + e.phase) % kSlowEvery == 0;
    std::swap(e.stats, e.prev);
    CgroupStats& s = e.stats;
    for (size_t m = 0; m < kSlots; ++m) {
      Tier t = tier(m);
      bool due = t == Tier::tick || (t == Tier::detail && detail) || (t == Tier::slow && slow);
      s.v[m] = due ? std::nullopt : e.prev.v[m];
    }
    s.io.clear();
    s.read = true;
    if (auto d = dir(src_cpuacct, path, e)) {
      if (is_v1_[src_cpuacct]) {
        read_number(reader_, *d, "cpuacct.usage", cpu_usage, 1e-9, s, p);
        const KeyedSlot keys[] = {{"user", cpu_user, 1 / user_hz_}, {"system", cpu_system, 1 / user_hz_}};
        if (detail) read_keyed(reader_, *d, "cpuacct.stat", keys, s, p);
      } else {
        const KeyedSlot keys[] = {{"usage_usec", cpu_usage, 1e-6}, {"user_usec", cpu_user, 1e-6},
                                  {"system_usec", cpu_system, 1e-6}, {"nr_periods", cpu_periods, 1},
                                  {"nr_throttled", cpu_throttled_periods, 1}, {"throttled_usec", cpu_throttled, 1e-6}};
        read_keyed(reader_, *d, "cpu.stat", keys, s, p);
      }
    }
    if (is_v1_[src_cpu]) {
      if (auto d = dir(src_cpu, path, e)) {
        const KeyedSlot keys[] = {{"nr_periods", cpu_periods, 1}, {"nr_throttled", cpu_throttled_periods, 1},
                                  {"throttled_time", cpu_throttled, 1e-9}};
        read_keyed(reader_, *d, "cpu.stat", keys, s, p);
      }
    }
    if (auto d = dir(src_memory, path, e)) read_memory(*d, is_v1_[src_memory], detail, slow, s, p);
    if (auto d = dir(src_pids, path, e)) {
      if (detail) read_number(reader_, *d, "pids.current", pids_current, 1, s, p);
      if (slow) read_limit(reader_, *d, "pids.max", pids_limit, s, p);
    }
    if (detail) {
      if (auto d = dir(src_psi, path, e)) read_psi(reader_, *d, s, p);
    }
    if (auto d = dir(src_io, path, e)) read_io(*d, is_v1_[src_io], s, p);
    if (!e.prev.read) e.rank_base = s.v[cpu_usage].value_or(0);  // ranked on CPU used since it was first seen
  }

  void read_memory(const DirRef& d, bool v1, bool detail, bool slow, CgroupStats& s, Problems& p) {
    read_number(reader_, d, v1 ? "memory.usage_in_bytes" : "memory.current", mem_usage, 1, s, p);
    if (detail) {
      if (v1) {
        const KeyedSlot keys[] = {{"total_rss", mem_rss, 1}, {"total_cache", mem_cache, 1},
                                  {"total_swap", mem_swap, 1}, {"total_inactive_file", inactive_file, 1}};
        read_keyed(reader_, d, "memory.stat", keys, s, p);
      } else {
        read_number(reader_, d, "memory.swap.current", mem_swap, 1, s, p);
        const KeyedSlot keys[] = {{"anon", mem_rss, 1}, {"file", mem_cache, 1}, {"inactive_file", inactive_file, 1}};
        read_keyed(reader_, d, "memory.stat", keys, s, p);
      }
      // Usage and inactive_file of the same tick.
      if (s.v[mem_usage] && s.v[inactive_file]) {
        s.v[mem_working_set] = std::max(0.0, *s.v[mem_usage] - *s.v[inactive_file]);
      }
    }
    if (slow) {
      read_limit(reader_, d, v1 ? "memory.limit_in_bytes" : "memory.max", mem_limit, s, p);
      const KeyedSlot v1_oom[] = {{"oom_kill", mem_oom_kill, 1}};
      const KeyedSlot v2_oom[] = {{"oom", mem_oom, 1}, {"oom_kill", mem_oom_kill, 1}};
      if (v1) read_keyed(reader_, d, "memory.oom_control", v1_oom, s, p);
      else read_keyed(reader_, d, "memory.events", v2_oom, s, p);
    }
  }

  void read_io(const DirRef& d, bool v1, CgroupStats& s, Problems& p) {
    std::optional<std::vector<CgroupDeviceIo>> io;
    if (v1) {
      const char* bytes_file = "blkio.throttle.io_service_bytes_recursive";
      auto bytes = reader_.read(d, bytes_file, p);
      if (!bytes) return;
      std::string bytes_text(*bytes);  // the reader's buffer is reused for the second file
      auto ios = reader_.read(d, "blkio.throttle.io_serviced_recursive", p);
      if (!ios) return;
      io = parse_blkio(bytes_text, *ios);
      if (!io) p.add(d.file(bytes_file) + ": malformed");
    } else if (auto text = reader_.read(d, "io.stat", p)) {
      io = parse_io_stat(*text);
      if (!io) p.add(d.file("io.stat") + ": malformed");
    }
    if (io) s.io = std::move(*io);
  }

  // Adds what the folded cgroups did this tick to `other`: the growth of
  // their counters (so `other`'s counters never go back when a cgroup moves
  // in or out) and the sum of their gauges. Limits are not summed.
  void fold() {
    other_gauges_.fill(std::nullopt);
    for (const auto* kv : folded_) {
      const Entry& e = kv->second;
      for (size_t m = 0; m < kScalars; ++m) {
        if (!e.stats.v[m] || m == mem_limit || m == pids_limit) continue;
        if (kMetrics[m].type == MetricType::counter) {
          double grew = e.prev.v[m] ? std::max(0.0, *e.stats.v[m] - *e.prev.v[m]) : 0.0;
          other_counters_[m] = other_counters_[m].value_or(0) + grew;
        } else {
          other_gauges_[m] = other_gauges_[m].value_or(0) + *e.stats.v[m];
        }
      }
      fold_io(e);
    }
    for (const auto* kv : order_) {
      if (!kv->second.own_io) fold_io(kv->second);
    }
  }

  void fold_io(const Entry& e) {
    for (const CgroupDeviceIo& d : e.stats.io) {
      const CgroupDeviceIo* before = nullptr;
        for (const CgroupDeviceIo& b : e.prev.io) {
          if (b.major == d.major && b.minor == d.minor) before = &b;
        }
      CgroupDeviceIo& sum = other_io_.try_emplace(uint64_t{d.major} << 32 | d.minor, CgroupDeviceIo{d.major, d.minor})
                                .first->second;
      if (!before || !e.prev.read) continue;
      auto grew = [](uint64_t now, uint64_t then) { return now > then ? now - then : 0; };
      sum.read_bytes += grew(d.read_bytes, before->read_bytes);
      sum.written_bytes += grew(d.written_bytes, before->written_bytes);
      sum.reads += grew(d.reads, before->reads);
      sum.writes += grew(d.writes, before->writes);
    }
  }

  // The IO families' own budget: a tracked cgroup gets (cgroup, device)
  // series of its own while fewer than max_io_series exist, and keeps them
  // (with any device it starts using) while tracked; the IO of the others
  // goes to `other`. Soft: a cgroup with its own IO series that starts on a
  // new device may pass the budget by that device.
  void grant_io() {
    size_t own = 0;
    for (const auto* kv : order_) own += kv->second.own_io ? kv->second.stats.io.size() : 0;
    io_folded_ = 0;
    for (auto* kv : order_) {
      Entry& e = kv->second;
      if (!e.own_io && !e.stats.io.empty() && own + e.stats.io.size() <= max_io_series_) {
        e.own_io = true;
        own += e.stats.io.size();
      }
      io_folded_ += !e.own_io && !e.stats.io.empty();
    }
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

  std::string io_labels(const std::string& labels, const CgroupDeviceIo& d) {
    std::string l = labels + ",device=\"";
    append_escaped_label_value(l, device_name(d.major, d.minor));
    return l + "\"";
  }

  // One family at a time, so the sink appends to the same family in a row.
  void emit(SampleSink& out) {
    static const std::string kOther = "cgroup=\"other\"";
    for (size_t m = 0; m < kScalars; ++m) {
      for (const auto* kv : order_) {
        if (kv->second.stats.v[m]) out.add_rendered(kMetrics[m], *kv->second.stats.v[m], kv->second.labels);
      }
      const auto& other = kMetrics[m].type == MetricType::counter ? other_counters_[m] : other_gauges_[m];
      if (other) out.add_rendered(kMetrics[m], *other, kOther);
    }
    std::vector<std::string> labels;  // per (cgroup, device), rendered once for the four families
    for (const auto* kv : order_) {
      if (!kv->second.own_io) continue;
      for (const CgroupDeviceIo& d : kv->second.stats.io) labels.push_back(io_labels(kv->second.labels, d));
    }
    for (const auto& [key, d] : other_io_) labels.push_back(io_labels(kOther, d));
    for (size_t m = 0; m < 4; ++m) {
      size_t k = 0;
      auto add = [&](const CgroupDeviceIo& d) {
        uint64_t v = m == 0 ? d.read_bytes : m == 1 ? d.written_bytes : m == 2 ? d.reads : d.writes;
        out.add_rendered(kMetrics[io_first + m], static_cast<double>(v), labels[k++]);
      };
      for (const auto* kv : order_) {
        if (!kv->second.own_io) continue;
        for (const CgroupDeviceIo& d : kv->second.stats.io) add(d);
      }
      for (const auto& [key, d] : other_io_) add(d);
    }
    for (const auto* kv : order_) out.add_rendered(kMetrics[info_metric], 1, kv->second.labels);
    out.add(kMetrics[tracked_metric], static_cast<double>(order_.size()));
    out.add(kMetrics[folded_metric], static_cast<double>(folded_.size()));
    out.add(kMetrics[swaps_metric], static_cast<double>(swaps_));
    out.add(kMetrics[io_folded_metric], static_cast<double>(io_folded_));
    if (cadvisor_) emit_cadvisor(out);
  }

  // cAdvisor's families for the tracked pod and container cgroups (folded
  // ones have no series of their own there either).
  void emit_cadvisor(SampleSink& out) {
    std::vector<CadvisorCgroup> cgroups;
    for (const auto* kv : order_) {
      const Entry& e = kv->second;
      if (e.cadvisor) cgroups.push_back({*e.cadvisor, std::span(e.stats.v).first(kScalars), e.stats.io});
    }
    cadvisor_->emit(out, cgroups, [this](uint32_t major, uint32_t minor) -> const std::string& {
      return device_name(major, minor);
    });
  }

  DirFdBudget dir_fds_;  // before entries_, which give theirs back when destroyed
  KubeletPods* kubelet_ = nullptr;
  std::optional<CadvisorFamilies> cadvisor_;  // --compat=cadvisor
  size_t max_, max_io_series_;
  std::string host_root_;
  double user_hz_;
  std::optional<std::regex> include_, exclude_;
  std::vector<std::unique_ptr<CgroupHierarchy>> hierarchies_;
  std::vector<std::string> real_;
  std::vector<uint64_t> seen_;  // generation of each hierarchy at the last merge
  int source_[kSources] = {};
  bool is_v1_[kSources] = {};
  std::map<std::string, Entry, std::less<>> entries_;
  using EntryRef = std::pair<const std::string, Entry>*;
  std::vector<EntryRef> order_;   // tracked, in path order
  std::vector<EntryRef> folded_;  // selected but over the budget, in path order
  uint64_t tick_ = 0;
  unsigned ticks_since_rank_ = 0;
  uint64_t swaps_ = 0;
  size_t io_folded_ = 0;  // tracked cgroups whose IO is in `other`
  std::array<std::optional<double>, kScalars> other_counters_, other_gauges_;
  std::map<uint64_t, CgroupDeviceIo> other_io_;  // by device
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
