#include "collectors/diskstats.h"

#include "agent/config.h"
#include "collectors/device_filter.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_disk_reads_completed_total", MetricType::counter, "device", "/proc/diskstats",
     "Reads completed.", true},
    {"nodeperf_disk_reads_merged_total", MetricType::counter, "device", "/proc/diskstats",
     "Adjacent reads merged into one.", true},
    {"nodeperf_disk_read_bytes_total", MetricType::counter, "device", "/proc/diskstats",
     "Bytes read (sectors x 512).", true},
    {"nodeperf_disk_read_time_seconds_total", MetricType::counter, "device", "/proc/diskstats",
     "Time spent on reads, summed over requests.", true},
    {"nodeperf_disk_writes_completed_total", MetricType::counter, "device", "/proc/diskstats",
     "Writes completed.", true},
    {"nodeperf_disk_writes_merged_total", MetricType::counter, "device", "/proc/diskstats",
     "Adjacent writes merged into one.", true},
    {"nodeperf_disk_written_bytes_total", MetricType::counter, "device", "/proc/diskstats",
     "Bytes written (sectors x 512).", true},
    {"nodeperf_disk_write_time_seconds_total", MetricType::counter, "device", "/proc/diskstats",
     "Time spent on writes, summed over requests.", true},
    {"nodeperf_disk_io_now", MetricType::gauge, "device", "/proc/diskstats", "IOs in flight now.", true},
    {"nodeperf_disk_io_time_seconds_total", MetricType::counter, "device", "/proc/diskstats",
     "Time the device had at least one IO in flight (its utilisation).", true},
    {"nodeperf_disk_io_time_weighted_seconds_total", MetricType::counter, "device", "/proc/diskstats",
     "IO time weighted by the number of IOs in flight (queue depth integral).", true},
    {"nodeperf_disk_discards_completed_total", MetricType::counter, "device", "/proc/diskstats",
     "Discards completed (kernel 4.18+).", true},
    {"nodeperf_disk_discards_merged_total", MetricType::counter, "device", "/proc/diskstats",
     "Adjacent discards merged into one (kernel 4.18+).", true},
    {"nodeperf_disk_discarded_sectors_total", MetricType::counter, "device", "/proc/diskstats",
     "Sectors discarded (kernel 4.18+).", true},
    {"nodeperf_disk_discard_time_seconds_total", MetricType::counter, "device", "/proc/diskstats",
     "Time spent on discards (kernel 4.18+).", true},
    {"nodeperf_disk_flush_requests_total", MetricType::counter, "device", "/proc/diskstats",
     "Flush requests completed (kernel 5.5+).", true},
    {"nodeperf_disk_flush_requests_time_seconds_total", MetricType::counter, "device", "/proc/diskstats",
     "Time spent on flush requests (kernel 5.5+).", true},
    {"nodeperf_disk_info", MetricType::gauge, "device,major,minor", "/proc/diskstats",
     "A constant 1 per device, labelled with its major and minor numbers.", false},
};

// For each counter column of diskstats: its metric and the factor to base units.
struct Column {
  size_t metric;
  double scale;
};
constexpr Column kColumns[17] = {
    {0, 1},     {1, 1},    {2, 512},  {3, 1e-3},  {4, 1},  {5, 1},    {6, 512},  {7, 1e-3}, {8, 1},
    {9, 1e-3},  {10, 1e-3}, {11, 1},  {12, 1},    {13, 1}, {14, 1e-3}, {15, 1},  {16, 1e-3},
};
constexpr size_t kInfo = 17;

class DiskstatsCollector final : public Collector {
 public:
  explicit DiskstatsCollector(const Config& config)
      : file_(host_path(config.host_root, "proc/diskstats")),
        filter_(config.diskstats_device_exclude) {}

  Status collect(SampleSink& out) override {
    std::string error;
    auto text = file_.read(&error);
    if (!text) return Status::failed(error);
    Problems problems(file_.path());
    std::vector<DiskStats> disks = parse_diskstats(*text, problems);
    std::erase_if(disks, [&](const DiskStats& d) { return filter_.excluded(d.device); });
    // One family at a time, so the sink appends to the same family in a row.
    for (size_t col = 0; col < std::size(kColumns); ++col) {
      for (const DiskStats& d : disks) {
        if (col >= d.columns) continue;
        out.add(kMetrics[kColumns[col].metric], static_cast<double>(d.stats[col]) * kColumns[col].scale,
                {{"device", d.device}});
      }
    }
    for (const DiskStats& d : disks) {
      out.add(kMetrics[kInfo], 1,
              {{"device", d.device}, {"major", std::to_string(d.major)}, {"minor", std::to_string(d.minor)}});
    }
    return problems.status();
  }

 private:
  ProcFile file_;
  DeviceFilter filter_;
};

}  // namespace

std::vector<DiskStats> parse_diskstats(std::string_view text, Problems& problems) {
  std::vector<DiskStats> out;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    if (trim(line).empty()) continue;
    Fields fields(line);
    std::string_view major, minor, name, field;
    if (!fields.next(major) || !fields.next(minor) || !fields.next(name)) {
      problems.add("short line '" + std::string(line) + "'");
      continue;
    }
    DiskStats d;
    auto ma = parse_u64(major), mi = parse_u64(minor);
    if (!ma || !mi || *ma > UINT32_MAX || *mi > UINT32_MAX) {
      problems.add("bad device number in '" + std::string(line.substr(0, 60)) + "'");
      continue;
    }
    d.major = static_cast<uint32_t>(*ma);
    d.minor = static_cast<uint32_t>(*mi);
    d.device = std::string(name);
    bool ok = true;
    size_t counters = 0;
    while (fields.next(field)) {
      auto v = parse_u64(field);
      if (!v) {
        ok = false;
        break;
      }
      if (d.columns < d.stats.size()) d.stats[d.columns++] = *v;
      ++counters;
    }
    // Kernels write 11, 15 (4.18+) or 17 (5.5+) counters; later ones may add
    // more. Any other count is a cut line.
    if (!ok || !(counters == 11 || counters == 15 || counters >= 17)) {
      problems.add("malformed line for " + d.device);
      continue;
    }
    out.push_back(std::move(d));
  }
  return out;
}

const CollectorFactory kDiskstatsCollector{
    "diskstats", "Per block device reads, writes, discards, flushes, bytes, times and queue (/proc/diskstats)",
    kMetrics, [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<DiskstatsCollector>(c); }};

}  // namespace nodeperf
