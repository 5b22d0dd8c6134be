// The web config file (exporters/web_config.h) and the Authorization header:
// the first byte picks which. 0: any bytes as the web config file's text,
// through parse_web_config(); a bad file must be a one-line ConfigError, any
// other exception escaping is a bug. 1: any bytes as an Authorization
// header, through parse_basic_authorization() (no bcrypt: it is slow on
// purpose and its input is libxcrypt's to check).
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/config.h"
#include "exporters/web_auth.h"
#include "exporters/web_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 1) {
    auto creds = nodeperf::parse_basic_authorization(text);
    if (creds && creds->first.find(':') != std::string::npos) __builtin_trap();  // the user ends at the first ':'
    return 0;
  }
  try {
    nodeperf::parse_web_config(text, "/etc/nodeperf/web.yml");
  } catch (const nodeperf::ConfigError& e) {
    if (std::string_view(e.what()).find('\n') != std::string_view::npos) __builtin_trap();  // one line
  }
  return 0;
}
