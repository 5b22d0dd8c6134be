#include "collectors/pressure.h"

#include "agent/config.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_pressure_cpu_waiting_seconds_total", MetricType::counter, "", "/proc/pressure/cpu",
     "Time at least one task waited for a CPU (PSI cpu some).", true},
    {"nodeperf_pressure_cpu_stalled_seconds_total", MetricType::counter, "", "/proc/pressure/cpu",
     "Time all non-idle tasks waited for a CPU (PSI cpu full, kernel 5.13+; 0 at node level).", false},
    {"nodeperf_pressure_memory_waiting_seconds_total", MetricType::counter, "", "/proc/pressure/memory",
     "Time at least one task stalled on memory (PSI memory some).", true},
    {"nodeperf_pressure_memory_stalled_seconds_total", MetricType::counter, "", "/proc/pressure/memory",
     "Time all non-idle tasks stalled on memory (PSI memory full).", true},
    {"nodeperf_pressure_io_waiting_seconds_total", MetricType::counter, "", "/proc/pressure/io",
     "Time at least one task stalled on IO (PSI io some).", true},
    {"nodeperf_pressure_io_stalled_seconds_total", MetricType::counter, "", "/proc/pressure/io",
     "Time all non-idle tasks stalled on IO (PSI io full).", true},
};

constexpr std::string_view kResources[] = {"cpu", "memory", "io"};

class PressureCollector final : public Collector {
 public:
  explicit PressureCollector(const Config& config)
      : files_{ProcFile(host_path(config.host_root, "proc/pressure/cpu")),
               ProcFile(host_path(config.host_root, "proc/pressure/memory")),
               ProcFile(host_path(config.host_root, "proc/pressure/io"))} {}

  Status collect(SampleSink& out) override {
    Problems problems;
    size_t read = 0;  // files that gave totals
    for (size_t r = 0; r < std::size(kResources); ++r) {
      std::string error;
      auto text = files_[r].read(&error);
      if (!text) {
        problems.add(error + " (PSI needs CONFIG_PSI=y, and psi=1 where the kernel defaults it off)");
        continue;
      }
      auto totals = parse_pressure(*text);
      if (!totals) {
        problems.add(files_[r].path() + ": malformed");
        continue;
      }
      ++read;
      if (totals->some_us) out.add(kMetrics[2 * r], *totals->some_us * 1e-6);
      if (totals->full_us) out.add(kMetrics[2 * r + 1], *totals->full_us * 1e-6);
    }
    Status status = problems.status();
    if (read == 0) status.kind = Status::Kind::failed;
    return status;
  }

 private:
  ProcFile files_[3];
};

}  // namespace

std::optional<PressureTotals> parse_pressure(std::string_view text) {
  PressureTotals out;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    Fields fields(line);
    std::string_view kind, field;
    if (!fields.next(kind) || (kind != "some" && kind != "full")) continue;
    while (fields.next(field)) {
      if (!field.starts_with("total=")) continue;
      auto v = parse_u64(field.substr(6));
      if (!v) return std::nullopt;
      (kind == "some" ? out.some_us : out.full_us) = *v;
    }
  }
  if (!out.some_us) return std::nullopt;
  return out;
}

const CollectorFactory kPressureCollector{
    "pressure", "Pressure stall information for cpu, memory and io (/proc/pressure)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<PressureCollector>(c); }};

}  // namespace nodeperf
