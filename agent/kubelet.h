// Names for Kubernetes attribution: which namespace, pod and container a pod
// UID and a container ID belong to, from the kubelet's /pods API (the
// cgroup paths only carry the IDs: agent/k8s_paths.h).
//
// The kubelet is reached over HTTPS from a background thread with its own
// io_context: a kubelet that hangs or is down never touches the agent's
// tick. The tick thread only reads the last pod list fetched.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "agent/config.h"
#include "agent/log.h"
#include "agent/metric_table.h"
#include "agent/snapshot.h"

namespace nodeperf {

struct PodContainer {
  std::string name;
  std::string image;  // as the kubelet's status reports it: "docker.io/library/nginx:1.25"
};

struct PodNames {
  std::string namespace_name, pod;
  // container ID (runtime prefix like containerd:// stripped) -> name and image
  std::map<std::string, PodContainer, std::less<>> containers;
  // spec.volumes[].name -> persistentVolumeClaim.claimName ("" for a volume
  // of another kind): which claim a volume mount belongs to (collectors/volumes.h).
  std::map<std::string, std::string, std::less<>> volume_claims = {};  // "= {}": aggregate initialisers may leave it out
};

// Pod UID -> names.
using PodNamesByUid = std::map<std::string, PodNames, std::less<>>;

// Parses a PodList as the kubelet's /pods returns it: items[].metadata
// .{uid,namespace,name} and items[].status.{containerStatuses,
// initContainerStatuses,ephemeralContainerStatuses}[].{name,containerID,
// image}, and items[].spec.volumes[].{name,persistentVolumeClaim.claimName}.
// Pods without a UID and containers without an ID (not started yet) are
// left out. nullopt, with `error` set, if the text is not a PodList.
std::optional<PodNamesByUid> parse_pod_list(std::string_view json, std::string& error);

// "containerd://0123..." -> "0123...": the ID as cgroup paths spell it.
std::string_view strip_runtime_prefix(std::string_view container_id);

// Replaces ${NODE_NAME} and $(NODE_NAME) in a kubelet URL by `node_name`
// (the downward API's spec.nodeName in a DaemonSet). nullopt if the URL has
// a placeholder and node_name is null or empty.
std::optional<std::string> expand_node_name(std::string_view url, const char* node_name);

// "https://host[:port][/path]" split; the port defaults to 443, the target to "/".
struct HttpsUrl {
  std::string host;  // without the brackets of an IPv6 literal
  std::string port;
  std::string target;
};
std::optional<HttpsUrl> parse_https_url(std::string_view url);

// The self-metrics KubeletPods emits, for docs and tests.
std::span<const MetricInfo> kubelet_metrics();

class KubeletPods {
 public:
  // Starts the background thread and a first refresh. Config errors (a
  // ${NODE_NAME} without NODE_NAME, an unreadable CA file) are logged and
  // counted; the object then never finds anything. Never throws for them.
  explicit KubeletPods(const Config& config);
  ~KubeletPods();
  KubeletPods(const KubeletPods&) = delete;
  KubeletPods& operator=(const KubeletPods&) = delete;

  // Never blocks. An unknown UID asks for a refresh (one in flight at most,
  // not more often than every 10 s, and each UID asks once: a UID the
  // kubelet does not know waits for the periodic refresh). Call from one
  // thread (the agent's loop). The pointer stays valid until the cache has
  // been replaced twice, which takes at least 20 s: use it within the tick
  // that found it, do not keep it.
  const PodNames* find(std::string_view pod_uid);

  // nodeperf_kubelet_*: up, last successful refresh, errors by reason, pods known.
  void emit_metrics(SampleSink& sink) const;

  // The shortest time between two requests to the kubelet.
  static constexpr std::chrono::seconds kMinInterval{10};

 private:
  struct Shared;  // what the background thread and the tick share
  struct Worker;  // the background thread's io_context and request state

  std::shared_ptr<Shared> shared_;
  // Tick-thread side: the adopted cache and the one before (see find()).
  std::shared_ptr<const PodNamesByUid> current_, previous_;
  uint64_t adopted_generation_ = 0;
  std::set<std::string, std::less<>> asked_;  // UIDs that already asked for a refresh
  std::unique_ptr<Worker> worker_;
};

}  // namespace nodeperf
