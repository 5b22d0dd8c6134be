// Cgroup discovery: which cgroup directories exist in each mounted
// hierarchy, kept up to date incrementally. Each hierarchy is listed once at
// start; after that inotify on its directories reports mkdir/rmdir, so a
// tick costs nothing for cgroups that did not change. Where inotify is
// unavailable (no watches left), the hierarchy is walked every tick instead.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nodeperf {

// Where each controller's files are, under a host root. An empty string: not
// mounted. v1 controllers (cpu, cpuacct, ...) may share one hierarchy
// ("cpu,cpuacct", reached through symlinks); `v2` is the cgroup2 hierarchy
// (sys/fs/cgroup on a pure v2 host, sys/fs/cgroup/unified on a hybrid one).
struct CgroupLayout {
  std::string v2;
  std::string cpu, cpuacct, memory, blkio, pids;  // v1
};

// Detects the layout from the files the kernel puts at each root
// (cgroup.controllers marks v2), so fixture trees work like mounts do.
CgroupLayout detect_cgroup_layout(std::string_view host_root);

// A directory of a hierarchy: its level below the root, and the generation
// at which it was (last) seen to appear, so that a cgroup removed and made
// again under the same path between two refreshes reads as a new one.
struct CgroupDirEntry {
  unsigned depth;
  uint64_t born;
};

// One hierarchy: the relative paths ("/", "/a", "/a/b") of its directories
// up to max_depth levels below its root.
class CgroupHierarchy {
 public:
  CgroupHierarchy(std::string root, unsigned max_depth);
  ~CgroupHierarchy();
  CgroupHierarchy(const CgroupHierarchy&) = delete;
  CgroupHierarchy& operator=(const CgroupHierarchy&) = delete;

  // Brings paths() up to date: reads pending inotify events, or walks the
  // whole tree when events were lost or cannot be had.
  void refresh();
  const std::map<std::string, CgroupDirEntry, std::less<>>& paths() const { return paths_; }
  const std::string& root() const { return root_; }
  bool incremental() const { return inotify_ >= 0; }
  // Changes whenever paths() does: callers redo their work only then.
  uint64_t generation() const { return generation_; }

 private:
  void rescan();
  void add(const std::string& path, unsigned depth);  // and, when watched, its subtree
  void remove(const std::string& path);               // and its subtree
  std::string root_;
  unsigned max_depth_;
  int inotify_ = -1;
  bool lost_ = true;  // events may be missing: walk at the next refresh
  std::unordered_map<int, std::string> watches_;  // watch descriptor -> path
  // path -> watch descriptor, ordered so a removed subtree's watches are one
  // range. cgroupfs never drops the watch of a removed directory itself.
  std::map<std::string, int, std::less<>> watched_;
  std::map<std::string, CgroupDirEntry, std::less<>> paths_;
  uint64_t generation_ = 0;
};

}  // namespace nodeperf
