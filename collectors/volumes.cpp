#include "collectors/volumes.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "agent/cgroup_paths.h"
#include "agent/config.h"
#include "agent/histogram.h"
#include "agent/k8s_paths.h"
#include "collectors/block_feed.h"
#include "collectors/fs_latency.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"
#include "collectors/statfs_pool.h"

namespace nodeperf {
namespace {

constexpr std::string_view kLabels = "pod_uid,volume,device";
constexpr std::string_view kOpLabels = "pod_uid,volume,device,op";
constexpr std::string_view kIoSource = "bpf: block_rq_issue, block_rq_complete (the blockio collector)";
constexpr std::string_view kFsSource = "bpf: sys_enter, sys_exit";

constexpr MetricInfo kMetrics[] = {
    {"nodeperf_volume_capacity_bytes", MetricType::gauge, kLabels, "statvfs, sysfs",
     "Size of the volume's file system (f_blocks x f_frsize); for a raw block volume, its device's size (sysfs)."},
    {"nodeperf_volume_available_bytes", MetricType::gauge, kLabels, "statvfs",
     "Space unprivileged users can still use (f_bavail x f_frsize), as df's Avail."},
    {"nodeperf_volume_used_bytes", MetricType::gauge, kLabels, "statvfs",
     "Space in use ((f_blocks - f_bfree) x f_frsize), as df's Used and the kubelet's volume stats."},
    {"nodeperf_volume_inodes", MetricType::gauge, kLabels, "statvfs", "Inodes of the volume's file system (f_files)."},
    {"nodeperf_volume_inodes_free", MetricType::gauge, kLabels, "statvfs", "Free inodes (f_ffree)."},
    {"nodeperf_volume_inodes_used", MetricType::gauge, kLabels, "statvfs", "Inodes in use (f_files - f_ffree)."},
    {"nodeperf_volume_stale", MetricType::gauge, kLabels, "statvfs",
     "1 if the volume's statvfs did not answer within the tick's deadline (a hung mount): its figures are left "
     "out until it answers; 0 otherwise."},
    {"nodeperf_volume_info", MetricType::gauge, "pod_uid,volume,device,plugin,kind,mountpoint,fstype,disk,io",
     "mountinfo, sysfs, kubelet", "1 per pod volume found in the host's mount table, with its plugin, mount point, "
     "file system, block device and whole disk, and how its IO is attributed (io: exclusive, cgroup or none); "
     "namespace, pod and persistentvolumeclaim when the kubelet gives them."},
    {"nodeperf_volume_stat_threads", MetricType::gauge, "", "statvfs",
     "Threads running the volumes' statvfs calls, those stuck on hung mounts included (at most 8)."},
    {"nodeperf_volume_mount_table_reads_total", MetricType::counter, "", "mountinfo",
     "Times the host's mount table was read: at start and when it changed."},
    {"nodeperf_volume_io_latency_seconds", MetricType::histogram, kOpLabels, kIoSource,
     "Time from a block request's issue to its completion, per volume and op (docs/volumes.md says which "
     "requests a volume counts)."},
    {"nodeperf_volume_io_latency_window_seconds", MetricType::summary, kOpLabels, kIoSource,
     "Volume IO latency p50, p95 and p99 over the sliding window."},
    {"nodeperf_volume_io_ops_total", MetricType::counter, kOpLabels, kIoSource, "Block requests completed."},
    {"nodeperf_volume_io_bytes_total", MetricType::counter, kOpLabels, kIoSource, "Bytes of block requests completed."},
    {"nodeperf_volume_io_in_flight", MetricType::gauge, kOpLabels, "sysfs: <device>/inflight",
     "Requests issued and not yet completed (op: read or write), for volumes that have their device to "
     "themselves."},
    {"nodeperf_volume_fs_latency_seconds", MetricType::histogram, kOpLabels, kFsSource,
     "Time of read, write and fsync system calls on files of a volume without a block device (NFS, CIFS, FUSE), "
     "per op: what the application waited, page cache hits included."},
    {"nodeperf_volume_fs_latency_window_seconds", MetricType::summary, kOpLabels, kFsSource,
     "File-system call latency p50, p95 and p99 over the sliding window."},
};
enum : size_t {
  capacity, available, used, inodes, inodes_free, inodes_used, stale, info, threads, reads,
  io_latency, io_latency_window, io_ops, io_bytes, io_in_flight, fs_latency, fs_latency_window
};
static_assert(fs_latency_window + 1 == std::size(kMetrics));
constexpr LatencyFamilies kIoLatency{kMetrics[io_latency], kMetrics[io_latency_window]};
constexpr LatencyFamilies kFsLatency{kMetrics[fs_latency], kMetrics[fs_latency_window]};
constexpr std::string_view kFsOps[NP_FS_OP_COUNT] = {"read", "write", "fsync"};
constexpr std::string_view kOps[NP_OP_COUNT] = {"read", "write", "flush", "discard", "other"};
constexpr std::string_view kAttribution[] = {"none", "exclusive", "cgroup"};

// statvfs budget: every volume's call of a tick shares it, so a tick with a
// hung mount spends at most this much waiting.
constexpr auto kDeadline = std::chrono::milliseconds(100);
constexpr size_t kWorkers = 2, kMaxThreads = 8;
constexpr long kProcSuperMagic = 0x9fa0;

std::optional<std::string> read_small_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out(4096, '\0');
  ssize_t n = ::read(fd, out.data(), out.size());
  ::close(fd);
  if (n < 0) return std::nullopt;
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::optional<dev_t> parse_dev(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto ma = parse_u64(text.substr(0, colon)), mi = parse_u64(trim(text.substr(colon + 1)));
  if (!ma || !mi) return std::nullopt;
  return makedev(static_cast<unsigned>(*ma), static_cast<unsigned>(*mi));
}

std::string basename_of(std::string_view path) {
  while (path.ends_with('/')) path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// The device whose sysfs directory is `dir` (sys/dev/block/M:m or sys/class/block/NAME).
std::optional<BlockDevice> resolve_dir(const std::string& host_root, const std::string& dir, int depth) {
  char target[PATH_MAX];
  ssize_t n = ::readlink(dir.c_str(), target, sizeof target - 1);
  if (n <= 0) return std::nullopt;
  target[n] = '\0';
  auto dev_text = read_small_file(dir + "/dev");
  if (!dev_text) return std::nullopt;
  auto dev = parse_dev(*dev_text);
  if (!dev) return std::nullopt;
  BlockDevice d;
  d.name = basename_of(target);
  d.dev = *dev;
  d.disk = d.name;
  d.disk_dev = d.dev;
  if (::access((dir + "/partition").c_str(), F_OK) == 0) {
    // A partition's sysfs directory is inside its disk's.
    if (auto disk_dev = read_small_file(dir + "/../dev"); disk_dev && parse_dev(*disk_dev)) {
      std::string t(target);
      d.disk = basename_of(t.substr(0, t.rfind('/')));
      d.disk_dev = *parse_dev(*disk_dev);
    }
  }
  if (auto file = read_small_file(dir + "/loop/backing_file")) d.backing_file = *file;
  if (depth < 4) {
    std::string slaves = dir + "/slaves";
    if (DIR* dp = ::opendir(slaves.c_str())) {
      while (dirent* e = ::readdir(dp)) {
        if (e->d_name[0] == '.') continue;
        auto below = resolve_dir(host_root, host_path(host_root, "sys/class/block/" + std::string(e->d_name)), depth + 1);
        d.slaves.push_back(below ? below->disk : std::string(e->d_name));
        if (below) d.leaves.insert(d.leaves.end(), below->leaves.begin(), below->leaves.end());
      }
      ::closedir(dp);
      std::sort(d.slaves.begin(), d.slaves.end());
      std::sort(d.leaves.begin(), d.leaves.end());
    }
  }
  if (d.slaves.empty()) d.leaves = {d.dev};
  return d;
}

}  // namespace

std::string block_sysfs_dir(const std::string& host_root, unsigned major, unsigned minor) {
  return host_path(host_root, "sys/dev/block/" + std::to_string(major) + ":" + std::to_string(minor));
}

std::optional<BlockDevice> resolve_block_device(const std::string& host_root, unsigned major, unsigned minor) {
  if (major == 0) return std::nullopt;  // anonymous devices: tmpfs, NFS, overlay, FUSE
  return resolve_dir(host_root, block_sysfs_dir(host_root, major, minor), 0);
}

std::optional<BlockDevice> resolve_block_device(const std::string& host_root, std::string_view name) {
  if (name.empty() || name.find('/') != std::string_view::npos || name == "." || name == "..") return std::nullopt;
  return resolve_dir(host_root, host_path(host_root, "sys/class/block/" + std::string(name)), 0);
}

std::vector<Volume> find_volumes(const std::vector<MountEntry>& mounts) {
  // By mount point: a later line at the same point is mounted over the earlier.
  std::map<std::string_view, const MountEntry*> top;
  for (const MountEntry& m : mounts) top[m.mount_point] = &m;
  // One volume per (pod, name), the series' identity: a CSI raw block
  // volume has two binds (the kubelet's and the driver's), and the first
  // in mount point order is kept.
  std::map<std::pair<std::string, std::string>, Volume> found;
  for (const auto& [point, m] : top) {
    auto path = parse_kubelet_volume_path(point);
    if (!path || is_config_volume_plugin(path->plugin)) continue;
    auto key = std::make_pair(path->pod_uid, path->volume);
    found.try_emplace(key, Volume{*path, *m, std::nullopt});
  }
  std::vector<Volume> out;
  out.reserve(found.size());
  for (auto& [key, v] : found) out.push_back(std::move(v));
  return out;
}

std::vector<std::string> claims_for_pod(const PodNames& pod, const std::vector<std::string>& path_names) {
  std::vector<std::string> out(path_names.size());
  std::set<std::string_view> matched_specs;
  std::vector<size_t> unmatched;
  for (size_t i = 0; i < path_names.size(); ++i) {
    auto it = pod.volume_claims.find(path_names[i]);
    if (it == pod.volume_claims.end()) {
      unmatched.push_back(i);
      continue;
    }
    out[i] = it->second;
    matched_specs.insert(it->first);
  }
  std::vector<std::string_view> claims_left;
  for (const auto& [name, claim] : pod.volume_claims) {
    if (!claim.empty() && !matched_specs.contains(name)) claims_left.push_back(claim);
  }
  if (unmatched.size() == 1 && claims_left.size() == 1) out[unmatched[0]] = claims_left[0];
  return out;
}

IoRoutes::IoRoutes(const std::vector<Source>& volumes, const std::set<uint32_t>& mounted_elsewhere) {
  attribution_.assign(volumes.size(), IoAttribution::none);
  std::set<uint32_t> below_mapper;  // other targets can share these unseen
  for (size_t i = 0; i < volumes.size(); ++i) {
    for (dev_t dev : volumes[i].devices) {
      by_device_[kernel_dev(dev)].volumes.emplace_back(volumes[i].pod_uid, i);
      if (volumes[i].below_mapper) below_mapper.insert(kernel_dev(dev));
    }
  }
  for (auto& [dev, t] : by_device_) {
    t.own = t.volumes.size() == 1 && !mounted_elsewhere.contains(dev) && !below_mapper.contains(dev);
  }
  for (size_t i = 0; i < volumes.size(); ++i) {
    const auto& devices = volumes[i].devices;
    if (devices.empty()) continue;
    bool own = std::all_of(devices.begin(), devices.end(), [&](dev_t d) { return by_device_[kernel_dev(d)].own; });
    attribution_[i] = own ? IoAttribution::exclusive : IoAttribution::cgroup;
  }
}

std::vector<IoRoutes::Source> IoRoutes::block_sources(const std::vector<const Volume*>& volumes) {
  std::vector<Source> out;
  for (const Volume* v : volumes) {
    Source s{v->path.pod_uid, {}, false};
    if (v->device) {
      s.devices = v->device->leaves;
      s.below_mapper = s.devices != std::vector<dev_t>{v->device->dev};
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::set<uint32_t> IoRoutes::devices() const {
  std::set<uint32_t> out;
  for (const auto& [dev, t] : by_device_) out.insert(dev);
  return out;
}

namespace {

// The host's mount table, re-read only when it changed. On procfs the kernel
// says so: poll() gives POLLPRI (and POLLERR) after a mount or unmount in
// the namespace (proc_pid_mounts(5)). A regular file (a test's fake host
// root) cannot be polled: its size, mtime and inode are compared instead.
class MountTable {
 public:
  explicit MountTable(std::string path) : path_(std::move(path)) {}
  ~MountTable() { close(); }
  MountTable(const MountTable&) = delete;
  MountTable& operator=(const MountTable&) = delete;

  const std::string& path() const { return path_; }

  // The text if it changed since the last call (or this is the first),
  // nullopt if not; `error` set when it cannot be read.
  std::optional<std::string> changed(std::string& error) {
    if (fd_ >= 0 && procfs_) {
      pollfd p{fd_, POLLPRI, 0};
      if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLPRI | POLLERR))) return read(error);
      if (p.revents & POLLNVAL) close();
      return std::nullopt;
    }
    if (fd_ >= 0) {
      struct stat st {};
      if (::stat(path_.c_str(), &st) == 0 && st.st_size == stat_.st_size && st.st_ino == stat_.st_ino &&
          st.st_mtim.tv_sec == stat_.st_mtim.tv_sec && st.st_mtim.tv_nsec == stat_.st_mtim.tv_nsec) {
        return std::nullopt;
      }
      close();  // replaced or rewritten: open the new one
    }
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      error = path_ + ": open: " + std::strerror(errno);
      return std::nullopt;
    }
    struct statfs fs {};
    procfs_ = ::fstatfs(fd_, &fs) == 0 && fs.f_type == kProcSuperMagic;
    if (!procfs_) ::fstat(fd_, &stat_);
    return read(error);
  }

 private:
  std::optional<std::string> read(std::string& error) {
    std::string text;
    char buf[16384];
    for (;;) {
      ssize_t n = ::pread(fd_, buf, sizeof buf, static_cast<off_t>(text.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = path_ + ": read: " + std::strerror(errno);
        close();
        return std::nullopt;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    return text;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::string path_;
  int fd_ = -1;
  bool procfs_ = false;
  struct stat stat_ {};
};

// A volume's block IO of one op.
struct OpIo {
  LatencyHistogram latency;
  uint64_t ops = 0, bytes = 0;
};

struct Tracked {
  Volume volume;
  std::string stat_path;            // host root + mount point
  std::string labels;               // pod_uid, volume, device [, namespace, pod, persistentvolumeclaim]
  std::string info_labels;          // the same plus the info metric's own
  bool named = false;               // has the kubelet's names
  std::string namespace_name, pod, claim;  // the kubelet's names, once named
  IoAttribution attribution = IoAttribution::none;
  std::map<uint8_t, OpIo> io;              // by op: read and write from the start, others once seen
  std::map<uint8_t, LatencyHistogram> fs;  // file-system calls by op, for volumes without a block device
  std::shared_ptr<StatfsPool::Job> job;  // the last call: finished, or still stuck in the file system
  bool stale = false;                    // no answer this tick
  int error = 0;                         // this tick's statvfs errno
  std::optional<struct statvfs> figures; // this tick's answer
  std::optional<double> block_bytes;     // a raw block volume's size, from sysfs
  std::string size_path;                 // sysfs: a raw block volume's device size; set with the device
  std::string inflight_path;             // sysfs: its one device's in-flight counts, when exclusive
  bool block() const { return volume.path.kind == KubeletVolumePath::Kind::block; }
};

class VolumesCollector final : public Collector {
 public:
  explicit VolumesCollector(const Config& config)
      : host_root_(config.host_root), table_(host_path(config.host_root, "proc/1/mountinfo")),
        pool_(kWorkers, kMaxThreads), layout_(config.histogram_schema),
        window_ticks_(window_ticks(config.histogram_window, config.tick)), cgroups_(config.host_root),
        fs_latency_(config.volumes_fs_latency), fs_probe_(layout_, window_ticks_) {}

  void use_block_feed(BlockFeed* feed) override { feed_ = feed; }

  void use_kubelet(KubeletPods* kubelet) override {
    kubelet_ = kubelet;
    for (Tracked& t : volumes_) {
      if (!t.named) continue;
      t.named = false;  // names from a kubelet no longer asked; a new one names them again
      t.namespace_name.clear();
      t.pod.clear();
      t.claim.clear();
      render(t);
    }
  }

  Status collect(SampleSink& out) override {
    Problems problems;
    std::string error;
    if (auto text = table_.changed(error)) {
      ++reads_;
      Problems parse_problems(table_.path());
      std::vector<MountEntry> mounts = parse_mountinfo(*text, parse_problems);
      if (Status s = parse_problems.status(); s.kind != Status::Kind::ok) problems.add(s.error);
      update(find_volumes(mounts), mounted_elsewhere(mounts));
    } else if (!error.empty()) {
      if (volumes_.empty()) return Status::failed(error);
      problems.add(error);  // keep the volumes last seen
    }
    if (kubelet_) name_volumes();
    stat_volumes();
    account_io();
    if (fs_latency_) fs_probe_.watch(fs_routes_.devices());  // retries a failed load now and then
    account_fs();

    auto figure = [](const struct statvfs& st, size_t metric) -> double {
      double frsize = static_cast<double>(st.f_frsize ? st.f_frsize : st.f_bsize);
      switch (metric) {
        case capacity: return static_cast<double>(st.f_blocks) * frsize;
        case available: return static_cast<double>(st.f_bavail) * frsize;
        case used: return static_cast<double>(st.f_blocks - std::min(st.f_bfree, st.f_blocks)) * frsize;
        case inodes: return static_cast<double>(st.f_files);
        case inodes_free: return static_cast<double>(st.f_ffree);
        default: return static_cast<double>(st.f_files - std::min(st.f_ffree, st.f_files));
      }
    };
    for (size_t m = capacity; m <= inodes_used; ++m) {
      for (const Tracked& t : volumes_) {
        if (t.figures) out.add_rendered(kMetrics[m], figure(*t.figures, m), t.labels);
        if (m == capacity && t.block_bytes) out.add_rendered(kMetrics[m], *t.block_bytes, t.labels);
      }
    }
    for (const Tracked& t : volumes_) {
      if (t.error != 0) problems.add(t.stat_path + ": statvfs: " + std::strerror(t.error));
      out.add_rendered(kMetrics[stale], t.stale ? 1 : 0, t.labels);
    }
    for (const Tracked& t : volumes_) out.add_rendered(kMetrics[info], 1, t.info_labels);
    out.add(kMetrics[threads], static_cast<double>(pool_.threads()));
    out.add(kMetrics[reads], static_cast<double>(reads_));
    emit_io(out);
    emit_fs(out);
    return problems.status();
  }

 private:
  // Devices with a mount that is not the kubelet's: used by more than their volumes.
  static std::set<uint32_t> mounted_elsewhere(const std::vector<MountEntry>& mounts) {
    std::set<uint32_t> out;
    for (const MountEntry& m : mounts) {
      if (!is_kubelet_mount(m.mount_point)) out.insert((m.major << 20) | m.minor);
    }
    return out;
  }

  // Adopts a new volume list, keeping the state (labels, stuck calls, IO
  // counts) of the volumes that stay.
  void update(std::vector<Volume> found, const std::set<uint32_t>& elsewhere) {
    std::map<std::string, Tracked> old;
    for (Tracked& t : volumes_) old.emplace(t.volume.mount.mount_point, std::move(t));
    volumes_.clear();
    for (Volume& v : found) {
      Tracked t;
      auto it = old.find(v.mount.mount_point);
      if (it != old.end() && it->second.volume.mount.major == v.mount.major &&
          it->second.volume.mount.minor == v.mount.minor && it->second.volume.mount.root == v.mount.root) {
        t = std::move(it->second);
        t.volume.mount = v.mount;
      } else {
        t.volume = std::move(v);
        t.volume.device = device_of(t.volume.mount);
        t.stat_path = host_path(host_root_, t.volume.mount.mount_point);
        t.size_path = t.block() && t.volume.device ? block_sysfs(t.volume.device->dev, "size") : std::string();
        t.named = false;
      }
      volumes_.push_back(std::move(t));
    }
    std::vector<const Volume*> list;
    for (const Tracked& t : volumes_) list.push_back(&t.volume);
    routes_ = IoRoutes(IoRoutes::block_sources(list), elsewhere);
    fs_routes_ = IoRoutes(fs_sources(list), elsewhere);
    for (size_t i = 0; i < volumes_.size(); ++i) {
      Tracked& t = volumes_[i];
      t.attribution = routes_.attribution(i);
      // The kernel's own in-flight count, exact when the device is the volume's alone.
      bool one_device =
          t.attribution == IoAttribution::exclusive && t.volume.device && t.volume.device->leaves.size() == 1;
      t.inflight_path = one_device ? block_sysfs(t.volume.device->leaves.front(), "inflight") : std::string();
      if (t.attribution != IoAttribution::none) {
        for (uint8_t op : {NP_OP_READ, NP_OP_WRITE}) io_of(t, op);
      } else if (fs_latency_) {
        t.attribution = fs_routes_.attribution(i);
      }
      render(t);
    }
  }

  // Volumes timed at the file-system level: no block device, and not
  // memory (tmpfs) or a device node (raw block); their super block's s_dev
  // is the mount's major:minor.
  static std::vector<IoRoutes::Source> fs_sources(const std::vector<const Volume*>& volumes) {
    std::vector<IoRoutes::Source> out;
    for (const Volume* v : volumes) {
      IoRoutes::Source s{v->path.pod_uid, {}, false};
      const std::string& type = v->mount.fstype;
      if (!v->device && v->path.kind == KubeletVolumePath::Kind::filesystem && type != "tmpfs" && type != "ramfs" &&
          type != "devtmpfs") {
        s.devices = {makedev(v->mount.major, v->mount.minor)};
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  void account_fs() {
    fs_probe_.drain([&](const np_fs_key& k, uint64_t n, uint64_t sum) {
      auto index = fs_routes_.route(k.dev, [&] { return pod_of(k.cgroup_id); });
      if (!index || k.op >= NP_FS_OP_COUNT) return;
      Tracked& t = volumes_[*index];
      auto it = t.fs.find(k.op);
      if (it == t.fs.end()) it = t.fs.emplace(k.op, LatencyHistogram(layout_, window_ticks_)).first;
      it->second.add(k.bucket, n, sum);
    });
  }

  void emit_fs(SampleSink& out) {
    std::vector<Label> labels;
    for (Tracked& t : volumes_) {
      for (auto& [op, h] : t.fs) {
        h.end_tick();
        labels = label_list(t);
        labels.push_back({"op", kFsOps[op]});
        emit_latency(out, kFsLatency, labels, h, layout_);
      }
    }
    fs_probe_.emit_stats(out);
  }

  OpIo& io_of(Tracked& t, uint8_t op) {
    auto it = t.io.find(op);
    if (it == t.io.end()) it = t.io.emplace(op, OpIo{LatencyHistogram(layout_, window_ticks_)}).first;
    return it->second;
  }

  // The pod UID of a v2 cgroup id ("" if it is not a pod's), cached.
  std::string_view pod_of(uint64_t cgroup_id) {
    auto it = pods_.find(cgroup_id);
    if (it != pods_.end()) return it->second;
    const std::string& path = cgroups_.path(cgroup_id);
    if (path.empty()) return {};  // unknown yet (or gone): not cached, asked again
    if (pods_.size() > 65536) pods_.clear();
    auto ref = parse_kubernetes_cgroup(path);
    return pods_.emplace(cgroup_id, ref ? ref->pod_uid : std::string()).first->second;
  }

  // This tick's block IO from the blockio collector, onto the volumes.
  void account_io() {
    if (!feed_ || feed_->ticks == feed_ticks_) return;  // blockio off, or did not drain this tick
    feed_ticks_ = feed_->ticks;
    for (const BlockIoCount& c : feed_->counts) {
      if (c.key.kind != NP_BLOCK_LATENCY && c.key.kind != NP_BLOCK_SIZE) continue;
      auto index = routes_.route(c.key.dev, [&] { return pod_of(c.key.cgroup_id); });
      if (!index) continue;
      OpIo& io = io_of(volumes_[*index], std::min<uint8_t>(c.key.op, NP_OP_OTHER));
      if (c.key.kind == NP_BLOCK_LATENCY) {
        io.latency.add(c.key.bucket, c.count, c.sum);
        io.ops += c.count;
      } else {
        io.bytes += c.sum;
      }
    }
  }

  void emit_io(SampleSink& out) {
    std::vector<Label> labels;
    for (Tracked& t : volumes_) {
      for (auto& [op, io] : t.io) {
        io.latency.end_tick();
        labels = label_list(t);
        labels.push_back({"op", kOps[op]});
        emit_latency(out, kIoLatency, labels, io.latency, layout_);
        out.add(kMetrics[io_ops], static_cast<double>(io.ops), labels);
        out.add(kMetrics[io_bytes], static_cast<double>(io.bytes), labels);
      }
      if (t.inflight_path.empty()) continue;
      auto text = read_small_file(t.inflight_path);
      if (!text) continue;
      Fields fields(*text);
      std::string_view reads_text, writes_text;
      if (!fields.next(reads_text) || !fields.next(writes_text)) continue;
      auto r = parse_u64(reads_text), w = parse_u64(writes_text);
      if (!r || !w) continue;
      labels = label_list(t);
      labels.push_back({"op", "read"});
      out.add(kMetrics[io_in_flight], static_cast<double>(*r), labels);
      labels.back() = {"op", "write"};
      out.add(kMetrics[io_in_flight], static_cast<double>(*w), labels);
    }
  }

  // A file of a block device's sysfs directory, under the host root.
  std::string block_sysfs(dev_t dev, const char* file) const {
    return block_sysfs_dir(host_root_, major(dev), minor(dev)) + "/" + file;
  }

  std::optional<BlockDevice> device_of(const MountEntry& m) const {
    // A raw block volume is a bind of the device node: the mount's numbers
    // are devtmpfs's, the node's name is the mount's root.
    if (m.fstype == "devtmpfs" && m.root != "/") return resolve_block_device(host_root_, basename_of(m.root));
    return resolve_block_device(host_root_, m.major, m.minor);
  }

  // Every series' labels: pod_uid, volume, device, then the kubelet's names once known.
  static std::vector<Label> label_list(const Tracked& t) {
    const Volume& v = t.volume;
    std::vector<Label> labels = {{"pod_uid", v.path.pod_uid},
                                 {"volume", v.path.volume},
                                 {"device", v.device ? std::string_view(v.device->name) : std::string_view()}};
    if (t.named) {
      labels.push_back({"namespace", t.namespace_name});
      labels.push_back({"pod", t.pod});
      if (!t.claim.empty()) labels.push_back({"persistentvolumeclaim", t.claim});
    }
    return labels;
  }

  static void render(Tracked& t) {
    const Volume& v = t.volume;
    std::vector<Label> labels = label_list(t);
    t.labels.clear();
    append_labels(t.labels, labels);
    std::string disk = v.device ? v.device->disk : std::string();
    labels.push_back({"plugin", v.path.plugin});
    labels.push_back({"kind", v.path.kind == KubeletVolumePath::Kind::block ? "block" : "filesystem"});
    labels.push_back({"mountpoint", v.mount.mount_point});
    labels.push_back({"fstype", v.mount.fstype});
    labels.push_back({"disk", disk});
    labels.push_back({"io", kAttribution[static_cast<size_t>(t.attribution)]});
    t.info_labels.clear();
    append_labels(t.info_labels, labels);
  }

  // Names join a volume's labels once the kubelet knows its pod, so its
  // series change label set at most once.
  void name_volumes() {
    std::map<std::string_view, std::vector<Tracked*>> by_pod;
    for (Tracked& t : volumes_) {
      if (!t.named) by_pod[t.volume.path.pod_uid].push_back(&t);
    }
    for (auto& [uid, pod_volumes] : by_pod) {
      const PodNames* names = kubelet_->find(uid);
      if (!names) continue;
      // Claims are worked out over all of the pod's volumes, named or not.
      std::vector<Tracked*> all;
      std::vector<std::string> path_names;
      for (Tracked& t : volumes_) {
        if (t.volume.path.pod_uid == uid) {
          all.push_back(&t);
          path_names.push_back(t.volume.path.volume);
        }
      }
      std::vector<std::string> claims = claims_for_pod(*names, path_names);
      for (size_t i = 0; i < all.size(); ++i) {
        if (all[i]->named) continue;
        all[i]->named = true;
        all[i]->namespace_name = names->namespace_name;
        all[i]->pod = names->pod;
        all[i]->claim = claims[i];
        render(*all[i]);
      }
    }
  }

  // One statvfs per volume, on the pool, all within kDeadline. A volume
  // whose call from an earlier tick has not returned is not asked again.
  void stat_volumes() {
    std::vector<std::shared_ptr<StatfsPool::Job>> jobs;
    for (Tracked& t : volumes_) {
      t.figures.reset();
      t.error = 0;
      if (t.block()) {
        // A device node: statvfs would describe devtmpfs. Its size is in
        // sysfs (512-byte sectors), which never blocks; the rest is the
        // user's file system, out of sight.
        t.block_bytes.reset();
        if (!t.size_path.empty()) {
          if (auto text = read_small_file(t.size_path); text && parse_u64(*text)) {
            t.block_bytes = static_cast<double>(*parse_u64(*text)) * 512;
          }
        }
        continue;
      }
      if (t.job && pool_.state(*t.job) == StatfsPool::State::running) {
        t.stale = true;  // still stuck since an earlier tick
        continue;
      }
      t.job = std::make_shared<StatfsPool::Job>();
      t.job->path = t.stat_path;
      jobs.push_back(t.job);
    }
    pool_.submit(jobs);
    pool_.wait(jobs, StatfsPool::Clock::now() + kDeadline);
    for (Tracked& t : volumes_) {
      if (std::find(jobs.begin(), jobs.end(), t.job) == jobs.end()) continue;
      StatfsPool::State state = pool_.state(*t.job);
      t.stale = state != StatfsPool::State::finished;
      if (state == StatfsPool::State::waiting) t.job.reset();  // withdrawn: asked again next tick
      if (state != StatfsPool::State::finished) continue;
      if (t.job->error != 0) {
        t.error = t.job->error;
      } else {
        t.figures = t.job->result;
      }
    }
  }

  std::string host_root_;
  MountTable table_;
  StatfsPool pool_;
  std::vector<Tracked> volumes_;
  KubeletPods* kubelet_ = nullptr;
  uint64_t reads_ = 0;
  BucketLayout layout_;
  size_t window_ticks_;
  IoRoutes routes_;
  BlockFeed* feed_ = nullptr;
  uint64_t feed_ticks_ = 0;  // the feed's tick last accounted
  CgroupPaths cgroups_;
  std::unordered_map<uint64_t, std::string> pods_;  // v2 cgroup id -> pod UID ("" if not a pod's)
  IoRoutes fs_routes_;                               // super blocks of volumes timed by system call
  bool fs_latency_;                                  // --collector.volumes.fs-latency
  FsLatencyProbe fs_probe_;
};

}  // namespace

const CollectorFactory kVolumesCollector{
    "volumes",
    "Per Kubernetes volume capacity, usage and inodes, and hung mounts (host mountinfo, statvfs); block IO ops, bytes "
    "and latency per volume (eBPF, through the blockio collector)",
    kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<VolumesCollector>(c); }};

}  // namespace nodeperf
