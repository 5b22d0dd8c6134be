#include "agent/cgroup_paths.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <filesystem>

#include "collectors/proc_file.h"

namespace nodeperf {

namespace fs = std::filesystem;

CgroupPaths::CgroupPaths(const std::string& host_root) {
  for (const char* candidate : {"sys/fs/cgroup", "sys/fs/cgroup/unified"}) {
    std::string dir = host_path(host_root, candidate);
    struct statfs st{};
    if (statfs(dir.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC) {
      root_ = dir;
      break;
    }
  }
}

const std::string& CgroupPaths::path(uint64_t id) {
  static const std::string unknown;
  auto it = paths_.find(id);
  if (it != paths_.end()) return it->second;
  if (root_.empty() || std::chrono::steady_clock::now() - last_scan_ < std::chrono::seconds(1)) return unknown;
  rescan();
  it = paths_.find(id);
  return it == paths_.end() ? unknown : it->second;
}

bool CgroupPaths::gone(uint64_t id) {
  auto it = paths_.find(id);
  if (it == paths_.end()) return false;
  struct stat st{};
  if (stat((root_ + it->second).c_str(), &st) == 0 && st.st_ino == id) return false;
  paths_.erase(it);
  return true;
}

void CgroupPaths::rescan() {
  last_scan_ = std::chrono::steady_clock::now();
  paths_.clear();
  struct stat st{};
  if (stat(root_.c_str(), &st) == 0) paths_[st.st_ino] = "/";
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root_, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
    if (stat(it->path().c_str(), &st) == 0) paths_[st.st_ino] = "/" + fs::relative(it->path(), root_, ec).string();
  }
}

}  // namespace nodeperf
