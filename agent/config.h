// Configuration: built-in defaults, then a YAML file, then command-line
// flags (flags win). Every key has a flag; one table describes both.
#pragma once

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "agent/log.h"

namespace nodeperf {

inline constexpr std::string_view kDefaultListenAddress = ":19100";

struct Config {
  std::string host_root = "/";
  std::string listen_address{kDefaultListenAddress};
  std::string web_config_file;
  unsigned max_connections = 64;
  std::chrono::milliseconds idle_timeout{30'000};
  unsigned max_request_bytes = 8192;
  std::chrono::milliseconds tick{1000};
  std::chrono::milliseconds history{600'000};  // snapshots kept for the JSON API
  bool node_exporter_compat = false;  // compat: node_exporter
  bool cadvisor_compat = false;       // compat: cadvisor
  std::map<std::string, bool, std::less<>> collectors;  // every collector by name: enabled?
  std::string diskstats_device_exclude;
  std::string netdev_device_exclude;
  std::string cgroups_include, cgroups_exclude;  // regexes over the cgroup path; empty = no filter
  unsigned cgroups_max_depth = 4;
  unsigned cgroups_max = 2000;
  unsigned cgroups_max_io_series = 4000;
  bool volumes_fs_latency = true;  // the fslatency probe for NFS, CIFS and FUSE volumes
  LogLevel log_level = LogLevel::info;
  int histogram_schema = 3;
  std::chrono::milliseconds histogram_window{60'000};
  // Names from the kubelet's pods API (agent/kubelet.h); an empty URL turns it off.
  std::string kubelet_url;
  std::string kubelet_ca_file;
  std::string kubelet_token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  bool kubelet_insecure_skip_verify = false;
  std::chrono::milliseconds kubelet_timeout{5000};
  std::chrono::milliseconds kubelet_refresh_interval{300'000};
  // Overhead budget (agent/budget.h): percent of one core; 0 turns it off.
  double budget_cpu_percent = 0;
  std::chrono::milliseconds budget_window{30'000};

  Config();  // the built-in defaults
  bool enabled(std::string_view collector) const;
  bool operator==(const Config&) const = default;
};

// One line naming the file:line or flag at fault, and what is wrong.
// Control characters in the message (a value with a newline) are escaped,
// so the error stays one line whatever the input.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& message);
};

// A flag as given on the command line, kept so SIGHUP can apply it again on
// top of the reloaded file.
struct FlagValue {
  std::string flag;   // without the leading "--"
  std::string value;  // "true"/"false" for --x and --no-x
};

struct AgentArgs {
  std::string config_file;
  bool config_check = false;
  bool probe_check = false;
  bool help = false;
  std::vector<FlagValue> flags;
};

// Splits `nodeperf agent` arguments. Throws ConfigError on an unknown flag
// or a flag without its value.
AgentArgs parse_agent_args(const std::vector<std::string>& args);

// Defaults, then the file (if any), then the flags; validated. Throws ConfigError.
Config build_config(const std::string& config_file, const std::vector<FlagValue>& flags);

// Applies the text of a config file on top of `config`, as build_config
// does with the file's content; `file` names it in errors. Throws ConfigError.
void apply_config_text(Config& config, std::string_view text, const std::string& file);

// The flag reference for `nodeperf agent --help`.
std::string config_help();

// Every option, for docs and the test that keeps docs/configuration.md true.
struct OptionDoc {
  std::string key, flag, default_value, help;
};
std::vector<OptionDoc> option_docs();

}  // namespace nodeperf
