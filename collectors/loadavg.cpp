#include "collectors/loadavg.h"

#include "agent/config.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_load1", MetricType::gauge, "", "/proc/loadavg", "1 minute load average.", true},
    {"nodeperf_load5", MetricType::gauge, "", "/proc/loadavg", "5 minute load average.", true},
    {"nodeperf_load15", MetricType::gauge, "", "/proc/loadavg", "15 minute load average.", true},
};

class LoadavgCollector final : public Collector {
 public:
  explicit LoadavgCollector(const Config& config) : file_(host_path(config.host_root, "proc/loadavg")) {}

  Status collect(SampleSink& out) override {
    std::string error;
    auto text = file_.read(&error);
    if (!text) return Status::failed(error);
    auto load = parse_loadavg(*text);
    if (!load) return Status::failed(file_.path() + ": malformed");
    for (size_t i = 0; i < 3; ++i) out.add(kMetrics[i], (*load)[i]);
    return Status::ok();
  }

 private:
  ProcFile file_;
};

}  // namespace

std::optional<std::array<double, 3>> parse_loadavg(std::string_view text) {
  Fields fields(text);
  std::array<double, 3> load{};
  for (double& l : load) {
    std::string_view f;
    if (!fields.next(f)) return std::nullopt;
    auto v = parse_double(f);
    if (!v || *v < 0) return std::nullopt;
    l = *v;
  }
  return load;
}

const CollectorFactory kLoadavgCollector{
    "loadavg", "Load averages (/proc/loadavg)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<LoadavgCollector>(c); }};

}  // namespace nodeperf
