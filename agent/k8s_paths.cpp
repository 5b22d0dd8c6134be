// A plain left-to-right scan over the path's segments: find the kubelet's
// "kubepods" cgroup, then the QoS level, the pod, and the runtime's
// container cgroup, each checked against the one name the kubelet or the
// runtime would have written. docs/kubernetes.md has the table of shapes.
#include "agent/k8s_paths.h"

#include <array>
#include <vector>

namespace nodeperf {

namespace {

constexpr size_t kContainerIdLength = 64;   // containerd, CRI-O, docker: sha256 hex
constexpr size_t kPodUidLength = 36;        // 8-4-4-4-12
constexpr size_t kStaticPodUidLength = 32;  // static pods: hex md5 of the manifest, no dashes

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!is_lower_hex(c)) return false;
  }
  return !s.empty();
}

bool is_container_id(std::string_view s) { return s.size() == kContainerIdLength && is_lower_hex(s); }

bool consume_prefix(std::string_view& s, std::string_view prefix) {
  if (!s.starts_with(prefix)) return false;
  s.remove_prefix(prefix.size());
  return true;
}

bool consume_suffix(std::string_view& s, std::string_view suffix) {
  if (!s.ends_with(suffix)) return false;
  s.remove_suffix(suffix.size());
  return true;
}

// The UID as the API spells it, from the path's spelling: the systemd driver
// writes '_' where the API has '-' (systemd reads '-' as a slice boundary).
// Empty when malformed: wrong length, upper case, a separator out of place.
std::string api_pod_uid(std::string_view s, char separator) {
  if (s.size() == kStaticPodUidLength) return is_lower_hex(s) ? std::string(s) : std::string();
  if (s.size() != kPodUidLength) return {};
  std::string uid(s);
  for (size_t i = 0; i < uid.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (uid[i] != separator) return {};
      uid[i] = '-';
    } else if (!is_lower_hex(uid[i])) {
      return {};
    }
  }
  return uid;
}

// The names a runtime gives a container's cgroup inside the pod's cgroup.
struct ContainerForm {
  std::string_view prefix;
  std::string_view suffix;
  std::string_view runtime;
  bool is_container;  // false: a runtime helper charged to the pod (CRI-O's conmon)
};

// systemd driver: transient scopes named "<prefix>-<id>.scope". CRI-O also
// makes a plain "crio-<id>" directory for the pod's sandbox (infra) container.
constexpr std::array kSystemdForms{
    ContainerForm{"cri-containerd-", ".scope", "containerd", true},
    ContainerForm{"crio-conmon-", ".scope", "cri-o", false},
    ContainerForm{"crio-", ".scope", "cri-o", true},
    ContainerForm{"docker-", ".scope", "docker", true},
    ContainerForm{"crio-", "", "cri-o", true},
};

// cgroupfs driver: containerd and docker both use the bare ID, so the path
// does not say which runtime it is.
constexpr std::array kCgroupfsForms{
    ContainerForm{"crio-conmon-", "", "cri-o", false},
    ContainerForm{"crio-", "", "cri-o", true},
    ContainerForm{"", "", "", true},
};

// Fills in the container (or conmon) from the segment below the pod's cgroup.
template <size_t N>
bool parse_container(std::string_view segment, const std::array<ContainerForm, N>& forms, KubernetesRef& ref) {
  for (const ContainerForm& form : forms) {
    std::string_view id = segment;
    if (!consume_prefix(id, form.prefix) || !consume_suffix(id, form.suffix) || !is_container_id(id)) continue;
    ref.runtime = form.runtime;
    if (form.is_container) ref.container_id = id;
    return true;
  }
  return false;
}

// "/a/b/c" -> {"a", "b", "c"}; empty when not absolute or when a segment is
// empty (a doubled or trailing slash): never a path the kernel hands out.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  if (path.size() < 2 || path.front() != '/' || path.back() == '/') return {};
  for (size_t start = 1; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end == start) return {};
    segments.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return segments;
}

// The kubelet's top cgroup: "kubepods" (cgroupfs) or a slice whose last
// name component is "kubepods": "kubepods.slice", or "kubelet-kubepods.slice"
// under --cgroup-root=/kubelet.slice (kind).
bool is_systemd_kubepods(std::string_view s) { return s == "kubepods.slice" || s.ends_with("-kubepods.slice"); }

}  // namespace

std::optional<KubernetesRef> parse_kubernetes_cgroup(std::string_view path) {
  std::vector<std::string_view> segments = split_path(path);
  // The first kubepods wins: anything above it (a kind node's docker scope,
  // --cgroup-root) is the node's business; a cluster nested inside a pod's
  // container belongs, from this node's view, to that container.
  size_t i = 0;
  while (i < segments.size() && segments[i] != "kubepods" && !is_systemd_kubepods(segments[i])) ++i;
  if (i == segments.size()) return std::nullopt;
  const bool systemd = segments[i] != "kubepods";
  // systemd slices carry their parent's name: base is the name so far.
  std::string base(segments[i].substr(0, segments[i].size() - (systemd ? sizeof(".slice") - 1 : 0)));
  ++i;

  KubernetesRef ref;
  ref.qos = "guaranteed";  // guaranteed pods sit directly under kubepods
  if (i < segments.size()) {
    for (std::string_view qos : {"burstable", "besteffort"}) {
      std::string name = systemd ? base + "-" + std::string(qos) + ".slice" : std::string(qos);
      if (segments[i] != name) continue;
      ref.qos = qos;
      if (systemd) base += "-" + std::string(qos);
      ++i;
      break;
    }
  }
  if (i == segments.size()) return std::nullopt;  // kubepods or a QoS level: no pod

  std::string_view uid = segments[i];
  if (systemd ? !(consume_prefix(uid, base + "-pod") && consume_suffix(uid, ".slice")) : !consume_prefix(uid, "pod")) {
    return std::nullopt;
  }
  ref.pod_uid = api_pod_uid(uid, systemd ? '_' : '-');
  if (ref.pod_uid.empty()) return std::nullopt;
  ++i;
  if (i == segments.size()) return ref;  // the pod's own cgroup

  // Deeper segments (crun's "container" child on v2, a container's own
  // sub-cgroups) are inside the container: they are attributed to it.
  bool known =
      systemd ? parse_container(segments[i], kSystemdForms, ref) : parse_container(segments[i], kCgroupfsForms, ref);
  if (!known) return std::nullopt;
  return ref;
}

}  // namespace nodeperf
