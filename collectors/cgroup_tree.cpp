#include "collectors/cgroup_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW;

}  // namespace

CgroupLayout detect_cgroup_layout(std::string_view host_root) {
  CgroupLayout out;
  std::string base = host_path(host_root, "sys/fs/cgroup");
  if (exists(base + "/cgroup.controllers")) {  // pure v2: nothing else is mounted there
    out.v2 = base;
    return out;
  }
  if (exists(base + "/unified/cgroup.controllers")) out.v2 = base + "/unified";
  // A v1 hierarchy root has cgroup.procs and no cgroup.controllers. "cpu"
  // and "cpuacct" are often symlinks to one "cpu,cpuacct" hierarchy.
  auto v1 = [&](const char* name) {
    std::string dir = base + "/" + name;
    return exists(dir + "/cgroup.procs") && !exists(dir + "/cgroup.controllers") ? dir : std::string();
  };
  out.cpu = v1("cpu");
  out.cpuacct = v1("cpuacct");
  out.memory = v1("memory");
  out.blkio = v1("blkio");
  out.pids = v1("pids");
  return out;
}

CgroupHierarchy::CgroupHierarchy(std::string root, unsigned max_depth)
    : root_(std::move(root)), max_depth_(max_depth) {}

CgroupHierarchy::~CgroupHierarchy() {
  if (inotify_ >= 0) ::close(inotify_);
}

void CgroupHierarchy::rescan() {
  // Closing the inotify descriptor drops every watch at once; the walk adds
  // them back, each before its directory is listed, so nothing created
  // during the walk is missed.
  if (inotify_ >= 0) ::close(inotify_);
  inotify_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  watches_.clear();
  watched_.clear();
  paths_.clear();
  ++generation_;
  lost_ = false;
  add("/", 0);
  if (inotify_ < 0) lost_ = true;  // no inotify (or it ran out of watches): walk every tick
}

void CgroupHierarchy::add(const std::string& path, unsigned depth) {
  std::string dir = path == "/" ? root_ : root_ + path;
  if (depth > 0 && !exists(dir)) return;  // gone already: its IN_DELETE follows
  if (paths_.emplace(path, CgroupDirEntry{depth, generation_ + 1}).second) ++generation_;
  if (depth >= max_depth_) return;  // children would be too deep: no watch, no listing
  if (inotify_ >= 0) {
    int wd = ::inotify_add_watch(inotify_, dir.c_str(), kWatchMask);
    if (wd >= 0) {
      watches_[wd] = path;
      watched_[path] = wd;
    } else if (errno == ENOSPC || errno == ENOMEM) {
      ::close(inotify_);  // out of watches: fall back to walking
      inotify_ = -1;
      watches_.clear();
      watched_.clear();
    }
  }
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::string prefix = path == "/" ? "/" : path + "/";
  while (const dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st{};
      is_dir = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (is_dir) add(prefix + std::string(name), depth + 1);
  }
  ::closedir(d);
}

void CgroupHierarchy::remove(const std::string& path) {
  if (paths_.erase(path)) ++generation_;
  std::string prefix = path + "/";
  for (auto it = paths_.lower_bound(prefix); it != paths_.end() && it->first.starts_with(prefix);) {
    it = paths_.erase(it);
    ++generation_;
  }
  // Unlike other file systems, cgroupfs sends no IN_DELETE_SELF/IN_IGNORED
  // for a removed directory: its watch would stay, pinning the inode and
  // counting against fs.inotify.max_user_watches, until the descriptor is
  // closed. So drop the subtree's watches here. (A directory of the same
  // name made since is watched again when its IN_CREATE, queued after this
  // IN_DELETE, is read; watch descriptors are not reused soon, so the
  // IN_IGNORED this causes cannot hit a newer watch.)
  auto drop = [this](auto it) {
    ::inotify_rm_watch(inotify_, it->second);  // EINVAL if the kernel dropped it already
    watches_.erase(it->second);
    return watched_.erase(it);
  };
  if (auto it = watched_.find(path); it != watched_.end()) drop(it);
  for (auto it = watched_.lower_bound(prefix); it != watched_.end() && it->first.starts_with(prefix);) it = drop(it);
}

void CgroupHierarchy::refresh() {
  if (inotify_ < 0 || lost_) {
    rescan();
    return;
  }
  alignas(inotify_event) char buf[64 * 1024];
  // Bounded: whatever is still queued after this many reads waits a tick.
  for (int reads = 0; reads < 64; ++reads) {
    ssize_t n = ::read(inotify_, buf, sizeof buf);
    if (n <= 0) break;  // EAGAIN: the queue is empty
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {
        lost_ = true;
        continue;
      }
      if (ev->mask & IN_IGNORED) {
        if (auto w = watches_.find(ev->wd); w != watches_.end()) {
          if (auto p = watched_.find(w->second); p != watched_.end() && p->second == ev->wd) watched_.erase(p);
          watches_.erase(w);
        }
        continue;
      }
      if (!(ev->mask & IN_ISDIR) || ev->len == 0) continue;
      auto parent = watches_.find(ev->wd);
      if (parent == watches_.end()) continue;
      auto depth = paths_.find(parent->second);
      if (depth == paths_.end()) continue;  // the parent went in an earlier event
      std::string child = (parent->second == "/" ? "/" : parent->second + "/") + ev->name;
      if (ev->mask & (IN_CREATE | IN_MOVED_TO)) add(child, depth->second.depth + 1);
      if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) remove(child);
    }
  }
  if (lost_) rescan();
}

}  // namespace nodeperf
