#include "collectors/netdev.h"

#include "agent/config.h"
#include "collectors/device_filter.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

#define NETDEV(dir, what, help)                                                              \
  MetricInfo {                                                                               \
    "nodeperf_network_" dir "_" what "_total", MetricType::counter, "device", "/proc/net/dev", \
        help, true                                                                           \
  }

// In the column order of /proc/net/dev.
constexpr MetricInfo kMetrics[] = {
    NETDEV("receive", "bytes", "Bytes received."),
    NETDEV("receive", "packets", "Packets received."),
    NETDEV("receive", "errs", "Receive errors."),
    NETDEV("receive", "drop", "Received packets dropped."),
    NETDEV("receive", "fifo", "Receive FIFO buffer errors."),
    NETDEV("receive", "frame", "Receive framing errors."),
    NETDEV("receive", "compressed", "Compressed packets received."),
    NETDEV("receive", "multicast", "Multicast frames received."),
    NETDEV("transmit", "bytes", "Bytes transmitted."),
    NETDEV("transmit", "packets", "Packets transmitted."),
    NETDEV("transmit", "errs", "Transmit errors."),
    NETDEV("transmit", "drop", "Transmitted packets dropped."),
    NETDEV("transmit", "fifo", "Transmit FIFO buffer errors."),
    NETDEV("transmit", "colls", "Collisions on the interface."),
    NETDEV("transmit", "carrier", "Carrier losses."),
    NETDEV("transmit", "compressed", "Compressed packets transmitted."),
};
#undef NETDEV

class NetdevCollector final : public Collector {
 public:
  explicit NetdevCollector(const Config& config)
      : file_(host_path(config.host_root, "proc/net/dev")), filter_(config.netdev_device_exclude) {}

  Status collect(SampleSink& out) override {
    std::string error;
    auto text = file_.read(&error);
    if (!text) return Status::failed(error);
    Problems problems(file_.path());
    std::vector<NetDevStats> devices = parse_netdev(*text, problems);
    std::erase_if(devices, [&](const NetDevStats& d) { return filter_.excluded(d.device); });
    for (size_t col = 0; col < std::size(kMetrics); ++col) {
      for (const NetDevStats& d : devices) {
        out.add(kMetrics[col], static_cast<double>(d.counters[col]), {{"device", d.device}});
      }
    }
    return problems.status();
  }

 private:
  ProcFile file_;
  DeviceFilter filter_;
};

}  // namespace

std::vector<NetDevStats> parse_netdev(std::string_view text, Problems& problems) {
  std::vector<NetDevStats> out;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    // Two header lines have '|' and no ':'; data lines are "name: counters",
    // where the name can hold any character but '/', ':' and white space.
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    NetDevStats d;
    d.device = std::string(trim(line.substr(0, colon)));
    Fields fields(line.substr(colon + 1));
    size_t n = 0;
    std::string_view field;
    bool ok = !d.device.empty();
    while (ok && n < d.counters.size() && fields.next(field)) {
      auto v = parse_u64(field);
      if (!v) ok = false;
      else d.counters[n++] = *v;
    }
    if (!ok || n != d.counters.size()) {
      problems.add("malformed line for '" + d.device + "'");
      continue;
    }
    out.push_back(std::move(d));
  }
  return out;
}

const CollectorFactory kNetdevCollector{
    "netdev", "Per interface bytes, packets, errors and drops (/proc/net/dev)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<NetdevCollector>(c); }};

}  // namespace nodeperf
