// The mount table of /proc/<pid>/mountinfo, and which of its mounts are
// Kubernetes volumes: pure parsers over text and paths, no file access.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collectors/collector.h"

namespace nodeperf {

// One line of mountinfo (proc_pid_mountinfo(5)); strings unescaped (the
// kernel writes space, tab, newline and backslash as \040, \011, \012, \134).
struct MountEntry {
  uint64_t id = 0, parent = 0;
  uint32_t major = 0, minor = 0;  // st_dev of the file system: 0:N for those without a block device
  std::string root;               // the directory of the file system mounted here ("/dm-3" for a device node bind)
  std::string mount_point;        // as the mount namespace of the file's process sees it
  std::string fstype;             // "ext4", "fuse.sshfs", ...
  std::string source;             // "/dev/vdb", "tmpfs", "none"
};

// Every well-formed line, in file order. A malformed line is skipped and
// named in `problems` with its line number ("line 7: ..."); the rest is kept.
std::vector<MountEntry> parse_mountinfo(std::string_view text, Problems& problems);

// Undoes the kernel's octal escapes (\040 and friends) in a mountinfo field.
std::string unescape_mount_field(std::string_view field);

// A mount the kubelet made for a pod's volume, recognised from its path.
struct KubeletVolumePath {
  enum class Kind { filesystem, block };
  Kind kind = Kind::filesystem;
  std::string pod_uid;
  std::string plugin;  // as the path spells it: "kubernetes.io~csi", "kubernetes.io~empty-dir"
  std::string volume;  // the path's name: the PV's name for PV-backed volumes (CSI, local), else the pod's volume name
};

// Recognises, below any kubelet root directory (the default is
// /var/lib/kubelet; --root-dir moves it):
//   <root>/pods/<uid>/volumes/<plugin>/<name>           file system volumes
//   <root>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount   CSI file system volumes
//   <root>/pods/<uid>/volumeDevices/<plugin>/<name>     raw block volumes (a bind-mounted device node)
//   <root>/plugins/kubernetes.io/csi/volumeDevices/publish/<pv>/<uid>
//   <root>/plugins/kubernetes.io/csi/volumeDevices/<pv>/dev/<uid>
//                                                        CSI raw block volumes, as kubelet and driver bind the device
// nullopt for anything else (subPath binds under volume-subpaths/, CSI
// staging and global mounts, paths with a malformed pod UID).
std::optional<KubeletVolumePath> parse_kubelet_volume_path(std::string_view mount_point);

// True for every mount the kubelet makes for a pod's volume: the volumes
// above, subPath binds (pods/<uid>/volume-subpaths/...), and the plugins'
// staging and global mounts (plugins/kubernetes.io/...). A device mounted
// anywhere else is used by something besides its volumes.
bool is_kubelet_mount(std::string_view mount_point);

// True for the plugins that hold configuration rather than data (secret,
// configmap, projected, downward-api): every pod has one (its service
// account token), and their size says nothing about storage.
bool is_config_volume_plugin(std::string_view plugin);

}  // namespace nodeperf
