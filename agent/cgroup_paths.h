// Maps v2 cgroup ids (what BPF programs see: the inode number of the
// cgroup's directory in the cgroup2 hierarchy) to cgroup paths.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace nodeperf {

class CgroupPaths {
 public:
  // Finds the v2 hierarchy under the host root: sys/fs/cgroup on a pure v2
  // host, sys/fs/cgroup/unified on a hybrid one.
  explicit CgroupPaths(const std::string& host_root);

  // "/kubepods.slice/...", "/" for the root, or "" if the id is unknown even
  // after a rescan (the cgroup is gone). Rescans at most once a second.
  const std::string& path(uint64_t id);
  const std::string& root() const { return root_; }
  // True if the id's path is known and its directory is gone (one stat, no
  // rescan): the cgroup was removed. An id not known (yet) is not "gone".
  bool gone(uint64_t id);

 private:
  void rescan();
  std::string root_;
  std::unordered_map<uint64_t, std::string> paths_;
  std::chrono::steady_clock::time_point last_scan_{};
};

}  // namespace nodeperf
