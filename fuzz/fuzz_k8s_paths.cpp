// Kubernetes attribution from a cgroup path (agent/k8s_paths.h): the input
// is the path as the cgroup tree walk would give it.
#include <cstdint>
#include <string_view>

#include "agent/k8s_paths.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nodeperf::parse_kubernetes_cgroup(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
