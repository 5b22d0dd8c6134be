#include "collectors/cpu.h"

#include <unistd.h>

#include "agent/config.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_cpu_seconds_total", MetricType::counter, "cpu,mode", "/proc/stat",
     "Seconds the CPU spent in each mode.", true},
    {"nodeperf_cpu_guest_seconds_total", MetricType::counter, "cpu,mode", "/proc/stat",
     "Seconds the CPU spent running guests (also counted in user and nice).", true},
    {"nodeperf_context_switches_total", MetricType::counter, "", "/proc/stat", "Context switches.", true},
    {"nodeperf_forks_total", MetricType::counter, "", "/proc/stat", "Processes and threads created.", true},
    {"nodeperf_intr_total", MetricType::counter, "", "/proc/stat", "Interrupts serviced.", true},
    {"nodeperf_procs_running", MetricType::gauge, "", "/proc/stat", "Threads runnable now.", true},
    {"nodeperf_procs_blocked", MetricType::gauge, "", "/proc/stat",
     "Threads blocked waiting for IO to complete.", true},
    {"nodeperf_boot_time_seconds", MetricType::gauge, "", "/proc/stat",
     "Boot time, in seconds since the epoch.", true},
};
enum { kSeconds, kGuest, kCtxt, kForks, kIntr, kRunning, kBlocked, kBoot };

constexpr std::string_view kModes[] = {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"};

std::optional<uint64_t> parse_counter_line(Fields& fields, std::string_view line, Problems& problems) {
  std::string_view value;
  if (!fields.next(value)) {
    problems.add("line '" + std::string(line) + "' has no value");
    return std::nullopt;
  }
  auto v = parse_u64(value);
  if (!v) problems.add("line '" + std::string(line.substr(0, 40)) + "': not a number");
  return v;
}

class CpuCollector final : public Collector {
 public:
  explicit CpuCollector(const Config& config)
      : file_(host_path(config.host_root, "proc/stat")),
        seconds_per_tick_(1.0 / static_cast<double>(sysconf(_SC_CLK_TCK))) {}

  Status collect(SampleSink& out) override {
    std::string error;
    auto text = file_.read(&error);
    if (!text) return Status::failed(error);
    Problems problems(file_.path());
    ProcStat stat = parse_proc_stat(*text, problems);
    for (const CpuTimes& c : stat.cpus) {
      for (size_t m = 0; m < std::size(kModes) && m < c.columns; ++m) {
        out.add(kMetrics[kSeconds], c.ticks[m] * seconds_per_tick_, {{"cpu", c.cpu}, {"mode", kModes[m]}});
      }
    }
    for (const CpuTimes& c : stat.cpus) {
      if (c.columns > 8) out.add(kMetrics[kGuest], c.ticks[8] * seconds_per_tick_, {{"cpu", c.cpu}, {"mode", "user"}});
      if (c.columns > 9) out.add(kMetrics[kGuest], c.ticks[9] * seconds_per_tick_, {{"cpu", c.cpu}, {"mode", "nice"}});
    }
    auto emit = [&](int metric, const std::optional<uint64_t>& v) {
      if (v) out.add(kMetrics[metric], static_cast<double>(*v));
    };
    emit(kCtxt, stat.ctxt);
    emit(kForks, stat.processes);
    emit(kIntr, stat.intr);
    emit(kRunning, stat.procs_running);
    emit(kBlocked, stat.procs_blocked);
    emit(kBoot, stat.btime);
    return problems.status();
  }

 private:
  ProcFile file_;
  double seconds_per_tick_;
};

}  // namespace

ProcStat parse_proc_stat(std::string_view text, Problems& problems) {
  ProcStat stat;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    Fields fields(line);
    std::string_view key;
    if (!fields.next(key)) continue;
    if (key.starts_with("cpu")) {
      if (key == "cpu") continue;  // the all-CPU line: a sum of the others
      CpuTimes c;
      c.cpu = std::string(key.substr(3));
      if (!parse_u64(c.cpu)) {
        problems.add("bad cpu name '" + std::string(key) + "'");
        continue;
      }
      std::string_view field;
      bool ok = true;
      while (c.columns < c.ticks.size() && fields.next(field)) {
        auto v = parse_u64(field);
        if (!v) {
          ok = false;
          break;
        }
        c.ticks[c.columns++] = *v;
      }
      if (!ok || c.columns < 4) {
        problems.add("malformed line for " + std::string(key));
        continue;
      }
      stat.cpus.push_back(std::move(c));
    } else if (key == "intr") {
      stat.intr = parse_counter_line(fields, line, problems);  // first field is the total
    } else if (key == "ctxt") {
      stat.ctxt = parse_counter_line(fields, line, problems);
    } else if (key == "btime") {
      stat.btime = parse_counter_line(fields, line, problems);
    } else if (key == "processes") {
      stat.processes = parse_counter_line(fields, line, problems);
    } else if (key == "procs_running") {
      stat.procs_running = parse_counter_line(fields, line, problems);
    } else if (key == "procs_blocked") {
      stat.procs_blocked = parse_counter_line(fields, line, problems);
    }
  }
  if (stat.cpus.empty()) problems.add("no per-cpu lines");
  return stat;
}

const CollectorFactory kCpuCollector{
    "cpu", "CPU time per cpu and mode, context switches, forks, runnable and blocked threads (/proc/stat)",
    kMetrics, [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<CpuCollector>(c); }};

}  // namespace nodeperf
