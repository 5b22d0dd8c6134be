#include "collectors/netstat.h"

#include "agent/config.h"
#include "collectors/keyed_metrics.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

#define SNMP(key, help) \
  MetricInfo { "nodeperf_netstat_" key, MetricType::untyped, "", "/proc/net/snmp", help, true }
#define NETSTAT(key, help) \
  MetricInfo { "nodeperf_netstat_" key, MetricType::untyped, "", "/proc/net/netstat", help, true }

// node_exporter's default selection (its --collector.netstat.fields) from
// these two files, plus TCP resets and failed connection attempts. Untyped,
// as node_exporter has them (CurrEstab is a gauge, the rest are counters).
constexpr MetricInfo kMetrics[] = {
    SNMP("Ip_Forwarding", "1 if IP forwarding is on, 2 if off."),
    SNMP("Ip_InHdrErrors", "IP datagrams dropped for header errors."),
    SNMP("Icmp_InMsgs", "ICMP messages received."),
    SNMP("Icmp_OutMsgs", "ICMP messages sent."),
    SNMP("Icmp_InErrors", "ICMP messages received with errors."),
    SNMP("Tcp_ActiveOpens", "TCP connections opened by this host (SYN sent)."),
    SNMP("Tcp_PassiveOpens", "TCP connections accepted by this host."),
    SNMP("Tcp_AttemptFails", "TCP connection attempts that failed."),
    SNMP("Tcp_EstabResets", "Established TCP connections reset."),
    SNMP("Tcp_CurrEstab", "TCP connections established now."),
    SNMP("Tcp_InSegs", "TCP segments received."),
    SNMP("Tcp_OutSegs", "TCP segments sent."),
    SNMP("Tcp_RetransSegs", "TCP segments retransmitted."),
    SNMP("Tcp_InErrs", "TCP segments received with errors."),
    SNMP("Tcp_OutRsts", "TCP segments sent with RST."),
    SNMP("Udp_InDatagrams", "UDP datagrams received."),
    SNMP("Udp_OutDatagrams", "UDP datagrams sent."),
    SNMP("Udp_NoPorts", "UDP datagrams received for a port with no listener."),
    SNMP("Udp_InErrors", "UDP datagrams received with errors."),
    SNMP("Udp_RcvbufErrors", "UDP datagrams dropped for a full receive buffer."),
    SNMP("Udp_SndbufErrors", "UDP datagrams dropped for a full send buffer."),
    SNMP("UdpLite_InErrors", "UDP-Lite datagrams received with errors."),
    NETSTAT("IpExt_InOctets", "IP bytes received."),
    NETSTAT("IpExt_OutOctets", "IP bytes sent."),
    NETSTAT("TcpExt_ListenDrops", "Connections dropped at a listening socket (any reason)."),
    NETSTAT("TcpExt_ListenOverflows", "Connections dropped for a full accept queue."),
    NETSTAT("TcpExt_SyncookiesSent", "SYN cookies sent."),
    NETSTAT("TcpExt_SyncookiesRecv", "SYN cookies received."),
    NETSTAT("TcpExt_SyncookiesFailed", "SYN cookies received that were invalid."),
    NETSTAT("TcpExt_TCPSynRetrans", "SYN and SYN-ACK retransmits."),
    NETSTAT("TcpExt_TCPTimeouts", "TCP retransmit timeouts."),
};
#undef SNMP
#undef NETSTAT

class NetstatCollector final : public Collector {
 public:
  explicit NetstatCollector(const Config& config)
      : files_{ProcFile(host_path(config.host_root, "proc/net/snmp")),
               ProcFile(host_path(config.host_root, "proc/net/netstat"))},
        metrics_(kMetrics, "nodeperf_netstat_") {}

  Status collect(SampleSink& out) override {
    Problems problems;
    size_t read = 0, emitted = 0;
    for (ProcFile& file : files_) {
      std::string error;
      auto text = file.read(&error);
      if (!text) {
        problems.add(error);
        continue;
      }
      ++read;
      for_each_snmp_value(*text, file.path(), problems,
                          [&](std::string_view section, std::string_view name, std::string_view text) {
                            key_.assign(section).append("_").append(name);
                            const MetricInfo* m = metrics_.find(key_);
                            if (!m) return;
                            auto v = parse_double(text);  // some are signed (Tcp MaxConn -1)
                            if (!v) {
                              problems.add(file.path() + ": bad value for " + key_);
                              return;
                            }
                            out.add(*m, *v);
                            ++emitted;
                          });
    }
    Status status = problems.status();
    if (emitted == 0) status = Status::failed(status.error.empty() ? files_[0].path() + ", " + files_[1].path() + ": no known fields" : status.error);
    return status;
  }

 private:
  ProcFile files_[2];
  KeyedMetrics metrics_;
  std::string key_;  // reused: "<section>_<field>"
};

}  // namespace

void for_each_snmp_value(std::string_view text, std::string_view file, Problems& problems,
                         const std::function<void(std::string_view, std::string_view, std::string_view)>& visit) {
  Lines lines(text);
  std::string_view header, values;
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  while (lines.next(header)) {
    if (trim(header).empty()) continue;
    if (!lines.next(values)) {
      problems.add(std::string(file) + ": header without values");
      break;
    }
    Fields names(header), nums(values);
    std::string_view section, section2, name, num;
    if (!names.next(section) || !nums.next(section2) || section != section2 || !section.ends_with(':')) {
      problems.add(std::string(file) + ": mismatched lines '" + std::string(section) + "' and '" +
                   std::string(section2) + "'");
      continue;
    }
    section.remove_suffix(1);
    // Names and values must pair up one to one; a cut or padded line is
    // skipped whole rather than paired wrongly.
    pairs.clear();
    bool more_names = false, more_values = false;
    for (;;) {
      bool has_name = names.next(name), has_num = nums.next(num);
      if (!has_name && !has_num) break;
      if (!has_num) more_names = true;
      if (!has_name) more_values = true;
      if (!has_name || !has_num) break;
      pairs.emplace_back(name, num);
    }
    if (more_names || more_values) {
      problems.add(std::string(file) + ": " + std::string(section) + " has " +
                   (more_names ? "fewer values than names" : "more values than names"));
      continue;
    }
    for (auto [n, v] : pairs) visit(section, n, v);
  }
}

std::vector<SnmpValue> parse_snmp(std::string_view text, std::string_view file, Problems& problems) {
  std::vector<SnmpValue> out;
  for_each_snmp_value(text, file, problems, [&](std::string_view section, std::string_view name, std::string_view text) {
    auto v = parse_double(text);  // some are signed (Tcp MaxConn -1)
    if (!v) {
      problems.add(std::string(file) + ": bad value for " + std::string(section) + "_" + std::string(name));
      return;
    }
    out.push_back({std::string(section) + "_" + std::string(name), *v});
  });
  return out;
}

const CollectorFactory kNetstatCollector{
    "netstat", "IP, ICMP, TCP and UDP counters: retransmits, resets, listen drops, UDP errors (/proc/net/snmp, /proc/net/netstat)",
    kMetrics, [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<NetstatCollector>(c); }};

}  // namespace nodeperf
