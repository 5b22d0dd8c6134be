// The config file (agent/config.h): any bytes as the file's text, through
// the same function build_config() gives the file's content. A bad file must
// be a ConfigError (one line, naming the file); any other exception escaping
// is a bug: libFuzzer reports it as a crash (uncaught exception).
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nodeperf::Config config;
  try {
    nodeperf::apply_config_text(config, std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  } catch (const nodeperf::ConfigError& e) {
    if (std::string_view(e.what()).find('\n') != std::string_view::npos) __builtin_trap();  // one line
  }
  return 0;
}
