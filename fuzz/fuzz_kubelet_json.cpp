// The kubelet's /pods answer (agent/kubelet.h): any bytes as the body.
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/kubelet.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string error;
  auto pods = nodeperf::parse_pod_list(std::string_view(reinterpret_cast<const char*>(data), size), error);
  if (!pods && error.empty()) __builtin_trap();  // nullopt must say why
  return 0;
}
