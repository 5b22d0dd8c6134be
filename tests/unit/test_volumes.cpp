// The volumes collector's pure parts over fixtures: mountinfo lines, kubelet
// volume paths, block devices from a fixture sysfs, claims from the pod
// list; the statvfs pool with a call that hangs; and the collector over a
// fake host root of plain directories. Real mounts, loop devices and a hung
// FUSE mount are in tests/integration/test_volumes.py.
#include <catch2/catch.hpp>

#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "agent/config.h"
#include "agent/snapshot.h"
#include "collectors/mountinfo.h"
#include "collectors/statfs_pool.h"
#include "collectors/volumes.h"

using namespace nodeperf;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

const std::string kPodA = "0b9f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
const std::string kPodB = "7d3c2b1a-9e8f-4a6b-b5c4-d3e2f1a0b9c8";
const std::string kFixtures = std::string(NODEPERF_FIXTURES) + "/volumes/";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<Volume> volumes_of(const std::string& fixture, Status* status = nullptr) {
  Problems problems(kFixtures + fixture);
  auto mounts = parse_mountinfo(slurp(kFixtures + fixture), problems);
  if (status) *status = problems.status();
  return find_volumes(mounts);
}

const Volume* find(const std::vector<Volume>& vs, const std::string& uid, const std::string& name) {
  const Volume* out = nullptr;
  for (const Volume& v : vs) {
    if (v.path.pod_uid == uid && v.path.volume == name) {
      REQUIRE_FALSE(out);
      out = &v;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("mountinfo: fields, escapes and the optional fields") {
  Problems p("mi");
  auto m = parse_mountinfo(
      "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n"
      "37 36 0:5 /dm-3 /x rw - devtmpfs udev rw\n",
      p);
  REQUIRE(p.status().kind == Status::Kind::ok);
  REQUIRE(m.size() == 2);
  CHECK(m[0].id == 36);
  CHECK(m[0].parent == 35);
  CHECK(m[0].major == 98);
  CHECK(m[0].minor == 0);
  CHECK(m[0].root == "/mnt1");
  CHECK(m[0].mount_point == "/mnt/parent dir");
  CHECK(m[0].fstype == "ext3");
  CHECK(m[0].source == "/dev/root");
  CHECK(m[1].root == "/dm-3");
  CHECK(unescape_mount_field("a\\011b\\134c\\012d") == "a\tb\\c\nd");
  CHECK(unescape_mount_field("trail\\04") == "trail\\04");
  CHECK(unescape_mount_field("\\999") == "\\999");
}

TEST_CASE("mountinfo: a bind-mounted namespace file (ip netns, CNI) is left out, not an error") {
  Problems p("mi");
  auto m = parse_mountinfo(
      "43 42 0:4 net:[4026532177] /run/netns/cni-1f0c rw shared:2 - nsfs nsfs rw\n"
      "44 42 0:4 mnt:[4026532178] /run/ns/mnt rw - nsfs nsfs rw\n"
      "37 36 0:5 /dm-3 /x rw - devtmpfs udev rw\n"
      "45 42 0:46 net:[1] /y rw - tmpfs tmpfs rw\n",
      p);
  REQUIRE(m.size() == 1);
  CHECK(m[0].mount_point == "/x");
  // Only nsfs: a relative root on any other file system is still malformed.
  REQUIRE(p.status().kind == Status::Kind::partial);
  CHECK_THAT(p.status().error, Contains("line 4: root or mount point not absolute"));
}

TEST_CASE("mountinfo: malformed lines give one error naming the file and line, the rest is kept") {
  Status status;
  auto vs = volumes_of("malformed.mountinfo", &status);
  REQUIRE(status.kind == Status::Kind::partial);
  CHECK_THAT(status.error, Contains("malformed.mountinfo: line 3: short line"));
  CHECK_THAT(status.error, Contains("(and 4 more)"));
  CHECK(status.error.find('\n') == std::string::npos);
  REQUIRE(vs.size() == 2);
  CHECK(find(vs, kPodA, "pv-good"));
  CHECK(find(vs, kPodB, "pv-good2"));
}

TEST_CASE("kubelet volume paths") {
  using K = KubeletVolumePath::Kind;
  auto p = parse_kubelet_volume_path("/var/lib/kubelet/pods/" + kPodA + "/volumes/kubernetes.io~csi/pvc-1/mount");
  REQUIRE(p);
  CHECK(p->kind == K::filesystem);
  CHECK(p->pod_uid == kPodA);
  CHECK(p->plugin == "kubernetes.io~csi");
  CHECK(p->volume == "pvc-1");
  // CSI without /mount is the directory holding vol_data.json, not the volume.
  CHECK_FALSE(parse_kubelet_volume_path("/var/lib/kubelet/pods/" + kPodA + "/volumes/kubernetes.io~csi/pvc-1"));
  p = parse_kubelet_volume_path("/data/kubelet/pods/" + kPodA + "/volumes/kubernetes.io~empty-dir/cache");
  REQUIRE(p);
  CHECK(p->volume == "cache");
  CHECK_FALSE(parse_kubelet_volume_path("/var/lib/kubelet/pods/" + kPodA + "/volumes/kubernetes.io~empty-dir/cache/x"));
  CHECK_FALSE(parse_kubelet_volume_path("/var/lib/kubelet/pods/" + kPodA + "/volume-subpaths/data/app/0"));
  CHECK_FALSE(parse_kubelet_volume_path("/var/lib/kubelet/pods/ABC/volumes/kubernetes.io~empty-dir/cache"));
  p = parse_kubelet_volume_path("/var/lib/kubelet/pods/3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9/volumes/kubernetes.io~host-path/etc");
  REQUIRE(p);  // a static pod's UID
  p = parse_kubelet_volume_path("/var/lib/kubelet/pods/" + kPodB + "/volumeDevices/kubernetes.io~local-volume/blk");
  REQUIRE(p);
  CHECK(p->kind == K::block);
  p = parse_kubelet_volume_path("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pv9/" + kPodA);
  REQUIRE(p);
  CHECK(p->kind == K::block);
  CHECK(p->volume == "pv9");
  CHECK(p->pod_uid == kPodA);
  p = parse_kubelet_volume_path("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/pv9/dev/" + kPodA);
  REQUIRE(p);
  CHECK(p->volume == "pv9");
  CHECK_FALSE(parse_kubelet_volume_path("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/pv9"));
  CHECK_FALSE(parse_kubelet_volume_path("/var/lib/kubelet/plugins/kubernetes.io/csi/ebs.csi.aws.com/abc/globalmount"));
  CHECK_FALSE(parse_kubelet_volume_path("/"));
}

TEST_CASE("volumes: CSI, without config volumes, subpaths and global mounts") {
  auto vs = volumes_of("csi.mountinfo");
  REQUIRE(vs.size() == 3);
  const Volume* ebs = find(vs, kPodA, "pvc-5e1f7a6b-2c3d-4e5f-9a8b-7c6d5e4f3a2b");
  REQUIRE(ebs);
  CHECK(ebs->mount.major == 8);
  CHECK(ebs->mount.minor == 16);
  CHECK(ebs->mount.fstype == "ext4");
  REQUIRE(find(vs, kPodA, "inline-cache"));
  CHECK(find(vs, kPodA, "inline-cache")->mount.major == 0);
  REQUIRE(find(vs, kPodB, "pvc-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"));
  // The NFS mount at the CSI directory itself is not at .../mount: not taken.
  CHECK_FALSE(find(vs, kPodB, "pvc-9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f"));
  CHECK_FALSE(find(vs, kPodA, "kube-api-access-x7k2p"));
  CHECK_FALSE(find(vs, kPodA, "tls"));
}

TEST_CASE("volumes: local, host-path and empty-dir; the top mount wins; escaped paths") {
  auto vs = volumes_of("local.mountinfo");
  REQUIRE(vs.size() == 4);
  REQUIRE(find(vs, kPodA, "local-pv-3f2e1d0c"));
  CHECK(find(vs, kPodA, "local-pv-3f2e1d0c")->path.plugin == "kubernetes.io~local-volume");
  const Volume* scratch = find(vs, kPodA, "scratch");
  REQUIRE(scratch);
  CHECK(scratch->mount.minor == 81);  // mounted over the first
  REQUIRE(find(vs, kPodA, "data"));
  CHECK(find(vs, kPodA, "data")->mount.root == "/srv/data");
  const Volume* spaced = find(vs, kPodB, "with space");
  REQUIRE(spaced);
  CHECK(spaced->mount.mount_point == "/var/lib/kubelet two/pods/" + kPodB + "/volumes/kubernetes.io~empty-dir/with space");
}

TEST_CASE("volumes: raw block, one per pod and PV whatever the number of binds") {
  auto vs = volumes_of("rawblock.mountinfo");
  REQUIRE(vs.size() == 2);
  const Volume* csi = find(vs, kPodA, "pvc-1a2b3c4d-0000-4000-8000-000000000001");
  REQUIRE(csi);
  CHECK(csi->path.kind == KubeletVolumePath::Kind::block);
  CHECK(csi->mount.root == "/sdd");
  const Volume* local = find(vs, kPodB, "local-block-pv");
  REQUIRE(local);
  CHECK(local->mount.root == "/loop0");
}

TEST_CASE("block devices from sysfs: partitions, device-mapper, loop") {
  const std::string root = kFixtures + "hostroot";
  auto sdc1 = resolve_block_device(root, 8, 33);
  REQUIRE(sdc1);
  CHECK(sdc1->name == "sdc1");
  CHECK(sdc1->dev == makedev(8, 33));
  CHECK(sdc1->disk == "sdc");
  CHECK(sdc1->disk_dev == makedev(8, 32));
  auto dm = resolve_block_device(root, 253, 0);
  REQUIRE(dm);
  CHECK(dm->name == "dm-0");
  CHECK(dm->disk == "dm-0");
  CHECK(dm->slaves == std::vector<std::string>{"sdc", "sde"});
  // Requests for a device-mapper target are seen on the partitions below it.
  CHECK(dm->leaves == std::vector<dev_t>{makedev(8, 33), makedev(8, 66)});
  CHECK(sdc1->leaves == std::vector<dev_t>{makedev(8, 33)});
  auto loop = resolve_block_device(root, 7, 0);
  REQUIRE(loop);
  CHECK(loop->backing_file == "/var/lib/images/pv0002.img");
  auto by_name = resolve_block_device(root, "sdd");
  REQUIRE(by_name);
  CHECK(by_name->dev == makedev(8, 48));
  auto nvme = resolve_block_device(root, 259, 1);
  REQUIRE(nvme);
  CHECK(nvme->disk == "nvme0n1");
  CHECK_FALSE(resolve_block_device(root, 0, 55));  // tmpfs
  CHECK_FALSE(resolve_block_device(root, 8, 99));  // unknown
  CHECK_FALSE(resolve_block_device(root, "../x"));
}

TEST_CASE("kubelet mounts: volumes, subpaths and plugin mounts; anything else is not") {
  CHECK(is_kubelet_mount("/var/lib/kubelet/pods/" + kPodA + "/volumes/kubernetes.io~csi/pv-1/mount"));
  CHECK(is_kubelet_mount("/var/lib/kubelet/pods/" + kPodA + "/volume-subpaths/pv-1/app/0"));
  CHECK(is_kubelet_mount("/var/lib/kubelet/plugins/kubernetes.io/csi/ebs.csi.aws.com/abc/globalmount"));
  CHECK(is_kubelet_mount("/data/kubelet/plugins/kubernetes.io/csi/pv/pv-1/globalmount"));
  CHECK_FALSE(is_kubelet_mount("/var/lib/kubelet"));
  CHECK_FALSE(is_kubelet_mount("/mnt/disks/ssd0"));
  CHECK_FALSE(is_kubelet_mount("/var/lib/kubelet/pods/not-a-uid/volume-subpaths/x/y/0"));
}

namespace {

Volume volume_on(const std::string& uid, const std::string& name, dev_t dev, std::vector<dev_t> leaves = {}) {
  Volume v;
  v.path.pod_uid = uid;
  v.path.volume = name;
  v.device = BlockDevice{};
  v.device->dev = dev;
  v.device->leaves = leaves.empty() ? std::vector<dev_t>{dev} : leaves;
  return v;
}

}  // namespace

TEST_CASE("IO routes: a device of one volume is exact; a shared one goes by the submitter's pod") {
  Volume a1 = volume_on(kPodA, "pv-1", makedev(8, 17));  // sdb1: pod A's alone
  Volume a2 = volume_on(kPodA, "pv-2", makedev(8, 33));  // sdc1: pod A's and pod B's
  Volume b = volume_on(kPodB, "pv-3", makedev(8, 33));
  Volume a3 = volume_on(kPodA, "pv-4", makedev(8, 33));  // pod A's second volume there
  Volume dm = volume_on(kPodB, "pv-5", makedev(253, 0), {makedev(8, 49), makedev(8, 65)});
  Volume nfs;  // no block device
  nfs.path.pod_uid = kPodB;
  IoRoutes routes(IoRoutes::block_sources({&a1, &a2, &b, &a3, &dm, &nfs}), {});
  int asked = 0;
  auto pod = [&](std::string_view p) {
    return [&asked, p]() -> std::string_view {
      ++asked;
      if (p == "a") return kPodA;
      if (p == "b") return kPodB;
      return {};
    };
  };
  CHECK(routes.route(kernel_dev(makedev(8, 17)), pod("b")) == 0u);  // whoever submits: the device is pv-1's
  CHECK(asked == 0);
  CHECK(routes.route(kernel_dev(makedev(8, 33)), pod("a")) == 1u);  // pod A's first volume there
  CHECK(routes.route(kernel_dev(makedev(8, 33)), pod("b")) == 2u);
  CHECK_FALSE(routes.route(kernel_dev(makedev(8, 33)), pod("")));  // a kernel thread, the host: no pod
  CHECK(routes.route(kernel_dev(makedev(8, 65)), pod("b")) == 4u);   // below device-mapper: by cgroup
  CHECK_FALSE(routes.route(kernel_dev(makedev(8, 65)), pod("a")));
  CHECK_FALSE(routes.route(kernel_dev(makedev(8, 32)), pod("a")));  // the disk of sdc1: no volume
  CHECK(routes.attribution(0) == IoAttribution::exclusive);
  CHECK(routes.attribution(1) == IoAttribution::cgroup);
  CHECK(routes.attribution(4) == IoAttribution::cgroup);  // other targets can share its devices unseen
  CHECK(routes.attribution(5) == IoAttribution::none);

  // The same device mounted somewhere that is not a pod volume: shared.
  IoRoutes elsewhere(IoRoutes::block_sources({&a1}), {kernel_dev(makedev(8, 17))});
  CHECK(elsewhere.attribution(0) == IoAttribution::cgroup);
  CHECK(elsewhere.route(kernel_dev(makedev(8, 17)), pod("a")) == 0u);
  CHECK_FALSE(elsewhere.route(kernel_dev(makedev(8, 17)), pod("b")));
}

TEST_CASE("claims: by the pod's volume name, or the one claim left") {
  PodNames pod;
  pod.volume_claims = {{"data", "data-claim"}, {"cache", ""}, {"kube-api-access-1", ""}};
  CHECK(claims_for_pod(pod, {"pvc-123", "cache"}) == std::vector<std::string>{"data-claim", ""});
  CHECK(claims_for_pod(pod, {"data"}) == std::vector<std::string>{"data-claim"});
  pod.volume_claims["logs"] = "logs-claim";
  // Two claims, two PV-named mounts: which is which needs the API server.
  CHECK(claims_for_pod(pod, {"pvc-1", "pvc-2"}) == std::vector<std::string>{"", ""});
  CHECK(claims_for_pod(pod, {"pvc-1", "logs"}) == std::vector<std::string>{"data-claim", "logs-claim"});
}

namespace {

// What a test's StatfsPool::Call works with. The pool's threads keep the
// call (and a call still running at the pool's destruction runs on): it
// must share this, never refer to the test's locals, or a thread that
// wakes after the test case returned works on a dead stack frame (the
// next test case's locals, on a loaded machine).
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> started{0}, returned{0};

  // Blocks the calling pool thread until open().
  void hold() {
    ++started;
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return release; });
  }
  void open() {
    {
      std::lock_guard lock(m);
      release = true;
    }
    cv.notify_all();
  }
  // Waits (bounded) until n calls started, or until every started call returned.
  bool until_started(int n) { return until([&] { return started >= n; }) && started == n; }
  bool until_returned() { return until([&] { return returned == started; }); }
  template <typename Pred>
  static bool until(Pred pred) {
    for (int i = 0; i < 2000 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return pred();
  }
};

}  // namespace

TEST_CASE("statvfs pool: a hung call keeps one thread and the others are still served") {
  auto gate = std::make_shared<Gate>();
  auto call = [gate](const std::string& path, struct statvfs* out) {
    if (path == "/hung") {
      gate->hold();
      ++gate->returned;
      return EIO;
    }
    out->f_blocks = path.size();
    return 0;
  };
  {
    StatfsPool pool(2, 4, call);
    using State = StatfsPool::State;
    auto hung = std::make_shared<StatfsPool::Job>();
    hung->path = "/hung";
    // Hung first, and running before the ticks start: on a loaded machine a
    // worker may take longer than a tick's deadline to pick it up, and a job
    // still queued at the deadline is withdrawn.
    pool.submit(std::span(&hung, 1));
    REQUIRE(gate->until_started(1));
    for (int tick = 0; tick < 20; ++tick) {
      std::vector<std::shared_ptr<StatfsPool::Job>> jobs;  // the collector never re-asks a running job
      for (int i = 0; i < 5; ++i) {
        auto j = std::make_shared<StatfsPool::Job>();
        j->path = "/ok/" + std::to_string(i);
        jobs.push_back(j);
      }
      pool.submit(jobs);
      pool.wait(jobs, StatfsPool::Clock::now() + std::chrono::milliseconds(2000));
      for (size_t i = 0; i < jobs.size(); ++i) {
        REQUIRE(pool.state(*jobs[i]) == State::finished);
        CHECK(jobs[i]->result.f_blocks == jobs[i]->path.size());
      }
      CHECK(pool.state(*hung) == State::running);
      CHECK(pool.threads() <= 3);  // two workers and the stuck one
    }
    CHECK(gate->started == 1);
    gate->open();
    for (int i = 0; i < 200 && pool.state(*hung) != State::finished; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(pool.state(*hung) == State::finished);
    CHECK(hung->error == EIO);
  }
}

TEST_CASE("statvfs pool: past max_threads, queued calls are withdrawn at the deadline") {
  auto gate = std::make_shared<Gate>();
  auto call = [gate](const std::string&, struct statvfs*) {
    gate->hold();
    ++gate->returned;
    return 0;
  };
  StatfsPool pool(1, 2, call);
  std::vector<std::shared_ptr<StatfsPool::Job>> jobs;
  for (int i = 0; i < 4; ++i) jobs.push_back(std::make_shared<StatfsPool::Job>());
  // Waits until the calls run, so a loaded machine's slow thread start-up
  // cannot make the deadline withdraw a job the test means to run.
  pool.submit(std::span(jobs).first(1));
  REQUIRE(gate->until_started(1));
  pool.wait(std::span(jobs).first(1), StatfsPool::Clock::now() + std::chrono::milliseconds(20));
  pool.submit(std::span(jobs).subspan(1));
  REQUIRE(gate->until_started(2));
  pool.wait(std::span(jobs).subspan(1), StatfsPool::Clock::now() + std::chrono::milliseconds(20));
  CHECK(pool.threads() == 2);
  size_t waiting = 0;
  for (auto& j : jobs) waiting += pool.state(*j) == StatfsPool::State::waiting;
  CHECK(waiting == 2);
  gate->open();
  CHECK(gate->until_returned());
}

TEST_CASE("statvfs pool: destroyed while a call runs past the deadline, the call finishes on its own") {
  // The collector's case at the agent's exit or a reload with a hung mount:
  // the pool goes without waiting, its stuck thread returns later, and
  // must then touch nothing the pool's owner had.
  auto gate = std::make_shared<Gate>();
  auto call = [gate](const std::string&, struct statvfs* out) {
    gate->hold();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // and returns well after the pool went
    out->f_blocks = 1;
    ++gate->returned;
    return 0;
  };
  auto job = std::make_shared<StatfsPool::Job>();
  job->path = "/slow";
  {
    StatfsPool pool(1, 1, call);
    pool.submit(std::span(&job, 1));
    REQUIRE(gate->until_started(1));
    auto before = StatfsPool::Clock::now();
    pool.wait(std::span(&job, 1), before + std::chrono::milliseconds(10));
    CHECK(StatfsPool::Clock::now() - before >= std::chrono::milliseconds(10));
    CHECK(pool.state(*job) == StatfsPool::State::running);
    CHECK(pool.threads() == 1);
  }  // the destructor never blocks on a running call
  CHECK(gate->returned == 0);
  gate->open();
  CHECK(gate->until_returned());
  CHECK(gate->returned == 1);
}

namespace {

struct FakeHost {
  fs::path root;
  explicit FakeHost() {
    root = fs::temp_directory_path() / ("nodeperf-volumes-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "proc/1");
  }
  ~FakeHost() { fs::remove_all(root); }
  std::string volume(const std::string& uid, const std::string& name) {
    std::string mp = "/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~empty-dir/" + name;
    fs::create_directories(root.string() + mp);
    return mp;
  }
  void lines(const std::string& text) {
    std::ofstream(root / "proc/1/mountinfo") << text;
  }
  void mountinfo(const std::vector<std::string>& points) {
    std::ofstream out(root / "proc/1/mountinfo.tmp");
    int id = 100;
    for (const auto& p : points) {
      out << id << " 1 0:" << id << " / " << p << " rw - tmpfs tmpfs rw\n";
      ++id;
    }
    out.close();
    fs::rename(root / "proc/1/mountinfo.tmp", root / "proc/1/mountinfo");
  }
};

std::optional<double> value(const Snapshot& s, std::string_view name, const std::string& volume) {
  const Family* f = s.find(name);
  if (!f) return std::nullopt;
  std::optional<double> out;
  for (const Sample& x : f->samples) {
    if (x.labels.find("volume=\"" + volume + "\"") != std::string::npos) out = x.value;
  }
  return out;
}

}  // namespace

TEST_CASE("collector over a fake host root: figures equal statvfs, the table is re-read when it changes") {
  FakeHost host;
  std::string a = host.volume(kPodA, "a"), b = host.volume(kPodB, "b");
  host.mountinfo({a});
  Config config;
  config.host_root = host.root.string();
  auto c = kVolumesCollector.make(config);
  auto run = [&] {
    SampleSink sink;
    Status st = c->collect(sink);
    REQUIRE(st.kind == Status::Kind::ok);
    return Snapshot(std::move(sink), false, std::chrono::system_clock::now());
  };
  Snapshot s1 = run();
  struct statvfs st {};
  REQUIRE(::statvfs((host.root.string() + a).c_str(), &st) == 0);
  CHECK(value(s1, "nodeperf_volume_capacity_bytes", "a") == static_cast<double>(st.f_blocks) * st.f_frsize);
  CHECK(value(s1, "nodeperf_volume_inodes", "a") == static_cast<double>(st.f_files));
  CHECK(value(s1, "nodeperf_volume_stale", "a") == 0);
  CHECK_FALSE(value(s1, "nodeperf_volume_stale", "b"));
  CHECK(s1.find("nodeperf_volume_mount_table_reads_total")->samples.at(0).value == 1);
  Snapshot s2 = run();
  CHECK(s2.find("nodeperf_volume_mount_table_reads_total")->samples.at(0).value == 1);  // unchanged: not read
  host.mountinfo({a, b});
  Snapshot s3 = run();
  CHECK(s3.find("nodeperf_volume_mount_table_reads_total")->samples.at(0).value == 2);
  CHECK(value(s3, "nodeperf_volume_stale", "b") == 0);
  const Family* info = s3.find("nodeperf_volume_info");
  REQUIRE(info);
  REQUIRE(info->samples.size() == 2);
  CHECK_THAT(info->samples[0].labels, Contains("plugin=\"kubernetes.io~empty-dir\""));
  CHECK_THAT(info->samples[0].labels, Contains("mountpoint=\"" + a + "\""));
  CHECK_THAT(info->samples[0].labels, Contains("kind=\"filesystem\""));
}

TEST_CASE("collector: a missing mountinfo fails with the file named") {
  Config config;
  config.host_root = "/nonexistent-nodeperf-root";
  auto c = kVolumesCollector.make(config);
  SampleSink sink;
  Status st = c->collect(sink);
  CHECK(st.kind == Status::Kind::failed);
  CHECK_THAT(st.error, Contains("/nonexistent-nodeperf-root/proc/1/mountinfo"));
}

TEST_CASE("collector: a raw block volume's capacity is its device's size, never devtmpfs's statvfs") {
  FakeHost host;
  fs::create_directory_symlink(kFixtures + "hostroot/sys", host.root / "sys");
  host.lines("24 1 0:5 / /dev rw - devtmpfs udev rw\n"
             "601 1 0:5 /sdd /var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pv-blk/" + kPodA +
             " rw - devtmpfs udev rw\n");
  Config config;
  config.host_root = host.root.string();
  auto c = kVolumesCollector.make(config);
  SampleSink sink;
  REQUIRE(c->collect(sink).kind == Status::Kind::ok);
  Snapshot s(std::move(sink), false, std::chrono::system_clock::now());
  CHECK(value(s, "nodeperf_volume_capacity_bytes", "pv-blk") == 2097152.0 * 512);
  CHECK_FALSE(value(s, "nodeperf_volume_used_bytes", "pv-blk"));
  CHECK_FALSE(value(s, "nodeperf_volume_inodes", "pv-blk"));
  CHECK(value(s, "nodeperf_volume_stale", "pv-blk") == 0);
  const Family* info = s.find("nodeperf_volume_info");
  REQUIRE(info);
  REQUIRE(info->samples.size() == 1);
  CHECK_THAT(info->samples[0].labels, Contains("device=\"sdd\""));
  CHECK_THAT(info->samples[0].labels, Contains("kind=\"block\""));
}
