// Every collector end to end over a fixture host root: factory -> collect ->
// Snapshot, then exact sample values, label strings and Status.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/snapshot.h"
#include "collectors/collector.h"
#include "collectors/diskstats.h"

using namespace nodeperf;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string fixture_root(std::string_view tree) { return std::string(NODEPERF_FIXTURES) + "/" + std::string(tree); }

Config fixture_config(std::string_view tree) {
  Config config;
  config.host_root = fixture_root(tree);
  return config;
}

const CollectorFactory& factory(std::string_view name) {
  auto all = collector_factories();
  auto it = std::find_if(all.begin(), all.end(), [&](const CollectorFactory& f) { return f.name == name; });
  INFO("collector " << name);
  REQUIRE(it != all.end());
  return *it;
}

struct Run {
  Status status;
  Snapshot snapshot;
};

Run run(std::string_view collector, const Config& config, bool compat = false) {
  auto c = factory(collector).make(config);
  REQUIRE(c);
  SampleSink sink;
  Status status = c->collect(sink);
  return Run{std::move(status), Snapshot(std::move(sink), compat, std::chrono::system_clock::now())};
}

Run run(std::string_view collector, std::string_view tree, bool compat = false) {
  return run(collector, fixture_config(tree), compat);
}

// The value of the one sample of `name` with exactly these rendered labels.
double sample(const Snapshot& snapshot, std::string_view name, std::string_view labels = "") {
  INFO("sample " << name << "{" << labels << "}");
  const Family* family = snapshot.find(name);
  REQUIRE(family);
  size_t found = 0;
  double value = 0;
  for (const Sample& s : family->samples) {
    if (s.labels == labels) {
      ++found;
      value = s.value;
    }
  }
  REQUIRE(found == 1);
  return value;
}

bool has(const Snapshot& snapshot, std::string_view name, std::string_view labels) {
  const Family* family = snapshot.find(name);
  return family && std::any_of(family->samples.begin(), family->samples.end(),
                               [&](const Sample& s) { return s.labels == labels; });
}

// The label values of one label key across a family, in sample order.
std::vector<std::string> label_values(const Snapshot& snapshot, std::string_view name, std::string_view key) {
  std::vector<std::string> out;
  const Family* family = snapshot.find(name);
  if (!family) return out;
  std::string prefix = std::string(key) + "=\"";
  for (const Sample& s : family->samples) {
    size_t at = s.labels.find(prefix);
    if (at == std::string::npos) continue;
    size_t start = at + prefix.size(), end = start;
    while (end < s.labels.size() && s.labels[end] != '"') end += s.labels[end] == '\\' ? 2 : 1;
    out.push_back(s.labels.substr(start, end - start));
  }
  return out;
}

// Label keys of a rendered label string (cpu="0",mode="user" -> cpu, mode),
// reading through escaped values.
std::vector<std::string> label_keys(const std::string& labels) {
  std::vector<std::string> keys;
  size_t i = 0;
  while (i < labels.size()) {
    size_t eq = labels.find("=\"", i);
    REQUIRE(eq != std::string::npos);
    keys.push_back(labels.substr(i, eq - i));
    i = eq + 2;
    while (i < labels.size() && labels[i] != '"') i += labels[i] == '\\' ? 2 : 1;
    REQUIRE(i < labels.size());  // the closing quote
    ++i;
    if (i < labels.size()) {
      REQUIRE(labels[i] == ',');
      ++i;
    }
  }
  return keys;
}

std::vector<std::string> split_keys(std::string_view keys) {
  std::vector<std::string> out;
  while (!keys.empty()) {
    size_t comma = keys.find(',');
    out.emplace_back(keys.substr(0, comma));
    keys = comma == std::string_view::npos ? std::string_view() : keys.substr(comma + 1);
  }
  return out;
}

const double kUserHz = static_cast<double>(sysconf(_SC_CLK_TCK));

// Counts in USER_HZ ticks, milliseconds or microseconds, as seconds (to the
// last bit or so: the collector may multiply by the reciprocal).
Approx ticks(double n) { return Approx(n / kUserHz).epsilon(1e-12); }
Approx millis(double n) { return Approx(n / 1e3).epsilon(1e-12); }
Approx micros(double n) { return Approx(n / 1e6).epsilon(1e-12); }

}  // namespace

TEST_CASE("collector_factories lists every collector once", "[collectors]") {
  std::set<std::string> names, procfs;
  for (const CollectorFactory& f : collector_factories()) {
    INFO(f.name);
    CHECK(names.insert(std::string(f.name)).second);
    CHECK_FALSE(f.description.empty());
    CHECK_FALSE(f.metrics.empty());
    CHECK(f.make != nullptr);
    if (!f.bpf) procfs.insert(std::string(f.name));
  }
  // The unprivileged collectors these tests cover (BPF ones are left to the
  // integration tests: they need a kernel and privileges).
  CHECK(procfs == std::set<std::string>{"cgroups", "cpu", "diskstats", "loadavg", "meminfo", "netdev", "netstat",
                                        "pressure", "process", "vmstat", "volumes"});
}

// ---------------------------------------------------------------------------
// hostroot-normal: a real host

TEST_CASE("cpu collector over a real /proc/stat", "[collectors][cpu]") {
  Run r = run("cpu", "hostroot-normal");
  CHECK(r.status.kind == Status::Kind::ok);
  CHECK(r.status.error.empty());
  const Snapshot& s = r.snapshot;

  SECTION("seconds per cpu and mode are ticks / USER_HZ") {
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="user")") == ticks(15501));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="nice")") == 0);
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="system")") == ticks(2134));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="idle")") == ticks(58886));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="iowait")") == ticks(38));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="irq")") == 0);
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="softirq")") == ticks(5));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="steal")") == ticks(19));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="1",mode="user")") == ticks(21760));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="1",mode="iowait")") == ticks(383));
    // 2 cpus x 8 modes; the all-cpu line is not exported.
    CHECK(s.find("nodeperf_cpu_seconds_total")->samples.size() == 16);
    CHECK_FALSE(has(s, "nodeperf_cpu_seconds_total", R"(cpu="",mode="user")"));
  }
  SECTION("guest time") {
    CHECK(sample(s, "nodeperf_cpu_guest_seconds_total", R"(cpu="0",mode="user")") == 0);
    CHECK(sample(s, "nodeperf_cpu_guest_seconds_total", R"(cpu="1",mode="nice")") == 0);
    CHECK(s.find("nodeperf_cpu_guest_seconds_total")->samples.size() == 4);
  }
  SECTION("system-wide counters and gauges") {
    CHECK(sample(s, "nodeperf_context_switches_total") == 390736);
    CHECK(sample(s, "nodeperf_forks_total") == 5685);
    CHECK(sample(s, "nodeperf_intr_total") == 265820);
    CHECK(sample(s, "nodeperf_procs_running") == 6);
    CHECK(sample(s, "nodeperf_procs_blocked") == 0);
    CHECK(sample(s, "nodeperf_boot_time_seconds") == 1795890798);
  }
}

TEST_CASE("diskstats collector over a real /proc/diskstats", "[collectors][diskstats]") {
  SECTION("the default exclusion drops loop devices and partitions") {
    Run r = run("diskstats", "hostroot-normal");
    CHECK(r.status.kind == Status::Kind::ok);
    const Snapshot& s = r.snapshot;
    auto devices = label_values(s, "nodeperf_disk_reads_completed_total", "device");
    CHECK(std::count(devices.begin(), devices.end(), "vda") == 1);
    CHECK(std::count(devices.begin(), devices.end(), "vda1") == 0);
    CHECK(std::count(devices.begin(), devices.end(), "loop0") == 0);
    CHECK(std::none_of(devices.begin(), devices.end(), [](const std::string& d) { return d.starts_with("loop"); }));

    const std::string vda = R"(device="vda")";
    CHECK(sample(s, "nodeperf_disk_reads_completed_total", vda) == 32238);
    CHECK(sample(s, "nodeperf_disk_reads_merged_total", vda) == 8683);
    CHECK(sample(s, "nodeperf_disk_read_bytes_total", vda) == 2762906.0 * 512);
    CHECK(sample(s, "nodeperf_disk_read_time_seconds_total", vda) == millis(12250));
    CHECK(sample(s, "nodeperf_disk_writes_completed_total", vda) == 19239);
    CHECK(sample(s, "nodeperf_disk_writes_merged_total", vda) == 8969);
    CHECK(sample(s, "nodeperf_disk_written_bytes_total", vda) == 3243896.0 * 512);
    CHECK(sample(s, "nodeperf_disk_write_time_seconds_total", vda) == millis(16066));
    CHECK(sample(s, "nodeperf_disk_io_now", vda) == 0);
    CHECK(sample(s, "nodeperf_disk_io_time_seconds_total", vda) == millis(7684));
    CHECK(sample(s, "nodeperf_disk_io_time_weighted_seconds_total", vda) == millis(29219));
    CHECK(sample(s, "nodeperf_disk_discards_completed_total", vda) == 4333);
    CHECK(sample(s, "nodeperf_disk_discards_merged_total", vda) == 58);
    CHECK(sample(s, "nodeperf_disk_discarded_sectors_total", vda) == 1604664);
    CHECK(sample(s, "nodeperf_disk_discard_time_seconds_total", vda) == millis(872));
    CHECK(sample(s, "nodeperf_disk_flush_requests_total", vda) == 536);
    CHECK(sample(s, "nodeperf_disk_flush_requests_time_seconds_total", vda) == millis(30));
    CHECK(sample(s, "nodeperf_disk_info", R"(device="vda",major="254",minor="0")") == 1);
  }
  SECTION("an empty exclusion keeps every device") {
    Config config = fixture_config("hostroot-normal");
    config.diskstats_device_exclude.clear();
    Run r = run("diskstats", config);
    CHECK(r.status.kind == Status::Kind::ok);
    CHECK(r.snapshot.find("nodeperf_disk_info")->samples.size() == 11);
    CHECK(sample(r.snapshot, "nodeperf_disk_read_bytes_total", R"(device="vda1")") == 2711040.0 * 512);
    CHECK(sample(r.snapshot, "nodeperf_disk_info", R"(device="loop7",major="7",minor="7")") == 1);
  }
  SECTION("a configured exclusion") {
    Config config = fixture_config("hostroot-normal");
    config.diskstats_device_exclude = "^vd";
    Run r = run("diskstats", config);
    auto devices = label_values(r.snapshot, "nodeperf_disk_info", "device");
    CHECK(std::count(devices.begin(), devices.end(), "vda") == 0);
    CHECK(std::count(devices.begin(), devices.end(), "loop0") == 1);
  }
}

TEST_CASE("meminfo collector over a real /proc/meminfo", "[collectors][meminfo]") {
  Run r = run("meminfo", "hostroot-normal");
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  CHECK(s.series() == 54);  // every line of the file has its metric
  CHECK(sample(s, "nodeperf_memory_MemTotal_bytes") == 24684084.0 * 1024);
  CHECK(sample(s, "nodeperf_memory_MemAvailable_bytes") == 23696116.0 * 1024);
  CHECK(sample(s, "nodeperf_memory_Active_anon_bytes") == 1632.0 * 1024);
  CHECK(sample(s, "nodeperf_memory_Inactive_file_bytes") == 265412.0 * 1024);
  CHECK(sample(s, "nodeperf_memory_VmallocTotal_bytes") == 34359738367.0 * 1024);
  CHECK(sample(s, "nodeperf_memory_HugePages_Total") == 0);
  CHECK(sample(s, "nodeperf_memory_Hugepagesize_bytes") == 2048.0 * 1024);
  CHECK(sample(s, "nodeperf_memory_DirectMap1G_bytes") == 25165824.0 * 1024);
}

TEST_CASE("vmstat collector over a real /proc/vmstat", "[collectors][vmstat]") {
  Run r = run("vmstat", "hostroot-normal");
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  CHECK(s.series() == 7);
  CHECK(sample(s, "nodeperf_vmstat_pgfault") == 7159033);
  CHECK(sample(s, "nodeperf_vmstat_pgmajfault") == 1145);
  CHECK(sample(s, "nodeperf_vmstat_pgpgin") == 1381453);
  CHECK(sample(s, "nodeperf_vmstat_pgpgout") == 1621948);
  CHECK(sample(s, "nodeperf_vmstat_pswpin") == 0);
  CHECK(sample(s, "nodeperf_vmstat_pswpout") == 0);
  CHECK(sample(s, "nodeperf_vmstat_oom_kill") == 0);
}

TEST_CASE("loadavg collector over a real /proc/loadavg", "[collectors][loadavg]") {
  Run r = run("loadavg", "hostroot-normal");
  CHECK(r.status.kind == Status::Kind::ok);
  CHECK(sample(r.snapshot, "nodeperf_load1") == 4.63);
  CHECK(sample(r.snapshot, "nodeperf_load5") == 1.82);
  CHECK(sample(r.snapshot, "nodeperf_load15") == 0.72);
}

TEST_CASE("netdev collector over a real /proc/net/dev", "[collectors][netdev]") {
  Run r = run("netdev", "hostroot-normal");
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  CHECK(label_values(s, "nodeperf_network_receive_bytes_total", "device") ==
        std::vector<std::string>{"lo", "ifb0", "ifb1", "eth0"});
  CHECK(s.families().size() == 16);
  CHECK(sample(s, "nodeperf_network_receive_bytes_total", R"(device="eth0")") == 45318924);
  CHECK(sample(s, "nodeperf_network_receive_packets_total", R"(device="eth0")") == 1056);
  CHECK(sample(s, "nodeperf_network_transmit_bytes_total", R"(device="eth0")") == 42931);
  CHECK(sample(s, "nodeperf_network_transmit_packets_total", R"(device="eth0")") == 536);
  CHECK(sample(s, "nodeperf_network_receive_bytes_total", R"(device="lo")") == 264862);

  SECTION("a configured exclusion") {
    Config config = fixture_config("hostroot-normal");
    config.netdev_device_exclude = "^(lo|ifb\\d+)$";
    Run filtered = run("netdev", config);
    CHECK(label_values(filtered.snapshot, "nodeperf_network_receive_drop_total", "device") ==
          std::vector<std::string>{"eth0"});
  }
}

TEST_CASE("netstat collector over real /proc/net/snmp and /proc/net/netstat", "[collectors][netstat]") {
  Run r = run("netstat", "hostroot-normal");
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  CHECK(s.series() == factory("netstat").metrics.size());  // every selected field is in these files
  CHECK(sample(s, "nodeperf_netstat_Ip_Forwarding") == 2);
  CHECK(sample(s, "nodeperf_netstat_Icmp_InMsgs") == 1);
  CHECK(sample(s, "nodeperf_netstat_Tcp_ActiveOpens") == 24);
  CHECK(sample(s, "nodeperf_netstat_Tcp_PassiveOpens") == 13);
  CHECK(sample(s, "nodeperf_netstat_Tcp_CurrEstab") == 0);
  CHECK(sample(s, "nodeperf_netstat_Tcp_InSegs") == 1216);
  CHECK(sample(s, "nodeperf_netstat_Tcp_OutSegs") == 690);
  CHECK(sample(s, "nodeperf_netstat_Tcp_OutRsts") == 2);
  CHECK(sample(s, "nodeperf_netstat_Udp_InDatagrams") == 26);
  CHECK(sample(s, "nodeperf_netstat_Udp_OutDatagrams") == 27);
  CHECK(sample(s, "nodeperf_netstat_IpExt_InOctets") == 45568818);
  CHECK(sample(s, "nodeperf_netstat_IpExt_OutOctets") == 299433);
  CHECK(sample(s, "nodeperf_netstat_TcpExt_TCPTimeouts") == 2);
  CHECK(sample(s, "nodeperf_netstat_TcpExt_ListenDrops") == 0);
  CHECK_FALSE(s.find("nodeperf_netstat_Tcp_MaxConn"));  // not selected
  CHECK_FALSE(s.find("nodeperf_netstat_TcpExt_TW"));
}

TEST_CASE("pressure collector over real /proc/pressure files", "[collectors][pressure]") {
  Run r = run("pressure", "hostroot-normal");
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  CHECK(s.series() == 6);
  CHECK(sample(s, "nodeperf_pressure_cpu_waiting_seconds_total") == micros(92545940));
  CHECK(sample(s, "nodeperf_pressure_cpu_stalled_seconds_total") == 0);
  CHECK(sample(s, "nodeperf_pressure_memory_waiting_seconds_total") == 0);
  CHECK(sample(s, "nodeperf_pressure_memory_stalled_seconds_total") == 0);
  CHECK(sample(s, "nodeperf_pressure_io_waiting_seconds_total") == micros(3860040));
  CHECK(sample(s, "nodeperf_pressure_io_stalled_seconds_total") == micros(3506763));
}

TEST_CASE("process collector reads the agent's own /proc/self", "[collectors][process]") {
  // The one collector that reads the live /proc: the host root does not apply.
  Run r = run("process", "hostroot-empty");
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  CHECK(s.series() == 6);
  double cpu = sample(s, "process_cpu_seconds_total");
  CHECK(cpu >= 0);
  CHECK(cpu < 3600);
  double rss = sample(s, "process_resident_memory_bytes");
  double vsize = sample(s, "process_virtual_memory_bytes");
  CHECK(rss > 1024 * 1024);
  CHECK(vsize > rss);
  double now = static_cast<double>(std::time(nullptr));
  double start = sample(s, "process_start_time_seconds");
  CHECK(start > now - 24 * 3600);  // this test binary started recently...
  CHECK(start <= now + 1);         // ...and not in the future
  double open = sample(s, "process_open_fds");
  double max = sample(s, "process_max_fds");
  CHECK(open >= 1);  // at least the collector's own /proc/self/stat
  CHECK(max >= open);
}

// ---------------------------------------------------------------------------
// Metadata agrees with what is emitted

TEST_CASE("every emitted sample has exactly its MetricInfo's label keys", "[collectors][metadata]") {
  for (const CollectorFactory& f : collector_factories()) {
    if (f.bpf) continue;  // needs privileges: integration tests
    Run r = run(f.name, "hostroot-normal");
    INFO("collector " << f.name << ": " << r.status.error);
    CHECK(r.status.kind == Status::Kind::ok);
    CHECK(r.snapshot.series() > 0);
    for (const Family& family : r.snapshot.families()) {
      INFO("family " << family.name);
      // The family's metadata is the collector's own.
      CHECK(std::any_of(f.metrics.begin(), f.metrics.end(), [&](const MetricInfo& m) { return &m == family.info; }));
      CHECK(family.name == family.info->name);
      std::vector<std::string> expected = split_keys(family.info->labels);
      std::set<std::string> label_sets;
      for (const Sample& s : family.samples) {
        INFO("labels {" << s.labels << "}");
        std::vector<std::string> keys = label_keys(s.labels);
        // Kubernetes cgroups also carry pod_uid, container_id and qos, and
        // the kubelet's names (docs/metrics.md, "cgroups"); others do not.
        if (f.name == "cgroups") {
          std::erase_if(keys, [](const std::string& k) {
            return k == "pod_uid" || k == "container_id" || k == "qos" || k == "namespace" || k == "pod" || k == "container";
          });
        }
        CHECK(keys == expected);
        CHECK(label_sets.insert(s.labels).second);  // no duplicate series
      }
    }
  }
}

TEST_CASE("collecting twice reads the files afresh and gives the same samples", "[collectors]") {
  auto cpu = factory("cpu").make(fixture_config("hostroot-normal"));
  SampleSink first_sink, second_sink;
  CHECK(cpu->collect(first_sink).kind == Status::Kind::ok);
  CHECK(cpu->collect(second_sink).kind == Status::Kind::ok);
  CHECK(first_sink.series() == second_sink.series());
  CHECK(first_sink.series() == 16 + 4 + 6);
}

TEST_CASE("compat mode renames only node_exporter's metrics", "[collectors][compat]") {
  SECTION("cpu") {
    Run r = run("cpu", "hostroot-normal", true);
    CHECK(sample(r.snapshot, "node_cpu_seconds_total", R"(cpu="0",mode="user")") == ticks(15501));
    CHECK(sample(r.snapshot, "node_boot_time_seconds") == 1795890798);
    CHECK_FALSE(r.snapshot.find("nodeperf_cpu_seconds_total"));
  }
  SECTION("diskstats: nodeperf_disk_info is ours") {
    Run r = run("diskstats", "hostroot-normal", true);
    CHECK(sample(r.snapshot, "node_disk_read_bytes_total", R"(device="vda")") == 2762906.0 * 512);
    CHECK(sample(r.snapshot, "nodeperf_disk_info", R"(device="vda",major="254",minor="0")") == 1);
    CHECK_FALSE(r.snapshot.find("node_disk_info"));
  }
  SECTION("pressure: cpu full has no node_exporter twin") {
    Run r = run("pressure", "hostroot-normal", true);
    CHECK(r.snapshot.find("node_pressure_cpu_waiting_seconds_total"));
    CHECK(r.snapshot.find("nodeperf_pressure_cpu_stalled_seconds_total"));
    CHECK(r.snapshot.find("node_pressure_memory_stalled_seconds_total"));
  }
  SECTION("process_* metrics keep their names") {
    Run r = run("process", "hostroot-normal", true);
    CHECK(r.snapshot.find("process_cpu_seconds_total"));
  }
}

// ---------------------------------------------------------------------------
// hostroot-old-kernel

TEST_CASE("collectors over an old kernel", "[collectors][old-kernel]") {
  SECTION("cpu: 7 columns give 7 modes and no guest time") {
    Run r = run("cpu", "hostroot-old-kernel");
    CHECK(r.status.kind == Status::Kind::ok);
    const Snapshot& s = r.snapshot;
    CHECK(label_values(s, "nodeperf_cpu_seconds_total", "mode") ==
          std::vector<std::string>{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "user", "nice",
                                   "system", "idle", "iowait", "irq", "softirq"});
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="softirq")") == ticks(438));
    CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="1",mode="idle")") == ticks(11313845));
    CHECK_FALSE(s.find("nodeperf_cpu_guest_seconds_total"));
    CHECK(sample(s, "nodeperf_boot_time_seconds") == 1062191376);
  }
  SECTION("diskstats: 11 counters, no discard or flush series") {
    Run r = run("diskstats", "hostroot-old-kernel");
    CHECK(r.status.kind == Status::Kind::ok);
    const Snapshot& s = r.snapshot;
    CHECK(label_values(s, "nodeperf_disk_info", "device") == std::vector<std::string>{"sda", "dm-0"});
    CHECK(sample(s, "nodeperf_disk_read_bytes_total", R"(device="sda")") == 300874.0 * 512);
    CHECK(sample(s, "nodeperf_disk_io_now", R"(device="sda")") == 2);
    CHECK(sample(s, "nodeperf_disk_io_time_weighted_seconds_total", R"(device="dm-0")") == millis(51510));
    CHECK_FALSE(s.find("nodeperf_disk_discards_completed_total"));
    CHECK_FALSE(s.find("nodeperf_disk_flush_requests_total"));
  }
  SECTION("pressure: no /proc/pressure is a failure that says why") {
    Run r = run("pressure", "hostroot-old-kernel");
    CHECK(r.status.kind == Status::Kind::failed);
    CHECK_THAT(r.status.error, StartsWith(fixture_root("hostroot-old-kernel") + "/proc/pressure/cpu: open: "));
    CHECK_THAT(r.status.error, Contains("CONFIG_PSI"));
    CHECK_THAT(r.status.error, Contains("(and 2 more)"));
    CHECK(r.snapshot.series() == 0);
  }
  SECTION("meminfo: no MemAvailable series") {
    Run r = run("meminfo", "hostroot-old-kernel");
    CHECK(r.status.kind == Status::Kind::ok);
    CHECK(r.snapshot.series() == 42);
    CHECK_FALSE(r.snapshot.find("nodeperf_memory_MemAvailable_bytes"));
    CHECK(sample(r.snapshot, "nodeperf_memory_MemTotal_bytes") == 8010436.0 * 1024);
  }
  SECTION("vmstat: no oom_kill series") {
    Run r = run("vmstat", "hostroot-old-kernel");
    CHECK(r.status.kind == Status::Kind::ok);
    CHECK(r.snapshot.series() == 6);
    CHECK_FALSE(r.snapshot.find("nodeperf_vmstat_oom_kill"));
    CHECK(sample(r.snapshot, "nodeperf_vmstat_pgfault") == 94127531);
  }
  SECTION("netdev: large counters glued to the colon") {
    Run r = run("netdev", "hostroot-old-kernel");
    CHECK(r.status.kind == Status::Kind::ok);
    CHECK(sample(r.snapshot, "nodeperf_network_receive_bytes_total", R"(device="eth0")") == 123456789012.0);
    CHECK(sample(r.snapshot, "nodeperf_network_receive_multicast_total", R"(device="eth0")") == 12);
    CHECK(sample(r.snapshot, "nodeperf_network_transmit_colls_total", R"(device="eth0")") == 3);
    CHECK(sample(r.snapshot, "nodeperf_network_transmit_carrier_total", R"(device="eth0")") == 1);
  }
  SECTION("netstat: fields the old files lack are simply absent") {
    Run r = run("netstat", "hostroot-old-kernel");
    CHECK(r.status.kind == Status::Kind::ok);
    CHECK(sample(r.snapshot, "nodeperf_netstat_Tcp_CurrEstab") == 3);
    CHECK(sample(r.snapshot, "nodeperf_netstat_Tcp_RetransSegs") == 5);
    CHECK(sample(r.snapshot, "nodeperf_netstat_TcpExt_ListenOverflows") == 7);
    CHECK(sample(r.snapshot, "nodeperf_netstat_TcpExt_TCPTimeouts") == 11);
    CHECK(r.snapshot.find("nodeperf_netstat_Tcp_InErrs"));
    CHECK_FALSE(r.snapshot.find("nodeperf_netstat_UdpLite_InErrors"));
    CHECK_FALSE(r.snapshot.find("nodeperf_netstat_TcpExt_TCPSynRetrans"));
  }
}

// ---------------------------------------------------------------------------
// hostroot-malformed: partial results, the problem named, no garbage

TEST_CASE("cpu collector over a malformed /proc/stat", "[collectors][cpu][malformed]") {
  Run r = run("cpu", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK_THAT(r.status.error, Catch::Matchers::EndsWith("proc/stat: malformed line for cpu1 (and 7 more)"));
  const Snapshot& s = r.snapshot;
  CHECK(label_values(s, "nodeperf_cpu_seconds_total", "cpu") == std::vector<std::string>(8, "0"));
  CHECK(sample(s, "nodeperf_cpu_seconds_total", R"(cpu="0",mode="user")") == ticks(50));
  CHECK(sample(s, "nodeperf_cpu_guest_seconds_total", R"(cpu="0",mode="user")") == ticks(7));
  CHECK(sample(s, "nodeperf_cpu_guest_seconds_total", R"(cpu="0",mode="nice")") == ticks(1));
  CHECK(sample(s, "nodeperf_intr_total") == 12345);
  CHECK(sample(s, "nodeperf_forks_total") == 777);
  CHECK(sample(s, "nodeperf_procs_running") == 3);
  CHECK_FALSE(s.find("nodeperf_context_switches_total"));
  CHECK_FALSE(s.find("nodeperf_boot_time_seconds"));
  CHECK_FALSE(s.find("nodeperf_procs_blocked"));
}

TEST_CASE("diskstats collector over a malformed /proc/diskstats", "[collectors][diskstats][malformed]") {
  Run r = run("diskstats", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK_THAT(r.status.error, Catch::Matchers::EndsWith("proc/diskstats: malformed line for sdb (and 5 more)"));
  const Snapshot& s = r.snapshot;
  CHECK(label_values(s, "nodeperf_disk_info", "device") == std::vector<std::string>{"sda", "sde"});
  const std::string sda = R"(device="sda")";
  CHECK(sample(s, "nodeperf_disk_read_bytes_total", sda) == 3000.0 * 512);
  CHECK(sample(s, "nodeperf_disk_written_bytes_total", sda) == 7000.0 * 512);
  CHECK(sample(s, "nodeperf_disk_io_now", sda) == 1);
  CHECK(sample(s, "nodeperf_disk_discards_completed_total", sda) == 11);
  CHECK(sample(s, "nodeperf_disk_discarded_sectors_total", sda) == 13);
  CHECK(sample(s, "nodeperf_disk_discard_time_seconds_total", sda) == millis(14));
  CHECK(sample(s, "nodeperf_disk_flush_requests_total", sda) == 15);
  CHECK(sample(s, "nodeperf_disk_flush_requests_time_seconds_total", sda) == millis(16));
  CHECK(sample(s, "nodeperf_disk_reads_completed_total", R"(device="sde")") == 18446744073709551615.0);
  for (std::string_view bad : {"sdb", "sdc", "sdd", "sdf", "sdg", "sdh"}) {
    INFO(bad);
    CHECK_FALSE(has(s, "nodeperf_disk_reads_completed_total", "device=\"" + std::string(bad) + "\""));
  }

  SECTION("a 15-counter partition has discards but no flushes") {
    Config config = fixture_config("hostroot-malformed");
    config.diskstats_device_exclude.clear();
    Run all = run("diskstats", config);
    CHECK(sample(all.snapshot, "nodeperf_disk_discard_time_seconds_total", R"(device="sda1")") == millis(2));
    CHECK_FALSE(has(all.snapshot, "nodeperf_disk_flush_requests_total", R"(device="sda1")"));
  }
}

TEST_CASE("meminfo collector over a malformed /proc/meminfo", "[collectors][meminfo][malformed]") {
  Run r = run("meminfo", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK_THAT(r.status.error, Catch::Matchers::EndsWith("proc/meminfo: malformed line 'MemFree  1024 kB' (and 6 more)"));
  const Snapshot& s = r.snapshot;
  CHECK(sample(s, "nodeperf_memory_MemTotal_bytes") == 16384.0 * 1024);
  CHECK(sample(s, "nodeperf_memory_SwapTotal_bytes") == 0);
  CHECK(sample(s, "nodeperf_memory_HugePages_Total") == 4);
  for (std::string_view bad : {"MemFree", "MemAvailable", "Buffers", "Cached", "Dirty", "Shmem"}) {
    INFO(bad);
    CHECK_FALSE(s.find("nodeperf_memory_" + std::string(bad) + "_bytes"));
  }
}

// Regression (fixed): collectors/meminfo.cpp MeminfoCollector::collect / parse_meminfo: a
// line without a unit is taken as a plain count even for a field the kernel
// always writes in kB. The malformed fixture's last line is cut mid-line as
// "Hugepagesize:       20" (from "2048 kB"), and it is exported as
// nodeperf_memory_Hugepagesize_bytes 20 with Status partial only for the
// other lines. Expected: a *_bytes metric whose line lacks " kB" is skipped
// and reported, not exported as a garbage value.
TEST_CASE("meminfo: a kB field cut before its unit is not exported",
          "[collectors][meminfo][malformed]") {
  Run r = run("meminfo", "hostroot-malformed");
  CHECK_FALSE(r.snapshot.find("nodeperf_memory_Hugepagesize_bytes"));
}

TEST_CASE("vmstat collector over a malformed /proc/vmstat", "[collectors][vmstat][malformed]") {
  Run r = run("vmstat", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK(r.status.error == fixture_root("hostroot-malformed") + "/proc/vmstat: bad value for pgpgin (and 3 more)");
  const Snapshot& s = r.snapshot;
  CHECK(s.series() == 3);
  CHECK(sample(s, "nodeperf_vmstat_pgpgout") == 42);
  CHECK(sample(s, "nodeperf_vmstat_pgfault") == 1000);
  CHECK(sample(s, "nodeperf_vmstat_pgmajfault") == 10);
}

TEST_CASE("loadavg collector over a malformed /proc/loadavg", "[collectors][loadavg][malformed]") {
  Run r = run("loadavg", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::failed);
  CHECK(r.status.error == fixture_root("hostroot-malformed") + "/proc/loadavg: malformed");
  CHECK(r.snapshot.series() == 0);
}

TEST_CASE("netdev collector over a malformed /proc/net/dev", "[collectors][netdev][malformed]") {
  Run r = run("netdev", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK_THAT(r.status.error, Catch::Matchers::EndsWith("proc/net/dev: malformed line for 'eth1' (and 4 more)"));
  const Snapshot& s = r.snapshot;
  // The label value is escaped: we"ird\nic (a backslash and an n) becomes we\"ird\\nic.
  CHECK(sample(s, "nodeperf_network_receive_bytes_total", R"(device="we\"ird\\nic")") == 1);
  CHECK(sample(s, "nodeperf_network_transmit_compressed_total", R"(device="we\"ird\\nic")") == 16);
  CHECK(sample(s, "nodeperf_network_receive_multicast_total", "device=\"wlan-\xc3\xbc\"") == 3);
  CHECK(sample(s, "nodeperf_network_transmit_packets_total", "device=\"wlan-\xc3\xbc\"") == 500);
  CHECK(sample(s, "nodeperf_network_receive_bytes_total", R"(device="eth4")") == 4294967296.0);
  CHECK(label_values(s, "nodeperf_network_receive_bytes_total", "device").size() == 4);
}

TEST_CASE("netstat collector over malformed snmp and netstat files", "[collectors][netstat][malformed]") {
  Run r = run("netstat", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK_THAT(r.status.error,
             StartsWith(fixture_root("hostroot-malformed") + "/proc/net/snmp: bad value for Icmp_InErrors (and "));
  const Snapshot& s = r.snapshot;
  CHECK(sample(s, "nodeperf_netstat_Ip_Forwarding") == 1);
  CHECK(sample(s, "nodeperf_netstat_Ip_InHdrErrors") == 7);
  CHECK(sample(s, "nodeperf_netstat_Icmp_InMsgs") == 5);
  CHECK(sample(s, "nodeperf_netstat_Icmp_OutMsgs") == 9);
  CHECK_FALSE(s.find("nodeperf_netstat_Icmp_InErrors"));
  CHECK_FALSE(s.find("nodeperf_netstat_UdpLite_InErrors"));
  CHECK(sample(s, "nodeperf_netstat_TcpExt_SyncookiesSent") == 1);
  CHECK(sample(s, "nodeperf_netstat_TcpExt_SyncookiesRecv") == 2);
  CHECK(sample(s, "nodeperf_netstat_TcpExt_ListenOverflows") == 3);
  CHECK(sample(s, "nodeperf_netstat_TcpExt_ListenDrops") == 4);
  CHECK_FALSE(s.find("nodeperf_netstat_IpExt_InOctets"));
}

TEST_CASE("pressure collector over malformed and empty PSI files", "[collectors][pressure][malformed]") {
  Run r = run("pressure", "hostroot-malformed");
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK(r.status.error == fixture_root("hostroot-malformed") + "/proc/pressure/cpu: malformed (and 1 more)");
  const Snapshot& s = r.snapshot;
  CHECK(s.series() == 2);
  CHECK(sample(s, "nodeperf_pressure_memory_waiting_seconds_total") == micros(2500000));
  CHECK(sample(s, "nodeperf_pressure_memory_stalled_seconds_total") == micros(1250000));
}

TEST_CASE("every collector survives the malformed tree with its label keys right", "[collectors][malformed]") {
  for (const CollectorFactory& f : collector_factories()) {
    if (f.bpf) continue;
    Run r = run(f.name, "hostroot-malformed");
    INFO("collector " << f.name << ": " << r.status.error);
    if (f.name != "process") {
      CHECK(r.status.kind != Status::Kind::ok);
      CHECK_THAT(r.status.error, Contains(f.name == "cgroups" ? "sys/fs/cgroup/" : "proc/"));
    }
    for (const Family& family : r.snapshot.families()) {
      for (const Sample& s : family.samples) {
        INFO(family.name << "{" << s.labels << "}");
        CHECK(label_keys(s.labels) == split_keys(family.info->labels));
        CHECK(s.value >= 0);
        CHECK(s.value == s.value);  // never NaN
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Missing and empty files

TEST_CASE("a missing file fails the collector and names the file", "[collectors][missing]") {
  Config config = fixture_config("hostroot-absent");  // no such directory
  const std::string root = config.host_root;
  struct Expect {
    std::string_view collector;
    std::string path;
  };
  for (const Expect& e : {Expect{"cpu", root + "/proc/stat"}, Expect{"diskstats", root + "/proc/diskstats"},
                          Expect{"loadavg", root + "/proc/loadavg"}, Expect{"meminfo", root + "/proc/meminfo"},
                          Expect{"netdev", root + "/proc/net/dev"}, Expect{"netstat", root + "/proc/net/snmp"},
                          Expect{"pressure", root + "/proc/pressure/cpu"}, Expect{"vmstat", root + "/proc/vmstat"}}) {
    Run r = run(e.collector, config);
    INFO("collector " << e.collector);
    CHECK(r.status.kind == Status::Kind::failed);
    CHECK_THAT(r.status.error, StartsWith(e.path + ": open: No such file or directory"));
    CHECK(r.snapshot.series() == 0);
  }
}

TEST_CASE("a file that comes back is read again", "[collectors][missing]") {
  auto root = std::filesystem::temp_directory_path() / ("nodeperf-comeback-" + std::to_string(getpid()));
  std::filesystem::create_directories(root / "proc");
  Config config;
  config.host_root = root.string();
  auto loadavg = factory("loadavg").make(config);
  {
    SampleSink sink;
    CHECK(loadavg->collect(sink).kind == Status::Kind::failed);
  }
  std::ofstream(root / "proc" / "loadavg") << "1.00 2.00 3.00 1/80 11206\n";
  {
    SampleSink sink;
    CHECK(loadavg->collect(sink).kind == Status::Kind::ok);
    Snapshot s(std::move(sink), false, std::chrono::system_clock::now());
    CHECK(sample(s, "nodeperf_load15") == 3.0);
  }
  std::filesystem::remove_all(root);
}

TEST_CASE("empty files: nothing emitted, and the collectors that can tell say so", "[collectors][empty]") {
  SECTION("cpu") {
    Run r = run("cpu", "hostroot-empty");
    CHECK(r.status.kind == Status::Kind::partial);
    CHECK_THAT(r.status.error, Catch::Matchers::EndsWith("proc/stat: no per-cpu lines"));
    CHECK(r.snapshot.series() == 0);
  }
  SECTION("loadavg") {
    Run r = run("loadavg", "hostroot-empty");
    CHECK(r.status.kind == Status::Kind::failed);
    CHECK(r.snapshot.series() == 0);
  }
  SECTION("pressure") {
    Run r = run("pressure", "hostroot-empty");
    CHECK(r.status.kind != Status::Kind::ok);
    CHECK(r.status.error == fixture_root("hostroot-empty") + "/proc/pressure/cpu: malformed (and 2 more)");
    CHECK(r.snapshot.series() == 0);
  }
  SECTION("diskstats: a host without block devices is fine") {
    Run r = run("diskstats", "hostroot-empty");
    CHECK(r.status.kind == Status::Kind::ok);
    CHECK(r.snapshot.series() == 0);
  }
}

// Regression (fixed): collectors/meminfo.cpp MeminfoCollector::collect: an empty
// /proc/meminfo (no line at all) gives Status ok with no sample, so
// nodeperf_collector_up says 1 while every memory metric is gone. Expected:
// partial or failed with an error naming proc/meminfo, as the cpu collector
// does for an empty proc/stat ("proc/stat: no per-cpu lines").
TEST_CASE("meminfo: an empty /proc/meminfo is not ok", "[collectors][empty]") {
  Run r = run("meminfo", "hostroot-empty");
  CHECK(r.status.kind != Status::Kind::ok);
  CHECK_THAT(r.status.error, Contains("proc/meminfo"));
}

// Regression (fixed): collectors/vmstat.cpp VmstatCollector::collect: an empty /proc/vmstat
// gives Status ok with no sample. Expected: partial or failed naming the file.
TEST_CASE("vmstat: an empty /proc/vmstat is not ok", "[collectors][empty]") {
  Run r = run("vmstat", "hostroot-empty");
  CHECK(r.status.kind != Status::Kind::ok);
  CHECK_THAT(r.status.error, Contains("proc/vmstat"));
}

// Regression (fixed): collectors/netstat.cpp NetstatCollector::collect: empty
// /proc/net/snmp and /proc/net/netstat give Status ok with no sample.
// Expected: partial or failed naming the files.
TEST_CASE("netstat: empty snmp and netstat files are not ok", "[collectors][empty]") {
  Run r = run("netstat", "hostroot-empty");
  CHECK(r.status.kind != Status::Kind::ok);
  CHECK_THAT(r.status.error, Contains("proc/net/snmp"));
}
