// nodeperf: the node performance agent and its tools.
#include <sys/resource.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/doctor.h"
#include "agent/log.h"
#include "cli/top.h"
#include "collectors/bpf_probe.h"
#include "collectors/collector.h"

namespace {

constexpr const char* kUsage =
    "Usage: nodeperf <command> [flags]\n\n"
    "Commands:\n"
    "  agent     run the node agent: collectors and a Prometheus endpoint\n"
    "  doctor    check what this host supports (kernel, BTF, capabilities, cgroups, tracefs)\n"
    "  top       live view of the node, read from an agent (or --standalone)\n"
    "  version   print the version\n\n"
    "Run 'nodeperf <command> --help' for the flags of a command.\n";

bool wants_help(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "-h" || a == "--help") return true;
  }
  return false;
}

// Loads and attaches every enabled BPF collector once, as the agent would.
int check_probes(const nodeperf::Config& config) {
  using namespace nodeperf;
  set_log_level(LogLevel::warn);  // the lines below say it all
  int failed = 0;
  for (const CollectorFactory& f : collector_factories()) {
    if (!f.bpf || !config.enabled(f.name)) continue;
    SampleSink sink;
    Status status = f.make(config)->collect(sink);
    bool ok = status.kind != Status::Kind::failed;
    failed += !ok;
    std::cout << (ok ? "OK      " : "FAILED  ") << f.name << ": " << (ok ? "loaded and attached" : status.error)
              << "\n";
  }
  return failed ? 1 : 0;
}

// The cgroups collector keeps a directory descriptor per cgroup and
// hierarchy (up to six each): a node with 2,000 cgroups needs far more than
// the usual soft limit of 1,024. Raising the soft limit up to the hard one
// needs no privilege; without it the collector opens files by full path.
void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
}

int run_agent(const std::vector<std::string>& args) {
  using namespace nodeperf;
  AgentArgs parsed;
  Config config;
  try {
    parsed = parse_agent_args(args);
    if (parsed.help) {
      std::cout << config_help();
      return 0;
    }
    config = build_config(parsed.config_file, parsed.flags);
  } catch (const ConfigError& e) {
    std::cerr << "nodeperf: " << e.what() << "\n";
    return 2;
  }
  set_log_level(config.log_level);
  route_libbpf_logs();
  if (parsed.probe_check) return check_probes(config);
  if (parsed.config_check) {
    std::cout << "nodeperf: configuration is valid"
              << (parsed.config_file.empty() ? "" : " (" + parsed.config_file + ")") << "\n";
    return 0;
  }
  raise_fd_limit();
  try {
    Agent agent(std::move(config), parsed.config_file, parsed.flags);
    return agent.run();
  } catch (const std::exception& e) {
    log_error(e.what());
    return 1;
  }
}

int run_doctor(const std::vector<std::string>& args) {
  std::string host_root = "/";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-h" || args[i] == "--help") {
      std::cout << "Usage: nodeperf doctor [--host-root=DIR]\n\n"
                   "Checks what this host supports, one line each: OK, WARN (works, with less) or\n"
                   "MISSING (and how to fix it). Exits 1 if anything is MISSING.\n";
      return 0;
    }
    if (args[i].starts_with("--host-root=")) {
      host_root = args[i].substr(12);
    } else if (args[i] == "--host-root" && i + 1 < args.size()) {
      host_root = args[++i];
    } else {
      std::cerr << "nodeperf doctor: unknown argument '" << args[i] << "'\n";
      return 2;
    }
  }
  return nodeperf::print_doctor(nodeperf::run_checks(host_root), std::cout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  std::string command = args[0];
  args.erase(args.begin());
  if (command == "agent") return run_agent(args);
  if (command == "doctor") return run_doctor(args);
  if (command == "top") return nodeperf::top::run_top(args);
  if (command == "version" || command == "--version") {
    if (wants_help(args)) {
      std::cout << "Usage: nodeperf version\n\nPrints the version and git revision of this build.\n";
      return 0;
    }
    std::cout << "nodeperf " NODEPERF_VERSION " (revision " NODEPERF_REVISION ", gcc " __VERSION__ ")\n";
    return 0;
  }
  std::cerr << "nodeperf: unknown command '" << command << "'\n\n" << kUsage;
  return 2;
}
