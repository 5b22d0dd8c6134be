#include "collectors/vmstat.h"

#include "agent/config.h"
#include "collectors/keyed_metrics.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

// node_exporter exports these untyped; so do we, to keep its names.
constexpr MetricInfo kMetrics[] = {
    {"nodeperf_vmstat_pgfault", MetricType::untyped, "", "/proc/vmstat", "Page faults (minor and major).", true},
    {"nodeperf_vmstat_pgmajfault", MetricType::untyped, "", "/proc/vmstat",
     "Major page faults: faults that needed IO.", true},
    {"nodeperf_vmstat_pgpgin", MetricType::untyped, "", "/proc/vmstat", "KiB paged in from disk.", true},
    {"nodeperf_vmstat_pgpgout", MetricType::untyped, "", "/proc/vmstat", "KiB paged out to disk.", true},
    {"nodeperf_vmstat_pswpin", MetricType::untyped, "", "/proc/vmstat", "Pages swapped in.", true},
    {"nodeperf_vmstat_pswpout", MetricType::untyped, "", "/proc/vmstat", "Pages swapped out.", true},
    {"nodeperf_vmstat_oom_kill", MetricType::untyped, "", "/proc/vmstat",
     "Processes killed by the OOM killer.", true},
};

class VmstatCollector final : public Collector {
 public:
  explicit VmstatCollector(const Config& config)
      : file_(host_path(config.host_root, "proc/vmstat")), metrics_(kMetrics, "nodeperf_vmstat_") {}

  Status collect(SampleSink& out) override {
    std::string error;
    auto text = file_.read(&error);
    if (!text) return Status::failed(error);
    Problems problems;
    size_t emitted = 0;
    Lines lines(*text);
    std::string_view line;
    while (lines.next(line)) {
      Fields fields(line);
      std::string_view key, value;
      if (!fields.next(key)) continue;
      const MetricInfo* m = metrics_.find(key);
      if (!m) continue;
      std::optional<uint64_t> v;
      if (fields.next(value)) v = parse_u64(value);
      if (!v) {
        problems.add(file_.path() + ": bad value for " + std::string(key));
        continue;
      }
      out.add(*m, static_cast<double>(*v));
      ++emitted;
    }
    if (emitted == 0) return Status::failed(file_.path() + ": no known fields");
    return problems.status();
  }

 private:
  ProcFile file_;
  KeyedMetrics metrics_;
};

}  // namespace

const CollectorFactory kVmstatCollector{
    "vmstat", "Page faults, paging, swapping and OOM kills (/proc/vmstat)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<VmstatCollector>(c); }};

}  // namespace nodeperf
