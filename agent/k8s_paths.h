// Kubernetes attribution from a cgroup's path alone: which pod (UID) and
// container (runtime ID) a cgroup belongs to, and the pod's QoS class, for
// the kubelet's systemd and cgroupfs drivers with containerd, CRI-O and
// docker, on cgroup v1 and v2. Names (namespace, pod, container) are not in
// paths: they come from the kubelet (agent/kubelet.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nodeperf {

struct KubernetesRef {
  std::string pod_uid;       // as the API spells it: 8-4-4-4-12 lowercase hex with dashes, or
                             // 32 hex without dashes for a static pod (the kubelet's md5 of it)
  std::string container_id;  // the runtime's ID (64 hex); empty for the pod's own cgroup
                             // (and for CRI-O's conmon, which is charged to the pod)
  std::string runtime;       // "containerd", "cri-o", "docker"; empty if the path does not say
  std::string qos;           // "guaranteed", "burstable" or "besteffort"
};

// `path` is a cgroup's path under its hierarchy's root, e.g.
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope".
// nullopt when the path is not a pod's or a container's cgroup, or when the
// pod UID or container ID in it is malformed. A cgroup below a container's
// (crun's "container" child) is attributed to that container. The shapes
// recognised, and what is not, are in docs/kubernetes.md.
std::optional<KubernetesRef> parse_kubernetes_cgroup(std::string_view path);

}  // namespace nodeperf
