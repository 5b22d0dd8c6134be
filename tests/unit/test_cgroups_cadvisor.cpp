// --compat=cadvisor: cAdvisor's container_* families and labels for pod and
// container cgroups, over the v2 systemd fixture tree and by hand-made figures.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>

#include "agent/config.h"
#include "agent/snapshot.h"
#include "collectors/cgroups.h"
#include "collectors/cgroups_cadvisor.h"

using namespace nodeperf;

namespace {

const std::string kCid(64, 'a');
const std::string kPod =
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_0000_4000_8000_123456789abc.slice";
const std::string kCtr = kPod + "/cri-containerd-" + kCid + ".scope";

Snapshot collect(bool cadvisor) {
  Config c;
  c.host_root = std::string(NODEPERF_FIXTURES) + "/cgroups/v2-systemd";
  c.cadvisor_compat = cadvisor;
  auto collector = kCgroupsCollector.make(c);
  SampleSink sink;
  Status status = collector->collect(sink);
  INFO(status.error);
  CHECK(status.kind == Status::Kind::ok);
  return Snapshot(std::move(sink), false, std::chrono::system_clock::now());
}

// The one sample of `name` with id="<id>" (and `more` in its labels).
std::optional<double> value(const Snapshot& s, std::string_view name, const std::string& id,
                            std::string_view more = "") {
  const Family* f = s.find(name);
  if (!f) return std::nullopt;
  std::optional<double> out;
  for (const Sample& x : f->samples) {
    if (x.labels.find("id=\"" + id + "\"") != std::string::npos && x.labels.find(more) != std::string::npos) {
      REQUIRE_FALSE(out);
      out = x.value;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("cadvisor compat: off by default, no container_* family") {
  Snapshot s = collect(false);
  for (const MetricInfo& m : cadvisor_metrics()) CHECK_FALSE(s.find(m.name));
}

TEST_CASE("cadvisor compat: pod and container cgroups under cAdvisor's names") {
  Snapshot s = collect(true);
  SECTION("the same figures as the nodeperf_cgroup_* series") {
    CHECK(value(s, "container_cpu_usage_seconds_total", kCtr, "cpu=\"total\"") == Approx(4.0));
    CHECK(value(s, "container_cpu_user_seconds_total", kCtr) == Approx(3.0));
    CHECK(value(s, "container_cpu_system_seconds_total", kCtr) == Approx(1.0));
    CHECK(value(s, "container_cpu_cfs_periods_total", kCtr) == 100);
    CHECK(value(s, "container_cpu_cfs_throttled_periods_total", kCtr) == 7);
    CHECK(value(s, "container_cpu_cfs_throttled_seconds_total", kCtr) == Approx(0.25));
    double mem = 100 << 20;
    CHECK(value(s, "container_memory_usage_bytes", kCtr) == mem);
    CHECK(value(s, "container_memory_working_set_bytes", kCtr) == mem - mem / 8);
    CHECK(value(s, "container_memory_rss", kCtr) == mem / 2);
    CHECK(value(s, "container_memory_cache", kCtr) == mem / 4);
    CHECK(value(s, "container_memory_swap", kCtr) == 0);
    CHECK(value(s, "container_spec_memory_limit_bytes", kCtr) == 256 << 20);
    CHECK(value(s, "container_oom_events_total", kCtr) == 2);
    CHECK(value(s, "container_threads", kCtr) == 12);
    CHECK(value(s, "container_threads_max", kCtr) == 1024);
    CHECK(value(s, "container_pressure_cpu_waiting_seconds_total", kCtr) == Approx(1.5));
    CHECK(value(s, "container_pressure_io_stalled_seconds_total", kCtr) == Approx(2.0));
  }
  SECTION("no limit is 0, as cAdvisor writes it") {
    CHECK(value(s, "container_threads_max", kPod) == 0);  // pids.max "max"
    CHECK(value(s, "container_spec_memory_limit_bytes", kPod) == 1 << 30);
  }
  SECTION("devices by path; one without a kernel name by udev's /dev/block/MAJ:MIN") {
    // The fixture has no /sys/dev/block: no device has a name.
    CHECK(value(s, "container_fs_reads_bytes_total", kCtr, "device=\"/dev/block/8:0\"") == 1048576);
    CHECK(value(s, "container_fs_writes_bytes_total", kCtr, "device=\"/dev/block/8:0\"") == 2097152);
    CHECK(value(s, "container_fs_reads_total", kCtr, "device=\"/dev/block/253:1\"") == 1);
    CHECK(value(s, "container_fs_writes_total", kCtr, "device=\"/dev/block/8:0\"") == 512);
  }
  SECTION("only pod and container cgroups, with every cAdvisor label; names empty without the kubelet") {
    const Family* f = s.find("container_memory_usage_bytes");
    REQUIRE(f);
    CHECK(f->samples.size() == 3);  // the two containers, and the one pod with a memory.current
    for (const Sample& x : f->samples) {
      INFO(x.labels);
      CHECK(x.labels.find("id=\"/kubepods.slice/kubepods-") != std::string::npos);
      CHECK(x.labels.find("-pod") != std::string::npos);
    }
    const Sample* ctr = nullptr;
    for (const Sample& x : f->samples) {
      if (x.labels.find("id=\"" + kCtr + "\"") != std::string::npos) ctr = &x;
    }
    REQUIRE(ctr);
    CHECK(ctr->labels == "container=\"\",id=\"" + kCtr + "\",image=\"\",name=\"" + kCid +
                             "\",namespace=\"\",pod=\"\"");
    CHECK_FALSE(value(s, "container_memory_usage_bytes", "/system.slice"));
    CHECK_FALSE(value(s, "container_memory_usage_bytes", "/kubepods.slice"));
  }
}

TEST_CASE("cadvisor compat: labels as the kubelet sets them") {
  PodNames names{"shop", "web-0", {{kCid, PodContainer{"nginx", "docker.io/library/nginx:1.25"}}}};
  KubernetesRef pod{"1f2e3d4c-0000-4000-8000-123456789abc", "", "", "burstable"};
  KubernetesRef ctr = pod;
  ctr.container_id = kCid;

  CHECK(cadvisor_labels(kCtr, ctr, &names) ==
        "container=\"nginx\",id=\"" + kCtr + "\",image=\"docker.io/library/nginx:1.25\",name=\"" + kCid +
            "\",namespace=\"shop\",pod=\"web-0\"");
  CHECK(cadvisor_labels(kPod, pod, &names) ==
        "container=\"\",id=\"" + kPod + "\",image=\"\",name=\"\",namespace=\"shop\",pod=\"web-0\"");
  CHECK(cadvisor_labels(kPod, pod, nullptr) ==
        "container=\"\",id=\"" + kPod + "\",image=\"\",name=\"\",namespace=\"\",pod=\"\"");

  SECTION("cgroups inside a container or beside one count nowhere: a sum over the pod counts each task once") {
    CHECK_FALSE(cadvisor_labels(kCtr + "/container", ctr, &names));  // crun's child
    CHECK_FALSE(cadvisor_labels(kPod + "/crio-conmon-" + kCid + ".scope", pod, &names));
  }
}

TEST_CASE("cadvisor compat: quota-only and limit families") {
  const MetricInfo table[] = {
      {"nodeperf_cgroup_cpu_usage_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_cpu_user_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_cpu_system_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_cpu_periods_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_cpu_throttled_periods_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_cpu_throttled_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_memory_usage_bytes", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_memory_working_set_bytes", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_memory_rss_bytes", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_memory_cache_bytes", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_memory_swap_bytes", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_memory_limit_bytes", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_memory_oom_events_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_pids_current", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_pids_limit", MetricType::gauge, "", "", ""},
      {"nodeperf_cgroup_pressure_cpu_waiting_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_pressure_cpu_stalled_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_pressure_memory_waiting_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_pressure_memory_stalled_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_pressure_io_waiting_seconds_total", MetricType::counter, "", "", ""},
      {"nodeperf_cgroup_pressure_io_stalled_seconds_total", MetricType::counter, "", "", ""},
  };
  CadvisorFamilies families(table);
  std::array<std::optional<double>, std::size(table)> no_quota{}, no_memory{};
  no_quota[0] = 9;   // cpu usage
  no_quota[3] = 0;   // a v2 cpu.stat without a quota still has nr_periods 0
  no_quota[4] = 0;
  no_quota[5] = 0;
  no_quota[6] = 42;  // memory usage, no memory.max limit
  no_memory[0] = 1;  // a cgroup whose memory was not read
  const CgroupDeviceIo disk{8, 0, 1, 2, 3, 4};
  const CadvisorCgroup cgroups[] = {{"id=\"/a\"", no_quota, {&disk, 1}}, {"id=\"/b\"", no_memory, {}}};
  SampleSink sink;
  std::string sda = "sda";
  families.emit(sink, cgroups, [&](uint32_t, uint32_t) -> const std::string& { return sda; });
  Snapshot s(std::move(sink), false, std::chrono::system_clock::now());

  CHECK(s.find("container_cpu_usage_seconds_total")->samples.size() == 2);
  CHECK_FALSE(s.find("container_cpu_cfs_periods_total"));  // no quota, no series: as cAdvisor
  CHECK_FALSE(s.find("container_cpu_cfs_throttled_seconds_total"));
  const Family* limit = s.find("container_spec_memory_limit_bytes");
  REQUIRE(limit);
  REQUIRE(limit->samples.size() == 1);  // /b has no memory figures at all
  CHECK(limit->samples[0].labels == "id=\"/a\"");
  CHECK(limit->samples[0].value == 0);
  const Family* writes = s.find("container_fs_writes_total");
  REQUIRE(writes);
  REQUIRE(writes->samples.size() == 1);
  CHECK(writes->samples[0].labels == "id=\"/a\",device=\"/dev/sda\"");
  CHECK(writes->samples[0].value == 4);

  SECTION("a table without a source family is a programming error") {
    CHECK_THROWS_AS(CadvisorFamilies(std::span(table).first(3)), std::logic_error);
  }
}
