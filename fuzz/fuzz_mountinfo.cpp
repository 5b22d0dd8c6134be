// The mount table parsers (collectors/mountinfo.h). The first byte picks:
// even: the text of /proc/<pid>/mountinfo through parse_mountinfo, then
// every parsed mount point through parse_kubelet_volume_path and the whole
// table through find_volumes, as the volumes collector does; odd: the rest
// is one mount point for parse_kubelet_volume_path and unescape_mount_field.
#include <cstdint>
#include <string_view>

#include "collectors/mountinfo.h"
#include "collectors/volumes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    nodeperf::Problems problems;
    auto mounts = nodeperf::parse_mountinfo(text, problems);
    for (const auto& m : mounts) nodeperf::parse_kubelet_volume_path(m.mount_point);
    nodeperf::find_volumes(mounts);
  } else {
    nodeperf::parse_kubelet_volume_path(text);
    nodeperf::unescape_mount_field(text);
  }
  return 0;
}
