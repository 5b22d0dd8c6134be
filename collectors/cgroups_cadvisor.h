// --compat=cadvisor: the cgroups collector's figures for pod and container
// cgroups again under cAdvisor's names and labels, the container_* families
// the kubelet serves on /metrics/cadvisor and that kubernetes-mixin's rules
// and dashboards (and prometheus-adapter's `kubectl top`) read. What maps to
// what, and what cAdvisor has that this does not: docs/cgroups.md.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/k8s_paths.h"
#include "agent/kubelet.h"
#include "agent/metric_table.h"
#include "agent/snapshot.h"
#include "collectors/cgroups.h"

namespace nodeperf {

// The container_* families, for docs and tests.
std::span<const MetricInfo> cadvisor_metrics();

// cAdvisor's labels, as the kubelet sets them, for a pod's or a container's
// own cgroup at `path`: id (the path), name (the container ID), image,
// namespace, pod, container, each "" where unknown or not applicable (all
// of a pod cgroup's but namespace and pod; all names while `names` is null).
// nullopt for the other cgroups `ref` attributes to a pod or container
// (crun's `container` child, CRI-O's conmon beside the container), so that
// a sum over a pod's series counts each task once.
std::optional<std::string> cadvisor_labels(std::string_view path, const KubernetesRef& ref, const PodNames* names);

// One cgroup's figures, as the cgroups collector read them.
struct CadvisorCgroup {
  std::string_view labels;                        // from cadvisor_labels()
  std::span<const std::optional<double>> values;  // indexed like the table given to CadvisorFamilies
  std::span<const CgroupDeviceIo> io;
};

// The kernel's name of a block device ("sda"), or "MAJ:MIN" for one it has
// no name for, as in the nodeperf_cgroup_io_* series.
using DeviceNamer = std::function<const std::string&(uint32_t major, uint32_t minor)>;

class CadvisorFamilies {
 public:
  // `cgroup_metrics` is the cgroups collector's metric table; each cAdvisor
  // family is found there by the name of the nodeperf_cgroup_* family it
  // repeats. Throws std::logic_error if one is missing (a programming error).
  explicit CadvisorFamilies(std::span<const MetricInfo> cgroup_metrics);

  // Every family for every cgroup, one family at a time.
  void emit(SampleSink& out, std::span<const CadvisorCgroup> cgroups, const DeviceNamer& device_name) const;

 private:
  std::vector<size_t> from_;  // per scalar family: index of its source in the table
  size_t periods_, memory_usage_, pids_current_;
};

}  // namespace nodeperf
