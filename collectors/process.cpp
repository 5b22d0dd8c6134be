#include "collectors/process.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>

#include "agent/config.h"
#include "collectors/cpu.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"process_cpu_seconds_total", MetricType::counter, "", "/proc/self/stat",
     "User and system CPU time of the agent."},
    {"process_resident_memory_bytes", MetricType::gauge, "", "/proc/self/stat", "Resident set size of the agent."},
    {"process_virtual_memory_bytes", MetricType::gauge, "", "/proc/self/stat", "Virtual memory size of the agent."},
    {"process_start_time_seconds", MetricType::gauge, "", "/proc/self/stat",
     "Start time of the agent, in seconds since the epoch."},
    {"process_open_fds", MetricType::gauge, "", "/proc/self/fd", "Open file descriptors of the agent."},
    {"process_max_fds", MetricType::gauge, "", "getrlimit", "Limit on open file descriptors of the agent."},
};
enum { kCpu, kRss, kVirtual, kStart, kOpenFds, kMaxFds };

size_t count_open_fds() {
  size_t n = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(dir);
    if (n > 0) --n;  // the descriptor of the directory itself
  }
  return n;
}

// The agent's own process, not the host's: always the real /proc/self.
class ProcessCollector final : public Collector {
 public:
  explicit ProcessCollector(const Config&)
      : stat_("/proc/self/stat"),
        ticks_per_second_(static_cast<double>(sysconf(_SC_CLK_TCK))),
        page_size_(static_cast<double>(sysconf(_SC_PAGESIZE))) {
    ProcFile proc_stat("/proc/stat");
    Problems ignored;
    if (auto text = proc_stat.read(nullptr)) boot_time_ = parse_proc_stat(*text, ignored).btime;
  }

  Status collect(SampleSink& out) override {
    std::string error;
    auto text = stat_.read(&error);
    if (!text) return Status::failed(error);
    auto stat = parse_process_stat(*text);
    if (!stat) return Status::failed(stat_.path() + ": malformed");
    out.add(kMetrics[kCpu], static_cast<double>(stat->utime_ticks + stat->stime_ticks) / ticks_per_second_);
    out.add(kMetrics[kRss], static_cast<double>(stat->rss_pages) * page_size_);
    out.add(kMetrics[kVirtual], static_cast<double>(stat->vsize_bytes));
    if (boot_time_) {
      out.add(kMetrics[kStart], static_cast<double>(*boot_time_) + static_cast<double>(stat->start_ticks) / ticks_per_second_);
    }
    out.add(kMetrics[kOpenFds], static_cast<double>(count_open_fds()));
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) out.add(kMetrics[kMaxFds], static_cast<double>(limit.rlim_cur));
    return Status::ok();
  }

 private:
  ProcFile stat_;
  double ticks_per_second_;
  double page_size_;
  std::optional<uint64_t> boot_time_;
};

}  // namespace

std::optional<ProcessStat> parse_process_stat(std::string_view text) {
  size_t paren = text.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  // Fields after the command name, numbered as in proc(5): state is 3.
  Fields fields(text.substr(paren + 1));
  std::array<std::string_view, 22> f;  // fields 3 to 24
  for (std::string_view& x : f) {
    if (!fields.next(x)) return std::nullopt;
  }
  auto at = [&](size_t field) { return parse_u64(f[field - 3]); };
  auto utime = at(14), stime = at(15), start = at(22), vsize = at(23), rss = at(24);
  if (!utime || !stime || !start || !vsize || !rss) return std::nullopt;
  return ProcessStat{*utime, *stime, *start, *vsize, *rss};
}

const CollectorFactory kProcessCollector{
    "process", "The agent's own CPU, memory and file descriptors (process_* metrics)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<ProcessCollector>(c); }};

}  // namespace nodeperf
