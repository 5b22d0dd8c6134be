// Kubernetes volumes on this node: which mounts are pod volumes (from the
// host's mountinfo), the block device behind each, and their capacity and
// inodes from statvfs(2), run off the event loop with a deadline
// (docs/volumes.md).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/kubelet.h"
#include "collectors/collector.h"
#include "collectors/mountinfo.h"

namespace nodeperf {

// A block device and what is under it, from sysfs under the host root. The
// later per-volume IO accounting maps the (major:minor) of a block IO to a
// volume through these: the device itself, its whole disk, and the devices
// a device-mapper target sits on.
struct BlockDevice {
  std::string name;  // the kernel's name: "sda1", "dm-0", "loop3"
  dev_t dev = 0;
  std::string disk;  // the whole disk of a partition ("sda" for "sda1"); the device itself otherwise
  dev_t disk_dev = 0;
  std::vector<std::string> slaves;  // device-mapper: the devices below (partitions resolved to their disk)
  std::string backing_file;         // loop: the file behind it
};

// The device with this number, or nullopt if sysfs does not know it (no
// block device: tmpfs, NFS, overlay, FUSE have 0:N numbers).
std::optional<BlockDevice> resolve_block_device(const std::string& host_root, unsigned major, unsigned minor);
// The same by kernel name ("dm-3"), for raw block volumes whose mount is a
// bind of the device node.
std::optional<BlockDevice> resolve_block_device(const std::string& host_root, std::string_view name);

// A pod's volume as discovered in the mount table.
struct Volume {
  KubeletVolumePath path;
  MountEntry mount;                   // the top mount at the path (later lines shadow earlier ones)
  std::optional<BlockDevice> device;  // none for tmpfs, NFS, FUSE...
};

// The pod volumes among the mounts: one per (pod, volume name), the first
// by mount point if two plugins have the same name in one pod,
// configuration volumes (secret, configmap, projected, downward API) left
// out; sorted by pod UID, then volume name.
std::vector<Volume> find_volumes(const std::vector<MountEntry>& mounts);

// The PersistentVolumeClaim of each of one pod's volumes, "" where unknown.
// A volume whose path name is one of the pod's spec.volumes names (inline
// volumes, and PVC volumes of plugins that name paths by the pod's volume)
// gets that volume's claim. PV-backed volumes (CSI, local) are named by the
// PV, which the pod list does not give: when the pod has exactly one claim
// and exactly one volume is left unmatched, that is its claim; otherwise
// unknown (mapping a PV to its claim needs the API server).
std::vector<std::string> claims_for_pod(const PodNames& pod, const std::vector<std::string>& path_names);

extern const CollectorFactory kVolumesCollector;

}  // namespace nodeperf
