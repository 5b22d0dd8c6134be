// Kubernetes attribution from cgroup paths (agent/k8s_paths.h): every shape
// docs/kubernetes.md lists, built for each driver x runtime x QoS, then real
// paths as hosts show them (v1 controllers, v2, kind, k3s, crun), and the
// paths that must not be attributed.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "agent/k8s_paths.h"

using nodeperf::parse_kubernetes_cgroup;

namespace {

const std::string kUid = "1858680e-b044-4fd5-9dd4-f137e30e2180";
const std::string kUidSystemd = "1858680e_b044_4fd5_9dd4_f137e30e2180";
const std::string kStaticUid = "e9d6a3c1b27f4d8aa0c5f1e2d3b4c5a6";  // 32 hex: a static pod
const std::string kId = "c46bafd57b2ef55a23c1319893c8aa5bfca24872bd95258700a51059941fb69e";

// The pod cgroup for a driver and QoS, under a cgroup root ("" or "kubelet").
std::string pod_path(bool systemd, const std::string& qos, const std::string& uid, const std::string& root = "") {
  if (!systemd) {
    std::string p = root.empty() ? "" : "/" + root;
    p += "/kubepods";
    if (qos != "guaranteed") p += "/" + qos;
    return p + "/pod" + uid;
  }
  std::string p, base;
  if (!root.empty()) {
    p = "/" + root + ".slice";
    base = root + "-";
  }
  base += "kubepods";
  p += "/" + base + ".slice";
  if (qos != "guaranteed") {
    base += "-" + qos;
    p += "/" + base + ".slice";
  }
  std::string u = uid;
  for (char& c : u) {
    if (c == '-') c = '_';
  }
  return p + "/" + base + "-pod" + u + ".slice";
}

void check(const std::string& path, const std::string& uid, const std::string& id, const std::string& runtime,
           const std::string& qos) {
  INFO("path " << path);
  auto ref = parse_kubernetes_cgroup(path);
  REQUIRE(ref);
  CHECK(ref->pod_uid == uid);
  CHECK(ref->container_id == id);
  CHECK(ref->runtime == runtime);
  CHECK(ref->qos == qos);
}

void check_none(const std::string& path) {
  INFO("path " << path);
  CHECK_FALSE(parse_kubernetes_cgroup(path));
}

}  // namespace

TEST_CASE("every driver x runtime x QoS shape, at the pod, the container and below") {
  struct Runtime {
    bool systemd;
    const char* segment_prefix;
    const char* segment_suffix;
    const char* runtime;
  };
  const Runtime runtimes[] = {
      {true, "cri-containerd-", ".scope", "containerd"},
      {true, "crio-", ".scope", "cri-o"},
      {true, "crio-", "", "cri-o"},  // CRI-O's sandbox cgroup under the systemd driver
      {true, "docker-", ".scope", "docker"},
      {false, "", "", ""},  // containerd or docker (dockershim, cri-dockerd): the path does not say
      {false, "crio-", "", "cri-o"},
  };
  for (const char* root : {"", "kubelet"}) {
    for (const char* qos : {"guaranteed", "burstable", "besteffort"}) {
      for (const Runtime& r : runtimes) {
        std::string pod = pod_path(r.systemd, qos, kUid, root);
        check(pod, kUid, "", "", qos);
        std::string container = pod + "/" + r.segment_prefix + kId + r.segment_suffix;
        check(container, kUid, kId, r.runtime, qos);
        // v2 with crun: the payload sits in a child of the container's cgroup.
        check(container + "/container", kUid, kId, r.runtime, qos);
        // Static pods: the UID is 32 hex, no dashes, in either driver.
        check(pod_path(r.systemd, qos, kStaticUid, root) + "/" + r.segment_prefix + kId + r.segment_suffix, kStaticUid,
              kId, r.runtime, qos);
        // conmon is CRI-O's monitor, not a container: charged to the pod.
        std::string conmon = pod + "/crio-conmon-" + kId + (r.systemd ? ".scope" : "");
        check(conmon, kUid, "", "cri-o", qos);
      }
    }
  }
}

TEST_CASE("real paths from v1 and v2 hosts and from kind and k3s nodes") {
  struct Row {
    const char* form;
    std::string path;
    std::string uid, id, runtime, qos;
  };
  const std::vector<Row> rows = {
      // systemd driver, v2 (or any v1 controller / name=systemd: the same path under each)
      {"v2 systemd containerd burstable",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" +
           kId + ".scope",
       kUid, kId, "containerd", "burstable"},
      {"v1 systemd docker guaranteed (cpu,cpuacct)",
       "/kubepods.slice/kubepods-pod" + kUidSystemd + ".slice/docker-" + kId + ".scope", kUid, kId, "docker",
       "guaranteed"},
      {"v1 systemd crio besteffort (memory)",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice/crio-" + kId +
           ".scope",
       kUid, kId, "cri-o", "besteffort"},
      {"v2 systemd crio + crun child",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/crio-" + kId +
           ".scope/container",
       kUid, kId, "cri-o", "burstable"},
      // cgroupfs driver: v1 controllers and v2 alike
      {"v1 cgroupfs containerd/docker burstable", "/kubepods/burstable/pod" + kUid + "/" + kId, kUid, kId, "",
       "burstable"},
      {"v2 cgroupfs guaranteed (k3s)", "/kubepods/pod" + kUid + "/" + kId, kUid, kId, "", "guaranteed"},
      {"v1 cgroupfs crio besteffort", "/kubepods/besteffort/pod" + kUid + "/crio-" + kId, kUid, kId, "cri-o",
       "besteffort"},
      // --cgroup-root: kind (old cgroupfs nodes, newer systemd nodes)
      {"kind cgroupfs", "/kubelet/kubepods/burstable/pod" + kUid + "/" + kId, kUid, kId, "", "burstable"},
      {"kind systemd",
       "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" +
           kUidSystemd + ".slice/cri-containerd-" + kId + ".scope",
       kUid, kId, "containerd", "besteffort"},
      {"kind node seen from the host",
       "/system.slice/docker-4cc818a75eb691c5efb9c943b0c3a26ec8e0a05acb60bef4717315e65d671774.scope/kubelet.slice/"
       "kubelet-kubepods.slice/kubelet-kubepods-pod" +
           kUidSystemd + ".slice/cri-containerd-" + kId + ".scope",
       kUid, kId, "containerd", "guaranteed"},
      {"containerd under system.slice prefix",
       "/system.slice/containerd.service/kubepods/burstable/pod" + kUid + "/" + kId, kUid, kId, "", "burstable"},
      // A cluster inside a pod's container: the outer pod's container owns it.
      {"nested cluster",
       "/kubepods/pod" + kUid + "/" + kId + "/kubepods/burstable/pod00000000-0000-0000-0000-000000000000/" +
           std::string(64, 'a'),
       kUid, kId, "", "guaranteed"},
      // Pod level
      {"v2 systemd pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice",
       kUid, "", "", "burstable"},
      {"v1 cgroupfs pod", "/kubepods/besteffort/pod" + kUid, kUid, "", "", "besteffort"},
      {"static pod (kube-apiserver)",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kStaticUid + ".slice/cri-containerd-" + kId +
           ".scope",
       kStaticUid, kId, "containerd", "burstable"},
  };
  for (const Row& row : rows) {
    INFO(row.form);
    check(row.path, row.uid, row.id, row.runtime, row.qos);
  }
}

TEST_CASE("paths that are not a pod's are not attributed") {
  const std::vector<std::string> paths = {
      "/",
      "/system.slice/containerd.service",
      "/system.slice/kubelet.service",
      "/system.slice/crio-conmon-" + kId + ".scope",  // conmon_cgroup = "system.slice"
      "/system.slice/docker-" + kId + ".scope",       // a plain docker container
      "/user.slice",
      "/user.slice/user-1000.slice/session-2.scope",
      "/init.scope",
      "/kubepods",
      "/kubepods/burstable",
      "/kubepods.slice",
      "/kubepods.slice/kubepods-besteffort.slice",
      "/kubelet.slice/kubelet-kubepods.slice",
      "/machine.slice/libpod-" + kId + ".scope",
  };
  for (const std::string& path : paths) check_none(path);
}

TEST_CASE("malformed UIDs, IDs and paths are rejected, not guessed") {
  const std::string sys = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod";
  const std::string upper_uid = "1858680E-B044-4FD5-9DD4-F137E30E2180";
  std::string upper_id = kId;
  upper_id[0] = 'C';
  const std::vector<std::string> paths = {
      // UIDs
      "/kubepods/burstable/pod1858680e-b044-4fd5-9dd4",               // short
      "/kubepods/burstable/pod" + kUid + "0",                         // long
      "/kubepods/burstable/pod" + upper_uid,                          // upper case
      "/kubepods/burstable/pod1858680g-b044-4fd5-9dd4-f137e30e2180",  // not hex
      "/kubepods/burstable/pod" + kUidSystemd,                        // systemd spelling under cgroupfs
      sys + kUid + ".slice",                                          // dashes under systemd
      sys + "1858680e_b044-4fd5_9dd4_f137e30e2180.slice",             // mixed separators
      sys + "1858680eb_044_4fd5_9dd4_f137e30e2180.slice",             // separator out of place
      "/kubepods/burstable/pod" + kStaticUid.substr(1),               // 31 hex
      "/kubepods/burstable/pod",                                      // missing UID
      "/kubepods/burstable/" + kUid,                                  // missing "pod"
      sys + kUidSystemd,                                              // missing ".slice"
      "/kubepods.slice/kubepods-pod" + kUidSystemd + ".scope",  // a scope, not a slice
      // systemd name does not carry its parent's name
      "/kubepods.slice/kubepods-burstable.slice/kubepods-pod" + kUidSystemd + ".slice",
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod" + kUidSystemd + ".slice",
      "/kubepods/guaranteed/pod" + kUid,  // no such QoS level in a path
      // container IDs
      "/kubepods/pod" + kUid + "/" + kId.substr(1),                         // short
      "/kubepods/pod" + kUid + "/" + kId + "0",                             // long
      "/kubepods/pod" + kUid + "/" + upper_id,                              // upper case
      "/kubepods/pod" + kUid + "/" + kId.substr(0, 12),                     // short form
      sys + kUidSystemd + ".slice/cri-containerd-" + kId,                   // missing ".scope"
      sys + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope.mount",  // systemd alias
      sys + kUidSystemd + ".slice/containerd-" + kId + ".scope",            // unknown prefix
      sys + kUidSystemd + ".slice/cri-containerd-.scope",                   // missing ID
      sys + kUidSystemd + ".slice/" + kId,                                  // bare ID under systemd
      "/kubepods/pod" + kUid + "/cri-containerd-" + kId + ".scope",         // scope under cgroupfs
      "/kubepods/pod" + kUid + "/docker-" + kId,                            // not a cgroupfs name
      "/kubepods/pod" + kUid + "/something",
      // path syntax
      "/kubepods/burstable/pod" + kUid + "/",  // trailing slash
      "/kubepods//burstable/pod" + kUid,       // double slash
      "//kubepods/pod" + kUid,
      "/kubepods/pod" + kUid + "//" + kId,
      "kubepods/pod" + kUid,  // relative
      "",
  };
  for (const std::string& path : paths) check_none(path);
}
