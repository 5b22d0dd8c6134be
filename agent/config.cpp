#include "agent/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>

#include "agent/yaml_load.h"
#include "collectors/collector.h"
#include "collectors/diskstats.h"
#include "exporters/web_config.h"

namespace nodeperf {
namespace {

std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

// Parses a value into the config; returns what is wrong, or "" if nothing.
using Setter = std::function<std::string(Config&, std::string_view)>;

struct Option {
  std::string key;   // YAML path, "web.listen_address"
  std::string flag;  // "web.listen-address"
  bool is_bool = false;
  std::string help;
  Setter set;
  std::function<std::string(const Config&)> show;  // the current value, for --help
};

std::string parse_bool(std::string_view text, bool& out) {
  if (text == "true") {
    out = true;
  } else if (text == "false") {
    out = false;
  } else {
    return "must be true or false, got '" + std::string(text) + "'";
  }
  return {};
}

std::string parse_uint(std::string_view text, unsigned lo, unsigned hi, unsigned& out) {
  unsigned long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return "must be a whole number, got '" + std::string(text) + "'";
  }
  if (v < lo || v > hi) {
    return "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + std::string(text);
  }
  out = static_cast<unsigned>(v);
  return {};
}

std::string format_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// "250ms", "1s", "2m", "1h", within [lo, hi].
std::string parse_duration(std::string_view text, std::chrono::milliseconds lo, std::chrono::milliseconds hi,
                           std::chrono::milliseconds& out) {
  unsigned long n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  std::string_view unit(end, text.data() + text.size() - end);
  long long scale = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60'000 : unit == "h" ? 3'600'000 : 0;
  if (ec != std::errc() || end == text.data() || scale == 0 || n > 1'000'000'000) {
    return "must be a duration such as 500ms, 1s, 2m or 1h, got '" + std::string(text) + "'";
  }
  std::chrono::milliseconds d(static_cast<long long>(n) * scale);
  if (d < lo || d > hi) {
    return "must be between " + format_duration(lo) + " and " + format_duration(hi) + ", got " + std::string(text);
  }
  out = d;
  return {};
}

std::string parse_regex(std::string_view text, std::string& out) {
  try {
    std::regex check{std::string(text), std::regex::ECMAScript};
  } catch (const std::regex_error& e) {
    return "invalid regular expression '" + std::string(text) + "': " + e.what();
  }
  out = std::string(text);
  return {};
}

// "none", or a comma-separated list of "node_exporter" and "cadvisor".
std::string parse_compat(std::string_view text, Config& out) {
  bool node_exporter = false, cadvisor = false;
  for (size_t start = 0; text != "none" && start <= text.size();) {
    size_t end = std::min(text.find(',', start), text.size());
    std::string_view mode = text.substr(start, end - start);
    if (mode == "node_exporter") {
      node_exporter = true;
    } else if (mode == "cadvisor") {
      cadvisor = true;
    } else {
      return "must be none or a comma-separated list of node_exporter and cadvisor, got '" + std::string(text) + "'";
    }
    start = end + 1;
  }
  out.node_exporter_compat = node_exporter;
  out.cadvisor_compat = cadvisor;
  return {};
}

// "[host]:port" or "host:port" with a numeric port; an empty host means every address.
std::string parse_listen_address(std::string_view text, std::string& out) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return "must be host:port or :port, got '" + std::string(text) + "'";
  std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
  unsigned p = 0;
  if (!parse_uint(port, 0, 65535, p).empty()) {
    return "port must be a number from 0 to 65535, got '" + std::string(text) + "'";
  }
  bool bracketed = host.starts_with('[') && host.ends_with(']');
  if (!bracketed && host.find(':') != std::string_view::npos) {
    return "an IPv6 host must be in brackets, as in [::1]:19100, got '" + std::string(text) + "'";
  }
  out = std::string(text);
  return {};
}

std::vector<Option> make_options() {
  std::vector<Option> o;
  o.push_back({"host_root", "host-root", false,
               "Root of the host's file system: where /proc and /sys are read (a container mounts the host's here).",
               [](Config& c, std::string_view v) -> std::string {
                 if (!v.starts_with('/')) return "must be an absolute path, got '" + std::string(v) + "'";
                 std::error_code ec;
                 if (!std::filesystem::is_directory(std::string(v), ec)) {
                   return "'" + std::string(v) + "' is not a directory";
                 }
                 c.host_root = std::string(v);
                 return {};
               },
               [](const Config& c) { return c.host_root; }});
  o.push_back({"web.listen_address", "web.listen-address", false,
               "Address to serve /metrics on; port 0 picks a free port (logged at start).",
               [](Config& c, std::string_view v) { return parse_listen_address(v, c.listen_address); },
               [](const Config& c) { return c.listen_address; }});
  o.push_back({"web.config_file", "web.config.file", false,
               "node_exporter-style web config file: TLS (tls_server_config), basic auth (basic_auth_users), "
               "response headers (http_server_config), Kubernetes bearer tokens (kubernetes_auth); read again, "
               "certificates too, on SIGHUP. Empty serves plain HTTP without authentication.",
               [](Config& c, std::string_view v) -> std::string {
                 // Checked whole, certificates and keys too, so a bad file fails
                 // --config.check and start-up, and a reload keeps the running one.
                 if (!v.empty()) {
                   try {
                     WebConfig web = load_web_config(std::string(v));
                     if (web.tls) make_tls_context(*web.tls, web.file);
                   } catch (const ConfigError& e) {
                     return e.what();
                   }
                 }
                 c.web_config_file = std::string(v);
                 return {};
               },
               [](const Config& c) { return c.web_config_file; }});
  o.push_back({"web.max_connections", "web.max-connections", false,
               "Most HTTP connections open at once; past it, the longest-idle one is closed (or, if none is idle, the one whose response has stalled longest).",
               [](Config& c, std::string_view v) { return parse_uint(v, 1, 65535, c.max_connections); },
               [](const Config& c) { return std::to_string(c.max_connections); }});
  o.push_back({"web.idle_timeout", "web.idle-timeout", false,
               "Longest wait for a complete request on a connection, including keep-alive waits.",
               [](Config& c, std::string_view v) {
                 return parse_duration(v, std::chrono::milliseconds(100), std::chrono::hours(1), c.idle_timeout);
               },
               [](const Config& c) { return format_duration(c.idle_timeout); }});
  o.push_back({"web.max_request_bytes", "web.max-request-bytes", false,
               "Largest request (line and headers) accepted; larger ones get 431.",
               [](Config& c, std::string_view v) { return parse_uint(v, 1024, 1 << 20, c.max_request_bytes); },
               [](const Config& c) { return std::to_string(c.max_request_bytes); }});
  o.push_back({"tick", "tick", false, "How often every collector runs and a new snapshot is published.",
               [](Config& c, std::string_view v) {
                 return parse_duration(v, std::chrono::milliseconds(100), std::chrono::minutes(5), c.tick);
               },
               [](const Config& c) { return format_duration(c.tick); }});
  o.push_back({"history", "history", false,
               "How far back /api/v1/snapshot?time= reaches (nodeperf top scrolls through it): one snapshot "
               "per tick is kept, 8 bytes per series each; 0s keeps the newest only.",
               [](Config& c, std::string_view v) {
                 return parse_duration(v, std::chrono::milliseconds(0), std::chrono::hours(1), c.history);
               },
               [](const Config& c) { return format_duration(c.history); }});
  o.push_back({"compat", "compat", false,
               "Extra names for other exporters' dashboards, a comma-separated list, or none. 'node_exporter' "
               "exports node_exporter's names (node_ prefix) for the metrics it shares, instead of nodeperf_. "
               "'cadvisor' adds cAdvisor's container_* families for pod and container cgroups, beside "
               "nodeperf_cgroup_* (see docs/cgroups.md).",
               [](Config& c, std::string_view v) { return parse_compat(v, c); },
               [](const Config& c) {
                 std::string modes = c.node_exporter_compat ? "node_exporter" : "";
                 if (c.cadvisor_compat) modes += modes.empty() ? "cadvisor" : ",cadvisor";
                 return modes.empty() ? std::string("none") : modes;
               }});
  o.push_back({"log.level", "log.level", false, "Least severe log level written: debug, info, warn or error.",
               [](Config& c, std::string_view v) -> std::string {
                 static const std::pair<std::string_view, LogLevel> levels[] = {
                     {"debug", LogLevel::debug}, {"info", LogLevel::info}, {"warn", LogLevel::warn},
                     {"error", LogLevel::error}};
                 for (auto [name, level] : levels) {
                   if (v == name) {
                     c.log_level = level;
                     return {};
                   }
                 }
                 return "must be debug, info, warn or error, got '" + std::string(v) + "'";
               },
               [](const Config& c) {
                 constexpr std::string_view names[] = {"debug", "info", "warn", "error"};
                 return std::string(names[static_cast<int>(c.log_level)]);
               }});
  o.push_back({"histogram.schema", "histogram.schema", false,
               "Latency histogram resolution: 2^schema buckets per power of two (0 to 4); "
               "quantiles are within 2^(1/2^(schema+1)) of the truth (+-4.4% at 3).",
               [](Config& c, std::string_view v) {
                 unsigned s = 0;
                 std::string err = parse_uint(v, 0, 4, s);
                 if (err.empty()) c.histogram_schema = static_cast<int>(s);
                 return err;
               },
               [](const Config& c) { return std::to_string(c.histogram_schema); }});
  o.push_back({"histogram.window", "histogram.window", false,
               "Sliding window of the p50/p95/p99 summaries (*_window_seconds).",
               [](Config& c, std::string_view v) {
                 return parse_duration(v, std::chrono::seconds(1), std::chrono::hours(1), c.histogram_window);
               },
               [](const Config& c) { return format_duration(c.histogram_window); }});
  o.push_back({"kubelet.url", "kubelet.url", false,
               "The kubelet's pods API, for namespace, pod and container names; empty turns it off. "
               "${NODE_NAME} is replaced from the environment: https://${NODE_NAME}:10250/pods in a DaemonSet.",
               [](Config& c, std::string_view v) -> std::string {
                 if (!v.empty() && (!v.starts_with("https://") || v.size() == 8)) {
                   return "must be an https:// URL such as https://${NODE_NAME}:10250/pods, got '" + std::string(v) + "'";
                 }
                 c.kubelet_url = std::string(v);
                 return {};
               },
               [](const Config& c) { return c.kubelet_url; }});
  o.push_back({"kubelet.ca_file", "kubelet.ca-file", false,
               "CA bundle that signed the kubelet's serving certificate (read on each refresh); empty uses the "
               "system's trust store.",
               [](Config& c, std::string_view v) -> std::string {
                 c.kubelet_ca_file = std::string(v);
                 return {};
               },
               [](const Config& c) { return c.kubelet_ca_file; }});
  o.push_back({"kubelet.token_file", "kubelet.token-file", false,
               "Bearer token sent to the kubelet, read again on each refresh (projected tokens rotate); "
               "empty sends none.",
               [](Config& c, std::string_view v) -> std::string {
                 c.kubelet_token_file = std::string(v);
                 return {};
               },
               [](const Config& c) { return c.kubelet_token_file; }});
  o.push_back({"kubelet.insecure_skip_verify", "kubelet.insecure-skip-verify", true,
               "Do not check the kubelet's certificate (self-signed serving certificates); logs a warning.",
               [](Config& c, std::string_view v) { return parse_bool(v, c.kubelet_insecure_skip_verify); },
               [](const Config& c) { return std::string(c.kubelet_insecure_skip_verify ? "true" : "false"); }});
  o.push_back({"kubelet.timeout", "kubelet.timeout", false,
               "Deadline of one request to the kubelet, from connect to the last byte.",
               [](Config& c, std::string_view v) {
                 return parse_duration(v, std::chrono::milliseconds(100), std::chrono::minutes(1), c.kubelet_timeout);
               },
               [](const Config& c) { return format_duration(c.kubelet_timeout); }});
  o.push_back({"kubelet.refresh_interval", "kubelet.refresh-interval", false,
               "How often the pod list is fetched again; an unknown pod UID fetches it sooner (at most every 10s).",
               [](Config& c, std::string_view v) {
                 return parse_duration(v, std::chrono::seconds(10), std::chrono::hours(1), c.kubelet_refresh_interval);
               },
               [](const Config& c) { return format_duration(c.kubelet_refresh_interval); }});
  o.push_back({"budget.cpu", "budget.cpu", false,
               "Overhead budget in percent of one core (the agent's process and, while kernel.bpf_stats_enabled=1, "
               "its BPF programs); above it the agent degrades step by step (docs/operations.md); 0 turns it off.",
               [](Config& c, std::string_view v) -> std::string {
                 double p = 0;
                 auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), p);
                 if (v.empty() || ec != std::errc() || end != v.data() + v.size() || !(p >= 0 && p <= 1000)) {
                   return "must be a percentage of one core from 0 to 1000, such as 5 or 0.5, got '" +
                          std::string(v) + "'";
                 }
                 c.budget_cpu_percent = p;
                 return {};
               },
               [](const Config& c) {
                 std::ostringstream out;
                 out << c.budget_cpu_percent;
                 return out.str();
               }});
  o.push_back({"budget.window", "budget.window", false,
               "Averaging window of the overhead budget: a level is taken or given back only after a whole "
               "window measured over (or under half) the budget.",
               [](Config& c, std::string_view v) {
                 return parse_duration(v, std::chrono::seconds(1), std::chrono::hours(1), c.budget_window);
               },
               [](const Config& c) { return format_duration(c.budget_window); }});
  for (const CollectorFactory& f : collector_factories()) {
    std::string name(f.name);
    o.push_back({"collector." + name + ".enabled", "collector." + name, true,
                 "Enable the " + name + " collector: " + std::string(f.description) + ".",
                 [name](Config& c, std::string_view v) { return parse_bool(v, c.collectors[name]); },
                 [name](const Config& c) { return std::string(c.enabled(name) ? "true" : "false"); }});
  }
  o.push_back({"collector.diskstats.device_exclude", "collector.diskstats.device-exclude", false,
               "Regular expression of block devices to leave out (node_exporter's default).",
               [](Config& c, std::string_view v) { return parse_regex(v, c.diskstats_device_exclude); },
               [](const Config& c) { return c.diskstats_device_exclude; }});
  o.push_back({"collector.netdev.device_exclude", "collector.netdev.device-exclude", false,
               "Regular expression of network interfaces to leave out (none by default).",
               [](Config& c, std::string_view v) { return parse_regex(v, c.netdev_device_exclude); },
               [](const Config& c) { return c.netdev_device_exclude; }});
  o.push_back({"collector.cgroups.include", "collector.cgroups.include", false,
               "Regular expression a cgroup's path must contain to be exported (every cgroup by default).",
               [](Config& c, std::string_view v) { return parse_regex(v, c.cgroups_include); },
               [](const Config& c) { return c.cgroups_include; }});
  o.push_back({"collector.cgroups.exclude", "collector.cgroups.exclude", false,
               "Regular expression of cgroup paths to leave out (none by default).",
               [](Config& c, std::string_view v) { return parse_regex(v, c.cgroups_exclude); },
               [](const Config& c) { return c.cgroups_exclude; }});
  o.push_back({"collector.cgroups.max_depth", "collector.cgroups.max-depth", false,
               "Deepest cgroup level read, the root being 0; 4 reaches every Kubernetes container cgroup.",
               [](Config& c, std::string_view v) { return parse_uint(v, 0, 32, c.cgroups_max_depth); },
               [](const Config& c) { return std::to_string(c.cgroups_max_depth); }});
  o.push_back({"collector.cgroups.max", "collector.cgroups.max", false,
               "Most cgroups with series of their own; the rest are summed into cgroup=\"other\" series (docs/cgroups.md).",
               [](Config& c, std::string_view v) { return parse_uint(v, 1, 1'000'000, c.cgroups_max); },
               [](const Config& c) { return std::to_string(c.cgroups_max); }});
  o.push_back({"collector.cgroups.max_io_series", "collector.cgroups.max-io-series", false,
               "Most (cgroup, device) series of each cgroup IO family; the IO of later cgroups goes to cgroup=\"other\".",
               [](Config& c, std::string_view v) { return parse_uint(v, 0, 10'000'000, c.cgroups_max_io_series); },
               [](const Config& c) { return std::to_string(c.cgroups_max_io_series); }});
  o.push_back({"collector.volumes.fs_latency", "collector.volumes.fs-latency", true,
               "Time read, write and fsync calls on volumes without a block device (NFS, CIFS, FUSE) with eBPF on "
               "every system call, while such a volume exists (docs/volumes.md gives the cost).",
               [](Config& c, std::string_view v) { return parse_bool(v, c.volumes_fs_latency); },
               [](const Config& c) { return std::string(c.volumes_fs_latency ? "true" : "false"); }});
  return o;
}

const std::vector<Option>& options() {
  static const std::vector<Option> table = make_options();
  return table;
}

const Option* find_by_key(std::string_view key) {
  for (const Option& o : options()) {
    if (o.key == key) return &o;
  }
  return nullptr;
}

const Option* find_by_flag(std::string_view flag) {
  for (const Option& o : options()) {
    if (o.flag == flag) return &o;
  }
  return nullptr;
}

bool is_section(std::string_view key) {
  std::string prefix = std::string(key) + ".";
  return std::any_of(options().begin(), options().end(),
                     [&](const Option& o) { return std::string_view(o.key).starts_with(prefix); });
}

std::string_view node_kind(const YAML::Node& n) { return yaml_node_kind(n); }

[[noreturn]] void fail_at(const std::string& file, const YAML::Node& node, std::string_view key, std::string_view what) {
  yaml_fail_at(file, node, key, what);
}

void apply_yaml(Config& config, const YAML::Node& map, const std::string& prefix, const std::string& file) {
  std::set<std::string> seen;
  for (const auto& entry : map) {
    const YAML::Node& value = entry.second;
    // Errors point at the key's line: an empty value has no line of its own.
    const YAML::Node& at = entry.first;
    if (!entry.first.IsScalar()) fail_at(file, at, prefix.empty() ? "(key)" : prefix, "keys must be plain names");
    std::string name = entry.first.Scalar();
    std::string key = prefix.empty() ? name : prefix + "." + name;
    if (!seen.insert(name).second) fail_at(file, at, key, "duplicate key");
    const Option* option = find_by_key(key);
    if (!option && value.IsScalar()) option = find_by_key(key + ".enabled");  // "cpu: false"
    if (option) {
      if (!value.IsScalar()) fail_at(file, at, key, "expected a value, got " + std::string(node_kind(value)));
      if (std::string err = option->set(config, value.Scalar()); !err.empty()) fail_at(file, at, key, err);
    } else if (is_section(key)) {
      if (!value.IsMap()) fail_at(file, at, key, "expected a mapping, got " + std::string(node_kind(value)));
      apply_yaml(config, value, key, file);
    } else {
      fail_at(file, at, key, "unknown key");
    }
  }
}

void apply_file(Config& config, const std::string& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    throw ConfigError(file + ": cannot read the config file: " +
                      (std::filesystem::exists(file, ec) ? "not a regular file" : "no such file"));
  }
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) throw ConfigError(file + ": cannot read the config file: " + std::strerror(errno));
  apply_config_text(config, text.str(), file);
}

}  // namespace

void apply_config_text(Config& config, std::string_view text, const std::string& file) {
  YAML::Node root = load_yaml_document(text, file);
  if (root.IsNull()) return;  // an empty file: all defaults
  if (!root.IsMap()) fail_at(file, root, "(top level)", "expected a mapping of keys, got " + std::string(node_kind(root)));
  apply_yaml(config, root, "", file);
}

namespace {
// Where each document of a YAML stream starts. yaml-cpp 0.7's LoadAll never
// returns on a stray ',' outside [ ] or { } (jbeder/yaml-cpp#1040, fixed
// upstream after Debian 12's 0.7.0 by #1319): its parser then reports an
// empty document at the same place again and again, and LoadAll keeps them
// all until memory runs out. Found by fuzz/fuzz_config.cpp. The documents
// are counted with this handler instead, stopping when one starts where the
// previous one did; the single document is then loaded with YAML::Load.
class DocumentStarts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

YAML::Node load_yaml_document(std::string_view text, const std::string& file) {
  // Not YAML::LoadAll: see DocumentStarts.
  const std::string input(text);
  try {
    std::istringstream stream(input);
    YAML::Parser parser(stream);
    DocumentStarts starts;
    while (parser.HandleNextDocument(starts)) {
      size_t n = starts.marks.size();
      if (n >= 2 && starts.marks[n - 1].pos == starts.marks[n - 2].pos) {
        throw ConfigError(file + ":" + std::to_string(starts.marks[n - 1].line + 1) +
                          ": YAML syntax error: a stray token (such as ',') where a value should start");
      }
    }
    if (starts.marks.size() > 1) {
      throw ConfigError(file + ":" + std::to_string(starts.marks[1].line + 1) +
                        ": (document): one YAML document expected, found " + std::to_string(starts.marks.size()));
    }
    return YAML::Load(input);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
}

std::string_view yaml_node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing";
    default: return "a value";
  }
}

void yaml_fail_at(const std::string& file, const YAML::Node& node, std::string_view key, std::string_view what) {
  std::ostringstream msg;
  msg << file << ":" << node.Mark().line + 1 << ": " << key << ": " << what;
  throw ConfigError(msg.str());
}

ConfigError::ConfigError(const std::string& message) : std::runtime_error(one_line(message)) {}

Config::Config() : diskstats_device_exclude(kDefaultDiskExclude) {
  for (const CollectorFactory& f : collector_factories()) collectors[std::string(f.name)] = true;
}

bool Config::enabled(std::string_view collector) const {
  auto it = collectors.find(collector);
  return it != collectors.end() && it->second;
}

AgentArgs parse_agent_args(const std::vector<std::string>& args) {
  AgentArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "-h" || arg == "--help") {
      out.help = true;
      continue;
    }
    if (!arg.starts_with("--")) throw ConfigError("unexpected argument '" + std::string(arg) + "' (flags start with --)");
    arg.remove_prefix(2);
    std::string name(arg.substr(0, arg.find('=')));
    std::optional<std::string> value;
    if (arg.find('=') != std::string_view::npos) value = std::string(arg.substr(arg.find('=') + 1));

    if (name == "config.check" || name == "probe.check") {
      if (value) throw ConfigError("flag --" + name + " takes no value");
      (name == "config.check" ? out.config_check : out.probe_check) = true;
      continue;
    }
    if (name == "config.file") {
      if (!value && i + 1 < args.size()) value = args[++i];
      if (!value || value->empty()) throw ConfigError("flag --config.file needs a file name");
      out.config_file = *value;
      continue;
    }
    const Option* option = find_by_flag(name);
    bool negated = false;
    if (!option && name.starts_with("no-")) {
      option = find_by_flag(name.substr(3));
      negated = option && option->is_bool;
      if (!negated) option = nullptr;
    }
    if (!option) throw ConfigError("unknown flag --" + name + " (see nodeperf agent --help)");
    if (option->is_bool) {
      if (negated && value) throw ConfigError("flag --" + name + " takes no value");
      value = negated ? "false" : value.value_or("true");
    } else if (!value) {
      if (i + 1 >= args.size()) throw ConfigError("flag --" + name + " needs a value");
      value = args[++i];
    }
    out.flags.push_back({option->flag, *value});
  }
  return out;
}

Config build_config(const std::string& config_file, const std::vector<FlagValue>& flags) {
  Config config;
  if (!config_file.empty()) apply_file(config, config_file);
  for (const FlagValue& f : flags) {
    const Option* option = find_by_flag(f.flag);
    if (!option) throw ConfigError("unknown flag --" + f.flag);
    if (std::string err = option->set(config, f.value); !err.empty()) {
      throw ConfigError("flag --" + f.flag + ": " + err);
    }
  }
  return config;
}

std::string config_help() {
  Config defaults;
  std::ostringstream out;
  out << "Usage: nodeperf agent [flags]\n\n"
         "Runs the node agent: collectors on a tick, a Prometheus endpoint on /metrics.\n\n"
         "Flags (every flag is also a key of the --config.file YAML file; flags win):\n"
         "  --config.file=FILE       YAML configuration file\n"
         "  --config.check           validate the configuration and exit (0 if valid)\n"
         "  --probe.check            load and attach every enabled eBPF probe, one line each, and exit\n"
         "                           (0 if all attached)\n"
         "  -h, --help               this help\n";
  for (const Option& o : options()) {
    std::string flag = "--" + o.flag;
    if (o.is_bool) flag = "--[no-]" + o.flag;
    out << "  " << flag << "\n      " << o.help << "\n      key: " << o.key << "   default: "
        << (o.show(defaults).empty() ? "(none)" : o.show(defaults)) << "\n";
  }
  return out.str();
}

std::vector<OptionDoc> option_docs() {
  Config defaults;
  std::vector<OptionDoc> out;
  for (const Option& o : options()) out.push_back({o.key, "--" + o.flag, o.show(defaults), o.help});
  return out;
}

}  // namespace nodeperf
