// Kubernetes volumes on this node: which mounts are pod volumes (from the
// host's mountinfo), the block device behind each, and their capacity and
// inodes from statvfs(2), run off the event loop with a deadline
// (docs/volumes.md).
#pragma once

#include <sys/sysmacros.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/kubelet.h"
#include "collectors/collector.h"
#include "collectors/mountinfo.h"

namespace nodeperf {

// A block device and what is under it, from sysfs under the host root. The
// per-volume IO accounting maps the (major:minor) of a block request to a
// volume through these: the device itself, or for a device-mapper target
// the devices at the bottom of its stack, where requests are seen.
struct BlockDevice {
  std::string name;  // the kernel's name: "sda1", "dm-0", "loop3"
  dev_t dev = 0;
  std::string disk;  // the whole disk of a partition ("sda" for "sda1"); the device itself otherwise
  dev_t disk_dev = 0;
  std::vector<std::string> slaves;  // device-mapper: the devices below (partitions resolved to their disk)
  std::string backing_file;         // loop: the file behind it
  // Where the block layer's requests for this device are seen: the device
  // itself, or for a device-mapper target (bio-based: it remaps bios and has
  // no requests of its own) the devices at the bottom of its stack.
  std::vector<dev_t> leaves;
};

// A block device's sysfs directory under the host root: sys/dev/block/M:m.
std::string block_sysfs_dir(const std::string& host_root, unsigned major, unsigned minor);

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

// How a volume's block IO is told apart from the rest (docs/volumes.md).
enum class IoAttribution {
  none,       // not measured (tmpfs, or no IO source)
  exclusive,  // every request on its device (or call on its file system) is the volume's: exact
  cgroup,     // shared: the requests (calls) whose submitter is in the volume's pod
};

// Where the requests on each device go, for one list of volumes (indexes
// into it). A device is the volume's own when no other volume sits on it,
// nothing else mounts it (`mounted_elsewhere`: devices with a mount that is
// not a pod volume's, kernel encoding) and it is not below a device-mapper
// target; then every request on it is the volume's. Otherwise a request
// goes to the volume, among those on the device, of the submitting task's
// pod: the first in list order if that pod has several there. The same
// routes serve block requests (devices) and file-system calls (super
// blocks, 0:N for NFS and FUSE).
class IoRoutes {
 public:
  struct Source {
    std::string pod_uid;
    std::vector<dev_t> devices;  // where its requests are seen; empty: none
    bool below_mapper = false;   // those are below a device-mapper target
  };

  IoRoutes() = default;
  IoRoutes(const std::vector<Source>& volumes, const std::set<uint32_t>& mounted_elsewhere);
  // The block IO sources of volumes (their devices' leaves).
  static std::vector<Source> block_sources(const std::vector<const Volume*>& volumes);

  // The volume a request on `dev` (kernel encoding, major << 20 | minor)
  // goes to; `pod_of_submitter` gives the submitter's pod UID ("" if none)
  // and is called only for shared devices.
  template <typename PodOf>
  std::optional<size_t> route(uint32_t dev, PodOf&& pod_of_submitter) const {
    auto it = by_device_.find(dev);
    if (it == by_device_.end()) return std::nullopt;
    const Targets& t = it->second;
    if (t.own) return t.volumes.front().second;
    std::string_view pod = pod_of_submitter();
    if (pod.empty()) return std::nullopt;
    for (const auto& [uid, index] : t.volumes) {
      if (uid == pod) return index;
    }
    return std::nullopt;
  }
  IoAttribution attribution(size_t volume) const {
    return volume < attribution_.size() ? attribution_[volume] : IoAttribution::none;
  }
  bool empty() const { return by_device_.empty(); }
  // Every device routed (kernel encoding).
  std::set<uint32_t> devices() const;

 private:
  struct Targets {
    bool own = false;
    std::vector<std::pair<std::string, size_t>> volumes;  // (pod UID, index), in volume order
  };
  std::unordered_map<uint32_t, Targets> by_device_;
  std::vector<IoAttribution> attribution_;
};

// dev_t to the kernel's encoding, which the BPF programs report.
inline uint32_t kernel_dev(dev_t dev) { return (major(dev) << 20) | minor(dev); }

extern const CollectorFactory kVolumesCollector;

}  // namespace nodeperf
