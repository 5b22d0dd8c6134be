// The cgroups collector over fixture trees (tests/fixtures/cgroups): pure v2
// with the kubelet's systemd and cgroupfs drivers, pure v1, hybrid, and
// malformed or half-deleted files; then discovery following mkdir/rmdir.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "agent/config.h"
#include "agent/snapshot.h"
#include "collectors/cgroup_tree.h"
#include "collectors/cgroups.h"

using namespace nodeperf;
using Catch::Matchers::Contains;

namespace {

const std::string kCid(64, 'a');
const std::string kUid = "1f2e3d4c-0000-4000-8000-123456789abc";

Config fixture(std::string_view tree) {
  Config c;
  c.host_root = std::string(NODEPERF_FIXTURES) + "/cgroups/" + std::string(tree);
  return c;
}

struct Run {
  Status status;
  Snapshot snapshot;
};

Run collect(Collector& c) {
  SampleSink sink;
  Status status = c.collect(sink);
  return Run{std::move(status), Snapshot(std::move(sink), false, std::chrono::system_clock::now())};
}

Run collect(const Config& config) {
  auto c = kCgroupsCollector.make(config);
  return collect(*c);
}

// The one sample of `name` whose labels start with cgroup="<cgroup>" (and
// contain `more`); fails the test unless there is exactly one.
std::optional<double> value(const Snapshot& s, std::string_view name, const std::string& cgroup,
                            std::string_view more = "") {
  const Family* f = s.find(name);
  if (!f) return std::nullopt;
  std::optional<double> out;
  std::string prefix = "cgroup=\"" + cgroup + "\"";
  for (const Sample& x : f->samples) {
    if (x.labels.starts_with(prefix) && (x.labels.size() == prefix.size() || x.labels[prefix.size()] == ',') &&
        x.labels.find(more) != std::string::npos) {
      REQUIRE_FALSE(out);
      out = x.value;
    }
  }
  return out;
}

std::string labels_of(const Snapshot& s, std::string_view name, const std::string& cgroup) {
  const Family* f = s.find(name);
  REQUIRE(f);
  for (const Sample& x : f->samples) {
    if (x.labels.starts_with("cgroup=\"" + cgroup + "\"")) return x.labels;
  }
  FAIL("no series for " << cgroup);
  return {};
}

void write(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }

}  // namespace

TEST_CASE("cgroups: pure v2, kubelet systemd driver (containerd, CRI-O)") {
  Run r = collect(fixture("v2-systemd"));
  INFO(r.status.error);
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  std::string pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_0000_4000_8000_123456789abc.slice";
  std::string ctr = pod + "/cri-containerd-" + kCid + ".scope";
  CHECK(value(s, "nodeperf_cgroup_cpu_usage_seconds_total", ctr) == Approx(4.0));
  CHECK(value(s, "nodeperf_cgroup_cpu_user_seconds_total", ctr) == Approx(3.0));
  CHECK(value(s, "nodeperf_cgroup_cpu_system_seconds_total", ctr) == Approx(1.0));
  CHECK(value(s, "nodeperf_cgroup_cpu_periods_total", ctr) == 100);
  CHECK(value(s, "nodeperf_cgroup_cpu_throttled_periods_total", ctr) == 7);
  CHECK(value(s, "nodeperf_cgroup_cpu_throttled_seconds_total", ctr) == Approx(0.25));
  double mem = 100 << 20;
  CHECK(value(s, "nodeperf_cgroup_memory_usage_bytes", ctr) == mem);
  CHECK(value(s, "nodeperf_cgroup_memory_working_set_bytes", ctr) == mem - mem / 8);
  CHECK(value(s, "nodeperf_cgroup_memory_rss_bytes", ctr) == mem / 2);
  CHECK(value(s, "nodeperf_cgroup_memory_cache_bytes", ctr) == mem / 4);
  CHECK(value(s, "nodeperf_cgroup_memory_swap_bytes", ctr) == 0);
  CHECK(value(s, "nodeperf_cgroup_memory_limit_bytes", ctr) == 256 << 20);
  CHECK(value(s, "nodeperf_cgroup_memory_oom_events_total", ctr) == 2);
  CHECK(value(s, "nodeperf_cgroup_memory_oom_kills_total", ctr) == 1);
  CHECK(value(s, "nodeperf_cgroup_pids_current", ctr) == 12);
  CHECK(value(s, "nodeperf_cgroup_pids_limit", ctr) == 1024);
  CHECK(value(s, "nodeperf_cgroup_pressure_cpu_waiting_seconds_total", ctr) == Approx(1.5));
  CHECK(value(s, "nodeperf_cgroup_pressure_io_stalled_seconds_total", ctr) == Approx(2.0));
  // Devices not in the fixture's /sys/dev/block keep their numbers.
  CHECK(value(s, "nodeperf_cgroup_io_read_bytes_total", ctr, "device=\"8:0\"") == 1048576);
  CHECK(value(s, "nodeperf_cgroup_io_written_bytes_total", ctr, "device=\"8:0\"") == 2097152);
  CHECK(value(s, "nodeperf_cgroup_io_reads_total", ctr, "device=\"8:0\"") == 256);
  CHECK(value(s, "nodeperf_cgroup_io_writes_total", ctr, "device=\"253:1\"") == 0);
  // Unlimited: no limit series.
  CHECK_FALSE(value(s, "nodeperf_cgroup_memory_limit_bytes", "/system.slice"));
  CHECK_FALSE(value(s, "nodeperf_cgroup_pids_limit", "/system.slice"));
  CHECK(value(s, "nodeperf_cgroup_memory_limit_bytes", "/kubepods.slice") == double(8ull << 30));
  // The root has what v2 gives it; depth 5 is beyond the default of 4.
  CHECK(value(s, "nodeperf_cgroup_cpu_usage_seconds_total", "/") == Approx(90.0));
  CHECK_FALSE(value(s, "nodeperf_cgroup_cpu_usage_seconds_total", ctr + "/nested"));
  CHECK(value(s, "nodeperf_cgroups_tracked", "") == std::nullopt);  // unlabelled: looked up below
  CHECK(s.find("nodeperf_cgroups_tracked")->samples.at(0).value == 10);
  CHECK(s.find("nodeperf_cgroups_folded")->samples.at(0).value == 0);
  CHECK_FALSE(value(s, "nodeperf_cgroup_cpu_usage_seconds_total", "other"));
  // Kubernetes labels from the path.
  std::string l = labels_of(s, "nodeperf_cgroup_cpu_usage_seconds_total", ctr);
  CHECK_THAT(l, Contains("pod_uid=\"" + kUid + "\""));
  CHECK_THAT(l, Contains("container_id=\"" + kCid + "\""));
  CHECK_THAT(l, Contains("qos=\"burstable\""));
  std::string pl = labels_of(s, "nodeperf_cgroup_cpu_usage_seconds_total", pod);
  CHECK_THAT(pl, Contains("pod_uid=\"" + kUid + "\""));
  CHECK_THAT(pl, !Contains("container_id"));
  CHECK(labels_of(s, "nodeperf_cgroup_cpu_usage_seconds_total", "/system.slice") == "cgroup=\"/system.slice\"");
  // One info series per tracked cgroup, with the same labels, for joins.
  CHECK(s.find("nodeperf_cgroup_info")->samples.size() == 10);
  CHECK(value(s, "nodeperf_cgroup_info", ctr) == 1);
  CHECK(labels_of(s, "nodeperf_cgroup_info", ctr) == l);
  std::string crio = labels_of(s, "nodeperf_cgroup_memory_usage_bytes",
                               "/kubepods.slice/kubepods-besteffort.slice/"
                               "kubepods-besteffort-pod2f2e3d4c_0000_4000_8000_123456789abc.slice/crio-" +
                                   std::string(64, 'b') + ".scope");
  CHECK_THAT(crio, Contains("qos=\"besteffort\""));
}

TEST_CASE("cgroups: pure v2, kubelet cgroupfs driver") {
  Run r = collect(fixture("v2-cgroupfs"));
  CHECK(r.status.kind == Status::Kind::ok);
  std::string ctr = "/kubepods/burstable/pod" + kUid + "/" + kCid;
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", ctr) == Approx(1.5));
  CHECK_THAT(labels_of(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", ctr), Contains("qos=\"burstable\""));
  std::string g = "/kubepods/pod3f2e3d4c-0000-4000-8000-123456789abc/" + std::string(64, 'b');
  CHECK_THAT(labels_of(r.snapshot, "nodeperf_cgroup_memory_usage_bytes", g), Contains("qos=\"guaranteed\""));
}

TEST_CASE("cgroups: pure v1, cpu and cpuacct sharing one hierarchy") {
  Run r = collect(fixture("v1"));
  INFO(r.status.error);
  CHECK(r.status.kind == Status::Kind::ok);
  const Snapshot& s = r.snapshot;
  std::string d = "/docker/" + kCid;
  double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  CHECK(value(s, "nodeperf_cgroup_cpu_usage_seconds_total", d) == Approx(2.5));
  CHECK(value(s, "nodeperf_cgroup_cpu_user_seconds_total", d) == Approx(150 / hz));
  CHECK(value(s, "nodeperf_cgroup_cpu_system_seconds_total", d) == Approx(50 / hz));
  CHECK(value(s, "nodeperf_cgroup_cpu_throttled_periods_total", d) == 4);
  CHECK(value(s, "nodeperf_cgroup_cpu_throttled_seconds_total", d) == Approx(1.5));
  CHECK(value(s, "nodeperf_cgroup_memory_usage_bytes", d) == 104857600);
  CHECK(value(s, "nodeperf_cgroup_memory_working_set_bytes", d) == 104857600 - 10485760);
  CHECK(value(s, "nodeperf_cgroup_memory_rss_bytes", d) == 52428800);
  CHECK(value(s, "nodeperf_cgroup_memory_cache_bytes", d) == 41943040);
  CHECK(value(s, "nodeperf_cgroup_memory_swap_bytes", d) == 4096);
  CHECK(value(s, "nodeperf_cgroup_memory_limit_bytes", d) == 268435456);
  CHECK_FALSE(value(s, "nodeperf_cgroup_memory_limit_bytes", "/docker"));  // v1's "no limit"
  CHECK(value(s, "nodeperf_cgroup_memory_oom_kills_total", d) == 3);
  CHECK_FALSE(value(s, "nodeperf_cgroup_memory_oom_events_total", d));  // v2 only
  CHECK(value(s, "nodeperf_cgroup_io_read_bytes_total", d, "device=\"8:0\"") == 8192);
  CHECK(value(s, "nodeperf_cgroup_io_written_bytes_total", d, "device=\"8:0\"") == 16384);
  CHECK(value(s, "nodeperf_cgroup_io_reads_total", d, "device=\"8:0\"") == 2);
  CHECK(value(s, "nodeperf_cgroup_io_writes_total", d, "device=\"8:0\"") == 4);
  CHECK(value(s, "nodeperf_cgroup_pids_current", d) == 5);
  CHECK(value(s, "nodeperf_cgroup_pids_limit", d) == 100);
  CHECK_FALSE(value(s, "nodeperf_cgroup_pids_limit", "/docker"));
  CHECK(s.find("nodeperf_cgroup_pressure_cpu_waiting_seconds_total") == nullptr);  // no v2, no PSI
  // A cgroup only one hierarchy has is still read where it exists.
  CHECK(value(s, "nodeperf_cgroup_memory_usage_bytes", "/only-memory") == 4096);
  CHECK_FALSE(value(s, "nodeperf_cgroup_cpu_usage_seconds_total", "/only-memory"));
  std::string k = "/kubepods/besteffort/pod" + kUid + "/" + std::string(64, 'b');
  CHECK_THAT(labels_of(s, "nodeperf_cgroup_cpu_usage_seconds_total", k), Contains("qos=\"besteffort\""));
}

TEST_CASE("cgroups: hybrid takes v1 controllers and PSI from unified") {
  Run r = collect(fixture("hybrid"));
  CHECK(r.status.kind == Status::Kind::ok);
  std::string d = "/docker/" + kCid;
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", d) == Approx(2.5));  // not unified's 0.000999
  CHECK(value(r.snapshot, "nodeperf_cgroup_pressure_cpu_waiting_seconds_total", d) == Approx(4.0));
  CHECK(value(r.snapshot, "nodeperf_cgroup_pressure_io_stalled_seconds_total", d) == Approx(1.0));
  CHECK_FALSE(value(r.snapshot, "nodeperf_cgroup_pressure_memory_waiting_seconds_total", d));  // no file
}

TEST_CASE("cgroups: malformed files are one-line errors, the rest is kept") {
  Run r = collect(fixture("malformed"));
  CHECK(r.status.kind == Status::Kind::partial);
  CHECK_THAT(r.status.error, Contains("/garbage/"));
  CHECK(r.status.error.find('\n') == std::string::npos);
  const Snapshot& s = r.snapshot;
  CHECK(value(s, "nodeperf_cgroup_memory_usage_bytes", "/good") == 1 << 20);
  CHECK_FALSE(value(s, "nodeperf_cgroup_memory_limit_bytes", "/good"));  // "max"
  CHECK_FALSE(value(s, "nodeperf_cgroup_memory_usage_bytes", "/garbage"));
  CHECK_FALSE(value(s, "nodeperf_cgroup_cpu_usage_seconds_total", "/garbage"));
  CHECK(value(s, "nodeperf_cgroup_cpu_user_seconds_total", "/garbage") == Approx(1e-5));
  CHECK(value(s, "nodeperf_cgroup_memory_rss_bytes", "/garbage") == 1 << 19);
  CHECK(s.find("nodeperf_cgroup_io_read_bytes_total") == nullptr);  // empty io.stat has no devices

  // Missing files (a cgroup half torn down) and an empty io.stat are no error.
  Config c = fixture("malformed");
  c.cgroups_include = "^/(half-deleted|empty-io)$";
  Run ok = collect(c);
  INFO(ok.status.error);
  CHECK(ok.status.kind == Status::Kind::ok);
  CHECK(value(ok.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/half-deleted") == Approx(1.0));
  CHECK_FALSE(value(ok.snapshot, "nodeperf_cgroup_memory_usage_bytes", "/half-deleted"));
  CHECK_FALSE(value(ok.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/good"));
}

TEST_CASE("cgroups: parsers") {
  bool bad = false;
  CHECK(parse_cgroup_limit("max\n", bad) == std::nullopt);
  CHECK_FALSE(bad);
  CHECK(parse_cgroup_limit("9223372036854771712\n", bad) == std::nullopt);
  CHECK(parse_cgroup_limit("4096\n", bad) == 4096u);
  CHECK(parse_cgroup_limit("-1\n", bad) == std::nullopt);
  CHECK(bad);
  CHECK(parse_io_stat("")->empty());
  CHECK_FALSE(parse_io_stat("8:0 rbytes=x"));
  CHECK_FALSE(parse_io_stat("sda rbytes=1"));
  auto io = parse_blkio("8:0 Read 1\n8:16 Write 2\nTotal 3\n", "8:0 Read 1\n8:16 Write 1\nTotal 2\n");
  REQUIRE(io);
  REQUIRE(io->size() == 2);
  CHECK((*io)[1].written_bytes == 2);
  CHECK_FALSE(parse_blkio("8:0 Read\n", ""));
}

TEST_CASE("cgroups: discovery follows mkdir and rmdir") {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("nodeperf-cgroups-" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::copy(std::string(NODEPERF_FIXTURES) + "/cgroups/v2-cgroupfs", root, fs::copy_options::recursive);
  fs::path cg = root / "sys/fs/cgroup";
  Config config;
  config.host_root = root.string();
  auto c = kCgroupsCollector.make(config);
  Run first = collect(*c);
  CHECK_FALSE(value(first.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/new"));

  fs::create_directories(cg / "new/child");
  write(cg / "new/cpu.stat", "usage_usec 7000000\nuser_usec 1\nsystem_usec 1\n");
  write(cg / "new/child/cpu.stat", "usage_usec 1000000\nuser_usec 1\nsystem_usec 1\n");
  Run second = collect(*c);
  CHECK(value(second.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/new") == Approx(7.0));
  CHECK(value(second.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/new/child") == Approx(1.0));

  fs::remove_all(cg / "new");
  Run third = collect(*c);
  CHECK_FALSE(value(third.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/new"));
  CHECK_FALSE(value(third.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/new/child"));
  CHECK(third.status.kind == Status::Kind::ok);

  // Incremental: the tree is not walked again while nothing changes.
  CgroupHierarchy h(cg.string(), 4);
  h.refresh();
  CHECK(h.incremental());
  uint64_t g = h.generation();
  h.refresh();
  CHECK(h.generation() == g);

  fs::remove_all(root);
}

TEST_CASE("cgroups: over the budget, the rest fold into `other` and the busiest win places") {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("nodeperf-cgroups-fold-" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::copy(std::string(NODEPERF_FIXTURES) + "/cgroups/v2-cgroupfs", root, fs::copy_options::recursive);
  const std::string busy = "/kubepods/pod3f2e3d4c-0000-4000-8000-123456789abc/" + std::string(64, 'b');
  fs::path busy_dir = root / ("sys/fs/cgroup" + busy);
  Config config;
  config.host_root = root.string();
  config.cgroups_max = 2;
  auto c = kCgroupsCollector.make(config);
  Run r = collect(*c);
  // Path order: "/" and "/kubepods" keep places; five are folded.
  CHECK(r.snapshot.find("nodeperf_cgroups_tracked")->samples.at(0).value == 2);
  CHECK(r.snapshot.find("nodeperf_cgroups_folded")->samples.at(0).value == 5);
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/kubepods"));
  CHECK_FALSE(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", busy));
  // Gauges are summed (nested folded cgroups count in both); counters start at 0.
  CHECK(value(r.snapshot, "nodeperf_cgroup_memory_usage_bytes", "other") == 536870912.0 + 268435456 + 134217728 + 67108864);
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "other") == 0);
  CHECK_FALSE(value(r.snapshot, "nodeperf_cgroup_memory_limit_bytes", "other"));

  // Counters of `other` grow by what the folded cgroups did, per device too.
  write(busy_dir / "cpu.stat", "usage_usec 2500000\nuser_usec 1\nsystem_usec 1\n");
  write(busy_dir / "io.stat", "8:0 rbytes=4096 wbytes=0 rios=1 wios=0\n");
  r = collect(*c);
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "other") == Approx(2.0));
  CHECK(value(r.snapshot, "nodeperf_cgroup_io_read_bytes_total", "other", "device=\"8:0\"") == 0);
  write(busy_dir / "io.stat", "8:0 rbytes=12288 wbytes=0 rios=3 wios=0\n");
  r = collect(*c);
  CHECK(value(r.snapshot, "nodeperf_cgroup_io_read_bytes_total", "other", "device=\"8:0\"") == 8192);
  CHECK(value(r.snapshot, "nodeperf_cgroup_io_reads_total", "other", "device=\"8:0\"") == 2);

  // At the next ranking the busy cgroup takes the place of a quiet one; its
  // CPU from then on is its own, and `other` keeps what it had counted.
  for (int tick = 0; tick < 60; ++tick) r = collect(*c);
  CHECK(r.snapshot.find("nodeperf_cgroups_rank_swaps_total")->samples.at(0).value == 1);
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", busy) == Approx(2.5));
  write(busy_dir / "cpu.stat", "usage_usec 4500000\nuser_usec 1\nsystem_usec 1\n");
  r = collect(*c);
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", busy) == Approx(4.5));
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "other") == Approx(2.0));
  CHECK(r.snapshot.find("nodeperf_cgroups_tracked")->samples.at(0).value == 2);
  fs::remove_all(root);
}

TEST_CASE("cgroups: the IO families' own budget folds later cgroups' IO into `other`") {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("nodeperf-cgroups-io-" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::copy(std::string(NODEPERF_FIXTURES) + "/cgroups/v2-cgroupfs", root, fs::copy_options::recursive);
  fs::path cg = root / "sys/fs/cgroup";
  write(cg / "kubepods/io.stat", "8:0 rbytes=4096 wbytes=0 rios=1 wios=0\n");
  write(cg / "kubepods/burstable/io.stat", "8:0 rbytes=8192 wbytes=0 rios=2 wios=0\n");
  Config config;
  config.host_root = root.string();
  config.cgroups_max_io_series = 1;
  auto c = kCgroupsCollector.make(config);
  Run r = collect(*c);
  CHECK(value(r.snapshot, "nodeperf_cgroup_io_read_bytes_total", "/kubepods", "device=") == 4096);
  CHECK_FALSE(value(r.snapshot, "nodeperf_cgroup_io_read_bytes_total", "/kubepods/burstable", "device="));
  CHECK(value(r.snapshot, "nodeperf_cgroup_cpu_usage_seconds_total", "/kubepods/burstable"));  // the rest stays its own
  CHECK(r.snapshot.find("nodeperf_cgroups_io_folded")->samples.at(0).value == 1);
  write(cg / "kubepods/burstable/io.stat", "8:0 rbytes=20480 wbytes=0 rios=5 wios=0\n");
  r = collect(*c);
  CHECK(value(r.snapshot, "nodeperf_cgroup_io_read_bytes_total", "other", "device=\"8:0\"") == 12288);
  CHECK(value(r.snapshot, "nodeperf_cgroup_io_reads_total", "other", "device=\"8:0\"") == 3);
  fs::remove_all(root);
}
